//! A client-side limiter per subscription:
//!
//! - a **schedule**: each request reserves a turn in a token bucket of its kind (reads,
//!   writes, deletes) that refills a little slower than ARM's own (docs/ARM.md §5: 25 reads or
//!   10 writes/deletes per second, buckets of 250 and 200). Many runs polling at once are
//!   spread out instead of all being sent together: 1,000 operations are polled about every
//!   50 s at 20 reads/s, with no 429;
//! - the **answers**: every answer's `x-ms-ratelimit-remaining-subscription-*` is the level
//!   of ARM's bucket when the request arrived, which other clients of the subscription also
//!   draw from (their spending is visible only there). The limiter keeps its own estimate of
//!   that bucket ([`Estimate`]): each turn spends one token from it, and every answer sets it
//!   back to the header's value, less the requests of this process still in flight (each
//!   will spend one on arrival, and the header cannot show them yet). It refills at the net
//!   rate the headers show (ARM's refill less what the other clients spend, learned from
//!   successive answers), up to the largest level seen. It keeps a **reserve** of ARM's
//!   bucket for the other clients ([`Rates::reserve`]): below it, a request waits for the
//!   refill of the missing tokens;
//! - **priorities**: each request says its [`Priority`]. Polls of in-flight operations and
//!   the mutating steps of a run whose unprotected window is open go first; other steps
//!   keep more headroom, and the first step of a run (a new fleet target starting) the
//!   most: when the schedule is short, lower classes wait (they take no turn that a higher
//!   class would need) while the higher ones go on; in the estimate of ARM's bucket they
//!   keep their headroom above the reserve, so they wait longer than the polls. The
//!   estimate is this process's (the schedule is shared): another process's requests in
//!   flight show only in the headers, once they arrived;
//! - **aging**: polls may borrow future turns, so while enough of them poll the schedule
//!   never refills to a lower class's floor. A lower class is passed over for at most
//!   `A = burst / rate` (the time the schedule takes to refill from empty: 10 s for reads,
//!   18.75 s for writes with the default [`Rates`]), counted from its first ask: it is told
//!   to ask again no later than that, and then it is *overdue*. An overdue request takes
//!   its turn in order if that comes first, else it goes ahead of the turns already
//!   promised, in a lane of `OVERDUE_SHARE` (a quarter) of the rate: one overdue request
//!   every `1 / (rate × share)` (0.2 s for reads, 0.5 s for writes). Its token is spent
//!   like any other, so the polls promised later move back by one turn each: the schedule's
//!   average rate is unchanged, and over any stretch of time at most a quarter more go
//!   (with the default rates: ARM's own refill). The promise: while the schedule refills (no
//!   429 pushed it back), a request of a lower class waits at most
//!   `B = A + k / (rate × share)`, `k` the overdue requests ahead of it in the lane (10 s
//!   for a read when none is, 10.2 s when one is), whatever number of polls compete; until
//!   it is overdue the polls keep their precedence. The turns of polls (and of steps in an
//!   open window) stay in order: one waits for the turns promised before it. In the
//!   estimate of ARM's bucket an overdue request counts only the turns that go before it
//!   (those promised later have not spent ARM's tokens when it arrives); the estimate adds
//!   its own wait to `B` only when the headers show ARM's bucket below the class's headroom
//!   (other clients spend it: it is not refilling for us);
//! - a **429** with `Retry-After` pushes the whole bucket (shared by every process of the
//!   database) back by that long, so the other requests wait too instead of being refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use super::estimate::Estimate;

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

    /// ARM's refill per second (docs/ARM.md §5).
    pub(crate) fn arm_rate(self) -> f64 {
        1.0 / self.refill().as_secs_f64()
    }

    /// The size of ARM's bucket (docs/ARM.md §5).
    pub(crate) fn arm_bucket(self) -> f64 {
        match self {
            OpClass::Reads => 250.0,
            OpClass::Writes | OpClass::Deletes => 200.0,
        }
    }
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

/// The share of the schedule's rate that overdue requests may take ahead of the turns
/// already promised: with the default rates, 20 + 5 reads and 8 + 2 writes a second at most,
/// ARM's own refill (docs/ARM.md §5).
const OVERDUE_SHARE: f64 = 0.25;

/// A turn of the schedule, as [`Bucket::take`] gives it.
enum Taken {
    /// None is taken: ask again after this wait.
    Later(Duration),
    /// A turn after every one promised before: send in this many milliseconds.
    InOrder(f64),
    /// An overdue request's turn, ahead of the turns promised: send in this many
    /// milliseconds.
    Ahead(f64),
}

/// A bucket of the schedule: tokens left (negative: turns already promised) and when.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub(crate) tokens: f64,
    pub(crate) at_ms: f64,
    /// When the next overdue request may go ahead of the turns already promised.
    pub(crate) overdue_ms: f64,
}

impl Bucket {
    /// A full bucket of `burst` at `now_ms`.
    pub(crate) fn full(burst: f64, now_ms: f64) -> Self {
        Self {
            tokens: burst,
            at_ms: now_ms,
            overdue_ms: now_ms,
        }
    }

    /// Refills the bucket to `now_ms` at `rate` (up to `burst`), then takes a turn for a
    /// request whose class must leave `floor` tokens and that first asked at `since_ms`:
    /// [`Taken::Later`] (nothing taken) when the bucket is too low for it and it is not
    /// overdue yet, else the turn taken, in order or (overdue) ahead.
    fn take(&mut self, now_ms: f64, rate: f64, burst: f64, floor: f64, since_ms: f64) -> Taken {
        // A wall clock that stepped back refills nothing (and never removes tokens).
        let elapsed_s = ((now_ms - self.at_ms) / 1000.0).max(0.0);
        self.tokens = (self.tokens + elapsed_s * rate).min(burst);
        self.at_ms = self.at_ms.max(now_ms);
        if floor > 0.0 && self.tokens - 1.0 < floor {
            // Passed over for as long as the schedule takes to refill from empty, a request
            // is overdue; until then it asks again, never later than that.
            let due_ms = since_ms + burst / rate * 1000.0;
            if now_ms < due_ms {
                let missing_s = (floor + 1.0 - self.tokens) / rate;
                let wait_s = missing_s.min((due_ms - now_ms) / 1000.0);
                return Taken::Later(Duration::from_secs_f64(wait_s.clamp(0.001, 86_400.0)));
            }
            // Overdue: it goes ahead of the turns promised, one every 1 / (rate × share),
            // unless its turn in order comes first. Its token is spent all the same, so
            // the turns promised later move back: the rate stays the schedule's.
            let lane_ms = self.overdue_ms.max(now_ms);
            let in_order_ms = now_ms + (1.0 - self.tokens).max(0.0) / rate * 1000.0;
            if lane_ms < in_order_ms {
                self.overdue_ms = lane_ms + 1000.0 / (rate * OVERDUE_SHARE);
                self.tokens -= 1.0;
                return Taken::Ahead(lane_ms - now_ms);
            }
        }
        self.tokens -= 1.0;
        Taken::InOrder((-self.tokens / rate * 1000.0).max(0.0))
    }

    /// Pushes the bucket back so that the next turn is at least `wait` away (ARM refused a
    /// request with `Retry-After: wait`).
    pub(crate) fn push_back(&mut self, now_ms: f64, rate: f64, burst: f64, wait: Duration) {
        let elapsed_s = ((now_ms - self.at_ms) / 1000.0).max(0.0);
        self.tokens = (self.tokens + elapsed_s * rate)
            .min(burst)
            .min(-wait.as_secs_f64() * rate);
        self.at_ms = self.at_ms.max(now_ms);
        self.overdue_ms = self.overdue_ms.max(now_ms + wait.as_secs_f64() * 1000.0);
    }
}

/// What the limiter knows, per subscription and bucket.
pub(crate) struct Limiter {
    rates: Rates,
    estimates: Mutex<HashMap<(String, OpClass), Estimate>>,
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
            estimates: Mutex::default(),
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
            .or_insert(Bucket::full(burst, now));
        Some(f(b, now, rate, burst))
    }

    fn with_estimate<T>(&self, subscription: &str, class: OpClass, f: impl FnOnce(&mut Estimate, f64) -> T) -> T {
        let now = (self.now_ms)();
        let mut estimates = self.estimates.lock().unwrap_or_else(PoisonError::into_inner);
        let e = estimates
            .entry((subscription.to_ascii_lowercase(), class))
            .or_insert_with(|| Estimate::new(class, now));
        f(e, now)
    }

    /// The tokens of ARM's bucket a request of `class` and `priority` leaves: the reserve for
    /// the other clients, and the headroom of the lower classes.
    fn margin(&self, class: OpClass, priority: Priority) -> f64 {
        (class.arm_bucket() * (self.rates.reserve + priority.headroom())).ceil()
    }

    /// The limiter's clock, in milliseconds: when a request first asks (see
    /// [`Limiter::reserve_since`]).
    pub(crate) fn now_ms(&self) -> f64 {
        (self.now_ms)()
    }

    /// [`Limiter::reserve_since`] for a request asking for the first time.
    #[cfg(test)]
    pub(crate) fn reserve(&self, subscription: &str, class: OpClass, priority: Priority) -> Turn {
        self.reserve_since(subscription, class, priority, None)
    }

    /// Reserves the next turn of a request of `class` and `priority` in `subscription`, in
    /// the schedule and in the estimate of ARM's bucket. A request of the most urgent
    /// classes always takes a turn (concurrent requests are spread at the rate); a lower
    /// class takes one only while the schedule keeps its floor, else it is told to ask again
    /// later, until it is overdue (it first asked at `since_ms`, by [`Limiter::now_ms`], as
    /// long ago as the schedule takes to refill from empty): then it takes a turn ahead of
    /// the polls. In ARM's bucket it keeps its headroom above the reserve, waiting longer.
    ///
    /// A turn taken ([`Turn::Go`]) counts as in flight until [`Limiter::settle`].
    pub(crate) fn reserve_since(
        &self,
        subscription: &str,
        class: OpClass,
        priority: Priority,
        since_ms: Option<f64>,
    ) -> Turn {
        let margin = self.margin(class, priority);
        let scheduled = self
            .with_bucket(subscription, class, |b, now, rate, burst| {
                // A full bucket always admits a request, whatever its class.
                let floor = (priority.schedule_floor() * burst).min(burst - 1.0).max(0.0);
                b.take(now, rate, burst, floor, since_ms.unwrap_or(now))
            })
            .unwrap_or(Taken::InOrder(0.0));
        let (wait_ms, ahead) = match scheduled {
            Taken::Later(wait) => return Turn::Later(wait),
            Taken::InOrder(ms) => (ms, false),
            Taken::Ahead(ms) => (ms, true),
        };
        let scheduled = (wait_ms > 0.0).then(|| Duration::from_secs_f64((wait_ms / 1000.0).min(86_400.0)));
        // Its turn in ARM's bucket: a lower class, with more headroom to keep, waits longer.
        let arm = self.with_estimate(subscription, class, |e, now| e.take(now, now + wait_ms, margin, ahead));
        Turn::Go(scheduled.max(arm))
    }

    /// [`Limiter::reserve_since`] off the async runtime: with a shared schedule, a turn reads and
    /// writes the file under its lock, and may wait up to its bound for another process.
    pub(crate) async fn reserve_async(
        self: &Arc<Self>,
        subscription: &str,
        class: OpClass,
        priority: Priority,
        since_ms: Option<f64>,
    ) -> Turn {
        if self.shared.is_none() {
            return self.reserve_since(subscription, class, priority, since_ms);
        }
        let (me, sub) = (self.clone(), subscription.to_owned());
        match tokio::task::spawn_blocking(move || me.reserve_since(&sub, class, priority, since_ms)).await {
            Ok(turn) => turn,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down: nothing will be sent anyway.
            Err(_) => Turn::Go(None),
        }
    }

    /// The answer to a request that took a turn came back (or it failed without one).
    pub(crate) fn settle(&self, subscription: &str, class: OpClass) {
        self.with_estimate(subscription, class, |e, _| e.settle());
    }

    /// ARM refused a request of `class` in `subscription` with `Retry-After: wait`: every
    /// request of that bucket (in every process sharing the schedule) waits at least that,
    /// and the estimate of ARM's bucket is empty.
    pub(crate) fn throttled(&self, subscription: &str, class: OpClass, wait: Duration) {
        self.with_estimate(subscription, class, |e, now| e.refused(class, now));
        self.with_bucket(subscription, class, |b, now, rate, burst| {
            b.push_back(now, rate, burst, wait)
        });
    }

    /// [`Limiter::throttled`] off the async runtime (see [`Limiter::reserve_async`]).
    pub(crate) async fn throttled_async(self: &Arc<Self>, subscription: &str, class: OpClass, wait: Duration) {
        if self.shared.is_none() {
            return self.throttled(subscription, class, wait);
        }
        let (me, sub) = (self.clone(), subscription.to_owned());
        if let Err(e) = tokio::task::spawn_blocking(move || me.throttled(&sub, class, wait)).await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// Records the remaining count of an answer (to a request still in flight), if it
    /// carries one: the estimate of ARM's bucket is set back to it.
    pub(crate) fn observe(&self, subscription: &str, class: OpClass, headers: &HeaderMap) {
        let Some(remaining) = headers
            .get(class.header())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            return;
        };
        self.with_estimate(subscription, class, |e, now| e.observe(class, now, remaining as f64));
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

    /// A header that says `remaining` of `class`.
    fn header(class: OpClass, remaining: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(class.header(), remaining.to_string().parse().unwrap());
        h
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) <= Duration::from_millis(1)
    }

    #[test]
    fn the_reserve_for_other_clients_and_the_headroom_of_lower_classes_follow_the_headers() {
        let (t, clock) = stepped();
        let limiter = Limiter::new(Rates::default()).with_clock(clock);
        // Another client spent most of ARM's 250 reads: 30 remain.
        limiter.observe("s", OpClass::Reads, &header(OpClass::Reads, 30));
        // The reserve is 8 % of 250 (20); a step keeps 10 % more (45), a new target 25 % more
        // (83): they wait the refill of what is missing (40 ms a read), and spend a token.
        let step = go(limiter.reserve("s", OpClass::Reads, Priority::Step)).expect("a step keeps its headroom");
        assert!(close(step, Duration::from_millis(16 * 40)), "{step:?}");
        let new =
            go(limiter.reserve("s", OpClass::Reads, Priority::NewTarget)).expect("a new target keeps its headroom");
        assert!(close(new, Duration::from_millis(55 * 40)), "{new:?}");
        limiter.settle("s", OpClass::Reads);
        limiter.settle("s", OpClass::Reads);
        // Polls go, and spend from the estimate: 27 left.
        assert_eq!(go(limiter.reserve("s", OpClass::Reads, Priority::Poll)), None);
        // Its answer says 12: below the reserve, every class waits (a poll takes its turn
        // and waits for it: 9 missing, then 1 more for the turn it took).
        limiter.observe("s", OpClass::Reads, &header(OpClass::Reads, 12));
        limiter.settle("s", OpClass::Reads);
        let poll =
            go(limiter.reserve("s", OpClass::Reads, Priority::Poll)).expect("below the reserve every class waits");
        assert!(close(poll, Duration::from_millis(9 * 40)), "{poll:?}");
        limiter.settle("s", OpClass::Reads);
        t.fetch_add(10 * 40, Ordering::SeqCst);
        assert_eq!(
            go(limiter.reserve("s", OpClass::Reads, Priority::Poll)),
            None,
            "refilled"
        );
        // A larger reserve keeps more for the others.
        let generous = Limiter::new(Rates {
            reserve: 0.5,
            ..Rates::default()
        });
        generous.observe("s", OpClass::Reads, &header(OpClass::Reads, 12));
        assert!(go(generous.reserve("s", OpClass::Reads, Priority::Poll)).unwrap() > Duration::from_secs(4));
    }

    /// Each request in flight will spend a token on arrival that its fellows' answers do
    /// not show yet: a header is read less the others in flight.
    #[test]
    fn a_header_counts_less_the_requests_still_in_flight() {
        let (_, clock) = stepped();
        let limiter = Limiter::new(Rates::default()).with_clock(clock);
        for _ in 0..10 {
            assert_eq!(go(limiter.reserve("s", OpClass::Reads, Priority::Poll)), None);
        }
        // The first answer says 25 (above the reserve of 20), but nine more are on their way.
        limiter.observe("s", OpClass::Reads, &header(OpClass::Reads, 25));
        limiter.settle("s", OpClass::Reads);
        let wait = go(limiter.reserve("s", OpClass::Reads, Priority::Poll)).expect("16 left: below the reserve");
        assert!(close(wait, Duration::from_millis(5 * 40)), "{wait:?}");
        // A header above the estimate is the truth too (the other clients spent less).
        for _ in 0..10 {
            limiter.settle("s", OpClass::Reads);
        }
        limiter.observe("s", OpClass::Reads, &header(OpClass::Reads, 120));
        assert_eq!(go(limiter.reserve("s", OpClass::Reads, Priority::Poll)), None);
    }

    /// ARM's bucket of a subscription's reads, as the emulator models it (docs/ARM.md §5:
    /// 250, 25 a second), with a competing client that spends `other` reads a second of it
    /// (never below empty: it is throttled too), scripted over time.
    struct Arm {
        tokens: f64,
        at_ms: f64,
        other: fn(f64) -> f64,
    }

    impl Arm {
        fn advance(&mut self, now_ms: f64) {
            let mut t = self.at_ms;
            // In steps of a millisecond, so the competitor's rate can change on the way.
            while t < now_ms {
                let dt = (now_ms - t).min(1.0);
                self.tokens = (self.tokens + dt / 1000.0 * (25.0 - (self.other)(t))).clamp(0.0, 250.0);
                t += dt;
            }
            self.at_ms = now_ms;
        }

        /// A request arrives: the remaining header, or `None` (429).
        fn arrive(&mut self, now_ms: f64) -> Option<u64> {
            self.advance(now_ms);
            (self.tokens >= 1.0).then(|| {
                self.tokens -= 1.0;
                self.tokens.floor() as u64
            })
        }
    }

    /// Issue 18: twenty runs poll at once (each asks again 50 ms after its answer) while a
    /// competing client spends half of ARM's refill, then 80 %, then 30 %: the limiter
    /// follows the bucket through the headers, so ARM refuses none of our requests, and it
    /// still uses most of what the other client leaves.
    #[test]
    fn twenty_pollers_beside_a_competing_client_are_never_refused() {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;

        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Event {
            Ask,
            Arrive,
            Answer(Option<u64>),
        }
        const LATENCY_MS: u64 = 3;
        const END_MS: u64 = 60_000;
        let (t, clock) = stepped();
        let start = t.load(Ordering::SeqCst);
        let limiter = Limiter::new(Rates::default()).with_clock(clock);
        fn other(t_ms: f64) -> f64 {
            match (t_ms - 1_000_000.0) / 1000.0 {
                s if s < 20.0 => 12.5,
                s if s < 40.0 => 20.0,
                _ => 7.5,
            }
        }
        // The other client already holds half of the burst.
        let mut arm = Arm {
            tokens: 125.0,
            at_ms: start as f64,
            other,
        };
        let mut events: BinaryHeap<Reverse<(u64, usize, Event)>> =
            (0..20).map(|c| Reverse((start, c, Event::Ask))).collect();
        let (mut served, mut refused) = (0u64, 0u64);
        while let Some(Reverse((at, client, event))) = events.pop() {
            if at > start + END_MS {
                break;
            }
            t.store(at, Ordering::SeqCst);
            let next = match event {
                Event::Ask => match limiter.reserve("s", OpClass::Reads, Priority::Poll) {
                    Turn::Go(wait) => (
                        at + wait.map_or(0, |w| w.as_millis() as u64) + LATENCY_MS,
                        Event::Arrive,
                    ),
                    Turn::Later(wait) => (at + (wait.as_millis() as u64).max(1), Event::Ask),
                },
                Event::Arrive => (at + LATENCY_MS, Event::Answer(arm.arrive(at as f64))),
                Event::Answer(Some(remaining)) => {
                    served += 1;
                    limiter.observe("s", OpClass::Reads, &header(OpClass::Reads, remaining));
                    limiter.settle("s", OpClass::Reads);
                    (at + 50, Event::Ask)
                }
                Event::Answer(None) => {
                    refused += 1;
                    limiter.throttled("s", OpClass::Reads, Duration::from_secs(1));
                    limiter.settle("s", OpClass::Reads);
                    (at + 1_000, Event::Ask)
                }
            };
            events.push(Reverse((next.0, client, next.1)));
        }
        assert_eq!(refused, 0, "ARM refused {refused} of our requests ({served} served)");
        // What the other client leaves in 60 s: 125 at first, then 12.5, 5 and 17.5 a second
        // for 20 s each; less the reserve of 20 it is 820.
        assert!(served >= 700, "only {served} of the ~820 reads left to us were used");
    }

    /// Milliseconds of a wait, rounded up (a request asks again no sooner than told).
    fn ms(wait: Duration) -> u64 {
        wait.as_micros().div_ceil(1000) as u64
    }

    /// Runs `pollers` polling loops (each asks again a second after its answer, so the
    /// polls alone would take ten times the schedule's rate) and, once they have emptied the
    /// schedule, one new target that asks again whenever it is told to, as the client does.
    /// Returns how long the new target waited for its turn (`None`: not within two minutes),
    /// and how many polls were answered.
    fn a_new_target_among(pollers: usize) -> (Option<u64>, u64) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;

        const NEW: usize = usize::MAX;
        const ASKS_AT_MS: u64 = 30_000;
        const END_MS: u64 = 150_000;
        let (t, clock) = stepped();
        let start = t.load(Ordering::SeqCst);
        let limiter = Limiter::new(Rates::default()).with_clock(clock);
        // (when, who, whether its turn came): a poller asks, then its answer comes back.
        let mut events: BinaryHeap<Reverse<(u64, usize, bool)>> =
            (0..pollers).map(|c| Reverse((start, c, false))).collect();
        events.push(Reverse((start + ASKS_AT_MS, NEW, false)));
        let since = (start + ASKS_AT_MS) as f64;
        let (mut waited, mut polls) = (None, 0);
        while let Some(Reverse((at, who, sent))) = events.pop() {
            if at > start + END_MS {
                break;
            }
            t.store(at, Ordering::SeqCst);
            if who == NEW {
                match limiter.reserve_since("s", OpClass::Reads, Priority::NewTarget, Some(since)) {
                    Turn::Go(wait) => {
                        waited = Some(at + wait.map_or(0, ms) - (start + ASKS_AT_MS));
                        limiter.settle("s", OpClass::Reads);
                    }
                    Turn::Later(wait) => events.push(Reverse((at + ms(wait).max(1), NEW, false))),
                }
            } else if sent {
                polls += 1;
                limiter.settle("s", OpClass::Reads);
                events.push(Reverse((at + 1_000, who, false)));
            } else {
                let wait = go(limiter.reserve("s", OpClass::Reads, Priority::Poll));
                events.push(Reverse((at + wait.map_or(0, ms) + 3, who, true)));
            }
        }
        (waited, polls)
    }

    /// Session 7: while hundreds of operations polled, a new target's first read was told
    /// to wait again and again (3 of 1,000 in `fogbook bench` waited over 30 s). Passed over
    /// for as long as the schedule takes to refill from empty (200 / 20 a second: 10 s), a
    /// request is overdue and goes ahead of the polls, in a lane of a quarter of the rate (one
    /// every 0.2 s): however many poll, it waits at most 10.2 s, and the polls keep the rest.
    #[test]
    fn a_new_target_waits_at_most_its_bound_however_many_operations_poll() {
        let rates = Rates::default();
        let bound_ms =
            (rates.reads_burst / rates.reads_per_s * 1000.0 + 1000.0 / (rates.reads_per_s * OVERDUE_SHARE)) as u64;
        for pollers in [200, 1_000] {
            let (waited, polls) = a_new_target_among(pollers);
            let waited = waited.unwrap_or_else(|| panic!("with {pollers} polling, the new target never had a turn"));
            assert!(
                waited <= bound_ms,
                "with {pollers} polling, the new target waited {waited} ms (bound {bound_ms})"
            );
            // Polls first: the new target did not go before it was overdue ...
            assert!(waited >= 10_000, "with {pollers} polling it went after {waited} ms");
            // ... and the polls had every other turn of the schedule (the burst and 150 s
            // at 20 a second, less the new target's).
            assert!(
                (3_190..=3_200).contains(&polls),
                "with {pollers} polling, the polls took {polls} turns"
            );
        }
    }

    /// Overdue requests go one per slot of the lane (1 / (rate × share)): they never add
    /// more than the share to the rate; a 429 pushes the lane back with the bucket.
    #[test]
    fn overdue_requests_share_a_lane_that_a_429_pushes_back() {
        let (t, clock) = stepped();
        let limiter = Limiter::new(Rates::default()).with_clock(clock);
        // The polls have promised the next 20 s.
        for _ in 0..600 {
            go(limiter.reserve("s", OpClass::Reads, Priority::Poll));
        }
        let since = Some(t.load(Ordering::SeqCst) as f64);
        assert!(matches!(
            limiter.reserve_since("s", OpClass::Reads, Priority::Step, since),
            Turn::Later(_)
        ));
        t.fetch_add(10_000, Ordering::SeqCst);
        let lane: Vec<Option<Duration>> = (0..3)
            .map(|_| go(limiter.reserve_since("s", OpClass::Reads, Priority::NewTarget, since)))
            .collect();
        assert_eq!(lane[0], None);
        assert!(close(lane[1].unwrap(), Duration::from_millis(200)), "{lane:?}");
        assert!(close(lane[2].unwrap(), Duration::from_millis(400)), "{lane:?}");
        // Their tokens are spent: the next poll waits three turns more (400 promised past
        // the burst, 200 refilled in 10 s, 3 overdue and its own: 204 turns at 20 a second).
        let poll = go(limiter.reserve("s", OpClass::Reads, Priority::Poll)).unwrap();
        assert!(close(poll, Duration::from_millis(204 * 50)), "{poll:?}");
        limiter.throttled("s", OpClass::Reads, Duration::from_secs(30));
        let pushed = go(limiter.reserve_since("s", OpClass::Reads, Priority::NewTarget, since)).unwrap();
        assert!(pushed >= Duration::from_secs(30), "{pushed:?}");
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

    /// A turn whose schedule file is held by another process (stopped while holding it)
    /// waits for it on the blocking pool: the runtime's thread goes on with other tasks.
    #[tokio::test(flavor = "current_thread")]
    async fn a_turn_waiting_for_the_schedule_file_leaves_the_runtime_free() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db-arm-schedule");
        let holder = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file)
            .unwrap();
        holder.lock().unwrap();
        let limiter = Arc::new(Limiter::shared(Rates::default(), SharedSchedule::new(file, "p")));
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        // The file is given up after its bound (500 ms) and the process paces alone.
        let turn = limiter.reserve_async("s", OpClass::Reads, Priority::Poll, None).await;
        assert_eq!(turn, Turn::Go(None));
        let ticked = ticks.load(Ordering::SeqCst);
        ticker.abort();
        assert!(
            ticked >= 20,
            "the runtime was blocked while the turn waited: {ticked} ticks"
        );
        holder.unlock().unwrap();
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
        let (_, clock) = stepped();
        let limiter = Limiter::default().with_clock(clock);
        let poll = |sub: &str, class: OpClass| {
            let wait = go(limiter.reserve(sub, class, Priority::Poll));
            limiter.settle(sub, class);
            wait
        };
        assert_eq!(poll("s", OpClass::Writes), None);
        limiter.observe("S", OpClass::Writes, &header(OpClass::Writes, 150));
        assert_eq!(poll("s", OpClass::Writes), None);
        limiter.observe("s", OpClass::Writes, &header(OpClass::Writes, 15));
        let some = poll("s", OpClass::Writes).unwrap();
        limiter.observe("s", OpClass::Writes, &header(OpClass::Writes, 2));
        let more = poll("s", OpClass::Writes).unwrap();
        assert!(more > some, "{more:?} > {some:?}");
        assert_eq!(poll("s", OpClass::Reads), None);
        assert_eq!(poll("other", OpClass::Writes), None);
    }
}
