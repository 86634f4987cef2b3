//! Per-key rate limiting (GCRA, from governor) and its `X-RateLimit-*` headers.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{NotUntil, Quota, RateLimiter as Governor};

use crate::error::ApiError;

type KeyedLimiter =
    Governor<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// What a request learned about its key's quota, for the response headers.
#[derive(Clone, Copy, Debug)]
pub struct Allowance {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the quota is whole again.
    pub reset_secs: u64,
}

impl Allowance {
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_secs));
    }
}

/// A request over its key's quota.
#[derive(Clone, Copy, Debug)]
pub struct Refused {
    pub limit: u32,
    pub retry_after_secs: u64,
}

impl Refused {
    /// The headers of a refused request: nothing remains until the retry time.
    pub fn allowance(&self) -> Allowance {
        Allowance {
            limit: self.limit,
            remaining: 0,
            reset_secs: self.retry_after_secs,
        }
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> ApiError {
        ApiError::RateLimited {
            retry_after_secs: r.retry_after_secs,
            limit: r.limit,
        }
    }
}

/// `limit` requests a minute per key, with bursts of up to `limit`.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    inner: Option<KeyedLimiter>,
    clock: DefaultClock,
}

impl RateLimiter {
    /// A limit of 0 turns limiting off.
    pub fn new(per_minute: u32) -> RateLimiter {
        let inner = NonZeroU32::new(per_minute).map(|n| {
            Governor::keyed(Quota::per_minute(n)).with_middleware::<StateInformationMiddleware>()
        });
        RateLimiter {
            limit: per_minute,
            inner,
            clock: DefaultClock::default(),
        }
    }

    fn per_token(&self) -> Duration {
        Duration::from_secs(60) / self.limit.max(1)
    }

    /// Spends one request of `key`'s quota. `Ok(None)` when limiting is off.
    pub fn check(&self, key: &str) -> Result<Option<Allowance>, Refused> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        // The keyed state holds one entry per key seen; only authenticated keys get here, and
        // entries that have refilled are dropped now and then to keep it small.
        if inner.len() > 10_000 {
            inner.retain_recent();
        }
        match inner.check_key(&key.to_string()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let spent = self.limit.saturating_sub(remaining);
                Ok(Some(Allowance {
                    limit: self.limit,
                    remaining,
                    reset_secs: (self.per_token() * spent).as_secs_f64().ceil() as u64,
                }))
            }
            Err(not_until) => Err(self.refused(&not_until)),
        }
    }

    /// A refusal until the quota has room again, in whole seconds (at least one).
    fn refused(&self, not_until: &NotUntil<<DefaultClock as Clock>::Instant>) -> Refused {
        let wait = not_until.wait_time_from(self.clock.now());
        Refused {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            limit: self.limit,
        }
    }
}

/// Why [`RateLimiter::charge`] refused.
#[derive(Clone, Copy, Debug)]
pub enum Charge {
    /// Not now: the quota refills in time.
    Later(Refused),
    /// Never: more than the whole quota.
    PastQuota { limit: u32 },
}

impl RateLimiter {
    /// Spends `n` more requests of `key`'s quota at once, for a request whose work is worth
    /// that many (a recall check by its queries). Limiting off: always granted.
    pub fn charge(&self, key: &str, n: u32) -> Result<(), Charge> {
        let (Some(inner), Some(n)) = (&self.inner, NonZeroU32::new(n)) else {
            return Ok(());
        };
        match inner.check_key_n(&key.to_string(), n) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(not_until)) => Err(Charge::Later(self.refused(&not_until))),
            Err(_) => Err(Charge::PastQuota { limit: self.limit }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_then_refuses_with_retry_after() {
        let rl = RateLimiter::new(3);
        let a = rl.check("k").expect("1").expect("on");
        assert_eq!((a.limit, a.remaining), (3, 2));
        assert_eq!(rl.check("k").expect("2").expect("on").remaining, 1);
        assert_eq!(rl.check("k").expect("3").expect("on").remaining, 0);
        match rl.check("k") {
            Err(Refused {
                retry_after_secs,
                limit: 3,
            }) => assert!((1..=20).contains(&retry_after_secs)),
            other => panic!("expected rate limited, got {other:?}"),
        }
        // Another key has its own quota.
        assert_eq!(rl.check("other").expect("o").expect("on").remaining, 2);
    }

    #[test]
    fn a_charge_spends_several_at_once_and_refuses_past_the_quota() {
        let rl = RateLimiter::new(10);
        rl.charge("k", 6).expect("6 of 10");
        assert_eq!(rl.check("k").expect("7").expect("on").remaining, 3);
        assert!(matches!(rl.charge("k", 5), Err(Charge::Later(_))), "3 left");
        assert!(matches!(
            rl.charge("k", 11),
            Err(Charge::PastQuota { limit: 10 })
        ));
        RateLimiter::new(0).charge("k", 1000).expect("off");
    }

    #[test]
    fn zero_turns_it_off() {
        let rl = RateLimiter::new(0);
        for _ in 0..1000 {
            assert!(rl.check("k").expect("off").is_none());
        }
    }
}
