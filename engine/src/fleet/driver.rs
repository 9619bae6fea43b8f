//! The fleet's durable driver.
//!
//! A fleet's reasons (stored with it) name their next command as `fogbook SUBCOMMAND …`,
//! without a `--db`: whoever prints one gives it its own invocation's prefix (the CLI's
//! `output::commands`), so the stored text is right for every reader of the store.

use std::collections::BTreeSet;
use std::time::Duration;

use fogbook_state::{FleetSnapshot, FleetTargetRow, Millis, NewFleet, NewFleetTarget, StateError};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::file::{FleetFile, RateControl};
use crate::runbook::{self, Runbook};
use crate::schedule::Window;
use crate::{CreateRun, Engine, EngineError, RunOutcome, failpoint, owner};

/// What a call of [`drive_fleet`] ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetOutcome {
    /// Every target succeeded.
    Succeeded,
    /// The fleet ended with failed targets (`reason` says whether it stopped early).
    Failed {
        /// Why.
        reason: String,
    },
    /// The fleet waits: for an approval between waves, or for targets whose runs wait.
    Waiting {
        /// For what.
        reason: String,
    },
    /// An operator cancelled it.
    Cancelled,
    /// This driver stopped (a signal, a lost lease, a target another process drives); the
    /// fleet is resumable.
    Interrupted {
        /// Why.
        reason: String,
    },
}

/// A fleet to create: the validated file, its runbook and each target's parameters.
#[derive(Debug)]
pub struct CreateFleet<'a> {
    /// The fleet file.
    pub file: &'a FleetFile,
    /// Its exact text.
    pub fleet_text: &'a str,
    /// Where it was read from.
    pub source_path: Option<String>,
    /// The runbook.
    pub runbook: &'a Runbook,
    /// Its exact text.
    pub runbook_text: &'a str,
    /// Where it was read from.
    pub runbook_source: Option<String>,
    /// Each target's resolved parameters (`FleetFile::resolve`).
    pub params: Vec<serde_json::Value>,
    /// Who asked.
    pub created_by: serde_json::Value,
    /// The lease's time to live (the creating process drives the fleet).
    pub lease_ttl: Duration,
}

/// How a fleet waiting for its maintenance window says so (the start of its reason); the
/// worker resumes such a fleet once the window is open.
pub const WINDOW_WAIT: &str = "outside its maintenance window";

/// How often a driver waiting for its targets reads the fleet again (for a cancellation).
const RECHECK: Duration = Duration::from_millis(500);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Pins the fleet, its runbook and its targets, and takes its lease. Returns its id.
pub async fn create_fleet(engine: &Engine, req: CreateFleet<'_>) -> Result<String, EngineError> {
    let lease = Some((engine.owner().to_string(), engine.now_ms() + ms(req.lease_ttl)));
    let fleet = new_fleet(engine, req, None, lease);
    let id = fleet.id.clone();
    engine.store().create_fleet(fleet).await?;
    Ok(id)
}

/// The row [`create_fleet`] inserts: a fresh id, the targets in their waves, the rate
/// control (with `window` when the file has none of its own) as the driver reads it back.
pub(crate) fn new_fleet(
    engine: &Engine,
    req: CreateFleet<'_>,
    window: Option<String>,
    lease: Option<(String, Millis)>,
) -> NewFleet {
    let id = uuid::Uuid::now_v7().to_string();
    let now = engine.now_ms();
    let mut rate = req.file.rate.clone();
    if rate.window.is_none() {
        rate.window = window;
    }
    let waves = req.file.waves();
    let targets = req
        .file
        .targets
        .iter()
        .zip(req.params)
        .zip(waves)
        .map(|((t, params), wave)| NewFleetTarget {
            name: t.name.clone(),
            wave,
            params,
        })
        .collect();
    NewFleet {
        id,
        name: req.file.name.clone(),
        source_path: req.source_path,
        fleet_text: req.fleet_text.to_owned(),
        spec: json!({ "rate": rate }),
        runbook_name: req.runbook.name.clone(),
        runbook_text: req.runbook_text.to_owned(),
        runbook_source: req.runbook_source,
        targets,
        created_by: req.created_by,
        lease,
        now,
    }
}

fn ended(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

fn holds_slot(status: &str) -> bool {
    matches!(status, "running" | "waiting")
}

/// Renews the fleet's lease every third of its time to live; cancels `lost` when it cannot.
async fn heartbeat(engine: Engine, id: String, ttl: Duration, lost: CancellationToken) {
    let owner = engine.owner().to_string();
    loop {
        tokio::select! {
            () = tokio::time::sleep(ttl / 3) => {}
            () = lost.cancelled() => return,
        }
        let now = engine.now_ms();
        if let Err(e) = engine.store().renew_fleet_lease(&id, &owner, now + ms(ttl), now).await {
            tracing::warn!(error = %e, "could not renew the fleet's lease; stopping");
            lost.cancel();
            return;
        }
    }
}

struct Driver<'e> {
    engine: &'e Engine,
    id: String,
    owner: String,
    runbook: Runbook,
    runbook_text: String,
    rate: RateControl,
    set: JoinSet<(u32, Result<RunOutcome, EngineError>)>,
    driving: BTreeSet<u32>,
    /// Targets this driver could not drive (another process holds their run); not retried
    /// by this call.
    stuck: BTreeSet<u32>,
    token: CancellationToken,
}

/// Drives fleet `id` until it ends, waits, or `stop` is cancelled. Takes the fleet's lease
/// first (a dead process's lease at once, a live one's only once expired).
pub async fn drive_fleet(
    engine: &Engine,
    id: &str,
    lease_ttl: Duration,
    stop: CancellationToken,
) -> Result<FleetOutcome, EngineError> {
    let store = engine.store();
    let snap = store.load_fleet(id).await?;
    if ended(&snap.fleet.status) {
        return Ok(final_outcome(&snap));
    }
    let owner = engine.owner().to_string();
    let dead = snap.fleet.lease_owner.clone().filter(|o| owner::is_dead(o));
    let now = engine.now_ms();
    store
        .acquire_fleet_lease(id, &owner, now + ms(lease_ttl), dead, now)
        .await?;
    let runbook = runbook::parse(&snap.fleet.runbook_text, &format!("runbook pinned to fleet {id}"))
        .map_err(EngineError::Invalid)?;
    let rate: RateControl =
        serde_json::from_value(snap.fleet.spec["rate"].clone()).map_err(|source| StateError::Corrupt {
            what: "fleet spec",
            source,
        })?;
    let token = stop.child_token();
    let beat = tokio::spawn(heartbeat(engine.clone(), id.to_owned(), lease_ttl, token.clone()));
    let mut driver = Driver {
        engine,
        id: id.to_owned(),
        owner,
        runbook,
        runbook_text: snap.fleet.runbook_text.clone(),
        rate,
        set: JoinSet::new(),
        driving: BTreeSet::new(),
        stuck: BTreeSet::new(),
        token: token.clone(),
    };
    let result = driver.run().await;
    // Whatever happened, no target run is left driven by a task of this call.
    token.cancel();
    while driver.set.join_next().await.is_some() {}
    beat.abort();
    let _ = store.release_fleet_lease(id, &driver.owner, engine.now_ms()).await;
    result
}

fn final_outcome(snap: &FleetSnapshot) -> FleetOutcome {
    let reason = snap.fleet.reason.clone().unwrap_or_default();
    match snap.fleet.status.as_str() {
        "succeeded" => FleetOutcome::Succeeded,
        "cancelled" => FleetOutcome::Cancelled,
        "waiting" => FleetOutcome::Waiting { reason },
        _ => FleetOutcome::Failed { reason },
    }
}

impl Driver<'_> {
    async fn run(&mut self) -> Result<FleetOutcome, EngineError> {
        let store = self.engine.store().clone();
        let mut first_pass = true;
        let mut stopping_recorded = false;
        let mut cancel_sent = false;
        loop {
            let snap = store.load_fleet(&self.id).await?;
            let total = snap.targets.len();
            // Started targets nobody drives here: their runs resume (a waiting one only on
            // the first pass, when an operator may have approved it since).
            let mut recorded = false;
            for t in &snap.targets {
                if !holds_slot(&t.status) || self.driving.contains(&t.idx) || self.stuck.contains(&t.idx) {
                    continue;
                }
                let Some(run_id) = t.run_id.clone() else { continue };
                match t.run_status {
                    Some(s) if s.is_terminal() => {
                        self.record(t, s.as_str(), json!({ "run_status": s.as_str() })).await?;
                        recorded = true;
                    }
                    _ if t.status == "running" || first_pass => self.spawn_drive(t.idx, run_id),
                    _ => {}
                }
            }
            first_pass = false;
            if recorded {
                continue;
            }
            let failed = snap.targets.iter().filter(|t| t.status == "failed").count();
            let busy = snap.targets.iter().filter(|t| holds_slot(&t.status)).count();
            let threshold = self.rate.max_errors.threshold(total);
            let canary_failed =
                self.rate.canary > 0 && snap.targets.iter().any(|t| t.wave == 0 && t.status == "failed");
            let stop_reason = if snap.fleet.cancel_requested {
                Some("cancelled by an operator".to_owned())
            } else if canary_failed {
                Some("the canary wave failed: no further target starts".to_owned())
            } else if failed >= threshold {
                Some(format!(
                    "{failed} target{} failed (max_errors {threshold}): no further target starts; the running ones finish",
                    if failed == 1 { "" } else { "s" }
                ))
            } else {
                None
            };
            if let Some(reason) = &stop_reason
                && !stopping_recorded
                && snap.targets.iter().any(|t| t.status == "pending")
            {
                store
                    .fleet_decision(
                        &self.id,
                        &self.owner,
                        "fleet.stopping",
                        None,
                        Some(reason.clone()),
                        self.engine.now_ms(),
                    )
                    .await?;
                stopping_recorded = true;
            }
            if snap.fleet.cancel_requested && !cancel_sent {
                cancel_sent = true;
                for t in snap.targets.iter().filter(|t| holds_slot(&t.status)) {
                    if let Some(run) = &t.run_id {
                        // A run this process drives stops at its next safe point; one
                        // nobody drives is cancelled at once.
                        let _ = store.cancel(run, "fleet", None, self.engine.now_ms()).await;
                    }
                }
            }
            // Outside the maintenance window no target starts; the running ones finish.
            let closed = self.closed_window();
            if let Some((window, until)) = &closed
                && stop_reason.is_none()
                && self.set.is_empty()
                && snap.targets.iter().any(|t| t.status == "pending")
            {
                let reason = format!(
                    "{WINDOW_WAIT} ({}): no target starts until it opens at {}; a `fogbook worker` resumes the fleet then (or: fogbook fleet resume {})",
                    window.describe(),
                    until.map_or_else(|| "an unknown time".to_owned(), fogbook_state::format_ms),
                    self.id
                );
                store
                    .fleet_decision(
                        &self.id,
                        &self.owner,
                        "fleet.waiting_for_window",
                        Some("waiting"),
                        Some(reason.clone()),
                        self.engine.now_ms(),
                    )
                    .await?;
                return Ok(FleetOutcome::Waiting { reason });
            }
            if stop_reason.is_none() && closed.is_none() && !self.token.is_cancelled() {
                let current = snap.targets.iter().filter(|t| !ended(&t.status)).map(|t| t.wave).min();
                if let Some(wave) = current {
                    let first_wave = snap.targets.iter().map(|t| t.wave).min().unwrap_or(0);
                    let pending: Vec<&FleetTargetRow> = snap
                        .targets
                        .iter()
                        .filter(|t| t.wave == wave && t.status == "pending")
                        .collect();
                    let needs_approval = self.rate.approval && wave > first_wave && snap.fleet.approved_wave < wave;
                    if !pending.is_empty() && needs_approval {
                        if busy == 0 {
                            let reason = format!(
                                "wave {wave} waits for approval: fogbook fleet resume {} --approve --by NAME",
                                self.id
                            );
                            store
                                .fleet_decision(
                                    &self.id,
                                    &self.owner,
                                    "fleet.waiting_for_approval",
                                    Some("waiting"),
                                    Some(reason.clone()),
                                    self.engine.now_ms(),
                                )
                                .await?;
                            return Ok(FleetOutcome::Waiting { reason });
                        }
                    } else {
                        let mut running = busy;
                        let mut started = false;
                        for t in pending {
                            if running >= self.rate.max_concurrency as usize {
                                break;
                            }
                            running += 1;
                            self.start(t, running).await?;
                            started = true;
                        }
                        if started {
                            continue;
                        }
                    }
                }
            }
            if self.set.is_empty() {
                return self.finish(&snap, stop_reason).await;
            }
            tokio::select! {
                joined = self.set.join_next() => {
                    let Some(joined) = joined else { continue };
                    let (idx, result) = joined.map_err(|e| EngineError::internal(format!("a target's driver task ended abnormally: {e}")))?;
                    self.driving.remove(&idx);
                    self.outcome(&snap, idx, result).await?;
                }
                () = self.token.cancelled() => {
                    return Ok(FleetOutcome::Interrupted {
                        reason: "stopped at a safe point".to_owned(),
                    });
                }
                // An operator's request (a cancellation) is read from the store, not
                // signalled: look again now and then even while no target ends.
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// The fleet's maintenance window and when it next opens, if it is closed now.
    fn closed_window(&self) -> Option<(Window, Option<Millis>)> {
        let window = Window::parse(self.rate.window.as_deref()?).ok()?;
        let now = self.engine.now_ms();
        (!window.contains(now)).then(|| {
            let until = window.next_open(now);
            (window, until)
        })
    }

    /// Starts target `t`: its run is created and linked in one transaction, then driven.
    async fn start(&mut self, t: &FleetTargetRow, running_after: usize) -> Result<(), EngineError> {
        failpoint::hit_named("fleet-before-start", &t.name);
        let new = self.engine.prepare_run(CreateRun {
            params: t.params.clone(),
            auto_approve: self.rate.auto_approve,
            take_lease: true,
            created_by: json!({ "fleet": self.id, "target": t.name, "command": "fleet" }),
            ..CreateRun::new(&self.runbook, &self.runbook_text)
        })?;
        let run_id = new.id.clone();
        self.engine
            .store()
            .start_fleet_target(&self.id, t.idx, &self.owner, new, running_after)
            .await
            .map_err(EngineError::State)?;
        failpoint::hit_named("fleet-after-start", &t.name);
        tracing::info!(target_name = %t.name, run_id = %run_id, "fleet: target started");
        self.spawn_drive(t.idx, run_id);
        Ok(())
    }

    fn spawn_drive(&mut self, idx: u32, run_id: String) {
        self.driving.insert(idx);
        let engine = self.engine.clone();
        let token = self.token.child_token();
        self.set.spawn(async move { (idx, engine.drive(&run_id, token).await) });
    }

    async fn record(&self, t: &FleetTargetRow, status: &str, detail: serde_json::Value) -> Result<(), EngineError> {
        self.engine
            .store()
            .finish_fleet_target(&self.id, t.idx, &self.owner, status, detail, self.engine.now_ms())
            .await?;
        failpoint::hit_named("fleet-after-finish", &t.name);
        Ok(())
    }

    async fn outcome(
        &mut self,
        snap: &FleetSnapshot,
        idx: u32,
        result: Result<RunOutcome, EngineError>,
    ) -> Result<(), EngineError> {
        let Some(t) = snap.targets.iter().find(|t| t.idx == idx) else {
            return Ok(());
        };
        let (status, detail) = match result {
            Ok(RunOutcome::Succeeded) => ("succeeded", json!({})),
            Ok(RunOutcome::Failed { step, code, message }) => {
                ("failed", json!({ "step": step, "code": code, "message": message }))
            }
            Ok(RunOutcome::Waiting { step, message }) => ("waiting", json!({ "step": step, "message": message })),
            Ok(RunOutcome::OutsideWindow { step, window }) => ("waiting", json!({ "step": step, "window": window })),
            Ok(RunOutcome::Cancelled) => ("cancelled", json!({})),
            Ok(RunOutcome::Interrupted) => return Ok(()),
            Err(e) => {
                tracing::warn!(target_name = %t.name, error = %e, "fleet: could not drive a target's run");
                self.stuck.insert(idx);
                return Ok(());
            }
        };
        self.record(t, status, detail).await
    }

    async fn finish(&mut self, snap: &FleetSnapshot, stop_reason: Option<String>) -> Result<FleetOutcome, EngineError> {
        let store = self.engine.store();
        let now = self.engine.now_ms();
        if self.token.is_cancelled() {
            return Ok(FleetOutcome::Interrupted {
                reason: "stopped at a safe point".to_owned(),
            });
        }
        if !self.stuck.is_empty() {
            let names: Vec<&str> = snap
                .targets
                .iter()
                .filter(|t| self.stuck.contains(&t.idx))
                .map(|t| t.name.as_str())
                .collect();
            return Ok(FleetOutcome::Interrupted {
                reason: format!(
                    "the runs of {} could not be driven (another process holds them); resume the fleet when they are free",
                    names.join(", ")
                ),
            });
        }
        let waiting: Vec<&str> = snap
            .targets
            .iter()
            .filter(|t| t.status == "waiting")
            .map(|t| t.name.as_str())
            .collect();
        if !waiting.is_empty() {
            let reason = format!(
                "the runs of {} wait (an approval or a maintenance window); approve them, then fogbook fleet resume {}",
                waiting.join(", "),
                self.id
            );
            store
                .fleet_decision(
                    &self.id,
                    &self.owner,
                    "fleet.waiting",
                    Some("waiting"),
                    Some(reason.clone()),
                    now,
                )
                .await?;
            return Ok(FleetOutcome::Waiting { reason });
        }
        let failed = snap.targets.iter().filter(|t| t.status == "failed").count();
        let not_started = snap.targets.iter().filter(|t| t.status == "pending").count();
        let (status, outcome) = if snap.fleet.cancel_requested {
            ("cancelled", FleetOutcome::Cancelled)
        } else if failed > 0 || stop_reason.is_some() {
            let mut reason = stop_reason.unwrap_or_else(|| format!("{failed} target(s) failed"));
            if not_started > 0 {
                reason.push_str(&format!("; {not_started} target(s) not started"));
            }
            ("failed", FleetOutcome::Failed { reason })
        } else {
            ("succeeded", FleetOutcome::Succeeded)
        };
        let reason = match &outcome {
            FleetOutcome::Failed { reason } => Some(reason.clone()),
            _ => None,
        };
        store
            .fleet_decision(&self.id, &self.owner, "fleet.finished", Some(status), reason, now)
            .await?;
        Ok(outcome)
    }
}
