//! ARM throttling: one token bucket per subscription and operation kind, refilled in real time.
//!
//! Defaults are Azure's (reads 250 burst / 25 per second, writes and deletes 200 / 10). A
//! request that finds its bucket empty gets 429 with `Retry-After` and is not processed.

use std::collections::HashMap;
use std::time::Instant;

use crate::world::{BucketLimit, ThrottleLimits};

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OpClass {
    Reads,
    Writes,
    Deletes,
}

impl OpClass {
    /// The class of an HTTP method.
    pub(crate) fn of(method: &axum::http::Method) -> OpClass {
        match *method {
            axum::http::Method::GET | axum::http::Method::HEAD => OpClass::Reads,
            axum::http::Method::DELETE => OpClass::Deletes,
            _ => OpClass::Writes,
        }
    }

    /// The `x-ms-ratelimit-remaining-subscription-*` header for this class.
    pub(crate) fn header(self) -> &'static str {
        match self {
            OpClass::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            OpClass::Writes => "x-ms-ratelimit-remaining-subscription-writes",
            OpClass::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }

    fn limit(self, limits: &ThrottleLimits) -> BucketLimit {
        match self {
            OpClass::Reads => limits.reads,
            OpClass::Writes => limits.writes,
            OpClass::Deletes => limits.deletes,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// All buckets.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    buckets: HashMap<(String, OpClass), Bucket>,
}

/// A request refused by a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Throttled {
    /// Whole seconds until one token is back (at least 1).
    pub(crate) retry_after: u64,
}

impl Throttle {
    /// Takes one token for `subscription` in `class`; returns the tokens left.
    pub(crate) fn take(
        &mut self,
        subscription: &str,
        class: OpClass,
        limits: &ThrottleLimits,
        now: Instant,
    ) -> Result<u64, Throttled> {
        let limit = class.limit(limits);
        // Other clients hold their share of the burst and take their share of the refill.
        let ours = 1.0 - limit.other_clients.clamp(0.0, 0.99);
        let (burst, per_second) = (limit.burst * ours, limit.per_second * ours);
        let bucket = self
            .buckets
            .entry((subscription.to_ascii_lowercase(), class))
            .or_insert(Bucket {
                tokens: burst,
                refilled: now,
            });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(bucket.tokens.floor() as u64);
        }
        let missing = 1.0 - bucket.tokens;
        let secs = if per_second > 0.0 {
            (missing / per_second).ceil()
        } else {
            60.0
        };
        Err(Throttled {
            retry_after: (secs as u64).clamp(1, 3600),
        })
    }

    /// Forgets every bucket (new limits, or a reset).
    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_empties_then_refills() {
        let limits = ThrottleLimits {
            writes: BucketLimit {
                burst: 2.0,
                per_second: 0.5,
                other_clients: 0.0,
            },
            ..ThrottleLimits::default()
        };
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.take("s", OpClass::Writes, &limits, t0), Ok(1));
        assert_eq!(throttle.take("s", OpClass::Writes, &limits, t0), Ok(0));
        assert_eq!(
            throttle.take("s", OpClass::Writes, &limits, t0),
            Err(Throttled { retry_after: 2 })
        );
        // Another subscription and another class have their own buckets.
        assert_eq!(throttle.take("t", OpClass::Writes, &limits, t0), Ok(1));
        assert_eq!(throttle.take("s", OpClass::Reads, &limits, t0), Ok(249));
        assert_eq!(
            throttle.take("s", OpClass::Writes, &limits, t0 + Duration::from_secs(2)),
            Ok(0)
        );
    }

    #[test]
    fn other_clients_spend_their_share_of_the_bucket() {
        let limits = ThrottleLimits {
            reads: BucketLimit {
                burst: 10.0,
                per_second: 10.0,
                other_clients: 0.5,
            },
            ..ThrottleLimits::default()
        };
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        // Half of the burst is theirs: 5 reads for us, the remaining header says so.
        let remaining: Vec<u64> = (0..5)
            .map(|_| throttle.take("s", OpClass::Reads, &limits, t0).unwrap())
            .collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        assert_eq!(
            throttle.take("s", OpClass::Reads, &limits, t0),
            Err(Throttled { retry_after: 1 })
        );
        // Half of the refill is theirs too: 5 reads a second for us.
        let later = t0 + Duration::from_millis(1000);
        let ok = (0..10)
            .filter(|_| throttle.take("s", OpClass::Reads, &limits, later).is_ok())
            .count();
        assert_eq!(ok, 5);
    }
}
