//! This process's estimate of one of ARM's buckets, for the limiter (`limiter.rs`): every
//! answer's `x-ms-ratelimit-remaining-subscription-*` is the level of ARM's bucket when the
//! request arrived; each turn the limiter hands out spends one token from the estimate, and
//! the turns promised but not due yet are known by when they go, so that a request that
//! goes ahead of them (an overdue one) is not made to wait for tokens they have not spent.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::limiter::OpClass;

/// This process's estimate of one of ARM's buckets (a subscription's reads, writes or
/// deletes), kept from the answers' `x-ms-ratelimit-remaining-subscription-*` headers.
#[derive(Clone, Debug)]
pub(crate) struct Estimate {
    /// ARM's tokens left after every turn this process has handed out (negative: turns
    /// promised beyond what is there now, each waiting for the refill).
    tokens: f64,
    at_ms: f64,
    /// Turns handed out whose answer has not come back (sent, or waiting to be sent).
    in_flight: u64,
    /// When each turn handed out and not due yet goes (ms): counted in `tokens`, but ARM's
    /// bucket has not seen them.
    promised: BinaryHeap<Reverse<u64>>,
    /// The net refill per second: ARM's refill less what the other clients spend.
    rate: f64,
    /// The largest level a header showed (the bucket as full as the other clients leave it).
    ceiling: f64,
    /// Answers with a header, counted: between two of them, this many of ours arrived.
    answered: u64,
    /// The answer the next net rate is measured from: (when, level, `answered` then).
    base: Option<(f64, f64, u64)>,
}

/// How long the net refill rate is measured over: long enough that one answer's
/// rounding and the order of arrivals do not dominate it, short enough to follow a
/// competing client that starts or stops.
const RATE_WINDOW_MS: f64 = 1_000.0;

impl Estimate {
    pub(crate) fn new(class: OpClass, now_ms: f64) -> Self {
        Self {
            tokens: class.arm_bucket(),
            at_ms: now_ms,
            in_flight: 0,
            promised: BinaryHeap::new(),
            rate: class.arm_rate(),
            ceiling: class.arm_bucket(),
            answered: 0,
            base: None,
        }
    }

    fn refill(&mut self, now_ms: f64) {
        let elapsed_s = ((now_ms - self.at_ms) / 1000.0).max(0.0);
        if self.tokens < self.ceiling {
            self.tokens = (self.tokens + elapsed_s * self.rate).min(self.ceiling);
        }
        self.at_ms = self.at_ms.max(now_ms);
        while self.promised.peek().is_some_and(|due| due.0 as f64 <= now_ms) {
            self.promised.pop();
        }
    }

    /// Takes a turn that the schedule gave for `send_ms`, for a class that must leave
    /// `margin` tokens in ARM's bucket: the wait for the refill of what is missing, if
    /// anything is. A turn `ahead` of those promised (an overdue request's) counts only the
    /// promised turns that go before it: the others will find ARM's bucket one token lower,
    /// and their own turns were counted for that.
    pub(crate) fn take(&mut self, now_ms: f64, send_ms: f64, margin: f64, ahead: bool) -> Option<Duration> {
        self.refill(now_ms);
        let unspent = if ahead {
            self.promised.iter().filter(|due| due.0 as f64 > send_ms).count() as f64
        } else {
            0.0
        };
        let missing = margin + 1.0 - self.tokens - unspent;
        self.tokens -= 1.0;
        self.in_flight += 1;
        let wait = (missing > 0.0).then(|| Duration::from_secs_f64((missing / self.rate).clamp(0.001, 86_400.0)));
        let due_ms = send_ms.max(now_ms + wait.map_or(0.0, |w| w.as_secs_f64() * 1000.0));
        if due_ms > now_ms {
            self.promised.push(Reverse(due_ms.ceil() as u64));
        }
        wait
    }

    /// An answer showed `remaining` tokens in ARM's bucket when its request (one of ours in
    /// flight) arrived.
    pub(crate) fn observe(&mut self, class: OpClass, now_ms: f64, remaining: f64) {
        self.refill(now_ms);
        self.answered += 1;
        self.ceiling = if self.answered == 1 {
            remaining + 1.0
        } else {
            self.ceiling.max(remaining + 1.0)
        };
        // The other requests in flight spend one each on arrival; the header could not
        // count those that arrived after this one, and counting all of them keeps the
        // estimate on the safe side.
        let others = self.in_flight.saturating_sub(1) as f64;
        self.tokens = remaining - others;
        self.learn_rate(class, now_ms, remaining);
    }

    /// The net refill rate between the base answer and this one: the level's change plus
    /// our requests that arrived in between, per second.
    fn learn_rate(&mut self, class: OpClass, now_ms: f64, remaining: f64) {
        let Some((at, level, answered)) = self.base else {
            self.base = Some((now_ms, remaining, self.answered));
            return;
        };
        let dt_s = (now_ms - at) / 1000.0;
        if dt_s * 1000.0 < RATE_WINDOW_MS {
            return;
        }
        let measured = (remaining - level + (self.answered - answered) as f64) / dt_s;
        let nominal = class.arm_rate();
        // A bucket at its ceiling refills nothing more: its rate is at least the measure.
        let full = remaining + 2.0 >= self.ceiling || level + 2.0 >= self.ceiling;
        let rate = if full {
            self.rate.max(measured)
        } else {
            (self.rate + measured) / 2.0
        };
        self.rate = rate.clamp(nominal / 50.0, nominal);
        self.base = Some((now_ms, remaining, self.answered));
    }

    /// ARM refused one of our requests (429): the bucket is empty now, and the rate was
    /// overestimated.
    pub(crate) fn refused(&mut self, class: OpClass, now_ms: f64) {
        self.refill(now_ms);
        let others = self.in_flight.saturating_sub(1) as f64;
        self.tokens = self.tokens.min(-others);
        self.rate = (self.rate * 0.5).max(class.arm_rate() / 50.0);
        self.base = None;
    }

    /// An answer (or the failure to get one) came back.
    pub(crate) fn settle(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}
