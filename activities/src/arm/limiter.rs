//! A client-side limiter per subscription, in two parts:
//!
//! - a **schedule**: each request reserves a turn in a token bucket of its kind (reads,
//!   writes, deletes) that refills a little slower than ARM's own (docs/ARM.md §5: 25 reads or
//!   10 writes/deletes per second, buckets of 250 and 200). Many runs polling at once are
//!   spread out instead of all being sent together: 1,000 operations are polled about every
//!   50 s at 20 reads/s, with no 429;
//! - the **answers**: every answer's `x-ms-ratelimit-remaining-subscription-*` tells what is
//!   left of ARM's bucket, which other clients of the subscription also draw from. The
//!   limiter keeps a **reserve** of that bucket for the other clients ([`Rates::reserve`]):
//!   below it, every request waits the refill time of the missing tokens;
//! - **priorities**: each request says its [`Priority`]. Polls of in-flight operations and
//!   the mutating steps of a run whose unprotected window is open go first; other steps
//!   keep more headroom, and the first step of a run (a new fleet target starting) the
//!   most: when the budget is short, lower classes wait (they take no turn that a higher
//!   class would need) while the higher ones go on;
//! - a **429** with `Retry-After` pushes the whole bucket (shared by every process of the
//!   database) back by that long, so the other requests wait too instead of being refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// How urgent a request is when the subscription's budget is short: lower classes wait
/// first. Ordered from the most urgent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// A poll of an operation already in flight (its answer ends a wait).
    Poll,
    /// A request of a step inside an open unprotected window (it ends the window sooner).
    OpenWindow,
    /// Any other step.
    #[default]
    Step,
    /// The first step of a run: a new target starting.
    NewTarget,
}

impl Priority {
    /// The share of our schedule's burst that must stay in the bucket after this class takes
    /// a turn (0: it may borrow future turns and wait for them).
    fn schedule_floor(self) -> f64 {
        match self {
            Priority::Poll | Priority::OpenWindow => 0.0,
            Priority::Step => 0.25,
            Priority::NewTarget => 0.5,
        }
    }

    /// The share of ARM's bucket this class leaves free above the reserve.
    fn headroom(self) -> f64 {
        match self {
            Priority::Poll | Priority::OpenWindow => 0.0,
            Priority::Step => 0.1,
            Priority::NewTarget => 0.25,
        }
    }
}

/// A source of wall time in milliseconds (injected by the tests).
pub(crate) type NowMs = Arc<dyn Fn() -> f64 + Send + Sync>;

fn system_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// The answer of [`Limiter::reserve`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Turn {
    /// A turn is taken: send after this wait (if any).
    Go(Option<Duration>),
    /// The budget is short for this class: no turn was taken; ask again after this wait.
    Later(Duration),
}

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

    /// The size of ARM's bucket (docs/ARM.md §5).
    fn arm_bucket(self) -> f64 {
        match self {
            OpClass::Reads => 250.0,
            OpClass::Writes | OpClass::Deletes => 200.0,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    remaining: u64,
    at_ms: f64,
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
    /// The share of ARM's bucket (`x-ms-ratelimit-remaining-subscription-*`) left to the
    /// subscription's other clients: below it, every request waits for the refill.
    pub reserve: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            reads_per_s: 20.0,
            writes_per_s: 8.0,
            reads_burst: 200.0,
            writes_burst: 150.0,
            reserve: 0.08,
        }
    }
}

/// A bucket of the schedule: tokens left (negative: turns already promised) and when.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub(crate) tokens: f64,
    pub(crate) at_ms: f64,
}

impl Bucket {
    /// Refills the bucket to `now_ms` at `rate` (up to `burst`), then takes a turn for a
    /// request whose class must leave `floor` tokens: [`Turn::Later`] (nothing taken) when
    /// the bucket is too low for it, else the wait for the turn taken.
    pub(crate) fn take(&mut self, now_ms: f64, rate: f64, burst: f64, floor: f64) -> Turn {
        // A wall clock that stepped back refills nothing (and never removes tokens).
        let elapsed_s = ((now_ms - self.at_ms) / 1000.0).max(0.0);
        self.tokens = (self.tokens + elapsed_s * rate).min(burst);
        self.at_ms = self.at_ms.max(now_ms);
        if floor > 0.0 && self.tokens - 1.0 < floor {
            let missing = floor + 1.0 - self.tokens;
            return Turn::Later(Duration::from_secs_f64((missing / rate).clamp(0.001, 86_400.0)));
        }
        self.tokens -= 1.0;
        Turn::Go((self.tokens < 0.0).then(|| Duration::from_secs_f64((-self.tokens / rate).min(86_400.0))))
    }

    /// Pushes the bucket back so that the next turn is at least `wait` away (ARM refused a
    /// request with `Retry-After: wait`).
    pub(crate) fn push_back(&mut self, now_ms: f64, rate: f64, burst: f64, wait: Duration) {
        let elapsed_s = ((now_ms - self.at_ms) / 1000.0).max(0.0);
        self.tokens = (self.tokens + elapsed_s * rate)
            .min(burst)
            .min(-wait.as_secs_f64() * rate);
        self.at_ms = self.at_ms.max(now_ms);
    }
}

/// What the limiter knows, per subscription and bucket.
pub(crate) struct Limiter {
    rates: Rates,
    seen: Mutex<HashMap<(String, OpClass), Seen>>,
    buckets: Mutex<HashMap<(String, OpClass), Bucket>>,
    /// The schedule shared with every process of the same state database, when configured.
    shared: Option<super::shared_schedule::SharedSchedule>,
    now_ms: NowMs,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("rates", &self.rates)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(Rates::default())
    }
}

impl Limiter {
    pub(crate) fn new(rates: Rates) -> Self {
        Self {
            rates,
            seen: Mutex::default(),
            buckets: Mutex::default(),
            shared: None,
            now_ms: Arc::new(system_ms),
        }
    }

    /// A limiter whose schedule (the turns) lives in `shared`, so that every process using
    /// it draws from one budget per subscription and principal (`principal`: who calls).
    pub(crate) fn shared(rates: Rates, shared: super::shared_schedule::SharedSchedule) -> Self {
        Self {
            shared: Some(shared),
            ..Self::new(rates)
        }
    }

    /// The same limiter reading time from `now_ms` (tests).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, now_ms: NowMs) -> Self {
        self.now_ms = now_ms;
        self
    }

    fn with_bucket<T>(
        &self,
        subscription: &str,
        class: OpClass,
        f: impl Fn(&mut Bucket, f64, f64, f64) -> T,
    ) -> Option<T> {
        let (rate, burst) = class.schedule(&self.rates);
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let now = (self.now_ms)();
        let key = format!("{}|{class:?}", subscription.to_ascii_lowercase());
        if let Some(shared) = &self.shared {
            match shared.with_bucket(&key, now, burst, |b| f(b, now, rate, burst)) {
                Ok(t) => return Some(t),
                // The file cannot be used (a read-only folder): this process paces alone.
                Err(e) => tracing::debug!(error = %e, "shared ARM schedule unavailable; pacing in this process only"),
            }
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = buckets
            .entry((subscription.to_ascii_lowercase(), class))
            .or_insert(Bucket {
                tokens: burst,
                at_ms: now,
            });
        Some(f(b, now, rate, burst))
    }

    /// Reserves the next turn of a request of `class` and `priority` in `subscription`. A
    /// request of the most urgent classes always takes a turn (concurrent requests are
    /// spread at the rate); a lower class takes one only while the bucket keeps its floor,
    /// else it is told to ask again later.
    pub(crate) fn reserve(&self, subscription: &str, class: OpClass, priority: Priority) -> Turn {
        self.with_bucket(subscription, class, |b, now, rate, burst| {
            // A full bucket always admits a request, whatever its class.
            let floor = (priority.schedule_floor() * burst).min(burst - 1.0).max(0.0);
            b.take(now, rate, burst, floor)
        })
        .unwrap_or(Turn::Go(None))
    }

    /// ARM refused a request of `class` in `subscription` with `Retry-After: wait`: every
    /// request of that bucket (in every process sharing the schedule) waits at least that.
    pub(crate) fn throttled(&self, subscription: &str, class: OpClass, wait: Duration) {
        self.with_bucket(subscription, class, |b, now, rate, burst| {
            b.push_back(now, rate, burst, wait)
        });
    }

    /// How long a request of `class` and `priority` waits, from what ARM last said remains of
    /// its bucket: the refill time of the tokens missing below the reserve (and, for the
    /// lower classes, their headroom).
    pub(crate) fn delay(&self, subscription: &str, class: OpClass, priority: Priority) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let s = seen.get(&(subscription.to_ascii_lowercase(), class))?;
        let low_water = (class.arm_bucket() * (self.rates.reserve + priority.headroom())).ceil() as u64;
        if s.remaining >= low_water {
            return None;
        }
        // Tokens the bucket has refilled since the answer was seen count as remaining.
        let elapsed = ((self.now_ms)() - s.at_ms).max(0.0) as u128;
        let refilled = (elapsed / class.refill().as_millis().max(1)) as u64;
        let missing = low_water.saturating_sub(s.remaining.saturating_add(refilled));
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
                at_ms: (self.now_ms)(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::arm::shared_schedule::SharedSchedule;

    /// A clock the test steps (milliseconds).
    fn stepped() -> (Arc<AtomicU64>, NowMs) {
        let t = Arc::new(AtomicU64::new(1_000_000));
        let c = t.clone();
        (t, Arc::new(move || c.load(Ordering::SeqCst) as f64))
    }

    fn go(turn: Turn) -> Option<Duration> {
        match turn {
            Turn::Go(wait) => wait,
            Turn::Later(w) => panic!("expected a turn, was told to ask again in {w:?}"),
        }
    }

    #[test]
    fn the_schedule_spreads_concurrent_requests_at_the_rate_after_the_burst() {
        let (_, clock) = stepped();
        let limiter = Limiter::new(Rates::default()).with_clock(clock);
        let waits: Vec<Option<Duration>> = (0..1_000)
            .map(|_| go(limiter.reserve("s", OpClass::Reads, Priority::Poll)))
            .collect();
        assert!(waits[..200].iter().all(Option::is_none), "the burst goes at once");
        // The 1,000th request waits for 800 turns at 20/s: 40 s.
        let last = waits[999].unwrap().as_secs_f64();
        assert!((39.9..=40.1).contains(&last), "{last}");
        let ordered = waits.windows(2).all(|w| w[0] <= w[1]);
        assert!(ordered, "later requests never get an earlier turn");
        assert_eq!(
            go(limiter.reserve("other", OpClass::Reads, Priority::Poll)),
            None,
            "per subscription"
        );
        assert_eq!(
            go(limiter.reserve("s", OpClass::Writes, Priority::Poll)),
            None,
            "per kind"
        );
    }

    #[test]
    fn lower_classes_wait_while_the_budget_is_short_and_polls_go_on() {
        let (t, clock) = stepped();
        let rates = Rates {
            reads_per_s: 10.0,
            reads_burst: 20.0,
            ..Rates::default()
        };
        let limiter = Limiter::new(rates).with_clock(clock);
        for _ in 0..10 {
            assert_eq!(go(limiter.reserve("s", OpClass::Reads, Priority::Poll)), None);
        }
        // 10 of 20 left: a new target must leave 10, so it waits and takes nothing ...
        let Turn::Later(wait) = limiter.reserve("s", OpClass::Reads, Priority::NewTarget) else {
            panic!("a new target starts while the budget is short");
        };
        assert!(
            (0.05..=0.15).contains(&wait.as_secs_f64()),
            "one token's refill: {wait:?}"
        );
        // ... while a step (floor 5) and the polls go on.
        assert_eq!(go(limiter.reserve("s", OpClass::Reads, Priority::Step)), None);
        for _ in 0..9 {
            assert_eq!(go(limiter.reserve("s", OpClass::Reads, Priority::Poll)), None);
        }
        assert!(matches!(
            limiter.reserve("s", OpClass::Reads, Priority::Step),
            Turn::Later(_)
        ));
        // Polls borrow future turns (they wait for them); the lower classes still wait.
        let poll = go(limiter.reserve("s", OpClass::Reads, Priority::Poll)).unwrap();
        assert!((0.05..=0.15).contains(&poll.as_secs_f64()), "{poll:?}");
        assert!(matches!(
            limiter.reserve("s", OpClass::Reads, Priority::OpenWindow),
            Turn::Go(Some(_))
        ));
        // Once the bucket refilled above its floor, a new target starts.
        // (-2 tokens now: 3 after half a second, 13 after one and a half.)
        t.fetch_add(500, Ordering::SeqCst);
        assert!(matches!(
            limiter.reserve("s", OpClass::Reads, Priority::NewTarget),
            Turn::Later(_)
        ));
        t.fetch_add(1_000, Ordering::SeqCst);
        assert_eq!(go(limiter.reserve("s", OpClass::Reads, Priority::NewTarget)), None);
    }

    #[test]
    fn the_reserve_for_other_clients_and_the_headroom_of_lower_classes_follow_the_headers() {
        let (t, clock) = stepped();
        let limiter = Limiter::new(Rates::default()).with_clock(clock);
        let mut h = HeaderMap::new();
        // Another client spent most of ARM's 250 reads: 30 remain.
        h.insert("x-ms-ratelimit-remaining-subscription-reads", "30".parse().unwrap());
        limiter.observe("s", OpClass::Reads, &h);
        // The reserve is 8 % of 250 (20): polls go; a step keeps 10 % more (45), a new
        // target 25 % more (83): they wait the refill of what is missing (40 ms a read).
        assert_eq!(limiter.delay("s", OpClass::Reads, Priority::Poll), None);
        assert_eq!(
            limiter.delay("s", OpClass::Reads, Priority::Step),
            Some(Duration::from_millis(15 * 40))
        );
        assert_eq!(
            limiter.delay("s", OpClass::Reads, Priority::NewTarget),
            Some(Duration::from_millis(53 * 40))
        );
        h.insert("x-ms-ratelimit-remaining-subscription-reads", "12".parse().unwrap());
        limiter.observe("s", OpClass::Reads, &h);
        assert_eq!(
            limiter.delay("s", OpClass::Reads, Priority::Poll),
            Some(Duration::from_millis(8 * 40)),
            "below the reserve every class waits"
        );
        t.fetch_add(8 * 40, Ordering::SeqCst);
        assert_eq!(limiter.delay("s", OpClass::Reads, Priority::Poll), None, "refilled");
        // A larger reserve keeps more for the others.
        let generous = Limiter::new(Rates {
            reserve: 0.5,
            ..Rates::default()
        });
        generous.observe("s", OpClass::Reads, &h);
        assert!(generous.delay("s", OpClass::Reads, Priority::Poll).unwrap() > Duration::from_secs(4));
    }

    #[test]
    fn a_429_pushes_back_every_request_of_the_bucket_in_every_process() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db-arm-schedule");
        let (t, clock) = stepped();
        let a = Limiter::shared(Rates::default(), SharedSchedule::new(file.clone(), "p")).with_clock(clock.clone());
        let b = Limiter::shared(Rates::default(), SharedSchedule::new(file, "p")).with_clock(clock);
        assert_eq!(go(a.reserve("s", OpClass::Reads, Priority::Poll)), None);
        a.throttled("s", OpClass::Reads, Duration::from_secs(5));
        let wait = go(b.reserve("s", OpClass::Reads, Priority::Poll))
            .unwrap()
            .as_secs_f64();
        assert!(
            (5.0..=5.1).contains(&wait),
            "the other process waits the Retry-After too: {wait}"
        );
        assert!(matches!(
            b.reserve("s", OpClass::Reads, Priority::NewTarget),
            Turn::Later(_)
        ));
        assert_eq!(
            go(a.reserve("s", OpClass::Writes, Priority::Poll)),
            None,
            "other buckets go on"
        );
        t.fetch_add(20_000, Ordering::SeqCst);
        assert_eq!(
            go(a.reserve("s", OpClass::Reads, Priority::Poll)),
            None,
            "refilled after the wait"
        );
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
        let (_, clock) = stepped();
        // Two limiters that share nothing but the file, as two processes would.
        let a = Limiter::shared(rates, SharedSchedule::new(file.clone(), "p")).with_clock(clock.clone());
        let b = Limiter::shared(rates, SharedSchedule::new(file.clone(), "p")).with_clock(clock.clone());
        for _ in 0..5 {
            assert_eq!(
                go(a.reserve("s", OpClass::Reads, Priority::Poll)),
                None,
                "the burst goes at once"
            );
        }
        // The burst is spent for `b` too: its first request waits a turn (0.1 s at 10/s).
        let wait = go(b.reserve("s", OpClass::Reads, Priority::Poll))
            .unwrap()
            .as_secs_f64();
        assert!((0.05..=0.15).contains(&wait), "{wait}");
        let next = go(a.reserve("s", OpClass::Reads, Priority::Poll))
            .unwrap()
            .as_secs_f64();
        assert!(
            next > wait,
            "turns are handed out in order across both: {next} > {wait}"
        );
        // Another principal has its own budget.
        let other = Limiter::shared(rates, SharedSchedule::new(file, "q")).with_clock(clock);
        assert_eq!(go(other.reserve("s", OpClass::Reads, Priority::Poll)), None);
    }

    #[test]
    fn waits_only_when_few_remain_and_more_when_fewer() {
        let limiter = Limiter::default();
        assert_eq!(limiter.delay("s", OpClass::Writes, Priority::Poll), None);
        let mut h = HeaderMap::new();
        h.insert("x-ms-ratelimit-remaining-subscription-writes", "150".parse().unwrap());
        limiter.observe("S", OpClass::Writes, &h);
        assert_eq!(limiter.delay("s", OpClass::Writes, Priority::Poll), None);
        h.insert("x-ms-ratelimit-remaining-subscription-writes", "15".parse().unwrap());
        limiter.observe("s", OpClass::Writes, &h);
        let some = limiter.delay("s", OpClass::Writes, Priority::Poll).unwrap();
        h.insert("x-ms-ratelimit-remaining-subscription-writes", "2".parse().unwrap());
        limiter.observe("s", OpClass::Writes, &h);
        let more = limiter.delay("s", OpClass::Writes, Priority::Poll).unwrap();
        assert!(more > some, "{more:?} > {some:?}");
        assert_eq!(limiter.delay("s", OpClass::Reads, Priority::Poll), None);
        assert_eq!(limiter.delay("other", OpClass::Writes, Priority::Poll), None);
    }
}
