//! Who drives a run and what it waits for, as the views name it.

use std::time::Duration;

use fogbook_state::{Millis, RunSnapshot, format_ms};

use super::shared::lasted;

/// Whether anybody drives a run: a live driver renewing its lease, or nobody.
#[derive(Debug, PartialEq)]
pub(crate) enum Drive {
    /// A driver holds an unexpired lease and its process is not known to be gone.
    Running { owner: String, until: Millis },
    /// The run is `running`, but its lease expired or its holder's process is gone.
    Stalled { since: Millis, why: String },
    /// Not meant to be driven now (pending for a worker, waiting, finished).
    Idle,
}

impl Drive {
    /// `running`, `stalled`, or the stored status.
    pub(crate) fn label(&self, status: fogbook_state::RunStatus) -> &'static str {
        match self {
            Drive::Stalled { .. } => "stalled",
            _ => status.as_str(),
        }
    }
}

/// Sets the stall fields of a run's JSON document, one shape for `status` and `runs`:
/// `stalled` (true or false), and while it is true `stalled_since` (RFC 3339),
/// `stalled_since_ms` and `stalled_why` (null otherwise).
pub(crate) fn set_stall_json(doc: &mut serde_json::Value, drive: &Drive) {
    let (stalled, since, why) = match drive {
        Drive::Stalled { since, why } => (true, Some(*since), Some(why.clone())),
        _ => (false, None, None),
    };
    doc["stalled"] = serde_json::json!(stalled);
    doc["stalled_since"] = serde_json::json!(since.map(format_ms));
    doc["stalled_since_ms"] = serde_json::json!(since);
    doc["stalled_why"] = serde_json::json!(why);
}

/// The time leases are judged by: the database server's clock on PostgreSQL (every host's
/// leases are written by it), `now` on SQLite. Pass it to [`drive_of_run`].
pub(crate) async fn lease_clock(store: &fogbook_state::Store, now: Millis) -> Result<Millis, crate::exit::Exit> {
    store.lease_now(now).await.map_err(crate::error::fail)
}

/// [`lease_clock`] at this host's clock now (shifted by `FOGBOOK_TEST_CLOCK_FILE` in tests):
/// for the commands that decide by a run's lease whether its driver is live (`resume`, the
/// operator actions' hints) as `status` does.
pub(crate) async fn lease_clock_now(store: &fogbook_state::Store) -> Result<Millis, crate::exit::Exit> {
    lease_clock(store, fogbook_engine::Clock::now_ms(&*crate::schedule_cmd::clock())).await
}

/// [`Drive`] from the run row alone at `now` by the lease clock ([`lease_clock`]): `lease_ttl`
/// estimates when an expired or orphaned lease was last renewed (the time since which nobody
/// drives the run). Only [`drive_of_run`] calls it: a row alone does not see a stopped run's
/// open window.
fn drive_of(r: &fogbook_state::RunRow, now: Millis, lease_ttl: Duration) -> Drive {
    if r.status != fogbook_state::RunStatus::Running {
        return Drive::Idle;
    }
    let ttl = i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX);
    match (&r.lease_owner, r.lease_expires_at) {
        (Some(owner), Some(until)) if fogbook_engine::owner::is_dead(owner) => Drive::Stalled {
            since: until.saturating_sub(ttl).max(r.updated_at).min(now),
            why: format!("its driver {owner} has exited"),
        },
        (Some(owner), Some(until)) if until > now => Drive::Running {
            owner: owner.clone(),
            until,
        },
        (Some(owner), Some(until)) => Drive::Stalled {
            since: until.saturating_sub(ttl).max(r.updated_at).min(until),
            why: format!("the lease of {owner} expired at {}", format_ms(until)),
        },
        _ => Drive::Stalled {
            since: r.updated_at,
            why: "no process holds its lease".to_owned(),
        },
    }
}

/// Who drives a run, the one decision every view and command makes (`status`, `runs`, the
/// pages, `resume`, the operator commands): [`drive_of`] of its row, and a run stopped at a
/// safe point (Ctrl-C, SIGTERM: `pending`, no lease) with an unprotected window open is
/// stalled too: nobody drives it, and nothing closes the window until someone resumes it,
/// exactly as after a crash.
pub(crate) fn drive_of_run(snap: &RunSnapshot, now: Millis, lease_ttl: Duration) -> Drive {
    let r = &snap.run;
    let open_unprotected = || {
        snap.windows
            .iter()
            .filter(|w| w.closed_at.is_none() && w.kind == fogbook_state::WindowKind::Unprotected)
            .map(|w| w.opened_at)
            .max()
    };
    if r.status == fogbook_state::RunStatus::Pending
        && r.lease_owner.is_none()
        && let Some(opened) = open_unprotected()
    {
        return Drive::Stalled {
            since: r.updated_at.max(opened).min(now),
            why: "it was stopped (Ctrl-C, SIGTERM, a lost lease) with an unprotected window open".to_owned(),
        };
    }
    drive_of(r, now, lease_ttl)
}

/// The open unprotected windows of a run, as text naming whose databases.
pub(super) fn open_unprotected(
    snap: &RunSnapshot,
    now: Millis,
    rehearsal: Option<&crate::rehearsal::Rehearsal>,
) -> Vec<String> {
    snap.windows
        .iter()
        .filter(|w| w.closed_at.is_none() && w.kind == fogbook_state::WindowKind::Unprotected)
        .map(|w| {
            let whose = w.subject.as_deref().unwrap_or("the instance");
            format!(
                "the databases of {whose} have no geo-replica since {} ({})",
                format_ms(w.opened_at),
                lasted(now - w.opened_at, rehearsal)
            )
        })
        .collect()
}

/// The current step and what the run waits for (approval, maintenance window, an operation,
/// a back-off), from its snapshot.
pub(crate) fn waits_for(snap: &RunSnapshot, now: Millis) -> (Option<String>, String) {
    use fogbook_state::{RunStatus, StepStatus};
    let current = snap.steps.iter().find(|s| !s.status.is_done());
    let step = current.map(|s| s.step_id.clone());
    let uses = |id: &str| -> Option<String> {
        fogbook_engine::runbook::parse(&snap.run.runbook_text, "pinned runbook")
            .ok()
            .and_then(|rb| rb.step(id).map(|s| s.uses.clone()))
    };
    if snap.run.status.is_terminal() {
        return (None, "-".to_owned());
    }
    if let Some(e) = &snap.run.error
        && e.get("waiting_for").is_some()
    {
        return (
            step,
            format!("maintenance window {}", e["window"].as_str().unwrap_or("")),
        );
    }
    let Some(cur) = current else {
        return (step, "-".to_owned());
    };
    if let Some(next) = cur.next_attempt_at
        && next > now
    {
        return (step, format!("back-off until {}", format_ms(next)));
    }
    if cur.status == StepStatus::Running {
        let approved = snap.approvals.iter().any(|a| a.step_id == cur.step_id);
        match uses(&cur.step_id).as_deref() {
            Some("approval") if !approved => return (step, "approval".to_owned()),
            // Stopped inside the step (Ctrl-C, SIGTERM): nobody polls its timer or operation.
            _ if snap.run.status == RunStatus::Pending && snap.run.lease_owner.is_none() => {
                return (step, "a driver (resume)".to_owned());
            }
            Some("wait") => return (step, "a timer".to_owned()),
            Some(u) if fogbook_activities::needs_arm(u) && cur.progress.is_some() => {
                return (step, "an ARM operation".to_owned());
            }
            _ => {}
        }
    }
    if snap.run.status == RunStatus::Waiting {
        return (step, "approval".to_owned());
    }
    (step, "-".to_owned())
}

/// Whether a run waits for an approval, however it is driven (status `waiting`, or a
/// foreground `--wait` driver at an approval step).
pub(crate) fn waits_for_approval(snap: &RunSnapshot, now: Millis) -> bool {
    waits_for(snap, now).1 == "approval"
}
