//! The encoder worker: model compute on its own thread, fed by a bounded queue.
//!
//! Shaped after text-embeddings-inference: the model sits behind a small synchronous trait, a
//! dedicated thread drains the queue and batches what is waiting, and a full queue is an
//! explicit [`EmbedError::Overloaded`] rather than a hang. Images are decoded and
//! preprocessed on the rayon pool (each one under `catch_unwind`, so a picture that crashes a
//! decoder is a 400 for that picture) while the model thread runs earlier batches.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::oneshot;

use crate::EmbedError;
use crate::admission::{Admission, Kind, Limits, Load};
use crate::decode::{DecodeOptions, decode_rgb_with};
use crate::fair_queue::{FairQueue, Part, Queued};
use crate::preprocess::{normalize_into, resize_and_crop};

/// A model that turns texts (and, with an image tower, pictures) into L2-normalised vectors.
/// Synchronous: it runs on the worker thread.
pub trait Encoder: Send + 'static {
    fn slug(&self) -> &str;
    fn dimensions(&self) -> usize;
    fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// The side of the square pixel input, for a model with an image tower.
    fn image_size(&self) -> Option<u32> {
        None
    }

    /// Embeddings of `n` preprocessed pictures, `(n, 3, size, size)` in row-major order.
    fn embed_pixels(&mut self, _pixels: Vec<f32>, _n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::NoImageTower {
            slug: self.slug().to_string(),
        })
    }
}

/// Bounds of one worker.
#[derive(Clone, Copy, Debug)]
pub struct WorkerOptions {
    /// Requests of one workspace that may wait; one more is refused as overloaded.
    pub queue_capacity: usize,
    /// Most texts or pictures run through the model in one forward pass.
    pub max_batch: usize,
    /// Longest a request may expect to wait for the work that runs before its answer; a
    /// request that would wait longer is refused at once (see [`crate::admission`]).
    pub max_wait: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queue_capacity: 64,
            max_batch: 32,
            max_wait: Duration::from_millis(600),
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

/// Pictures decoded and preprocessed for one model, ready for its worker.
#[derive(Debug)]
pub struct Prepared(Vec<Vec<f32>>);

/// What one request asks the model for.
enum Work {
    Texts(Vec<String>),
    /// One preprocessed picture per entry, `3 * size * size` floats each.
    Pixels(Vec<Vec<f32>>),
}

impl Work {
    fn len(&self) -> usize {
        match self {
            Work::Texts(t) => t.len(),
            Work::Pixels(p) => p.len(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Work::Texts(_) => Kind::Texts,
            Work::Pixels(_) => Kind::Pictures,
        }
    }
}

struct Job {
    tenant: Arc<str>,
    work: Work,
    reply: Reply,
}

/// The async side of a worker; cheap to clone.
#[derive(Clone, Debug)]
pub struct EncoderHandle {
    slug: Arc<str>,
    /// The revision of the weights it runs, when known (from their install receipt).
    revision: Option<Arc<str>>,
    dimensions: usize,
    image_size: Option<u32>,
    limits: Limits,
    tx: SyncSender<Job>,
    load: Arc<Load>,
}

impl EncoderHandle {
    /// Moves `encoder` onto a new thread and returns the handle that feeds it.
    pub fn spawn(encoder: impl Encoder, options: WorkerOptions) -> EncoderHandle {
        // The channel only carries jobs to the worker, which drains it before every batch;
        // admission bounds what waits, per workspace, so this bound is only a backstop.
        let (tx, rx) = sync_channel(options.queue_capacity.max(1).saturating_mul(16));
        let load = Arc::new(Load::default());
        let slug: Arc<str> = encoder.slug().into();
        let handle = EncoderHandle {
            slug: slug.clone(),
            revision: None,
            dimensions: encoder.dimensions(),
            image_size: encoder.image_size(),
            limits: Limits {
                requests: options.queue_capacity.max(1),
                max_wait: options.max_wait,
                unknown_cost: options.max_wait / options.max_batch.max(1) as u32,
            },
            tx,
            load: load.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("encoder-{slug}"))
            .spawn(move || run(encoder, rx, options.max_batch.max(1), &load));
        if let Err(e) = spawned {
            // The receiver was dropped with the closure: every call answers WorkerStopped.
            tracing::error!(model = %slug, error = %e, "cannot start encoder thread");
        }
        handle
    }

    /// The handle, recording the revision of the weights its encoder loaded.
    pub fn with_revision(mut self, revision: String) -> EncoderHandle {
        self.revision = Some(revision.into());
        self
    }

    /// The revision of the weights it runs; `None` for an encoder not loaded from an install.
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Whether the model embeds pictures as well as texts.
    pub fn takes_images(&self) -> bool {
        self.image_size.is_some()
    }

    /// Requests waiting or running right now.
    pub fn queue_depth(&self) -> usize {
        self.load.requests()
    }

    /// A place for `tenant`'s `items` of `kind`, or [`EmbedError::Overloaded`] at once. Taken
    /// before a request reads or decodes anything, and held until it is answered. The tenant
    /// is the workspace: the worker shares each batch fairly between tenants.
    pub fn admit(&self, tenant: &str, kind: Kind, items: usize) -> Result<Admission, EmbedError> {
        if kind == Kind::Pictures && self.image_size.is_none() {
            return Err(EmbedError::NoImageTower {
                slug: self.slug.to_string(),
            });
        }
        self.load
            .admit(&self.slug, tenant, kind, items, self.limits)
    }

    /// Embeds `tenant`'s `texts` on the worker; never blocks the async thread.
    pub async fn embed_texts(
        &self,
        tenant: &str,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut admission = self.admit(tenant, Kind::Texts, texts.len())?;
        self.submit(&mut admission, Work::Texts(texts)).await
    }

    /// Decodes and preprocesses pictures (file bytes) on the rayon pool: resized, cropped and
    /// normalised for the model, one entry per picture. The first picture that cannot be used
    /// fails the whole call with [`EmbedError::ImageItem`], naming its position. Apart from
    /// [`EncoderHandle::embed_prepared`], so that a caller can bound how much of this CPU work
    /// each workspace runs at once.
    pub async fn prepare_images(
        &self,
        images: Vec<Arc<[u8]>>,
        options: DecodeOptions,
    ) -> Result<Prepared, EmbedError> {
        let Some(size) = self.image_size else {
            return Err(EmbedError::NoImageTower {
                slug: self.slug.to_string(),
            });
        };
        if images.is_empty() {
            return Ok(Prepared(Vec::new()));
        }
        let (tx, rx) = oneshot::channel();
        rayon::spawn(move || {
            let prepared: Vec<Result<Vec<f32>, EmbedError>> = images
                .par_iter()
                .map(|bytes| prepare(bytes, size, &options))
                .collect();
            let _ = tx.send(prepared);
        });
        let prepared = rx.await.map_err(|_| EmbedError::Panicked {
            reason: "the image preprocessing task ended without an answer".into(),
        })?;
        let mut pixels = Vec::with_capacity(prepared.len());
        for (index, item) in prepared.into_iter().enumerate() {
            match item {
                Ok(p) => pixels.push(p),
                Err(e @ EmbedError::Panicked { .. }) => return Err(e),
                Err(e) => {
                    return Err(EmbedError::ImageItem {
                        index,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(Prepared(pixels))
    }

    /// Prepared pictures through the model, one vector per picture, in `admission`'s place
    /// (from [`EncoderHandle::admit`] for its pictures).
    pub async fn embed_prepared(
        &self,
        mut admission: Admission,
        prepared: Prepared,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        debug_assert_eq!(admission.kind(), Kind::Pictures);
        if prepared.0.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(&mut admission, Work::Pixels(prepared.0)).await
    }

    async fn submit(
        &self,
        admission: &mut Admission,
        work: Work,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        let tenant = admission.tenant().clone();
        match self.tx.try_send(Job {
            tenant,
            work,
            reply,
        }) {
            Ok(()) => admission.hand_over(),
            Err(e) => {
                return Err(match e {
                    TrySendError::Full(_) => EmbedError::Overloaded {
                        slug: self.slug.to_string(),
                        why: format!("{} requests are waiting", self.limits.requests),
                        retry_after_secs: 1,
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

/// Decode, resize, crop and normalise one picture. A decoder that panics on the picture's
/// bytes is that picture's fault ([`EmbedError::Image`], a 400 for it); a panic in our own
/// resize or normalisation is ours ([`EmbedError::Panicked`]).
fn prepare(bytes: &[u8], size: u32, options: &DecodeOptions) -> Result<Vec<f32>, EmbedError> {
    let rgb = std::panic::catch_unwind(AssertUnwindSafe(|| decode_rgb_with(bytes, options)))
        .unwrap_or_else(|panic| {
            Err(EmbedError::Image {
                reason: format!("the decoder crashed: {}", panic_message(panic.as_ref())),
            })
        })?;
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut out = vec![0f32; 3 * size as usize * size as usize];
        normalize_into(&resize_and_crop(&rgb, size), &mut out);
        out
    }))
    .map_err(|panic| EmbedError::Panicked {
        reason: format!("preprocessing a picture: {}", panic_message(panic.as_ref())),
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// After this many text batches in a row while pictures wait, one picture batch runs, so
/// neither kind starves the other.
const TEXT_BATCHES_BEFORE_PICTURES: usize = 4;

/// A job on the worker thread with the rows it has earned so far.
struct Running {
    work: Work,
    /// Items of `work` already run.
    taken: usize,
    rows: Vec<Vec<f32>>,
    reply: Reply,
}

impl Queued for Running {
    fn left(&self) -> usize {
        self.work.len() - self.taken
    }
}

/// The worker loop. Work runs in batches of at most `max_batch` items, one batch at a time,
/// and between batches the worker picks what runs next: texts (search queries, typically one
/// short text) before pictures, so a query waits for at most the batch already running, not
/// for a long picture job queued before it. Each batch is shared fairly between workspaces
/// ([`crate::fair_queue`]): long jobs are split into batches that other work can overtake,
/// and a job is answered when its last batch is done. Texts need no sorting by length: the
/// CPU forward pass packs them without padding.
fn run(mut encoder: impl Encoder, rx: Receiver<Job>, max_batch: usize, load: &Load) {
    let mut texts: FairQueue<Running> = FairQueue::new();
    let mut pixels: FairQueue<Running> = FairQueue::new();
    let mut text_streak = 0;
    loop {
        if texts.is_empty() && pixels.is_empty() {
            match rx.recv() {
                Ok(job) => enqueue(job, &mut texts, &mut pixels),
                Err(_) => return,
            }
        }
        // Disconnected: the handle is gone; what is already here still runs.
        while let Ok(job) = rx.try_recv() {
            enqueue(job, &mut texts, &mut pixels);
        }
        // Only empty jobs came, answered as they were queued: nothing to run.
        if texts.is_empty() && pixels.is_empty() {
            continue;
        }
        let pictures_turn =
            texts.is_empty() || (!pixels.is_empty() && text_streak >= TEXT_BATCHES_BEFORE_PICTURES);
        if pictures_turn {
            text_streak = 0;
            run_batch(&mut encoder, &mut pixels, max_batch, load);
        } else {
            text_streak += 1;
            run_batch(&mut encoder, &mut texts, max_batch, load);
        }
    }
}

fn enqueue(job: Job, texts: &mut FairQueue<Running>, pixels: &mut FairQueue<Running>) {
    let queue = match job.work {
        Work::Texts(_) => texts,
        Work::Pixels(_) => pixels,
    };
    if job.work.len() == 0 {
        let _ = job.reply.send(Ok(Vec::new()));
        return;
    }
    queue.push(
        job.tenant,
        Running {
            rows: Vec::with_capacity(job.work.len()),
            work: job.work,
            taken: 0,
            reply: job.reply,
        },
    );
}

/// Runs one batch from `queue` (up to `max_batch` items, shared between workspaces), hands
/// each job its rows, and answers the jobs that are complete. When a batch of several jobs
/// fails, each job's part runs again alone, so only the job at fault fails.
fn run_batch(
    encoder: &mut impl Encoder,
    queue: &mut FairQueue<Running>,
    max_batch: usize,
    load: &Load,
) {
    let parts = queue.take_batch(max_batch);
    let Some(first) = parts.first() else {
        return;
    };
    let kind = first.job.work.kind();
    let items: usize = parts.iter().map(|p| p.items).sum();
    let started = Instant::now();
    let outcomes: Vec<Result<Vec<Vec<f32>>, EmbedError>> = match embed_parts(encoder, &parts) {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            parts
                .iter()
                .map(|p| Ok(vectors.by_ref().take(p.items).collect()))
                .collect()
        }
        Err(e) if parts.len() == 1 => vec![Err(e)],
        Err(_) => parts
            .iter()
            .map(|part| embed_parts(encoder, std::slice::from_ref(part)))
            .collect(),
    };
    load.ran(kind, items, started.elapsed());
    for (part, outcome) in parts.into_iter().zip(outcomes) {
        let Part {
            tenant,
            mut job,
            items: n,
        } = part;
        match outcome {
            Ok(rows) => {
                load.dropped(&tenant, kind, n);
                job.rows.extend(rows);
                job.taken += n;
                if job.taken == job.work.len() {
                    let _ = job.reply.send(Ok(job.rows));
                } else {
                    // Free the inputs of a finished picture batch early.
                    if let Work::Pixels(p) = &mut job.work {
                        p[job.taken - n..job.taken]
                            .iter_mut()
                            .for_each(|v| *v = Vec::new());
                    }
                    queue.put_back(tenant, job);
                }
            }
            Err(e) => {
                // Its later items will not run: they leave the admission count now.
                load.dropped(&tenant, kind, job.work.len() - job.taken);
                let _ = job.reply.send(Err(e));
            }
        }
    }
}

/// The items of `parts` run through the model as one batch.
fn embed_parts(
    encoder: &mut impl Encoder,
    parts: &[Part<Running>],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let items: usize = parts.iter().map(|p| p.items).sum();
    let vectors = match &parts[0].job.work {
        Work::Texts(_) => {
            let batch: Vec<String> = parts
                .iter()
                .flat_map(|p| match &p.job.work {
                    Work::Texts(t) => t[p.job.taken..p.job.taken + p.items].to_vec(),
                    Work::Pixels(_) => Vec::new(),
                })
                .collect();
            guarded(|| encoder.embed_texts(&batch))
        }
        Work::Pixels(_) => {
            let batch: Vec<f32> = parts
                .iter()
                .flat_map(|p| match &p.job.work {
                    Work::Pixels(px) => px[p.job.taken..p.job.taken + p.items].concat(),
                    Work::Texts(_) => Vec::new(),
                })
                .collect();
            guarded(|| encoder.embed_pixels(batch, items))
        }
    }?;
    if vectors.len() != items {
        return Err(EmbedError::Panicked {
            reason: format!(
                "the model answered {} rows for {items} items",
                vectors.len()
            ),
        });
    }
    Ok(vectors)
}

fn guarded(
    f: impl FnOnce() -> Result<Vec<Vec<f32>>, EmbedError>,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| EmbedError::Panicked {
        reason: panic_message(panic.as_ref()),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Admits and embeds pictures, as the gateway does.
    async fn embed(h: &EncoderHandle, images: Vec<Arc<[u8]>>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let admission = h.admit("t", Kind::Pictures, images.len())?;
        let prepared = h.prepare_images(images, DecodeOptions::default()).await?;
        h.embed_prepared(admission, prepared).await
    }

    /// A deterministic encoder: the vector is [len, 1]; it can be held on a gate.
    struct Fake {
        gate: Arc<Mutex<()>>,
        entered: Arc<AtomicUsize>,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl Encoder for Fake {
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
        let a = h.embed_texts("t", vec!["a".into(), "bbb".into()]);
        let b = h.embed_texts("t", vec!["cc".into()]);
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
                ..WorkerOptions::default()
            },
        );
        let held = gate.lock().expect("gate");
        // The first job is taken by the worker (blocked on the gate), the second waits in the
        // queue, the third finds it full.
        let first = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["1".into()]).await }
        });
        while entered.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        let second = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["2".into()]).await }
        });
        while h.queue_depth() < 2 {
            tokio::task::yield_now().await;
        }
        let third = h.embed_texts("t", vec!["3".into()]).await;
        assert!(matches!(
            third,
            Err(EmbedError::Overloaded {
                retry_after_secs: 1,
                ..
            })
        ));
        drop(held);
        assert!(first.await.expect("join").is_ok());
        assert!(second.await.expect("join").is_ok());
    }

    #[tokio::test]
    async fn an_empty_job_is_answered_and_the_worker_lives_on() {
        let (enc, (_, entered, _)) = fake();
        let h = EncoderHandle::spawn(enc, WorkerOptions::default());
        // Through the public handle, as a library caller may send it.
        assert_eq!(
            h.embed_texts("t", Vec::new()).await.expect("empty"),
            Vec::<Vec<f32>>::new()
        );
        assert_eq!(
            entered.load(Ordering::SeqCst),
            0,
            "nothing reached the model"
        );
        assert_eq!(h.queue_depth(), 0);
        // Straight onto the worker's queue, as if the handle had not answered it first; then
        // a pause, so the worker is past it before the next job comes.
        let (reply, answer) = oneshot::channel();
        h.tx.try_send(Job {
            tenant: "t".into(),
            work: Work::Texts(Vec::new()),
            reply,
        })
        .expect("queued");
        assert!(answer.await.expect("answered").expect("ok").is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(
            h.embed_texts("t", vec!["ok".into()])
                .await
                .expect("the worker lives"),
            vec![vec![2.0, 1.0]]
        );
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_worker_survives() {
        let (enc, _) = fake();
        let h = EncoderHandle::spawn(enc, WorkerOptions::default());
        let err = h.embed_texts("t", vec!["panic".into()]).await;
        assert!(matches!(err, Err(EmbedError::Panicked { reason }) if reason == "boom"));
        assert!(h.embed_texts("t", vec!["ok".into()]).await.is_ok());
    }

    /// An "image model" that answers the number of floats it got per picture.
    struct Pixels;

    impl Encoder for Pixels {
        fn slug(&self) -> &str {
            "pixels"
        }
        fn dimensions(&self) -> usize {
            1
        }
        fn embed_texts(&mut self, _texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(Vec::new())
        }
        fn image_size(&self) -> Option<u32> {
            Some(4)
        }
        fn embed_pixels(
            &mut self,
            pixels: Vec<f32>,
            n: usize,
        ) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(pixels
                .chunks(pixels.len() / n)
                .map(|c| vec![c.len() as f32])
                .collect())
        }
    }

    #[tokio::test]
    async fn pictures_are_preprocessed_and_a_bad_one_is_named_by_position() {
        let png: Arc<[u8]> = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/images/palette.png"
        ))
        .expect("read")
        .into();
        let garbage: Arc<[u8]> = Arc::from(&b"not an image"[..]);
        let h = EncoderHandle::spawn(Pixels, WorkerOptions::default());
        assert!(h.takes_images());
        let out = embed(&h, vec![png.clone(), png.clone()])
            .await
            .expect("embed");
        assert_eq!(out, vec![vec![48.0], vec![48.0]]); // 3 x 4 x 4 floats each
        let err = embed(&h, vec![png.clone(), garbage, png])
            .await
            .expect_err("the second is not a picture");
        assert!(
            matches!(err, EmbedError::ImageItem { index: 1, .. }),
            "{err}"
        );
        assert_eq!(h.queue_depth(), 0);
        // A text-only model says so.
        let (enc, _) = fake();
        let text_only = EncoderHandle::spawn(enc, WorkerOptions::default());
        assert!(!text_only.takes_images());
        let err = embed(&text_only, Vec::new())
            .await
            .expect_err("no image tower");
        assert!(matches!(err, EmbedError::NoImageTower { .. }), "{err}");
    }

    /// A model that takes 20 ms per text.
    struct Slow;

    impl Encoder for Slow {
        fn slug(&self) -> &str {
            "slow"
        }
        fn dimensions(&self) -> usize {
            1
        }
        fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            std::thread::sleep(std::time::Duration::from_millis(20 * texts.len() as u64));
            Ok(texts.iter().map(|_| vec![1.0]).collect())
        }
    }

    #[tokio::test]
    async fn a_request_that_would_wait_past_the_bound_is_refused_with_retry_after() {
        let h = EncoderHandle::spawn(
            Slow,
            WorkerOptions {
                queue_capacity: 64,
                max_batch: 4,
                max_wait: Duration::from_millis(100),
            },
        );
        // The first batch teaches the worker what a text costs here.
        h.embed_texts("t", vec!["warm".into(); 4])
            .await
            .expect("warm-up");
        let long = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["x".into(); 40]).await }
        });
        while h.queue_depth() < 1 {
            tokio::task::yield_now().await;
        }
        // 40 texts at about 20 ms each are queued ahead: far past 100 ms.
        match h.embed_texts("t", vec!["query".into()]).await {
            Err(EmbedError::Overloaded {
                retry_after_secs, ..
            }) => assert!(retry_after_secs >= 1),
            other => panic!("expected overloaded, got {other:?}"),
        }
        assert_eq!(long.await.expect("join").expect("long").len(), 40);
        // Once it has run, a query is admitted again.
        assert!(h.embed_texts("t", vec!["query".into()]).await.is_ok());
    }

    #[test]
    fn a_panic_in_our_preprocessing_is_ours_and_a_bad_picture_is_the_pictures() {
        let png = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/images/palette.png"
        ))
        .expect("read");
        let options = DecodeOptions::default();
        assert_eq!(prepare(&png, 4, &options).expect("prepared").len(), 48);
        // A zero-sized model input makes our own resize fail, not the picture.
        let ours = prepare(&png, 0, &options);
        assert!(matches!(ours, Err(EmbedError::Panicked { .. })), "{ours:?}");
        let theirs = prepare(b"GIF89a not really", 4, &options);
        assert!(
            matches!(theirs, Err(EmbedError::Image { .. })),
            "{theirs:?}"
        );
    }

    #[tokio::test]
    async fn long_requests_are_split_into_batches() {
        let (enc, (_, _, batches)) = fake();
        let h = EncoderHandle::spawn(
            enc,
            WorkerOptions {
                queue_capacity: 4,
                max_batch: 4,
                ..WorkerOptions::default()
            },
        );
        let texts: Vec<String> = (0..10).map(|i| "x".repeat(i)).collect();
        let out = h.embed_texts("t", texts).await.expect("embed");
        assert_eq!(out.len(), 10);
        assert_eq!(out[9][0], 9.0);
        assert_eq!(*batches.lock().expect("batches"), vec![4, 4, 2]);
    }

    /// A two-tower model that logs each batch it runs ("T3" = three texts) and can be held
    /// on a gate.
    struct Logged {
        gate: Arc<Mutex<()>>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Encoder for Logged {
        fn slug(&self) -> &str {
            "logged"
        }
        fn dimensions(&self) -> usize {
            1
        }
        fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.log
                .lock()
                .expect("log")
                .push(format!("T{}", texts.len()));
            let _held = self.gate.lock().expect("gate");
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
        fn image_size(&self) -> Option<u32> {
            Some(4)
        }
        fn embed_pixels(&mut self, _: Vec<f32>, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.log.lock().expect("log").push(format!("P{n}"));
            let _held = self.gate.lock().expect("gate");
            Ok((0..n).map(|i| vec![i as f32]).collect())
        }
    }

    // The gate is held across awaits on purpose: it stalls the worker thread, not a task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_query_overtakes_a_long_picture_job_after_one_batch() {
        let png: Arc<[u8]> = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/images/palette.png"
        ))
        .expect("read")
        .into();
        let gate = Arc::new(Mutex::new(()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let h = EncoderHandle::spawn(
            Logged {
                gate: gate.clone(),
                log: log.clone(),
            },
            WorkerOptions {
                queue_capacity: 8,
                max_batch: 2,
                ..WorkerOptions::default()
            },
        );
        let held = gate.lock().expect("gate");
        let pictures = tokio::spawn({
            let h = h.clone();
            let images = vec![png; 6];
            async move { embed(&h, images).await }
        });
        // The first picture batch is running (held on the gate) before the query arrives.
        while log.lock().expect("log").is_empty() {
            tokio::task::yield_now().await;
        }
        let query = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["a dog".into()]).await }
        });
        while h.queue_depth() < 2 {
            tokio::task::yield_now().await;
        }
        // Give the query time to reach the worker's queue before the gate opens.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(held);
        assert_eq!(query.await.expect("join").expect("query"), vec![vec![5.0]]);
        let rows = pictures.await.expect("join").expect("pictures");
        assert_eq!(
            rows,
            vec![
                vec![0.0],
                vec![1.0],
                vec![0.0],
                vec![1.0],
                vec![0.0],
                vec![1.0]
            ]
        );
        assert_eq!(*log.lock().expect("log"), ["P2", "T1", "P2", "P2"]);
    }

    /// Logs each text batch as its texts joined by commas; held on a gate.
    struct Joined {
        gate: Arc<Mutex<()>>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Encoder for Joined {
        fn slug(&self) -> &str {
            "joined"
        }
        fn dimensions(&self) -> usize {
            1
        }
        fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.log.lock().expect("log").push(texts.join(","));
            let _held = self.gate.lock().expect("gate");
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
    }

    // The gate is held across awaits on purpose: it stalls the worker thread, not a task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn another_workspaces_query_runs_in_the_next_batch_beside_long_runs() {
        let gate = Arc::new(Mutex::new(()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let h = EncoderHandle::spawn(
            Joined {
                gate: gate.clone(),
                log: log.clone(),
            },
            WorkerOptions {
                queue_capacity: 8,
                max_batch: 4,
                ..WorkerOptions::default()
            },
        );
        // One batch teaches the worker what a text costs, so what follows is admitted.
        h.embed_texts("warm", vec!["w".into()]).await.expect("warm");
        let held = gate.lock().expect("gate");
        let run = |tenant: &'static str, text: &'static str, n: usize| {
            let h = h.clone();
            tokio::spawn(async move { h.embed_texts(tenant, vec![text.to_string(); n]).await })
        };
        let first = run("abusive", "a1", 4);
        while log.lock().expect("log").len() < 2 {
            tokio::task::yield_now().await;
        }
        // While its first run is in the model, the abusive workspace queues two more, then
        // another workspace sends one query.
        let second = run("abusive", "a2", 4);
        while h.queue_depth() < 2 {
            tokio::task::yield_now().await;
        }
        let third = run("abusive", "a3", 4);
        while h.queue_depth() < 3 {
            tokio::task::yield_now().await;
        }
        let query = run("interactive", "q", 1);
        while h.queue_depth() < 4 {
            tokio::task::yield_now().await;
        }
        // Give the jobs time to reach the worker's queue before the gate opens.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(held);
        assert_eq!(query.await.expect("join").expect("query"), vec![vec![1.0]]);
        for job in [first, second, third] {
            assert_eq!(job.await.expect("join").expect("run").len(), 4);
        }
        // First come, first served would have run the query last, after 12 abusive texts.
        assert_eq!(
            *log.lock().expect("log"),
            ["w", "a1,a1,a1,a1", "a2,a2,a2,q", "a2,a3,a3,a3", "a3"]
        );
    }

    // The gate is held across awaits on purpose: it stalls the worker thread, not a task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn batches_mix_jobs_and_a_failed_batch_fails_only_the_job_at_fault() {
        let (enc, (gate, entered, batches)) = fake();
        let h = EncoderHandle::spawn(
            enc,
            WorkerOptions {
                queue_capacity: 8,
                max_batch: 3,
                ..WorkerOptions::default()
            },
        );
        let held = gate.lock().expect("gate");
        let first = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["a".into()]).await }
        });
        while entered.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // Two jobs of two texts wait; the next batch takes both of the first and one of the
        // second (3), then the last text runs alone.
        let second = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["bb".into(), "ccc".into()]).await }
        });
        let third = tokio::spawn({
            let h = h.clone();
            async move {
                h.embed_texts("t", vec!["dddd".into(), "eeeee".into()])
                    .await
            }
        });
        while h.queue_depth() < 3 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(held);
        assert_eq!(
            first.await.expect("join").expect("first"),
            vec![vec![1.0, 1.0]]
        );
        assert_eq!(
            second.await.expect("join").expect("second"),
            vec![vec![2.0, 1.0], vec![3.0, 1.0]]
        );
        assert_eq!(
            third.await.expect("join").expect("third"),
            vec![vec![4.0, 1.0], vec![5.0, 1.0]]
        );
        assert_eq!(*batches.lock().expect("batches"), vec![1, 3, 1]);
        // A batch that panics fails the jobs in it; the worker goes on.
        let bad = h.embed_texts("t", vec!["panic".into()]).await;
        assert!(matches!(bad, Err(EmbedError::Panicked { .. })));
        assert!(h.embed_texts("t", vec!["ok".into()]).await.is_ok());
        // A job failing in its first batch (of three here) leaves nothing counted as queued.
        let long = vec![
            "panic".into(),
            "x".into(),
            "y".into(),
            "z".into(),
            "w".into(),
        ];
        assert!(h.embed_texts("t", long).await.is_err());
        assert_eq!(h.load.queued(Kind::Texts), 0);

        // A batch of several jobs that fails: only the job at fault fails, the others are
        // answered with their rows.
        let held = gate.lock().expect("gate");
        let entered_before = entered.load(Ordering::SeqCst);
        let blocker = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["z".into()]).await }
        });
        while entered.load(Ordering::SeqCst) == entered_before {
            tokio::task::yield_now().await;
        }
        let at_fault = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["bb".into(), "panic".into()]).await }
        });
        let innocent = tokio::spawn({
            let h = h.clone();
            async move { h.embed_texts("t", vec!["dddd".into()]).await }
        });
        while h.queue_depth() < 3 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(held);
        assert!(blocker.await.expect("join").is_ok());
        assert!(matches!(
            at_fault.await.expect("join"),
            Err(EmbedError::Panicked { .. })
        ));
        assert_eq!(
            innocent.await.expect("join").expect("innocent"),
            vec![vec![4.0, 1.0]]
        );
    }
}
