//! What a run's page shows, read from the store: [`RunView`], and how its status and waits
//! are named.

use std::collections::BTreeMap;
use std::time::Duration;

use fogbook_state::{AuditReport, EventRow, Millis, RunSnapshot, StateError, Store, format_ms};

/// A duration for people: `850ms`, `2.3s`, `4m 10s`.
pub(crate) fn human(ms: Millis) -> String {
    let d = Duration::from_millis(ms.max(0).unsigned_abs());
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    if d < Duration::from_secs(60) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    fogbook_activities::duration::format(Duration::from_secs(d.as_secs()))
}

/// Everything a run's page shows, read from the store at one moment.
pub(crate) struct RunView {
    pub(crate) snap: RunSnapshot,
    pub(crate) events: Vec<EventRow>,
    /// The activity of each step, from the pinned runbook.
    uses: BTreeMap<String, String>,
    /// `limits.max_unprotected` of the pinned runbook.
    pub(crate) max_unprotected: Option<Duration>,
    /// The audit chain of this run verified at `now`, or why it could not be.
    pub(crate) audit: Result<AuditReport, String>,
    pub(crate) now: Millis,
    /// The lease clock the page judges "stalled" by, as `status` does.
    pub(crate) clock: PageClock,
    /// Simulated seconds per real second, for a rehearsal on the emulator (`run --sim`).
    pub(crate) sim_scale: Option<f64>,
}

/// The clocks a page is read at: this host's (`now`, for ages and durations) and the lease
/// clock (`lease_now`, the database server's on PostgreSQL) with the lease period, by which
/// a run is shown `stalled` exactly when `status` says so ([`crate::report::drive_of_run`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageClock {
    pub(crate) now: Millis,
    pub(crate) lease_now: Millis,
    pub(crate) lease_ttl: Duration,
}

impl PageClock {
    /// Reads the lease clock of `store` ([`Store::lease_now`]) at this host's `now`.
    pub(crate) async fn read(store: &Store, now: Millis, lease_ttl: Duration) -> Result<Self, StateError> {
        Ok(Self {
            now,
            lease_now: store.lease_now(now).await?,
            lease_ttl,
        })
    }
}

impl RunView {
    /// Reads a run, its events and the verification of its chain (reads only).
    pub(crate) async fn load(store: &Store, run_id: &str, clock: PageClock) -> Result<Self, StateError> {
        Self::read(store, run_id, clock, true).await
    }

    /// Reads a run without its events or chain verification (the runs list, every second).
    pub(crate) async fn load_summary(store: &Store, run_id: &str, clock: PageClock) -> Result<Self, StateError> {
        Self::read(store, run_id, clock, false).await
    }

    async fn read(store: &Store, run_id: &str, clock: PageClock, whole: bool) -> Result<Self, StateError> {
        let now = clock.now;
        let snap = store.load_run(run_id).await?;
        let (events, audit) = if whole {
            let events = store.events(run_id).await?;
            (
                events,
                store.verify_audit(Some(run_id)).await.map_err(|e| e.to_string()),
            )
        } else {
            (Vec::new(), Err("not read".to_owned()))
        };
        let (uses, max_unprotected) = match fogbook_engine::runbook::parse(&snap.run.runbook_text, "pinned runbook") {
            Ok(rb) => (
                rb.steps
                    .iter()
                    .map(|s| (s.id.to_string(), s.uses.to_string()))
                    .collect(),
                rb.limits.max_unprotected,
            ),
            Err(_) => (BTreeMap::new(), None),
        };
        let sim_scale = events
            .iter()
            .find(|e| e.kind == "run.created")
            .and_then(|e| e.data.get("by")?.get("rehearsal")?.get("time_scale")?.as_f64())
            .filter(|s| s.is_finite() && *s > 0.0);
        Ok(Self {
            sim_scale,
            snap,
            events,
            uses,
            max_unprotected,
            audit,
            now,
            clock,
        })
    }

    /// The activity a step uses (`?` when the pinned runbook no longer parses).
    pub(crate) fn uses(&self, step: &str) -> &str {
        self.uses.get(step).map_or("?", String::as_str)
    }

    /// A real duration followed by its simulated length in a rehearsal: `2.3s (2h 18m simulated)`.
    pub(crate) fn dur(&self, ms: Millis) -> String {
        match self.sim_simulated(ms) {
            Some(sim) => format!("{} ({sim} simulated)", human(ms)),
            None => human(ms),
        }
    }

    /// How long `ms` of real time is in the rehearsal's simulated time.
    pub(crate) fn sim_simulated(&self, ms: Millis) -> Option<String> {
        let scale = self.sim_scale?;
        Some(human((ms as f64 * scale).min(Millis::MAX as f64) as Millis))
    }

    /// The real time in which a rehearsal's simulated clock covers `ms` (`ms` itself
    /// outside rehearsals): where a limit stated in simulated time falls on the chart.
    pub(crate) fn real_of_simulated(&self, ms: Millis) -> Millis {
        match self.sim_scale {
            Some(scale) => (ms as f64 / scale) as Millis,
            None => ms,
        }
    }

    /// The right end of the time axis: the run's end, or now.
    pub(crate) fn end(&self) -> Millis {
        self.snap
            .run
            .finished_at
            .unwrap_or(self.now)
            .max(self.snap.run.created_at)
    }
}

/// The status to show: `stalled` for a run nobody drives (marked running with its lease
/// expired by the lease clock or its driver exited, or stopped with an unprotected window
/// open; `fogbook resume` or the worker continues it), decided as `status` decides it
/// ([`crate::report::drive_of_run`]).
pub(crate) fn shown_status(snap: &RunSnapshot, clock: &PageClock) -> &'static str {
    crate::report::drive_of_run(snap, clock.lease_now, clock.lease_ttl).label(snap.run.status)
}

/// Why a run is not moving, when it waits.
pub(crate) fn waiting_reason(view: &RunView) -> Option<String> {
    let run = &view.snap.run;
    if let Some(e) = run.error.as_ref().filter(|e| e.get("waiting_for").is_some()) {
        return Some(format!(
            "waiting for {} ({}) before step {}",
            e["waiting_for"].as_str().unwrap_or("?"),
            e["window"].as_str().unwrap_or("?"),
            e["step"].as_str().unwrap_or("?")
        ));
    }
    let current = view.snap.steps.iter().find(|s| !s.status.is_done())?;
    if view.uses(&current.step_id) == "approval" && !view.snap.approvals.iter().any(|a| a.step_id == current.step_id) {
        return Some(format!("waiting for approval of step {}", current.step_id));
    }
    if let Some(next) = current.next_attempt_at.filter(|n| *n > view.now) {
        return Some(format!(
            "step {} retries at {} (in {})",
            current.step_id,
            format_ms(next),
            human(next - view.now)
        ));
    }
    None
}
