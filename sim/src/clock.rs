//! Simulated time: real elapsed time multiplied by a scale factor, plus manual advances.
//!
//! Nothing runs on a timer. Operations carry a simulated end time and are completed lazily
//! whenever a request observes the clock past it, so advancing the clock (`POST
//! /_sim/clock/advance`) is all a test needs to "wait" for hours of work.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A point in simulated time: milliseconds since the estate's simulated epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct SimTime(pub(crate) i64);

impl SimTime {
    /// This time plus `secs` simulated seconds.
    pub(crate) fn plus_secs(self, secs: f64) -> SimTime {
        SimTime(self.0.saturating_add(secs_to_ms(secs)))
    }

    /// Simulated seconds from `self` until `later` (negative when `later` is earlier).
    pub(crate) fn secs_until(self, later: SimTime) -> f64 {
        (later.0 - self.0) as f64 / 1000.0
    }

    /// The wall-clock-looking timestamp of this simulated time, given the estate's epoch.
    pub(crate) fn to_datetime(self, epoch: time::OffsetDateTime) -> time::OffsetDateTime {
        epoch + time::Duration::milliseconds(self.0)
    }

    /// RFC 3339 text of [`SimTime::to_datetime`].
    pub(crate) fn rfc3339(self, epoch: time::OffsetDateTime) -> String {
        self.to_datetime(epoch)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }
}

fn secs_to_ms(secs: f64) -> i64 {
    let ms = (secs * 1000.0).round();
    if ms.is_finite() { ms as i64 } else { 0 }
}

/// The simulated clock. It never goes backwards.
#[derive(Debug)]
pub(crate) struct SimClock {
    real_start: Instant,
    start: SimTime,
    scale: f64,
    advanced_ms: i64,
}

impl SimClock {
    /// A clock that reads `start` now and then runs `scale` times faster than real time.
    pub(crate) fn new(start: SimTime, scale: f64) -> SimClock {
        SimClock {
            real_start: Instant::now(),
            start,
            scale,
            advanced_ms: 0,
        }
    }

    /// The current simulated time.
    pub(crate) fn now(&self) -> SimTime {
        let real = self.real_start.elapsed().as_secs_f64() * self.scale;
        SimTime(self.start.0 + secs_to_ms(real) + self.advanced_ms)
    }

    /// Moves the clock forward by `secs` simulated seconds (negative values are ignored).
    pub(crate) fn advance(&mut self, secs: f64) {
        if secs > 0.0 {
            self.advanced_ms = self.advanced_ms.saturating_add(secs_to_ms(secs));
        }
    }

    /// How many simulated seconds pass per real second.
    pub(crate) fn scale(&self) -> f64 {
        self.scale
    }

    /// Real seconds a client should wait for `sim_secs` simulated seconds to pass.
    /// A frozen clock (scale 0) is treated as real time here.
    pub(crate) fn real_secs(&self, sim_secs: f64) -> f64 {
        if self.scale > 0.0 {
            sim_secs / self.scale
        } else {
            sim_secs
        }
    }
}

/// Parses `"2h"`, `"90m"`, `"1h30m"`, `"45s"`, `"1d"`, `"1.5h"` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some(secs);
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400.0,
            'h' => 3_600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        let value: f64 = number.parse().ok()?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() {
        return None;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2h"), Some(7200.0));
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("45s"), Some(45.0));
        assert_eq!(parse_duration("1.5h"), Some(5400.0));
        assert_eq!(parse_duration("1d"), Some(86400.0));
        assert_eq!(parse_duration("120"), Some(120.0));
        assert_eq!(parse_duration("2x"), None);
        assert_eq!(parse_duration("5h3"), None);
        assert_eq!(parse_duration("-3"), None);
    }

    #[test]
    fn advance_moves_the_clock_forward_only() {
        let mut clock = SimClock::new(SimTime(1000), 0.0);
        assert_eq!(clock.now(), SimTime(1000));
        clock.advance(2.5);
        assert_eq!(clock.now(), SimTime(3500));
        clock.advance(-10.0);
        assert_eq!(clock.now(), SimTime(3500));
    }
}
