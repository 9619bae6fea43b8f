//! Time for the engine: wall-clock time that never goes backwards within a process, and a
//! monotonic clock for lease deadlines, both injectable for tests.
//!
//! The machine's wall clock can be stepped (by NTP, an operator, a VM resumed from a
//! snapshot) forwards or backwards. Inside one process the engine reads the wall clock once,
//! at its first use, and from then on adds the time elapsed on the monotonic clock
//! ([`SteadyClock`]): a step of the wall clock does not move it, so a duration measured in
//! one process is never negative and a lease is not judged expired because the wall clock
//! jumped. The monotonic clock is `CLOCK_BOOTTIME`, which also counts time the machine was
//! suspended (a suspended laptop's lease must have run out when it wakes up).
//!
//! Limit: a process started after a step sees the new wall time; times written by
//! processes started on either side of a step differ by the step.

use std::fmt::Debug;
use std::sync::OnceLock;
use std::time::Duration;

use fogbook_state::Millis;

/// A source of time for the engine.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Wall-clock now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;

    /// Time since a fixed, arbitrary point on a clock that never goes backwards and is not
    /// stepped with the wall clock. Lease deadlines of a driver are judged on it.
    fn monotonic(&self) -> Duration {
        MachineTime.monotonic()
    }
}

/// What a machine tells: its wall clock (which can be stepped) and a monotonic clock.
pub trait TimeSource: Send + Sync + Debug + 'static {
    /// The wall clock, in milliseconds since the Unix epoch.
    fn wall_ms(&self) -> Millis;
    /// Time since a fixed, arbitrary point, never going backwards, counting suspension.
    fn monotonic(&self) -> Duration;
}

/// The machine's clocks: `CLOCK_REALTIME` and `CLOCK_BOOTTIME`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MachineTime;

impl TimeSource for MachineTime {
    fn wall_ms(&self) -> Millis {
        let now = time::OffsetDateTime::now_utc();
        i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    fn monotonic(&self) -> Duration {
        use nix::time::{ClockId, clock_gettime};
        // BOOTTIME counts suspension; MONOTONIC (which does not) only where it is missing.
        clock_gettime(ClockId::CLOCK_BOOTTIME)
            .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
            .map(Duration::from)
            .unwrap_or_else(|_| process_instant().elapsed())
    }
}

fn process_instant() -> &'static std::time::Instant {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now)
}

/// Wall-clock time that follows the monotonic clock: the wall time read when the clock was
/// made plus the monotonic time elapsed since. It never goes backwards and ignores steps of
/// the wall clock after it was made.
#[derive(Debug)]
pub struct SteadyClock<S> {
    source: S,
    anchor_wall: Millis,
    anchor_mono: Duration,
}

impl<S: TimeSource> SteadyClock<S> {
    /// A clock anchored on `source`'s wall time now.
    pub fn new(source: S) -> Self {
        let anchor_mono = source.monotonic();
        let anchor_wall = source.wall_ms();
        Self {
            source,
            anchor_wall,
            anchor_mono,
        }
    }
}

impl<S: TimeSource> Clock for SteadyClock<S> {
    fn now_ms(&self) -> Millis {
        let elapsed = self.source.monotonic().saturating_sub(self.anchor_mono);
        self.anchor_wall.saturating_add(ms(elapsed))
    }

    fn monotonic(&self) -> Duration {
        self.source.monotonic()
    }
}

/// The system clock: a [`SteadyClock`] over [`MachineTime`], anchored once per process (at
/// its first use), so every part of a process agrees on the time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    fn steady() -> &'static SteadyClock<MachineTime> {
        static CLOCK: OnceLock<SteadyClock<MachineTime>> = OnceLock::new();
        CLOCK.get_or_init(|| SteadyClock::new(MachineTime))
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        Self::steady().now_ms()
    }

    fn monotonic(&self) -> Duration {
        Self::steady().monotonic()
    }
}

/// Milliseconds to an `OffsetDateTime` (UTC).
pub(crate) fn to_datetime(ms: Millis) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A `Duration` as milliseconds, saturating.
pub(crate) fn ms(d: std::time::Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    /// A machine whose wall clock the test steps; its monotonic clock moves only when told.
    #[derive(Debug, Default)]
    struct Stepped {
        wall: AtomicI64,
        mono_ms: AtomicI64,
    }

    impl TimeSource for &'static Stepped {
        fn wall_ms(&self) -> Millis {
            self.wall.load(Ordering::SeqCst)
        }
        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.mono_ms.load(Ordering::SeqCst).unsigned_abs())
        }
    }

    #[test]
    fn steps_of_the_wall_clock_do_not_move_the_steady_clock() {
        let m: &'static Stepped = Box::leak(Box::default());
        m.wall.store(1_000_000, Ordering::SeqCst);
        m.mono_ms.store(50, Ordering::SeqCst);
        let clock = SteadyClock::new(m);
        assert_eq!(clock.now_ms(), 1_000_000);
        // 3 s pass, then the wall clock is stepped back by a minute.
        m.mono_ms.fetch_add(3_000, Ordering::SeqCst);
        m.wall.fetch_add(3_000 - 60_000, Ordering::SeqCst);
        assert_eq!(clock.now_ms(), 1_003_000);
        // 3 s more, then a step forward by ten minutes.
        m.mono_ms.fetch_add(3_000, Ordering::SeqCst);
        m.wall.fetch_add(3_000 + 600_000, Ordering::SeqCst);
        assert_eq!(clock.now_ms(), 1_006_000);
    }

    #[test]
    fn the_system_clock_starts_at_the_wall_time_and_never_goes_back() {
        let wall = MachineTime.wall_ms();
        let a = SystemClock.now_ms();
        let b = SystemClock.now_ms();
        assert!(b >= a);
        assert!((a - wall).abs() < 60_000, "{a} vs the wall clock's {wall}");
        assert!(SystemClock.monotonic() <= SystemClock.monotonic());
    }
}
