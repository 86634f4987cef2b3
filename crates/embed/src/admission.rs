//! Admission to an encoder: work is counted in items (texts, pictures), not requests, and a
//! request is admitted only while the work that will run before its answer, other than its
//! own, is expected to take no longer than the worker's `max_wait`; otherwise it is refused
//! at once with how long to wait ([`EmbedError::Overloaded`]), before anything of it is read
//! or decoded. Its own items are not counted, so a run larger than the bound is still served.
//!
//! The worker shares every batch fairly between tenants (workspaces, see
//! [`crate::fair_queue`]), so what runs before a request's answer is not everything queued:
//! its own tenant's earlier items, and of each other tenant's queued items at most as many as
//! this tenant will have queued with the request. A tenant sending runs back to back fills
//! only its own line and is the one refused; another tenant's query is admitted and waits
//! about one share of each batch.
//! The cost of an item is what an item of that kind has recently cost on this machine (a
//! moving average the worker keeps after every batch). Texts run before pictures, so a text
//! waits only for texts; a picture waits for every queued text too. Before the first batch of
//! a kind has run its cost is unknown, and an item is taken to cost `max_wait / max_batch`:
//! about one batch is admitted ahead of a request until the worker has measured one (a burst
//! of clients at start-up would otherwise all be admitted, to wait seconds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::EmbedError;

/// What a request asks the model for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Texts,
    Pictures,
}

/// What is admitted and not yet done, per tenant, and the recent cost of an item, per kind.
#[derive(Debug, Default)]
pub(crate) struct Load {
    /// A tenant with no request and no item has no entry.
    tenants: Mutex<HashMap<Arc<str>, TenantLoad>>,
    /// Moving average of nanoseconds per item.
    cost: [AtomicU64; 2],
}

/// One tenant's requests admitted and not yet answered, and its items not yet run, by kind.
#[derive(Clone, Copy, Debug, Default)]
struct TenantLoad {
    requests: usize,
    queued: [usize; 2],
}

impl TenantLoad {
    fn is_idle(&self) -> bool {
        self.requests == 0 && self.queued == [0, 0]
    }
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Texts => 0,
        Kind::Pictures => 1,
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a request is refused.
enum Refusal {
    Requests,
    Wait(Duration),
}

impl Load {
    /// How long `tenant`'s request of `items` of `kind` would wait for the work that runs
    /// before its last item, its own items not counted (the module says which), at their
    /// recent cost.
    #[cfg(test)]
    fn expected_wait(&self, tenant: &str, kind: Kind, items: usize, limits: Limits) -> Duration {
        self.wait_in(&locked(&self.tenants), tenant, kind, items, limits)
    }

    /// [`Load::expected_wait`] over `tenants`, already locked.
    fn wait_in(
        &self,
        tenants: &HashMap<Arc<str>, TenantLoad>,
        tenant: &str,
        kind: Kind,
        items: usize,
        limits: Limits,
    ) -> Duration {
        let before = tenants.get(tenant).map_or(0, |t| t.queued[slot(kind)]);
        let cost = |k: Kind| match self.cost[slot(k)].load(Ordering::Relaxed) {
            0 => limits.unknown_cost.as_nanos(),
            known => known as u128,
        };
        let others: usize = tenants
            .iter()
            .filter(|(t, _)| &***t != tenant)
            .map(|(_, t)| t.queued[slot(kind)].min(before + items))
            .sum();
        let mut nanos = (before + others) as u128 * cost(kind);
        if kind == Kind::Pictures {
            let texts: usize = tenants.values().map(|t| t.queued[slot(Kind::Texts)]).sum();
            nanos += texts as u128 * cost(Kind::Texts);
        }
        Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
    }

    /// The worker ran a batch of `items` items of `kind` in `took`: the cost it keeps.
    pub fn ran(&self, kind: Kind, items: usize, took: Duration) {
        if items == 0 {
            return;
        }
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

    /// Items of `tenant`'s `kind` that left the queue: run, or never to run (their job failed
    /// first).
    pub fn dropped(&self, tenant: &str, kind: Kind, items: usize) {
        if items == 0 {
            return;
        }
        self.change(tenant, |t| {
            t.queued[slot(kind)] = t.queued[slot(kind)].saturating_sub(items);
        });
    }

    /// Applies `f` to `tenant`'s entry, forgetting the entry once it is idle.
    fn change(&self, tenant: &str, f: impl FnOnce(&mut TenantLoad)) {
        let mut tenants = locked(&self.tenants);
        if let Some(t) = tenants.get_mut(tenant) {
            f(t);
            if t.is_idle() {
                tenants.remove(tenant);
            }
        }
    }

    /// Items of `kind` admitted and not yet run, all tenants.
    #[cfg(test)]
    pub fn queued(&self, kind: Kind) -> usize {
        locked(&self.tenants)
            .values()
            .map(|t| t.queued[slot(kind)])
            .sum()
    }

    /// Requests admitted and not yet answered, all tenants.
    pub fn requests(&self) -> usize {
        locked(&self.tenants).values().map(|t| t.requests).sum()
    }

    /// Admits `tenant`'s `items` of `kind`, or refuses with how long to wait. The check and
    /// the count it adds are made under one lock, so two requests at once cannot both be
    /// admitted into the same room.
    pub fn admit(
        self: &Arc<Self>,
        slug: &str,
        tenant: &str,
        kind: Kind,
        items: usize,
        limits: Limits,
    ) -> Result<Admission, EmbedError> {
        let tenant: Arc<str> = tenant.into();
        let refusal = {
            let mut tenants = locked(&self.tenants);
            let before = tenants.get(&tenant).map_or(0, |t| t.requests);
            let refusal = if before > limits.requests {
                Some(Refusal::Requests)
            } else {
                let wait = self.wait_in(&tenants, &tenant, kind, items, limits);
                (wait > limits.max_wait).then_some(Refusal::Wait(wait))
            };
            if refusal.is_none() {
                let t = tenants.entry(tenant.clone()).or_default();
                t.requests += 1;
                t.queued[slot(kind)] += items;
            }
            refusal
        };
        match refusal {
            None => Ok(Admission {
                load: self.clone(),
                tenant,
                kind,
                items,
            }),
            Some(Refusal::Requests) => Err(EmbedError::Overloaded {
                slug: slug.to_string(),
                why: format!("{} requests of this workspace are waiting", limits.requests),
                retry_after_secs: 1,
            }),
            Some(Refusal::Wait(wait)) => Err(EmbedError::Overloaded {
                slug: slug.to_string(),
                why: format!(
                    "the work queued ahead would take about {:.1} s, more than the {:.1} s a request may wait",
                    wait.as_secs_f64(),
                    limits.max_wait.as_secs_f64()
                ),
                retry_after_secs: wait.as_secs().max(1),
            }),
        }
    }
}

/// How much may wait for one worker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Requests of one tenant that may wait (one more may be running); one more is refused.
    pub requests: usize,
    pub max_wait: Duration,
    /// What an item is taken to cost before the worker has measured one.
    pub unknown_cost: Duration,
}

/// A request's place: held until it is answered or dropped. Items it never handed to the
/// worker (it failed first, or its client left) are taken off the queue when it drops.
#[derive(Debug)]
pub struct Admission {
    load: Arc<Load>,
    tenant: Arc<str>,
    kind: Kind,
    /// Admitted items not yet handed to the worker.
    items: usize,
}

impl Admission {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The tenant (workspace) whose line its work joins.
    pub(crate) fn tenant(&self) -> &Arc<str> {
        &self.tenant
    }

    /// The items go to the worker, which takes them off the queue as it runs them.
    pub(crate) fn hand_over(&mut self) {
        self.items = 0;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let (kind, items) = (self.kind, self.items);
        self.load.change(&self.tenant, |t| {
            t.requests -= 1;
            t.queued[slot(kind)] = t.queued[slot(kind)].saturating_sub(items);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_wait_ms: u64) -> Limits {
        Limits {
            requests: 100,
            max_wait: Duration::from_millis(max_wait_ms),
            unknown_cost: Duration::from_millis(max_wait_ms / 32),
        }
    }

    #[test]
    fn a_request_is_refused_once_the_work_ahead_exceeds_the_wait_bound() {
        let load = Arc::new(Load::default());
        // Unknown cost: an item is taken to cost 1/32 of the bound, so about 32 are admitted
        // ahead of a request, and the first request of any size is admitted.
        let a = load
            .admit("m", "w", Kind::Pictures, 64, limits(1_000))
            .expect("first");
        assert!(
            load.admit("m", "w", Kind::Pictures, 1, limits(1_000))
                .is_err(),
            "64 pictures of unknown cost ahead: about 2 s"
        );
        // 100 ms per picture: 64 queued pictures are 6.4 s ahead.
        load.cost[1].store(100_000_000, Ordering::Relaxed);
        let e = load
            .admit("m", "w", Kind::Pictures, 1, limits(1_000))
            .expect_err("6.4 s ahead");
        match e {
            EmbedError::Overloaded {
                retry_after_secs, ..
            } => assert_eq!(retry_after_secs, 6),
            other => panic!("{other}"),
        }
        // Texts run first: a query does not wait for the pictures.
        let t = load
            .admit("m", "w", Kind::Texts, 1, limits(1_000))
            .expect("a query");
        drop(t);
        // The worker runs 60 of them: 0.4 s ahead now, within the bound. The request's own
        // 20 pictures are not counted: a run larger than the bound is served.
        load.ran(Kind::Pictures, 60, Duration::from_secs(6));
        load.dropped("w", Kind::Pictures, 60);
        let b = load
            .admit("m", "w", Kind::Pictures, 20, limits(1_000))
            .expect("admitted");
        drop((a, b));
        assert_eq!(load.requests(), 0);
        assert_eq!(load.queued(Kind::Pictures), 0);
    }

    #[test]
    fn a_tenant_filling_the_queue_is_refused_while_another_is_admitted() {
        let load = Arc::new(Load::default());
        load.cost[0].store(10_000_000, Ordering::Relaxed); // 10 ms per text
        // The abusive workspace queues 120 texts, 1.2 s of work.
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut a = load
                .admit("m", "abusive", Kind::Texts, 30, limits(1_000))
                .expect("within the bound");
            a.hand_over();
            held.push(a);
        }
        assert!(
            load.admit("m", "abusive", Kind::Texts, 30, limits(1_000))
                .is_err(),
            "1.2 s of its own work ahead"
        );
        // Another workspace's query runs beside the first share of it.
        assert_eq!(
            load.expected_wait("interactive", Kind::Texts, 1, limits(1_000)),
            Duration::from_millis(10)
        );
        let q = load
            .admit("m", "interactive", Kind::Texts, 1, limits(1_000))
            .expect("a query of another workspace");
        assert_eq!(
            load.expected_wait("interactive", Kind::Texts, 1, limits(1_000)),
            Duration::from_millis(30),
            "a second query: the first, and two of the abusive workspace's"
        );
        // The abusive workspace's next request waits for all of its own and the query.
        assert_eq!(
            load.expected_wait("abusive", Kind::Texts, 1, limits(1_000)),
            Duration::from_millis(1_210)
        );
        drop(q);
        drop(held);
        assert_eq!(
            load.queued(Kind::Texts),
            120,
            "handed over: the worker takes them off"
        );
        load.dropped("abusive", Kind::Texts, 120);
        assert_eq!(load.queued(Kind::Texts), 0);
        assert_eq!(load.requests(), 0);
    }

    #[test]
    fn a_tenant_has_a_bounded_number_of_requests_waiting() {
        let load = Arc::new(Load::default());
        let limits = Limits {
            requests: 2,
            max_wait: Duration::from_secs(60),
            unknown_cost: Duration::ZERO,
        };
        // One running and two waiting.
        let a = load.admit("m", "w", Kind::Texts, 1, limits).expect("1");
        let b = load.admit("m", "w", Kind::Texts, 1, limits).expect("2");
        let c = load.admit("m", "w", Kind::Texts, 1, limits).expect("3");
        assert!(load.admit("m", "w", Kind::Texts, 1, limits).is_err());
        assert!(load.admit("m", "other", Kind::Texts, 1, limits).is_ok());
        drop(a);
        assert!(load.admit("m", "w", Kind::Texts, 1, limits).is_ok());
        drop((b, c));
        assert_eq!(load.requests(), 0);
    }

    #[test]
    fn items_never_handed_over_leave_the_queue_when_their_request_ends() {
        let load = Arc::new(Load::default());
        load.cost[0].store(10_000_000, Ordering::Relaxed); // 10 ms per text
        let mut handed = load
            .admit("m", "w", Kind::Texts, 50, limits(300))
            .expect("50 texts");
        handed.hand_over();
        let failed = load
            .admit("m", "w", Kind::Texts, 20, limits(1_000))
            .expect("20 more");
        drop(failed); // e.g. its input was refused before it reached the worker
        assert_eq!(load.queued(Kind::Texts), 50);
        // 0.5 s ahead: over a 0.3 s bound.
        assert!(load.admit("m", "w", Kind::Texts, 1, limits(300)).is_err());
        load.ran(Kind::Texts, 50, Duration::from_millis(500));
        load.dropped("w", Kind::Texts, 50);
        drop(handed);
        assert!(load.admit("m", "w", Kind::Texts, 1, limits(300)).is_ok());
    }
}
