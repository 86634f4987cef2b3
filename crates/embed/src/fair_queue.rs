//! The worker's queue of one kind of work, shared fairly between tenants (workspaces).
//!
//! Each tenant has its own first-in-first-out line of jobs. A batch gives every tenant with
//! work an equal share of its items (`max_batch / tenants`, at least one), round after round
//! until the batch is full or nothing is left, so a tenant sending long runs back to back
//! takes at most its share of each forward pass and a tenant sending one query waits for at
//! most the batch already running. Within a tenant jobs keep their order; a job larger than
//! its share runs over several batches. The tenant served first moves to the back after each
//! batch, so shares that do not divide evenly rotate.
//!
//! [`crate::admission`] estimates a request's wait from the same rule, so what it admits is
//! what this queue then serves.

use std::collections::VecDeque;
use std::sync::Arc;

/// Something queued that runs item by item.
pub(crate) trait Queued {
    /// Items not yet run.
    fn left(&self) -> usize;
}

/// One tenant's share of a batch: `items` items from the front of `job`.
pub(crate) struct Part<J> {
    pub tenant: Arc<str>,
    pub job: J,
    pub items: usize,
}

pub(crate) struct FairQueue<J> {
    /// In serving order: the front tenant is served first in the next batch.
    tenants: VecDeque<(Arc<str>, VecDeque<J>)>,
}

impl<J: Queued> FairQueue<J> {
    pub fn new() -> FairQueue<J> {
        FairQueue {
            tenants: VecDeque::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.iter().all(|(_, jobs)| jobs.is_empty())
    }

    /// Queues `job` behind `tenant`'s earlier jobs; a new tenant joins at the back.
    pub fn push(&mut self, tenant: Arc<str>, job: J) {
        match self.tenants.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, jobs)) => jobs.push_back(job),
            None => self.tenants.push_back((tenant, VecDeque::from([job]))),
        }
    }

    /// Takes the next batch of at most `max_batch` items, shared between tenants as the
    /// module says. A job only partly taken must be [`FairQueue::put_back`] once its part ran.
    pub fn take_batch(&mut self, max_batch: usize) -> Vec<Part<J>> {
        let max_batch = max_batch.max(1);
        self.tenants.retain(|(_, jobs)| !jobs.is_empty());
        // Items each tenant gets, by rounds of equal shares of the room left.
        let mut give = vec![0usize; self.tenants.len()];
        let mut left: Vec<usize> = self
            .tenants
            .iter()
            .map(|(_, jobs)| jobs.iter().map(Queued::left).sum())
            .collect();
        let mut room = max_batch;
        while room > 0 && left.iter().any(|&l| l > 0) {
            let waiting = left.iter().filter(|&&l| l > 0).count();
            let share = (room / waiting).max(1);
            for (g, l) in give.iter_mut().zip(left.iter_mut()) {
                let n = share.min(*l).min(room);
                *g += n;
                *l -= n;
                room -= n;
            }
        }
        let mut parts = Vec::new();
        for ((tenant, jobs), mut wanted) in self.tenants.iter_mut().zip(give) {
            while wanted > 0 {
                let Some(job) = jobs.pop_front() else { break };
                let items = job.left().min(wanted);
                wanted -= items;
                parts.push(Part {
                    tenant: tenant.clone(),
                    job,
                    items,
                });
            }
        }
        // A tenant left with nothing stays until the parts are put back, so that the order
        // rotates whether or not its job finished.
        self.tenants.rotate_left(1.min(self.tenants.len()));
        parts
    }

    /// Puts a job that still has items to run back at the front of its tenant's line.
    pub fn put_back(&mut self, tenant: Arc<str>, job: J) {
        match self.tenants.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, jobs)) => jobs.push_front(job),
            // Not taken from this queue; served after everyone waiting.
            None => self.tenants.push_back((tenant, VecDeque::from([job]))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job of `left` items, named for the tests.
    #[derive(Debug, PartialEq)]
    struct J(&'static str, usize);

    impl Queued for J {
        fn left(&self) -> usize {
            self.1
        }
    }

    fn shares(parts: &[Part<J>]) -> Vec<(&str, &'static str, usize)> {
        parts
            .iter()
            .map(|p| (&*p.tenant, p.job.0, p.items))
            .collect()
    }

    #[test]
    fn a_tenant_with_long_runs_takes_only_its_share_of_a_batch() {
        let mut q = FairQueue::new();
        for name in ["a1", "a2", "a3", "a4"] {
            q.push("abusive".into(), J(name, 32));
        }
        q.push("interactive".into(), J("query", 1));
        let parts = q.take_batch(32);
        // The query runs in the very next batch, beside the abusive tenant's first run.
        assert_eq!(
            shares(&parts),
            vec![("abusive", "a1", 31), ("interactive", "query", 1)]
        );
        // a1 ran 31 of its 32: it goes back to the front of its tenant's line.
        let mut parts = parts;
        let a1 = parts.remove(0);
        q.put_back(a1.tenant, J("a1", 1));
        let next = q.take_batch(32);
        assert_eq!(
            shares(&next),
            vec![("abusive", "a1", 1), ("abusive", "a2", 31)]
        );
    }

    #[test]
    fn equal_tenants_share_each_batch_evenly_and_rotate_the_odd_item() {
        let mut q = FairQueue::new();
        for tenant in ["x", "y", "z"] {
            q.push(tenant.into(), J("run", 100));
        }
        let first = q.take_batch(32);
        // 10 each, then the 2 left over go one each from the front.
        let items: Vec<(&str, usize)> = first.iter().map(|p| (&*p.tenant, p.items)).collect();
        assert_eq!(items, vec![("x", 11), ("y", 11), ("z", 10)]);
        for p in first {
            q.put_back(p.tenant, J("run", 100 - p.items));
        }
        // x was served first: now y is.
        let second: Vec<String> = q
            .take_batch(32)
            .iter()
            .map(|p| p.tenant.to_string())
            .collect();
        assert_eq!(second[0], "y");
    }

    #[test]
    fn a_lone_tenant_fills_the_batch_in_order_and_an_emptied_queue_is_empty() {
        let mut q = FairQueue::new();
        q.push("t".into(), J("a", 3));
        q.push("t".into(), J("b", 40));
        let parts = q.take_batch(32);
        assert_eq!(shares(&parts), vec![("t", "a", 3), ("t", "b", 29)]);
        assert!(q.is_empty(), "every job was taken");
        q.put_back("t".into(), J("b", 11));
        assert_eq!(shares(&q.take_batch(32)), vec![("t", "b", 11)]);
        assert!(q.is_empty());
    }
}
