//! A client-side limiter per subscription, in two parts:
//!
//! - a **schedule**: each request reserves a turn in a token bucket of its kind (reads,
//!   writes, deletes) that refills a little slower than ARM's own (docs/ARM.md §5: 25 reads or
//!   10 writes/deletes per second, buckets of 250 and 200). Many runs polling at once are
//!   spread out instead of all being sent together: 1,000 operations are polled about every
//!   50 s at 20 reads/s, with no 429;
//! - the **answers**: every answer's `x-ms-ratelimit-remaining-subscription-*` tells what is
//!   left of ARM's bucket, which other clients of the subscription also draw from. Below
//!   [`LOW_WATER`] remaining, the limiter waits the refill time of the missing tokens.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

/// Below this many remaining requests the limiter starts to wait.
pub(crate) const LOW_WATER: u64 = 20;

/// The bucket a request draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OpClass {
    Reads,
    Writes,
    Deletes,
}

impl OpClass {
    pub(crate) fn of(method: &reqwest::Method) -> Self {
        match *method {
            reqwest::Method::GET | reqwest::Method::HEAD => OpClass::Reads,
            reqwest::Method::DELETE => OpClass::Deletes,
            _ => OpClass::Writes,
        }
    }

    fn header(self) -> &'static str {
        match self {
            OpClass::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            OpClass::Writes => "x-ms-ratelimit-remaining-subscription-writes",
            OpClass::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }

    /// Our own schedule: requests per second, and how many may go at once after a quiet
    /// period (a little under ARM's refill and bucket size, leaving room for other clients).
    fn schedule(self, rates: &Rates) -> (f64, f64) {
        match self {
            OpClass::Reads => (rates.reads_per_s, rates.reads_burst),
            OpClass::Writes | OpClass::Deletes => (rates.writes_per_s, rates.writes_burst),
        }
    }

    /// Time ARM needs to refill one token of this bucket.
    fn refill(self) -> Duration {
        match self {
            OpClass::Reads => Duration::from_millis(40),
            OpClass::Writes | OpClass::Deletes => Duration::from_millis(100),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    remaining: u64,
    at: Instant,
}

/// The schedule's rates, per subscription.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// Reads (GET, HEAD) per second.
    pub reads_per_s: f64,
    /// Writes (PUT, PATCH, POST) and deletes per second, each.
    pub writes_per_s: f64,
    /// Reads that may go at once after a quiet period.
    pub reads_burst: f64,
    /// Writes (and deletes) that may go at once after a quiet period.
    pub writes_burst: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            reads_per_s: 20.0,
            writes_per_s: 8.0,
            reads_burst: 200.0,
            writes_burst: 150.0,
        }
    }
}

/// A bucket of the schedule: tokens left (negative: turns already promised) and when.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What the limiter knows, per subscription and bucket.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    rates: Rates,
    seen: Mutex<HashMap<(String, OpClass), Seen>>,
    buckets: Mutex<HashMap<(String, OpClass), Bucket>>,
    /// The schedule shared with every process of the same state database, when configured.
    shared: Option<super::shared_schedule::SharedSchedule>,
}

impl Limiter {
    pub(crate) fn new(rates: Rates) -> Self {
        Self {
            rates,
            ..Self::default()
        }
    }

    /// A limiter whose schedule (the turns) lives in `shared`, so that every process using
    /// it draws from one budget per subscription and principal (`principal`: who calls).
    pub(crate) fn shared(rates: Rates, shared: super::shared_schedule::SharedSchedule) -> Self {
        Self {
            rates,
            shared: Some(shared),
            ..Self::default()
        }
    }

    /// Reserves the next turn of a request of `class` in `subscription`: how long to wait
    /// for it. Every call takes a turn, so concurrent requests are spread at the rate.
    pub(crate) fn reserve(&self, subscription: &str, class: OpClass) -> Option<Duration> {
        let (rate, burst) = class.schedule(&self.rates);
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        if let Some(shared) = &self.shared {
            match shared.reserve(&format!("{}|{class:?}", subscription.to_ascii_lowercase()), rate, burst) {
                Ok(wait) => return wait,
                // The file cannot be used (a read-only folder): this process paces alone.
                Err(e) => tracing::debug!(error = %e, "shared ARM schedule unavailable; pacing in this process only"),
            }
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = buckets
            .entry((subscription.to_ascii_lowercase(), class))
            .or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst) - 1.0;
        b.at = now;
        (b.tokens < 0.0).then(|| Duration::from_secs_f64((-b.tokens / rate).min(86_400.0)))
    }

    /// How long to wait before sending a request of `class` in `subscription`.
    pub(crate) fn delay(&self, subscription: &str, class: OpClass) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let s = seen.get(&(subscription.to_ascii_lowercase(), class))?;
        if s.remaining >= LOW_WATER {
            return None;
        }
        // Tokens the bucket has refilled since the answer was seen count as remaining.
        let refilled = (s.at.elapsed().as_millis() / class.refill().as_millis().max(1)) as u64;
        let missing = LOW_WATER.saturating_sub(s.remaining.saturating_add(refilled));
        (missing > 0).then(|| class.refill() * u32::try_from(missing).unwrap_or(u32::MAX))
    }

    /// Records the remaining count of an answer, if it carries one.
    pub(crate) fn observe(&self, subscription: &str, class: OpClass, headers: &HeaderMap) {
        let Some(remaining) = headers
            .get(class.header())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.insert(
            (subscription.to_ascii_lowercase(), class),
            Seen {
                remaining,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spreads_concurrent_requests_at_the_rate_after_the_burst() {
        let limiter = Limiter::new(Rates::default());
        let waits: Vec<Option<Duration>> = (0..1_000).map(|_| limiter.reserve("s", OpClass::Reads)).collect();
        assert!(waits[..199].iter().all(Option::is_none), "the burst goes at once");
        // The 1,000th request waits for 800 turns at 20/s: about 40 s.
        let last = waits[999].unwrap().as_secs_f64();
        assert!((39.9..=40.1).contains(&last), "{last}");
        let ordered = waits.windows(2).all(|w| w[0] <= w[1]);
        assert!(ordered, "later requests never get an earlier turn");
        assert_eq!(limiter.reserve("other", OpClass::Reads), None, "per subscription");
        assert_eq!(limiter.reserve("s", OpClass::Writes), None, "per kind");
    }

    #[test]
    fn two_limiters_over_one_schedule_file_share_one_budget() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db-arm-schedule");
        let rates = Rates {
            reads_per_s: 10.0,
            reads_burst: 5.0,
            ..Rates::default()
        };
        // Two limiters that share nothing but the file, as two processes would.
        let a = Limiter::shared(
            rates,
            super::super::shared_schedule::SharedSchedule::new(file.clone(), "p"),
        );
        let b = Limiter::shared(
            rates,
            super::super::shared_schedule::SharedSchedule::new(file.clone(), "p"),
        );
        for _ in 0..5 {
            assert_eq!(a.reserve("s", OpClass::Reads), None, "the burst goes at once");
        }
        // The burst is spent for `b` too: its first request waits a turn (0.1 s at 10/s).
        let wait = b.reserve("s", OpClass::Reads).unwrap().as_secs_f64();
        assert!((0.05..=0.15).contains(&wait), "{wait}");
        let next = a.reserve("s", OpClass::Reads).unwrap().as_secs_f64();
        assert!(
            next > wait,
            "turns are handed out in order across both: {next} > {wait}"
        );
        // Another principal has its own budget.
        let other = Limiter::shared(rates, super::super::shared_schedule::SharedSchedule::new(file, "q"));
        assert_eq!(other.reserve("s", OpClass::Reads), None);
    }

    #[test]
    fn waits_only_when_few_remain_and_more_when_fewer() {
        let limiter = Limiter::default();
        assert_eq!(limiter.delay("s", OpClass::Writes), None);
        let mut h = HeaderMap::new();
        h.insert("x-ms-ratelimit-remaining-subscription-writes", "150".parse().unwrap());
        limiter.observe("S", OpClass::Writes, &h);
        assert_eq!(limiter.delay("s", OpClass::Writes), None);
        h.insert("x-ms-ratelimit-remaining-subscription-writes", "15".parse().unwrap());
        limiter.observe("s", OpClass::Writes, &h);
        let some = limiter.delay("s", OpClass::Writes).unwrap();
        h.insert("x-ms-ratelimit-remaining-subscription-writes", "2".parse().unwrap());
        limiter.observe("s", OpClass::Writes, &h);
        let more = limiter.delay("s", OpClass::Writes).unwrap();
        assert!(more > some, "{more:?} > {some:?}");
        assert_eq!(limiter.delay("s", OpClass::Reads), None);
        assert_eq!(limiter.delay("other", OpClass::Writes), None);
    }
}
