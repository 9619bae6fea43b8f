//! Fleets fired by schedules and driven by workers.
//!
//! A schedule whose pinned file is a fleet file fires a fleet instead of a run: the fleet is
//! created (without a lease) in the transaction that advances the schedule, and a worker
//! drives it like any fleet nobody drives. A fleet waiting for its maintenance window is
//! driven again once the window is open.

use std::collections::BTreeSet;

use fogbook_state::{FireDecision, Millis, ScheduleRow};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::driver::{CreateFleet, FleetOutcome, WINDOW_WAIT, drive_fleet, new_fleet};
use super::file::{self, RateControl};
use crate::runbook::{Diagnostic, Diagnostics, Runbook};
use crate::schedule::Window;
use crate::{Engine, EngineError, owner};

/// The decision that fires schedule `s`'s fleet at `fire_at`: the fleet file pinned to the
/// schedule, its targets resolved against the schedule's pinned runbook `rb`. The schedule's
/// maintenance window becomes the fleet's when the file has none.
pub fn fire_decision(
    engine: &Engine,
    s: &ScheduleRow,
    rb: &Runbook,
    fire_at: Millis,
    from_queue: bool,
) -> Result<FireDecision, EngineError> {
    let origin = format!("fleet pinned to schedule {}", s.name);
    let Some(fleet) = &s.fleet else {
        return Err(EngineError::Invalid(Diagnostics(vec![Diagnostic {
            origin,
            line: None,
            column: None,
            path: String::new(),
            message: "this schedule fires a run, not a fleet".to_owned(),
        }])));
    };
    let file = file::parse(&fleet.text, &origin).map_err(EngineError::Invalid)?;
    if let Some(q) = &file.query {
        return Err(EngineError::Invalid(Diagnostics(vec![Diagnostic {
            origin,
            line: None,
            column: None,
            path: "targets.query".to_owned(),
            message: format!(
                "a schedule fires fleets whose targets are listed; this one queries {} (list the targets, e.g. from `fogbook fleet plan`)",
                q.describe()
            ),
        }])));
    }
    let params = file.resolve(rb).map_err(EngineError::Invalid)?;
    let window = s
        .window
        .as_ref()
        .and_then(|w| w.get("text"))
        .and_then(|t| t.as_str())
        .map(str::to_owned);
    let new = new_fleet(
        engine,
        CreateFleet {
            file: &file,
            fleet_text: &fleet.text,
            source_path: fleet.source_path.clone(),
            runbook: rb,
            runbook_text: &s.runbook_text,
            runbook_source: s.source_path.clone(),
            params,
            created_by: json!({
                "schedule": s.name,
                "fire_at": fogbook_state::format_ms(fire_at),
                "worker": engine.owner().as_str(),
            }),
            lease_ttl: engine.lease_ttl(),
        },
        window,
        None,
    );
    Ok(FireDecision::FireFleet {
        fire_at,
        fleet: Box::new(new),
        from_queue,
    })
}

/// Whether `text` is a fleet file rather than a runbook (its first key is `fleet:`), for
/// `schedule add`, which takes either.
pub fn is_fleet_file(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("---"))
        .is_some_and(|l| l.starts_with("fleet:"))
}

/// Fleets a worker should drive now: those nobody live drives that are running, or that
/// wait for their maintenance window while it is open.
pub async fn drivable_fleets(engine: &Engine, active: &BTreeSet<String>) -> Result<Vec<String>, EngineError> {
    let now = engine.now_ms();
    // Whether a lease has expired is decided by the clock leases are written by (the
    // database server's on PostgreSQL), not this host's.
    let lease_now = engine.store().lease_now(now).await?;
    let mut out = Vec::new();
    for f in engine.store().list_fleets().await? {
        if active.contains(&f.id) {
            continue;
        }
        let free = match (&f.lease_owner, f.lease_expires_at) {
            (None, _) | (_, None) => true,
            (Some(o), Some(exp)) => exp <= lease_now || owner::is_dead(o),
        };
        if !free {
            continue;
        }
        let wanted = match f.status.as_str() {
            "running" => true,
            "waiting" => {
                f.reason.as_deref().is_some_and(|r| r.starts_with(WINDOW_WAIT))
                    && serde_json::from_value::<RateControl>(f.spec["rate"].clone())
                        .ok()
                        .and_then(|r| r.window)
                        .and_then(|w| Window::parse(&w).ok())
                        .is_some_and(|w| w.contains(now))
            }
            _ => false,
        };
        if wanted {
            out.push(f.id);
        }
    }
    // Oldest first (the store lists newest first).
    out.reverse();
    Ok(out)
}

/// The newest fleet schedule `schedule` fired that is still running or waiting (the
/// schedule's overlap policy sees it as its unfinished run).
pub async fn active_fleet_of(engine: &Engine, schedule: &str) -> Result<Option<String>, EngineError> {
    Ok(engine
        .store()
        .list_fleets()
        .await?
        .into_iter()
        .find(|f| {
            matches!(f.status.as_str(), "running" | "waiting")
                && f.created_by.get("schedule").and_then(|v| v.as_str()) == Some(schedule)
        })
        .map(|f| f.id))
}

/// Drives fleet `id` for a worker until it ends, waits or `stop` is cancelled; logs how.
pub async fn drive_for_worker(engine: &Engine, id: &str, stop: CancellationToken) {
    match drive_fleet(engine, id, engine.lease_ttl(), stop).await {
        Ok(FleetOutcome::Waiting { reason }) => tracing::info!(fleet_id = %id, %reason, "worker: fleet waits"),
        Ok(outcome) => tracing::info!(fleet_id = %id, ?outcome, "worker: fleet stopped"),
        Err(EngineError::State(fogbook_state::StateError::FleetLeaseHeld { owner, .. })) => {
            tracing::debug!(fleet_id = %id, %owner, "worker: fleet taken");
        }
        Err(e) => tracing::error!(fleet_id = %id, error = %e, "worker: driving a fleet failed"),
    }
}
