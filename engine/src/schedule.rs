//! Schedule semantics: cron expansion in a time zone, catch-up, maintenance windows and
//! overlap, as pure functions of the stored schedule and a time, so they are tested with
//! fixed instants instead of a waiting clock.
//!
//! - Fire times are those of the cron expression read in the schedule's zone. Across a
//!   daylight-saving change (croner's rules, the Open Cron Pattern Specification): a fixed
//!   time that does not exist fires once at the first valid instant after the gap; a fixed
//!   time that occurs twice fires once, at its first occurrence.
//! - A fire time missed by more than the catch-up window (no worker ran) is skipped and
//!   recorded as skipped; one within it fires late.
//! - With a maintenance window, a due fire starts only inside the window; outside it, it
//!   waits for the window, as long as it stays within the catch-up window; past that it is
//!   skipped with the closed window as the reason (not a missing worker).
//! - When the schedule's previous run is still going: `skip` records the fire as skipped,
//!   `queue` keeps it and starts its run when the previous one ends.
//! - Fire times that fall due together (the clock jumped forward, or no worker ran for a
//!   while within the catch-up window) coalesce: the newest one fires (or queues), the
//!   others are recorded as skipped, so a backlog never runs back to back.
//! - A paused schedule records the fire times that pass as skipped.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
pub use chrono_tz::Tz;
use croner::Cron;
use fogbook_state::{Millis, Overlap};

/// At most this many fire times are handled in one tick; a longer backlog is recorded as
/// one skip per tick until it is gone.
const MAX_FIRES_PER_TICK: usize = 100;

/// The field of a cron expression that holds a number out of its range, named with the
/// range (the parser only says "Number out of bounds").
fn cron_field_error(expr: &str) -> Option<String> {
    const FIELDS: [(&str, u32, u32); 6] = [
        ("second", 0, 59),
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let named = match fields.len() {
        5 => &FIELDS[1..],
        6 => &FIELDS[..],
        n => {
            return Some(format!(
                "it has {n} fields; write 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
            ));
        }
    };
    for (i, (field, (name, lo, hi))) in fields.iter().zip(named).enumerate() {
        let numbers = field.split([',', '-', '/']).filter_map(|n| n.parse::<u32>().ok());
        for (j, n) in numbers.enumerate() {
            // A step (`*/90`) is not a value of the field.
            let is_step = field.contains('/') && field.split('/').nth(1).is_some_and(|s| s == n.to_string()) && j > 0;
            if !is_step && (n < *lo || n > *hi) {
                return Some(format!(
                    "field {} ({name}) is `{field}`: {n} is outside {lo}-{hi}",
                    i + 1
                ));
            }
        }
    }
    None
}

/// A parsed cron expression with its zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

impl CronSchedule {
    /// Parses `expr` (5 fields, or 6 with seconds first) read in zone `tz` (IANA name).
    pub fn parse(expr: &str, tz: &str) -> Result<Self, String> {
        let cron = Cron::from_str(expr).map_err(|e| match cron_field_error(expr) {
            Some(field) => format!("invalid cron expression `{expr}`: {field}"),
            None => format!("invalid cron expression `{expr}`: {e}"),
        })?;
        let tz = parse_tz(tz)?;
        Ok(Self { cron, tz })
    }

    /// Fire times `t` with `after < t <= until`, oldest first, at most `limit`.
    pub fn fire_times(&self, after: Millis, until: Millis, limit: usize) -> Vec<Millis> {
        let mut out = Vec::new();
        let Some(start) = to_utc(after).map(|t| t.with_timezone(&self.tz)) else {
            return out;
        };
        for t in self.cron.iter_after(start) {
            let ms = t.timestamp_millis();
            if ms > until || out.len() >= limit {
                break;
            }
            out.push(ms);
        }
        out
    }

    /// The next `n` fire times after `after`.
    pub fn next(&self, after: Millis, n: usize) -> Vec<Millis> {
        self.fire_times(after, Millis::MAX, n)
    }

    /// The zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }
}

/// Parses an IANA zone name (`Europe/Amsterdam`, `UTC`).
pub fn parse_tz(tz: &str) -> Result<Tz, String> {
    Tz::from_str(tz).map_err(|_| format!("unknown time zone `{tz}` (use an IANA name such as Europe/Amsterdam or UTC)"))
}

/// `ms` as RFC 3339 in zone `tz`, with its offset (`2026-11-28T02:00:00.000+01:00`).
pub fn format_in(tz: Tz, ms: Millis) -> String {
    match to_utc(ms) {
        Some(t) => t
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        None => ms.to_string(),
    }
}

fn to_utc(ms: Millis) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// A daily maintenance window in a zone, such as `01:00-05:00 Europe/Amsterdam`. A window
/// whose end is before its start crosses midnight (`22:00-04:00`).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    start_min: u32,
    end_min: u32,
    tz: Tz,
}

impl Window {
    /// Parses `HH:MM-HH:MM ZONE` (`in` before the zone is allowed; the zone defaults to UTC).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split_whitespace();
        let range = parts.next().ok_or("empty maintenance window")?;
        let mut rest: Vec<&str> = parts.collect();
        if rest.first() == Some(&"in") {
            rest.remove(0);
        }
        let tz = match rest.as_slice() {
            [] => Tz::UTC,
            [zone] => parse_tz(zone)?,
            _ => {
                return Err(format!(
                    "invalid maintenance window `{text}`: expected `HH:MM-HH:MM ZONE`"
                ));
            }
        };
        let (a, b) = range
            .split_once('-')
            .ok_or_else(|| format!("invalid maintenance window `{text}`: expected `HH:MM-HH:MM ZONE`"))?;
        let start_min = minutes(a).ok_or_else(|| format!("invalid start time `{a}` in maintenance window"))?;
        let end_min = minutes(b).ok_or_else(|| format!("invalid end time `{b}` in maintenance window"))?;
        if start_min == end_min {
            return Err(format!("maintenance window `{text}` is empty"));
        }
        Ok(Self { start_min, end_min, tz })
    }

    /// Whether `at` falls inside the window (start inclusive, end exclusive).
    pub fn contains(&self, at: Millis) -> bool {
        let Some(t) = to_utc(at) else { return false };
        let local = t.with_timezone(&self.tz);
        let m = local.hour() * 60 + local.minute();
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&m)
        } else {
            m >= self.start_min || m < self.end_min
        }
    }

    /// The first instant at or after `at` (to the minute) that falls inside the window.
    pub fn next_open(&self, at: Millis) -> Option<Millis> {
        // A daily window opens within a day; a day of minutes also covers a DST change.
        let first = at - at.rem_euclid(60_000);
        (0..=(26 * 60))
            .map(|i| first + i * 60_000)
            .find(|&t| t >= at && self.contains(t))
    }

    /// The stored form.
    pub fn to_json(&self, text: &str) -> serde_json::Value {
        serde_json::json!({ "text": text, "start_min": self.start_min, "end_min": self.end_min, "tz": self.tz.name() })
    }

    /// Reads the stored form.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        Some(Self {
            start_min: u32::try_from(v.get("start_min")?.as_u64()?).ok()?,
            end_min: u32::try_from(v.get("end_min")?.as_u64()?).ok()?,
            tz: parse_tz(v.get("tz")?.as_str()?).ok()?,
        })
    }
}

fn minutes(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && hhmm.len() <= 5).then_some(h * 60 + m)
}

impl Window {
    /// `HH:MM-HH:MM ZONE`.
    pub fn describe(&self) -> String {
        format!(
            "{:02}:{:02}-{:02}:{:02} {}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60,
            self.tz.name()
        )
    }
}

/// What happens to a fire time `fire_at` that falls outside `window` (`None` when it is
/// inside): it waits for the window to open, or, when the window does not open within the
/// catch-up window, it is skipped. Mirrors [`plan_tick`].
pub fn outside_window(window: &Window, catch_up: Duration, fire_at: Millis) -> Option<OutsideWindow> {
    if window.contains(fire_at) {
        return None;
    }
    let catch_up = i64::try_from(catch_up.as_millis()).unwrap_or(i64::MAX);
    Some(match window.next_open(fire_at) {
        Some(open) if open - fire_at <= catch_up => OutsideWindow::Waits { until: open },
        _ => OutsideWindow::Skipped,
    })
}

/// The fate of a fire time outside the maintenance window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutsideWindow {
    /// It starts when the window opens, at `until`.
    Waits {
        /// When the window opens.
        until: Millis,
    },
    /// The window does not open within the catch-up window: it is recorded as skipped.
    Skipped,
}

/// What a tick knows about one schedule.
#[derive(Clone, Debug)]
pub struct TickInput {
    /// Fire times up to here are handled.
    pub cursor: Millis,
    /// Now.
    pub now: Millis,
    /// Catch-up window.
    pub catch_up: Duration,
    /// The schedule is paused.
    pub paused: bool,
    /// Maintenance window.
    pub window: Option<Window>,
    /// The schedule's previous run is unfinished.
    pub active_run: bool,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Fires waiting in the queue.
    pub queued: i64,
}

/// One decision of a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Start a run for this fire time (or from the queue).
    Fire {
        /// The fire time (now, for a queued fire).
        fire_at: Millis,
        /// Taken from the queue.
        from_queue: bool,
    },
    /// Record this fire time as skipped.
    Skip {
        /// The fire time.
        fire_at: Millis,
        /// Why.
        reason: String,
    },
    /// Queue this fire time.
    Queue {
        /// The fire time.
        fire_at: Millis,
    },
}

/// Decides what to do with the fire times due since the cursor, and where the cursor goes.
pub fn plan_tick(schedule: &CronSchedule, input: &TickInput) -> (Vec<Plan>, Millis) {
    let mut plans = Vec::new();
    let mut cursor = input.cursor;
    let in_window = input.window.as_ref().is_none_or(|w| w.contains(input.now));
    let mut active = input.active_run;
    if !input.paused && !active && input.queued > 0 && in_window {
        plans.push(Plan::Fire {
            fire_at: input.now,
            from_queue: true,
        });
        active = true;
    }
    let catch_up = i64::try_from(input.catch_up.as_millis()).unwrap_or(i64::MAX);
    // One more than a tick handles, to know whether a later fire time is also due.
    let mut due = schedule.fire_times(input.cursor, input.now, MAX_FIRES_PER_TICK + 1);
    let beyond = (due.len() > MAX_FIRES_PER_TICK).then(|| due.pop()).flatten();
    for (i, &fire_at) in due.iter().enumerate() {
        let late = input.now - fire_at;
        // The fire times due at once (a forward clock jump, a worker that did not run)
        // coalesce into the newest one: one run for all of them, not one after another.
        let later = due.get(i + 1).copied().or(beyond);
        if input.paused {
            plans.push(Plan::Skip {
                fire_at,
                reason: "the schedule is paused".to_owned(),
            });
        } else if late > catch_up {
            let late_text = fogbook_activities::duration::format(Duration::from_millis(late.unsigned_abs()));
            let catch_up_text = fogbook_activities::duration::format(input.catch_up);
            let reason = match &input.window {
                // It waited for a window that did not open within the catch-up window: a worker
                // may well have been running all along.
                Some(w) if !w.contains(fire_at) => format!(
                    "the maintenance window ({}) was closed at the fire time and did not open within the catch-up window of {catch_up_text}",
                    w.describe()
                ),
                _ => format!(
                    "missed by {late_text} while no worker ran, more than the catch-up window of {catch_up_text}"
                ),
            };
            plans.push(Plan::Skip { fire_at, reason });
        } else if !in_window {
            // Due, but outside the maintenance window: leave it due; it starts when the
            // window opens if that is still within the catch-up window.
            break;
        } else if let Some(later) = later {
            plans.push(Plan::Skip {
                fire_at,
                reason: format!(
                    "coalesced into the later fire time {} that is also due (the clock jumped forward or no worker ran): one run starts for both",
                    fogbook_state::format_ms(later)
                ),
            });
        } else if active {
            plans.push(match input.overlap {
                Overlap::Skip => Plan::Skip {
                    fire_at,
                    reason: "the previous run of this schedule is still going (overlap: skip)".to_owned(),
                },
                Overlap::Queue => Plan::Queue { fire_at },
            });
        } else {
            plans.push(Plan::Fire {
                fire_at,
                from_queue: false,
            });
            active = true;
        }
        cursor = fire_at;
    }
    (plans, cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> Millis {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    fn iso(ms: Millis) -> String {
        to_utc(ms).unwrap().to_rfc3339()
    }

    #[test]
    fn a_time_that_does_not_exist_fires_once_after_the_gap() {
        // Europe/Amsterdam springs forward on 2026-03-29: 02:00 → 03:00 local.
        let s = CronSchedule::parse("30 2 * * *", "Europe/Amsterdam").unwrap();
        let fires = s.fire_times(ms("2026-03-27T12:00:00Z"), ms("2026-03-31T12:00:00Z"), 10);
        let got: Vec<String> = fires.into_iter().map(iso).collect();
        assert_eq!(
            got,
            [
                "2026-03-28T01:30:00+00:00", // 02:30 CET
                "2026-03-29T01:00:00+00:00", // 02:30 does not exist: 03:00 CEST, once
                "2026-03-30T00:30:00+00:00", // 02:30 CEST
                "2026-03-31T00:30:00+00:00",
            ]
        );
    }

    #[test]
    fn a_time_that_occurs_twice_fires_once() {
        // Europe/Amsterdam falls back on 2026-10-25: 03:00 CEST → 02:00 CET.
        let s = CronSchedule::parse("30 2 * * *", "Europe/Amsterdam").unwrap();
        let fires = s.fire_times(ms("2026-10-24T12:00:00Z"), ms("2026-10-26T12:00:00Z"), 10);
        let got: Vec<String> = fires.into_iter().map(iso).collect();
        assert_eq!(got, ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]);
    }

    #[test]
    fn saturday_two_am_in_amsterdam() {
        let s = CronSchedule::parse("0 2 * * 6", "Europe/Amsterdam").unwrap();
        let next: Vec<String> = s.next(ms("2026-11-26T09:00:00Z"), 2).into_iter().map(iso).collect();
        assert_eq!(next, ["2026-11-28T01:00:00+00:00", "2026-12-05T01:00:00+00:00"]);
    }

    fn input(cursor: &str, now: &str) -> TickInput {
        TickInput {
            cursor: ms(cursor),
            now: ms(now),
            catch_up: Duration::from_secs(3600),
            paused: false,
            window: None,
            active_run: false,
            overlap: Overlap::Skip,
            queued: 0,
        }
    }

    #[test]
    fn catch_up_fires_recent_misses_and_skips_older_ones() {
        let s = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        // The worker was down from 01:30 to 04:20; catch-up is 1h.
        let (plans, cursor) = plan_tick(&s, &input("2026-11-26T01:30:00Z", "2026-11-26T04:20:00Z"));
        let kinds: Vec<(String, &str)> = plans
            .iter()
            .map(|p| match p {
                Plan::Skip { fire_at, .. } => (iso(*fire_at), "skip"),
                Plan::Fire { fire_at, .. } => (iso(*fire_at), "fire"),
                Plan::Queue { fire_at } => (iso(*fire_at), "queue"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("2026-11-26T02:00:00+00:00".to_owned(), "skip"),
                ("2026-11-26T03:00:00+00:00".to_owned(), "skip"),
                ("2026-11-26T04:00:00+00:00".to_owned(), "fire"),
            ]
        );
        assert_eq!(iso(cursor), "2026-11-26T04:00:00+00:00");
        assert!(matches!(&plans[0], Plan::Skip { reason, .. } if reason.contains("catch-up window of 1h")));
    }

    #[test]
    fn overlap_skip_and_queue() {
        let s = CronSchedule::parse("*/10 * * * *", "UTC").unwrap();
        let mut i = input("2026-11-26T00:55:00Z", "2026-11-26T01:00:30Z");
        i.active_run = true;
        let (plans, _) = plan_tick(&s, &i);
        assert!(matches!(&plans[..], [Plan::Skip { reason, .. }] if reason.contains("still going")));
        i.overlap = Overlap::Queue;
        let (plans, _) = plan_tick(&s, &i);
        assert_eq!(
            plans,
            [Plan::Queue {
                fire_at: ms("2026-11-26T01:00:00Z")
            }]
        );
        // Once the previous run ended, the queued fire starts.
        i.active_run = false;
        i.queued = 1;
        i.cursor = ms("2026-11-26T01:00:00Z");
        let (plans, _) = plan_tick(&s, &i);
        assert_eq!(
            plans,
            [Plan::Fire {
                fire_at: i.now,
                from_queue: true
            }]
        );
    }

    #[test]
    fn a_window_holds_a_due_fire_until_it_opens() {
        let s = CronSchedule::parse("50 0 * * *", "UTC").unwrap();
        let mut i = input("2026-11-26T00:00:00Z", "2026-11-26T00:55:00Z");
        i.window = Some(Window::parse("01:00-05:00 UTC").unwrap());
        let (plans, cursor) = plan_tick(&s, &i);
        assert!(plans.is_empty(), "outside the window nothing starts");
        assert_eq!(cursor, i.cursor, "the fire stays due");
        i.now = ms("2026-11-26T01:00:10Z");
        let (plans, cursor) = plan_tick(&s, &i);
        assert_eq!(
            plans,
            [Plan::Fire {
                fire_at: ms("2026-11-26T00:50:00Z"),
                from_queue: false
            }]
        );
        assert_eq!(cursor, ms("2026-11-26T00:50:00Z"));
    }

    #[test]
    fn a_fire_skipped_for_a_closed_window_says_so_not_that_no_worker_ran() {
        // 12:00 is due; the window opens at 01:00 next day, beyond the 1h catch-up window.
        let s = CronSchedule::parse("0 12 * * *", "UTC").unwrap();
        let mut i = input("2026-11-26T11:00:00Z", "2026-11-26T12:00:30Z");
        i.window = Some(Window::parse("01:00-05:00 UTC").unwrap());
        let (plans, _) = plan_tick(&s, &i);
        assert!(plans.is_empty(), "it waits while within the catch-up window");
        i.now = ms("2026-11-26T13:00:30Z");
        let (plans, _) = plan_tick(&s, &i);
        let [Plan::Skip { reason, .. }] = &plans[..] else {
            panic!("{plans:?}")
        };
        assert!(
            reason.contains("maintenance window (01:00-05:00 UTC) was closed"),
            "{reason}"
        );
        assert!(!reason.contains("no worker"), "{reason}");
        // A fire inside the window that nobody fired is still blamed on the missing worker.
        let s = CronSchedule::parse("0 2 * * *", "UTC").unwrap();
        let mut i = input("2026-11-26T01:00:00Z", "2026-11-26T04:00:00Z");
        i.window = Some(Window::parse("01:00-05:00 UTC").unwrap());
        let (plans, _) = plan_tick(&s, &i);
        assert!(
            matches!(&plans[..], [Plan::Skip { reason, .. }] if reason.contains("no worker ran")),
            "{plans:?}"
        );
    }

    #[test]
    fn a_fire_outside_the_window_waits_or_is_skipped_per_catch_up() {
        let w = Window::parse("01:00-05:00 UTC").unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(outside_window(&w, hour, ms("2026-11-26T02:00:00Z")), None);
        assert_eq!(
            outside_window(&w, hour, ms("2026-11-26T00:30:00Z")),
            Some(OutsideWindow::Waits {
                until: ms("2026-11-26T01:00:00Z")
            })
        );
        assert_eq!(
            outside_window(&w, hour, ms("2026-11-26T12:00:00Z")),
            Some(OutsideWindow::Skipped)
        );
        assert_eq!(
            w.next_open(ms("2026-11-26T05:00:00Z")),
            Some(ms("2026-11-27T01:00:00Z"))
        );
    }

    #[test]
    fn windows_parse_and_cross_midnight_in_their_zone() {
        let w = Window::parse("22:00-04:00 in Europe/Amsterdam").unwrap();
        assert!(w.contains(ms("2026-11-26T22:30:00Z")), "23:30 local");
        assert!(!w.contains(ms("2026-11-26T12:00:00Z")));
        assert!(w.contains(ms("2026-11-27T02:30:00Z")), "03:30 local");
        assert_eq!(Window::from_json(&w.to_json("x")), Some(w));
        for bad in [
            "",
            "25:00-01:00",
            "01:00",
            "01:00-01:00",
            "01:00-02:00 Mars/Olympus",
            "1-2 UTC extra",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    fn counts(plans: &[Plan]) -> (usize, usize, usize) {
        let fire = plans.iter().filter(|p| matches!(p, Plan::Fire { .. })).count();
        let queue = plans.iter().filter(|p| matches!(p, Plan::Queue { .. })).count();
        let coalesced = plans
            .iter()
            .filter(|p| matches!(p, Plan::Skip { reason, .. } if reason.contains("coalesced")))
            .count();
        (fire, queue, coalesced)
    }

    /// A 600 s forward jump on a 5-second schedule with `overlap: queue` while a run is
    /// going: the 120 fire times due at once queue one run, not 120 back to back.
    #[test]
    fn fires_due_at_once_after_a_forward_jump_queue_one_run() {
        let s = CronSchedule::parse("*/5 * * * * *", "UTC").unwrap();
        let mut i = input("2026-11-26T01:00:00Z", "2026-11-26T01:10:00Z");
        i.overlap = Overlap::Queue;
        i.active_run = true;
        let (first, cursor) = plan_tick(&s, &i);
        assert_eq!(counts(&first), (0, 0, 100), "a later fire time is beyond this tick");
        i.cursor = cursor;
        let (second, cursor) = plan_tick(&s, &i);
        assert_eq!(counts(&second), (0, 1, 19));
        assert_eq!(
            second.last(),
            Some(&Plan::Queue {
                fire_at: ms("2026-11-26T01:10:00Z")
            }),
            "the newest fire time is the one kept"
        );
        assert_eq!(cursor, i.now);
        i.cursor = cursor;
        assert!(plan_tick(&s, &i).0.is_empty(), "nothing is left due");
    }

    /// The same jump with no run going starts one run, for the newest fire time.
    #[test]
    fn fires_due_at_once_after_a_forward_jump_start_one_run() {
        let s = CronSchedule::parse("*/5 * * * * *", "UTC").unwrap();
        let i = input("2026-11-26T01:00:00Z", "2026-11-26T01:01:00Z");
        let (plans, cursor) = plan_tick(&s, &i);
        assert_eq!(counts(&plans), (1, 0, 11));
        assert_eq!(
            plans.last(),
            Some(&Plan::Fire {
                fire_at: ms("2026-11-26T01:01:00Z"),
                from_queue: false
            })
        );
        assert_eq!(cursor, i.now);
    }

    #[test]
    fn paused_schedules_record_skips() {
        let s = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        let mut i = input("2026-11-26T00:30:00Z", "2026-11-26T01:00:05Z");
        i.paused = true;
        let (plans, _) = plan_tick(&s, &i);
        assert!(matches!(&plans[..], [Plan::Skip { reason, .. }] if reason.contains("paused")));
    }
}
