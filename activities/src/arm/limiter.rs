//! A client-side limiter per subscription: it reads `x-ms-ratelimit-remaining-subscription-*`
//! from every answer and, when few requests remain in a bucket, waits long enough for ARM's
//! token bucket to refill a little before sending the next request of that kind.
//!
//! ARM refills subscription buckets at 25 reads or 10 writes/deletes per second (arm-api.md §5).
//! Below [`LOW_WATER`] remaining, the limiter waits the refill time of the missing tokens, so
//! it slows down smoothly instead of running into 429.

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

/// What the limiter knows, per subscription and bucket.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    seen: Mutex<HashMap<(String, OpClass), Seen>>,
}

impl Limiter {
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
