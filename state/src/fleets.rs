// Over 600 lines on purpose: each fleet transition sits beside the audit event it writes, one transaction each.
//! Fleets: one runbook over many targets with rate control. The store keeps the fleet's
//! pinned file, its targets and its decisions, and applies each decision atomically with the
//! audit event that records it (stream `fleet:<id>`); the decisions themselves (which target
//! starts next, when the fleet stops) are the engine's (`engine/src/fleet/`).
//!
//! Invariant: a target's run is created in the same transaction that links it to the target
//! and marks the target started, under the fleet's lease. A target is therefore started at
//! most once, whatever the moment its driver is killed.

use serde_json::json;

use crate::audit::{self, FLEET_STREAM, GENESIS, NewEvent};
use crate::error::SqlContext;
use crate::sql::{self, OptionalExt, Row, Tx, params};
use crate::store::insert_run;
use crate::{Millis, NewRun, RunStatus, StateError, Store, format_ms};

/// A fleet to create.
#[derive(Clone, Debug)]
pub struct NewFleet {
    /// A fresh id (UUID v7).
    pub id: String,
    /// `fleet:` name.
    pub name: String,
    /// Where the fleet file was read from.
    pub source_path: Option<String>,
    /// The fleet file's exact text (pinned).
    pub fleet_text: String,
    /// The decisions' parameters (rate control, waves), as the engine reads them back.
    pub spec: serde_json::Value,
    /// The runbook's name.
    pub runbook_name: String,
    /// The runbook's exact text (pinned: every target runs this text).
    pub runbook_text: String,
    /// Where the runbook was read from.
    pub runbook_source: Option<String>,
    /// The targets, in order.
    pub targets: Vec<NewFleetTarget>,
    /// Who asked.
    pub created_by: serde_json::Value,
    /// The driver's lease, taken at creation: (owner, expiry).
    pub lease: Option<(String, Millis)>,
    /// Now.
    pub now: Millis,
}

/// One target of a new fleet.
#[derive(Clone, Debug)]
pub struct NewFleetTarget {
    /// Its name (unique in the fleet).
    pub name: String,
    /// Its wave (0 is the canary wave when there is one).
    pub wave: u32,
    /// The run's resolved parameters.
    pub params: serde_json::Value,
}

/// A stored fleet.
#[derive(Clone, Debug)]
pub struct FleetRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Where the fleet file was read from.
    pub source_path: Option<String>,
    /// The pinned fleet file.
    pub fleet_text: String,
    /// Rate control and waves.
    pub spec: serde_json::Value,
    /// The runbook's name.
    pub runbook_name: String,
    /// The pinned runbook text.
    pub runbook_text: String,
    /// Where the runbook was read from.
    pub runbook_source: Option<String>,
    /// `running`, `waiting` (for an approval between waves, or for target runs that wait),
    /// `succeeded`, `failed` (stopped by its error budget or a failed canary), `cancelled`.
    pub status: String,
    /// Why it stopped or waits.
    pub reason: Option<String>,
    /// The highest wave an operator approved (waves up to it may start).
    pub approved_wave: u32,
    /// An operator asked to cancel: no new target starts.
    pub cancel_requested: bool,
    /// The driver's lease.
    pub lease_owner: Option<String>,
    /// Its expiry.
    pub lease_expires_at: Option<Millis>,
    /// Who asked.
    pub created_by: serde_json::Value,
    /// Created.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// A stored target, with its run's status.
#[derive(Clone, Debug)]
pub struct FleetTargetRow {
    /// Position in the fleet.
    pub idx: u32,
    /// Name.
    pub name: String,
    /// Wave.
    pub wave: u32,
    /// The run's parameters.
    pub params: serde_json::Value,
    /// Its run, once started.
    pub run_id: Option<String>,
    /// `pending`, `running`, `waiting`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    /// The run's own status, once started.
    pub run_status: Option<RunStatus>,
    /// When it started.
    pub started_at: Option<Millis>,
    /// When the fleet recorded its end.
    pub ended_at: Option<Millis>,
}

/// A fleet and its targets, read in one transaction.
#[derive(Clone, Debug)]
pub struct FleetSnapshot {
    /// The fleet.
    pub fleet: FleetRow,
    /// Its targets, in order.
    pub targets: Vec<FleetTargetRow>,
}

pub(crate) fn sha256_of(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn stream(id: &str) -> String {
    format!("{FLEET_STREAM}{id}")
}

const FLEET_COLUMNS: &str = "id, name, source_path, fleet_text, spec, runbook_name, runbook_text, runbook_source,
     status, reason, approved_wave, cancel_requested, lease_owner, lease_expires_at, created_by, created_at, updated_at";

fn corrupt(what: &'static str) -> impl FnOnce(serde_json::Error) -> StateError {
    move |source| StateError::Corrupt { what, source }
}

fn fleet_row(r: &Row) -> sql::Result<(FleetRow, String, String)> {
    Ok((
        FleetRow {
            id: r.get(0)?,
            name: r.get(1)?,
            source_path: r.get(2)?,
            fleet_text: r.get(3)?,
            spec: serde_json::Value::Null,
            runbook_name: r.get(5)?,
            runbook_text: r.get(6)?,
            runbook_source: r.get(7)?,
            status: r.get(8)?,
            reason: r.get(9)?,
            approved_wave: r.get(10)?,
            cancel_requested: r.get(11)?,
            lease_owner: r.get(12)?,
            lease_expires_at: r.get(13)?,
            created_by: serde_json::Value::Null,
            created_at: r.get(15)?,
            updated_at: r.get(16)?,
        },
        r.get(4)?,
        r.get(14)?,
    ))
}

fn load_fleet_row(conn: &dyn Tx, id: &str) -> Result<FleetRow, StateError> {
    let raw = conn
        .query_row(
            &format!("SELECT {FLEET_COLUMNS} FROM fleets WHERE id = ?1"),
            params![id],
            fleet_row,
        )
        .optional()
        .during("reading a fleet")?
        .ok_or_else(|| StateError::UnknownFleet {
            fleet_id: id.to_owned(),
        })?;
    let (mut row, spec, by) = raw;
    row.spec = serde_json::from_str(&spec).map_err(corrupt("fleet spec"))?;
    row.created_by = serde_json::from_str(&by).map_err(corrupt("fleet created_by"))?;
    Ok(row)
}

fn load_targets(conn: &dyn Tx, id: &str) -> Result<Vec<FleetTargetRow>, StateError> {
    let raw: Vec<(FleetTargetRow, String, Option<String>)> = conn
        .query_map(
            "SELECT t.idx, t.name, t.wave, t.params, t.run_id, t.status, r.status, t.started_at, t.ended_at
             FROM fleet_targets t LEFT JOIN runs r ON r.id = t.run_id
             WHERE t.fleet_id = ?1 ORDER BY t.idx",
            params![id],
            |r| {
                Ok((
                    FleetTargetRow {
                        idx: r.get(0)?,
                        name: r.get(1)?,
                        wave: r.get(2)?,
                        params: serde_json::Value::Null,
                        run_id: r.get(4)?,
                        status: r.get(5)?,
                        run_status: None,
                        started_at: r.get(7)?,
                        ended_at: r.get(8)?,
                    },
                    r.get(3)?,
                    r.get(6)?,
                ))
            },
        )
        .during("reading a fleet's targets")?;
    raw.into_iter()
        .map(|(mut t, params, run_status)| {
            t.params = serde_json::from_str(&params).map_err(corrupt("fleet target params"))?;
            t.run_status = run_status
                .map(|s| s.parse())
                .transpose()
                .map_err(|message| StateError::CorruptValue {
                    what: "fleet target run status",
                    message,
                })?;
            Ok(t)
        })
        .collect()
}

/// The key of a fleet's lease epoch in the store's map of held epochs.
fn epoch_key(id: &str) -> String {
    stream(id)
}

/// The fleet's lease epoch (raised by every takeover).
fn fleet_epoch(tx: &dyn Tx, id: &str) -> Result<i64, StateError> {
    tx.query_row("SELECT lease_epoch FROM fleets WHERE id = ?1", params![id], |r| {
        r.get(0)
    })
    .optional()
    .during("reading a fleet's lease")?
    .ok_or_else(|| StateError::UnknownFleet {
        fleet_id: id.to_owned(),
    })
}

/// Fails with [`StateError::LeaseLost`] unless `owner` holds the fleet's lease now, at the
/// epoch this store took it at (`held`; `None`: the owner alone is checked).
/// `now` is the caller's clock; expiry is decided by [`Tx::lease_now`] (the database
/// server's clock on PostgreSQL), as run leases are.
fn check_lease(tx: &dyn Tx, id: &str, owner: &str, held: Option<i64>, now: Millis) -> Result<(), StateError> {
    let now = tx.lease_now(now).during("reading the database's clock")?;
    let fleet = load_fleet_row(tx, id)?;
    let epoch = fleet_epoch(tx, id)?;
    if held.is_some_and(|h| h != epoch) {
        return Err(StateError::LeaseLost {
            run_id: stream(id),
            owner: format!(
                "{} (the lease was taken over: epoch {epoch}, this process holds {})",
                fleet.lease_owner.as_deref().unwrap_or("nobody"),
                held.unwrap_or_default()
            ),
        });
    }
    match (&fleet.lease_owner, fleet.lease_expires_at) {
        (Some(o), Some(exp)) if o == owner && exp > now => Ok(()),
        (held, _) => Err(StateError::LeaseLost {
            run_id: stream(id),
            owner: held.clone().unwrap_or_else(|| "nobody".to_owned()),
        }),
    }
}

/// The clock fleet leases are decided by (the database server's on PostgreSQL, the caller's
/// on SQLite) and, on it, the expiry the caller asked for as `expires_at` by its own clock
/// `now`: a lease lasts as long as asked, whatever the caller's clock says the time is.
fn lease_clock(tx: &dyn Tx, expires_at: Millis, now: Millis) -> Result<(Millis, Millis), StateError> {
    let lease_now = tx.lease_now(now).during("reading the database's clock")?;
    Ok((lease_now, lease_now + (expires_at - now)))
}

fn touch(tx: &dyn Tx, id: &str, now: Millis) -> Result<(), StateError> {
    tx.execute("UPDATE fleets SET updated_at = ?2 WHERE id = ?1", params![id, now])
        .during("updating a fleet")?;
    Ok(())
}

/// Inserts a fleet, its targets (all `pending`) and the first event of its stream, in `tx`
/// (a schedule's fire creates its fleet in the transaction that advances the schedule).
pub(crate) fn insert_fleet(tx: &dyn Tx, fleet: &NewFleet) -> Result<(), StateError> {
    let (owner, expires) = fleet.lease.clone().unzip();
    let expires = match expires {
        Some(at) => Some(lease_clock(tx, at, fleet.now)?.1),
        None => None,
    };
    tx.execute(
        "INSERT INTO fleets (id, name, source_path, fleet_text, spec, runbook_name, runbook_text, runbook_source,
                                 status, lease_owner, lease_expires_at, created_by, created_at, updated_at,
                                 audit_head, audit_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', ?9, ?10, ?11, ?12, ?12, ?13, 0)",
        params![
            fleet.id,
            fleet.name,
            fleet.source_path,
            fleet.fleet_text,
            fleet.spec.to_string(),
            fleet.runbook_name,
            fleet.runbook_text,
            fleet.runbook_source,
            owner,
            expires,
            fleet.created_by.to_string(),
            fleet.now,
            GENESIS,
        ],
    )
    .during("creating a fleet")?;
    for (idx, t) in fleet.targets.iter().enumerate() {
        tx.execute(
            "INSERT INTO fleet_targets (fleet_id, idx, name, wave, params, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
            params![fleet.id, idx as i64, t.name, t.wave, t.params.to_string()],
        )
        .during("creating a fleet's targets")?;
    }
    let targets: Vec<_> = fleet
        .targets
        .iter()
        .map(|t| json!({ "name": t.name, "wave": t.wave }))
        .collect();
    audit::append(
        tx,
        &stream(&fleet.id),
        fleet.now,
        NewEvent::run(
            "fleet.created",
            json!({
                "name": fleet.name,
                "runbook": fleet.runbook_name,
                "runbook_sha256": sha256_of(&fleet.runbook_text),
                "fleet_sha256": sha256_of(&fleet.fleet_text),
                "spec": fleet.spec,
                "targets": targets,
                "by": fleet.created_by,
                "owner": owner,
            }),
        ),
    )
}

impl Store {
    /// Creates a fleet, its targets (all `pending`) and the first event of its stream.
    pub async fn create_fleet(&self, fleet: NewFleet) -> Result<(), StateError> {
        let lease = fleet
            .lease
            .as_ref()
            .map(|(owner, _)| (epoch_key(&fleet.id), owner.clone()));
        self.write(move |tx| insert_fleet(tx, &fleet)).await?;
        if let Some((key, owner)) = lease {
            // A new fleet's lease is at epoch 0 (the column's default).
            self.hold_epoch(&key, &owner, 0);
        }
        Ok(())
    }

    /// A fleet and its targets.
    pub async fn load_fleet(&self, id: &str) -> Result<FleetSnapshot, StateError> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(FleetSnapshot {
                fleet: load_fleet_row(conn, &id)?,
                targets: load_targets(conn, &id)?,
            })
        })
        .await
    }

    /// Every fleet, newest first.
    pub async fn list_fleets(&self) -> Result<Vec<FleetRow>, StateError> {
        self.read(move |conn| {
            let ids: Vec<String> = conn
                .query_map(
                    "SELECT id FROM fleets ORDER BY created_at DESC, id DESC",
                    params![],
                    |r| r.get(0),
                )
                .during("listing fleets")?;
            ids.iter().map(|id| load_fleet_row(conn, id)).collect()
        })
        .await
    }

    /// Takes the fleet's lease for `owner` until `expires_at`: when it is free, expired,
    /// already `owner`'s, or held by `dead_owner` (a process the caller proved gone).
    pub async fn acquire_fleet_lease(
        &self,
        id: &str,
        owner: &str,
        expires_at: Millis,
        dead_owner: Option<String>,
        now: Millis,
    ) -> Result<Option<String>, StateError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        let held = self.held_epoch(&epoch_key(&id), &owner);
        let (key, holder) = (epoch_key(&id), owner.clone());
        let (previous, epoch) = self
            .write(move |tx| {
                crate::moved::refuse_new_work(tx)?;
                let fleet = load_fleet_row(tx, &id)?;
                let current_epoch = fleet_epoch(tx, &id)?;
                let (lease_now, expires_at) = lease_clock(tx, expires_at, now)?;
                let previous = match (&fleet.lease_owner, fleet.lease_expires_at) {
                    (Some(current), _) if *current == owner => None,
                    (Some(current), Some(exp)) => {
                        if exp > lease_now && dead_owner.as_deref() != Some(current.as_str()) {
                            return Err(StateError::FleetLeaseHeld {
                                fleet_id: id.clone(),
                                owner: current.clone(),
                                expires_at: format_ms(exp),
                            });
                        }
                        Some(current.clone())
                    }
                    _ => None,
                };
                // A new epoch unless this store already holds the current one.
                let raise = !(fleet.lease_owner.as_deref() == Some(owner.as_str()) && held == Some(current_epoch));
                let epoch: i64 = tx
                    .query_row(
                        "UPDATE fleets SET lease_owner = ?2, lease_expires_at = ?3, updated_at = ?4,
                            status = CASE WHEN status = 'waiting' THEN 'running' ELSE status END,
                            lease_epoch = lease_epoch + ?5
                     WHERE id = ?1 RETURNING lease_epoch",
                        params![id, owner, expires_at, now, i64::from(raise)],
                        |r| r.get(0),
                    )
                    .during("taking a fleet's lease")?;
                let data = match &previous {
                    Some(p) => json!({ "owner": owner, "previous_owner": p }),
                    None => json!({ "owner": owner }),
                };
                let kind = if previous.is_some() {
                    "fleet.lease_taken_over"
                } else {
                    "fleet.lease_acquired"
                };
                audit::append(tx, &stream(&id), now, NewEvent::run(kind, data))?;
                Ok((previous, epoch))
            })
            .await?;
        self.hold_epoch(&key, &holder, epoch);
        Ok(previous)
    }

    /// Extends the fleet's lease held by `owner` (not an audit event: it decides nothing).
    /// Refused once the store was moved (`fogbook store copy`): the fleet lives in the copy,
    /// so its driver here stops, as a run's driver does.
    pub async fn renew_fleet_lease(
        &self,
        id: &str,
        owner: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<(), StateError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        let held = self.held_epoch(&epoch_key(&id), &owner);
        self.write(move |tx| {
            if let Some(mark) = crate::moved::current(tx)?.filter(|m| m.done) {
                return Err(StateError::StoreMoved { mark });
            }
            check_lease(tx, &id, &owner, held, now)?;
            let (_, expires_at) = lease_clock(tx, expires_at, now)?;
            tx.execute(
                "UPDATE fleets SET lease_expires_at = ?2 WHERE id = ?1",
                params![id, expires_at],
            )
            .during("renewing a fleet's lease")?;
            Ok(())
        })
        .await
    }

    /// Gives the fleet's lease up, if `owner` holds it.
    pub async fn release_fleet_lease(&self, id: &str, owner: &str, now: Millis) -> Result<(), StateError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.drop_epoch(&epoch_key(&id));
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE fleets SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ?3
                     WHERE id = ?1 AND lease_owner = ?2",
                    params![id, owner, now],
                )
                .during("releasing a fleet's lease")?;
            if n > 0 {
                audit::append(
                    tx,
                    &stream(&id),
                    now,
                    NewEvent::run("fleet.lease_released", json!({ "owner": owner })),
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Starts target `idx`: creates its run and links it, in one transaction, under the
    /// fleet's lease. Refused when the target already started (whatever the caller believed).
    pub async fn start_fleet_target(
        &self,
        id: &str,
        idx: u32,
        owner: &str,
        run: NewRun,
        running_after: usize,
    ) -> Result<(), StateError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        let held = self.held_epoch(&epoch_key(&id), &owner);
        self.write(move |tx| {
            crate::moved::refuse_new_work(tx)?;
            let now = run.now;
            check_lease(tx, &id, &owner, held, now)?;
            let (name, status): (String, String) = tx
                .query_row(
                    "SELECT name, status FROM fleet_targets WHERE fleet_id = ?1 AND idx = ?2",
                    params![id, idx],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .during("reading a fleet target")?
                .ok_or_else(|| StateError::InvalidTransition {
                    message: format!("fleet {id} has no target #{idx}"),
                })?;
            if status != "pending" {
                return Err(StateError::InvalidTransition {
                    message: format!("target `{name}` of fleet {id} has already started ({status})"),
                });
            }
            insert_run(tx, &run)?;
            tx.execute(
                "UPDATE fleet_targets SET run_id = ?3, status = 'running', started_at = ?4
                 WHERE fleet_id = ?1 AND idx = ?2",
                params![id, idx, run.id, now],
            )
            .during("starting a fleet target")?;
            touch(tx, &id, now)?;
            audit::append(
                tx,
                &stream(&id),
                now,
                NewEvent::run(
                    "fleet.target_started",
                    json!({ "target": name, "idx": idx, "run_id": run.id, "running": running_after }),
                ),
            )
        })
        .await
    }

    /// Records what became of target `idx`'s run (`succeeded`, `failed`, `waiting`,
    /// `cancelled`, or `running` again after a wait), under the fleet's lease.
    pub async fn finish_fleet_target(
        &self,
        id: &str,
        idx: u32,
        owner: &str,
        status: &str,
        detail: serde_json::Value,
        now: Millis,
    ) -> Result<(), StateError> {
        let (id, owner, status) = (id.to_owned(), owner.to_owned(), status.to_owned());
        let held = self.held_epoch(&epoch_key(&id), &owner);
        self.write(move |tx| {
            check_lease(tx, &id, &owner, held, now)?;
            let (name, before): (String, String) = tx
                .query_row(
                    "SELECT name, status FROM fleet_targets WHERE fleet_id = ?1 AND idx = ?2",
                    params![id, idx],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .during("reading a fleet target")?;
            if before == status {
                return Ok(());
            }
            let ended = matches!(status.as_str(), "succeeded" | "failed" | "cancelled").then_some(now);
            tx.execute(
                "UPDATE fleet_targets SET status = ?3, ended_at = ?4 WHERE fleet_id = ?1 AND idx = ?2",
                params![id, idx, status, ended],
            )
            .during("recording a fleet target's end")?;
            touch(tx, &id, now)?;
            audit::append(
                tx,
                &stream(&id),
                now,
                NewEvent::run(
                    "fleet.target_finished",
                    json!({ "target": name, "idx": idx, "status": status, "detail": detail }),
                ),
            )
        })
        .await
    }

    /// Records a decision of the fleet's driver (`kind`, e.g. `fleet.stopping`) and, when
    /// given, its new status and reason, under the fleet's lease.
    pub async fn fleet_decision(
        &self,
        id: &str,
        owner: &str,
        kind: &'static str,
        status: Option<&'static str>,
        reason: Option<String>,
        now: Millis,
    ) -> Result<(), StateError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        let held = self.held_epoch(&epoch_key(&id), &owner);
        self.write(move |tx| {
            check_lease(tx, &id, &owner, held, now)?;
            if let Some(s) = status {
                tx.execute(
                    "UPDATE fleets SET status = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
                    params![id, s, reason, now],
                )
                .during("recording a fleet decision")?;
            } else {
                touch(tx, &id, now)?;
            }
            audit::append(
                tx,
                &stream(&id),
                now,
                NewEvent::run(kind, json!({ "status": status, "reason": reason })),
            )
        })
        .await
    }

    /// An operator's approval of wave `wave` (waves up to it may start).
    pub async fn approve_fleet_wave(&self, id: &str, wave: u32, by: &str, now: Millis) -> Result<(), StateError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let fleet = load_fleet_row(tx, &id)?;
            if matches!(fleet.status.as_str(), "succeeded" | "failed" | "cancelled") {
                return Err(StateError::InvalidTransition {
                    message: format!("fleet {id} has already ended ({})", fleet.status),
                });
            }
            tx.execute(
                "UPDATE fleets SET approved_wave = CASE WHEN approved_wave > ?2 THEN approved_wave ELSE ?2 END, updated_at = ?3 WHERE id = ?1",
                params![id, wave, now],
            )
            .during("approving a fleet wave")?;
            audit::append(
                tx,
                &stream(&id),
                now,
                NewEvent::run("fleet.wave_approved", json!({ "wave": wave, "by": by })),
            )
        })
        .await
    }

    /// An operator's request to cancel the fleet: no new target starts, and the fleet asks
    /// each running target's run to stop at its next safe point.
    pub async fn request_fleet_cancel(&self, id: &str, by: &str, now: Millis) -> Result<(), StateError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let fleet = load_fleet_row(tx, &id)?;
            if matches!(fleet.status.as_str(), "succeeded" | "failed" | "cancelled") {
                return Err(StateError::InvalidTransition {
                    message: format!("fleet {id} has already ended ({})", fleet.status),
                });
            }
            tx.execute(
                "UPDATE fleets SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .during("cancelling a fleet")?;
            audit::append(
                tx,
                &stream(&id),
                now,
                NewEvent::run("fleet.cancel_requested", json!({ "by": by })),
            )
        })
        .await
    }
}
