//! The encoder worker: model compute on its own thread, fed by a bounded queue.
//!
//! Shaped after text-embeddings-inference: the model sits behind a small synchronous trait, a
//! dedicated thread drains the queue and batches what is waiting, and a full queue is an
//! explicit [`EmbedError::Overloaded`] rather than a hang.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

use tokio::sync::oneshot;

use crate::EmbedError;

/// A model that turns texts into L2-normalised vectors. Synchronous: it runs on the worker.
pub trait TextEncoder: Send + 'static {
    fn slug(&self) -> &str;
    fn dimensions(&self) -> usize;
    fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Bounds of one worker.
#[derive(Clone, Copy, Debug)]
pub struct WorkerOptions {
    /// Requests that may wait; one more is refused as overloaded.
    pub queue_capacity: usize,
    /// Most texts run through the model in one forward pass.
    pub max_batch: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queue_capacity: 64,
            max_batch: 32,
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

struct Job {
    texts: Vec<String>,
    reply: Reply,
}

/// The async side of a worker; cheap to clone.
#[derive(Clone, Debug)]
pub struct EncoderHandle {
    slug: Arc<str>,
    dimensions: usize,
    capacity: usize,
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
}

impl EncoderHandle {
    /// Moves `encoder` onto a new thread and returns the handle that feeds it.
    pub fn spawn(encoder: impl TextEncoder, options: WorkerOptions) -> EncoderHandle {
        let (tx, rx) = sync_channel(options.queue_capacity.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let slug: Arc<str> = encoder.slug().into();
        let handle = EncoderHandle {
            slug: slug.clone(),
            dimensions: encoder.dimensions(),
            capacity: options.queue_capacity.max(1),
            tx,
            depth: depth.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("encoder-{slug}"))
            .spawn(move || run(encoder, rx, depth, options.max_batch.max(1)));
        if let Err(e) = spawned {
            // The receiver was dropped with the closure: every call answers WorkerStopped.
            tracing::error!(model = %slug, error = %e, "cannot start encoder thread");
        }
        handle
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Requests waiting or running right now.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Embeds `texts` on the worker; never blocks the async thread.
    pub async fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Job { texts, reply }) {
            Ok(()) => {}
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(match e {
                    TrySendError::Full(_) => EmbedError::Overloaded {
                        slug: self.slug.to_string(),
                        capacity: self.capacity,
                    },
                    TrySendError::Disconnected(_) => EmbedError::WorkerStopped {
                        slug: self.slug.to_string(),
                    },
                });
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(EmbedError::WorkerStopped {
                slug: self.slug.to_string(),
            })
        })
    }
}

/// The worker loop: take one job, then whatever else is already waiting (up to `max_batch`
/// texts), run them through the model together, and answer each job with its own rows.
fn run(
    mut encoder: impl TextEncoder,
    rx: Receiver<Job>,
    depth: Arc<AtomicUsize>,
    max_batch: usize,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut texts: usize = jobs[0].texts.len();
        while texts < max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    texts += job.texts.len();
                    jobs.push(job);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let all: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
        let result = embed_chunked(&mut encoder, &all, max_batch);
        depth.fetch_sub(jobs.len(), Ordering::Relaxed);
        match result {
            Ok(vectors) => {
                // Hand each job its rows, in order.
                let mut rest = vectors;
                for job in jobs {
                    let tail = rest.split_off(job.texts.len().min(rest.len()));
                    let _ = job.reply.send(Ok(rest));
                    rest = tail;
                }
            }
            Err(e) => {
                let message = e.to_string();
                let mut jobs = jobs.into_iter();
                if let Some(job) = jobs.next() {
                    let _ = job.reply.send(Err(e));
                }
                for job in jobs {
                    let _ = job.reply.send(Err(EmbedError::Panicked {
                        reason: message.clone(),
                    }));
                }
            }
        }
    }
}

/// Runs `texts` through the model `max_batch` at a time, turning a panic into an error.
fn embed_chunked(
    encoder: &mut impl TextEncoder,
    texts: &[String],
    max_batch: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(max_batch) {
        let vectors = std::panic::catch_unwind(AssertUnwindSafe(|| encoder.embed_texts(chunk)))
            .map_err(|panic| EmbedError::Panicked {
            reason: panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into()),
        })??;
        out.extend(vectors);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A deterministic encoder: the vector is [len, 1]; it can be held on a gate.
    struct Fake {
        gate: Arc<Mutex<()>>,
        entered: Arc<AtomicUsize>,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl TextEncoder for Fake {
        fn slug(&self) -> &str {
            "fake"
        }
        fn dimensions(&self) -> usize {
            2
        }
        fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            if texts.iter().any(|t| t == "panic") {
                panic!("boom");
            }
            let _held = self.gate.lock().expect("gate");
            self.batches.lock().expect("batches").push(texts.len());
            Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
        }
    }

    type Probes = (Arc<Mutex<()>>, Arc<AtomicUsize>, Arc<Mutex<Vec<usize>>>);

    fn fake() -> (Fake, Probes) {
        let gate = Arc::new(Mutex::new(()));
        let entered = Arc::new(AtomicUsize::new(0));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake {
            gate: gate.clone(),
            entered: entered.clone(),
            batches: batches.clone(),
        };
        (fake, (gate, entered, batches))
    }

    #[tokio::test]
    async fn answers_each_request_with_its_own_rows() {
        let (enc, _) = fake();
        let h = EncoderHandle::spawn(enc, WorkerOptions::default());
        let a = h.embed_texts(vec!["a".into(), "bbb".into()]);
        let b = h.embed_texts(vec!["cc".into()]);
        let (a, b) = tokio::join!(a, b);
        assert_eq!(a.expect("a"), vec![vec![1.0, 1.0], vec![3.0, 1.0]]);
        assert_eq!(b.expect("b"), vec![vec![2.0, 1.0]]);
        assert_eq!(h.queue_depth(), 0);
    }

    // The test holds the gate across awaits on purpose: it stalls the worker thread, not a task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_full_queue_is_overloaded_not_a_hang() {
        let (enc, (gate, entered, _)) = fake();
        let h = EncoderHandle::spawn(
            enc,
            WorkerOptions {
                queue_capacity: 1,
                max_batch: 1,
            },
        );
        let held = gate.lock().expect("gate");
        // The first job is taken by the worker (blocked on the gate), the second waits in the
        // queue, the third finds it full.
        let first = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts(vec!["1".into()]).await }
        });
        while entered.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        let second = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts(vec!["2".into()]).await }
        });
        while h.queue_depth() < 2 {
            tokio::task::yield_now().await;
        }
        let third = h.embed_texts(vec!["3".into()]).await;
        assert!(matches!(
            third,
            Err(EmbedError::Overloaded { capacity: 1, .. })
        ));
        drop(held);
        assert!(first.await.expect("join").is_ok());
        assert!(second.await.expect("join").is_ok());
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_worker_survives() {
        let (enc, _) = fake();
        let h = EncoderHandle::spawn(enc, WorkerOptions::default());
        let err = h.embed_texts(vec!["panic".into()]).await;
        assert!(matches!(err, Err(EmbedError::Panicked { reason }) if reason == "boom"));
        assert!(h.embed_texts(vec!["ok".into()]).await.is_ok());
    }

    #[tokio::test]
    async fn long_requests_are_split_into_batches() {
        let (enc, (_, _, batches)) = fake();
        let h = EncoderHandle::spawn(
            enc,
            WorkerOptions {
                queue_capacity: 4,
                max_batch: 4,
            },
        );
        let texts: Vec<String> = (0..10).map(|i| "x".repeat(i)).collect();
        let out = h.embed_texts(texts).await.expect("embed");
        assert_eq!(out.len(), 10);
        assert_eq!(out[9][0], 9.0);
        assert_eq!(*batches.lock().expect("batches"), vec![4, 4, 2]);
    }
}
