//! Admission to an encoder: work is counted in items (texts, pictures), not requests, and a
//! request is admitted only while the work already queued ahead of it is expected to take no
//! longer than the worker's `max_wait`; otherwise it is refused at once with how long to wait
//! ([`EmbedError::Overloaded`]), before anything of it is read or decoded.
//!
//! The expected wait is the queued items times what an item of that kind has recently cost
//! on this machine (a moving average the worker keeps after every batch). Texts run before
//! pictures, so a text waits only for the texts ahead of it; a picture waits for everything.
//! Before the first batch of a kind the cost is unknown and nothing is refused for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::EmbedError;

/// What a request asks the model for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Texts,
    Pictures,
}

/// Items admitted and not yet run, and their recent cost, per kind.
#[derive(Debug, Default)]
pub(crate) struct Load {
    queued: [AtomicUsize; 2],
    /// Moving average of nanoseconds per item.
    cost: [AtomicU64; 2],
    /// Requests admitted and not yet answered.
    requests: AtomicUsize,
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Texts => 0,
        Kind::Pictures => 1,
    }
}

impl Load {
    /// Queued work a new request of `kind` would wait behind.
    fn wait_ahead(&self, kind: Kind) -> Duration {
        let nanos = |k: Kind| {
            self.queued[slot(k)].load(Ordering::Relaxed) as u64
                * self.cost[slot(k)].load(Ordering::Relaxed)
        };
        let ahead = match kind {
            Kind::Texts => nanos(Kind::Texts),
            Kind::Pictures => nanos(Kind::Texts) + nanos(Kind::Pictures),
        };
        Duration::from_nanos(ahead)
    }

    /// The worker ran `items` items of `kind` in `took`.
    pub fn ran(&self, kind: Kind, items: usize, took: Duration) {
        if items == 0 {
            return;
        }
        self.dropped(kind, items);
        let per_item = (took.as_nanos() / items as u128).min(u64::MAX as u128) as u64;
        let cost = &self.cost[slot(kind)];
        let old = cost.load(Ordering::Relaxed);
        let new = if old == 0 {
            per_item
        } else {
            (old / 4) * 3 + per_item / 4
        };
        cost.store(new.max(1), Ordering::Relaxed);
    }

    /// Items of `kind` that left the queue: run, or never to run (their job failed first).
    pub fn dropped(&self, kind: Kind, items: usize) {
        let _ = self.queued[slot(kind)].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
            Some(q.saturating_sub(items))
        });
    }

    /// Items of `kind` admitted and not yet run.
    #[cfg(test)]
    pub fn queued(&self, kind: Kind) -> usize {
        self.queued[slot(kind)].load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Admits `items` of `kind`, or refuses with how long to wait.
    pub fn admit(
        self: &Arc<Self>,
        slug: &str,
        kind: Kind,
        items: usize,
        limits: Limits,
    ) -> Result<Admission, EmbedError> {
        let before = self.requests.fetch_add(1, Ordering::Relaxed);
        let admission = Admission {
            load: self.clone(),
            kind,
            items: 0,
        };
        if before > limits.requests {
            return Err(EmbedError::Overloaded {
                slug: slug.to_string(),
                why: format!("{} requests are waiting", limits.requests),
                retry_after_secs: 1,
            });
        }
        let ahead = self.wait_ahead(kind);
        if ahead > limits.max_wait {
            return Err(EmbedError::Overloaded {
                slug: slug.to_string(),
                why: format!(
                    "the work queued ahead would take about {:.1} s, more than the {:.1} s a request may wait",
                    ahead.as_secs_f64(),
                    limits.max_wait.as_secs_f64()
                ),
                retry_after_secs: ahead.as_secs().max(1),
            });
        }
        let mut admission = admission;
        self.queued[slot(kind)].fetch_add(items, Ordering::Relaxed);
        admission.items = items;
        Ok(admission)
    }
}

/// How much may wait for one worker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub requests: usize,
    pub max_wait: Duration,
}

/// A request's place: held until it is answered or dropped. Items it never handed to the
/// worker (it failed first, or its client left) are taken off the queue when it drops.
#[derive(Debug)]
pub struct Admission {
    load: Arc<Load>,
    kind: Kind,
    /// Admitted items not yet handed to the worker.
    items: usize,
}

impl Admission {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The items go to the worker, which takes them off the queue as it runs them.
    pub(crate) fn hand_over(&mut self) {
        self.items = 0;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.load.requests.fetch_sub(1, Ordering::Relaxed);
        self.load.dropped(self.kind, self.items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_wait_ms: u64) -> Limits {
        Limits {
            requests: 100,
            max_wait: Duration::from_millis(max_wait_ms),
        }
    }

    #[test]
    fn a_request_is_refused_once_the_work_ahead_exceeds_the_wait_bound() {
        let load = Arc::new(Load::default());
        // Unknown cost: nothing is refused.
        let a = load
            .admit("m", Kind::Pictures, 64, limits(1_000))
            .expect("first");
        // 100 ms per picture: 64 queued pictures are 6.4 s ahead.
        load.cost[1].store(100_000_000, Ordering::Relaxed);
        let e = load
            .admit("m", Kind::Pictures, 1, limits(1_000))
            .expect_err("6.4 s ahead");
        match e {
            EmbedError::Overloaded {
                retry_after_secs, ..
            } => assert_eq!(retry_after_secs, 6),
            other => panic!("{other}"),
        }
        // Texts run first: a query does not wait for the pictures.
        let t = load
            .admit("m", Kind::Texts, 1, limits(1_000))
            .expect("a query");
        drop(t);
        // The worker runs 60 of them: 0.4 s ahead now, within the bound.
        load.ran(Kind::Pictures, 60, Duration::from_secs(6));
        let b = load
            .admit("m", Kind::Pictures, 8, limits(1_000))
            .expect("admitted");
        drop((a, b));
        assert_eq!(load.requests(), 0);
    }

    #[test]
    fn items_never_handed_over_leave_the_queue_when_their_request_ends() {
        let load = Arc::new(Load::default());
        load.cost[0].store(10_000_000, Ordering::Relaxed); // 10 ms per text
        let mut handed = load
            .admit("m", Kind::Texts, 50, limits(300))
            .expect("50 texts");
        handed.hand_over();
        let failed = load
            .admit("m", Kind::Texts, 20, limits(1_000))
            .expect("20 more");
        drop(failed); // e.g. its input was refused before it reached the worker
        assert_eq!(load.queued[0].load(Ordering::Relaxed), 50);
        // 0.5 s ahead: over a 0.3 s bound.
        assert!(load.admit("m", Kind::Texts, 1, limits(300)).is_err());
        load.ran(Kind::Texts, 50, Duration::from_millis(500));
        drop(handed);
        assert!(load.admit("m", Kind::Texts, 1, limits(300)).is_ok());
    }
}
