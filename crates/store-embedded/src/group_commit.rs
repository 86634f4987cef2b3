//! Group commit: concurrent writers queue their operations, and one of them, the leader,
//! commits everything queued in one transaction and answers each writer. Throughput does not
//! collapse to one fsync per writer, and a write is answered only after its commit.
//!
//! A leader commits one batch, the one that holds its own operation, and then hands the lead
//! to the oldest writer still waiting (whose operation is then in the next batch), so no
//! writer's answer waits behind more than one batch of others'. A panic while committing fails
//! that batch's writers with an error and the lead is still handed on: nobody waits forever.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, SyncSender};

use parking_lot::Mutex;

use aimp_store::StoreError;

use crate::Error;

pub(crate) type Answer<R> = Result<R, Error>;

/// The queue of operations `O`, answered with `R`.
pub(crate) struct GroupCommit<O, R> {
    queue: Mutex<Queue<O, R>>,
}

struct Queue<O, R> {
    pending: Vec<(O, SyncSender<Message<R>>)>,
    leader: bool,
}

enum Message<R> {
    Done(Answer<R>),
    /// The previous leader is done: the receiver leads now.
    Lead,
}

impl<O, R> Default for GroupCommit<O, R> {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                leader: false,
            }),
        }
    }
}

impl<O, R> GroupCommit<O, R> {
    /// Queues `op` and returns its answer once it is committed. `commit` takes a batch and
    /// answers each of its operations, in order; it runs on whichever writer leads.
    pub fn submit(&self, op: O, commit: impl FnOnce(Vec<O>) -> Vec<Answer<R>>) -> Answer<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut q = self.queue.lock();
            q.pending.push((op, tx));
            if q.leader {
                drop(q);
                match rx.recv() {
                    Ok(Message::Done(answer)) => return answer,
                    Ok(Message::Lead) => {}
                    Err(_) => return Err(Error::WriterGone),
                }
            } else {
                q.leader = true;
            }
        }
        // Leading: our own operation is still queued, so it is in this batch.
        let lead = Lead(self);
        let batch = std::mem::take(&mut self.queue.lock().pending);
        run(batch, commit);
        drop(lead);
        match rx.recv() {
            Ok(Message::Done(answer)) => answer,
            Ok(Message::Lead) | Err(_) => Err(Error::WriterGone),
        }
    }
}

/// Held by the leader; hands the lead on when dropped, also while unwinding.
struct Lead<'a, O, R>(&'a GroupCommit<O, R>);

impl<O, R> Drop for Lead<'_, O, R> {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock();
        while let Some((_, tx)) = q.pending.first() {
            // The oldest waiter blocks in `recv` with nothing sent to it yet, so this cannot
            // block; it fails only if that writer is gone, whose operation is then dropped.
            if tx.try_send(Message::Lead).is_ok() {
                return;
            }
            q.pending.remove(0);
        }
        q.leader = false;
    }
}

fn run<O, R>(
    batch: Vec<(O, SyncSender<Message<R>>)>,
    commit: impl FnOnce(Vec<O>) -> Vec<Answer<R>>,
) {
    let (ops, senders): (Vec<O>, Vec<_>) = batch.into_iter().unzip();
    let count = senders.len();
    let answers = match catch_unwind(AssertUnwindSafe(|| commit(ops))) {
        Ok(answers) => answers,
        Err(panic) => {
            let reason = format!("the commit panicked: {}", panic_message(&*panic));
            tracing::error!(%reason, writers = count, "group commit failed");
            (0..count)
                .map(|_| {
                    Err(StoreError::CommitFailed {
                        reason: reason.clone(),
                    }
                    .into())
                })
                .collect()
        }
    };
    debug_assert_eq!(answers.len(), count, "one answer per operation");
    for (answer, tx) in answers.into_iter().zip(senders) {
        let _ = tx.send(Message::Done(answer));
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Operations are (writer, sequence); a commit records which writer led it.
    type Log = Mutex<Vec<(usize, Vec<(usize, usize)>)>>;

    fn commit_as(
        leader: usize,
        log: &Log,
    ) -> impl FnOnce(Vec<(usize, usize)>) -> Vec<Answer<usize>> + '_ {
        move |ops| {
            std::thread::sleep(Duration::from_micros(200));
            let answers = ops.iter().map(|&(_, seq)| Ok(seq)).collect();
            log.lock().push((leader, ops));
            answers
        }
    }

    #[test]
    fn a_leader_commits_only_the_batch_that_holds_its_own_operation() {
        let queue: Arc<GroupCommit<(usize, usize), usize>> = Arc::default();
        let log: Arc<Log> = Arc::default();
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let (queue, log) = (queue.clone(), log.clone());
                std::thread::spawn(move || {
                    for seq in 0..200 {
                        let answer = queue.submit((w, seq), commit_as(w, &log));
                        assert_eq!(answer.expect("committed"), seq);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        let log = log.lock();
        assert_eq!(log.iter().map(|(_, ops)| ops.len()).sum::<usize>(), 6 * 200);
        assert!(log.len() < 6 * 200, "writes were grouped");
        for (leader, ops) in log.iter() {
            assert!(
                ops.iter().any(|(w, _)| w == leader),
                "writer {leader} committed a batch without its own operation: {ops:?}"
            );
        }
    }

    #[test]
    fn a_panicking_commit_fails_its_batch_and_later_writers_still_commit() {
        let queue: Arc<GroupCommit<usize, usize>> = Arc::default();
        let answer = queue.submit(1, |_| panic!("injected"));
        match answer {
            Err(Error::Store(StoreError::CommitFailed { reason })) => {
                assert!(reason.contains("injected"), "{reason}")
            }
            other => panic!("expected a failed commit, got {other:?}"),
        }
        // The lead was handed back: the next writers are not left waiting.
        let (tx, rx) = mpsc::channel();
        for i in 0..4 {
            let (queue, tx) = (queue.clone(), tx.clone());
            std::thread::spawn(move || {
                let answer = queue.submit(i, |ops| ops.into_iter().map(Ok).collect());
                let _ = tx.send(answer.expect("committed"));
            });
        }
        let mut got: Vec<usize> = (0..4)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("writer hangs")
            })
            .collect();
        got.sort();
        assert_eq!(got, [0, 1, 2, 3]);
    }
}
