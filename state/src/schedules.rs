//! Schedules: pinned runbook and parameters fired by a cron expression. The store keeps
//! them and applies a worker's decisions atomically; the decisions themselves (which fire
//! times are due, catch-up, windows, overlap) are the engine's.

use serde_json::json;

use crate::audit::{self, GENESIS, NewEvent, SCHEDULE_STREAM};
use crate::error::SqlContext;
use crate::sql::{self, OptionalExt, Row, Tx, params};
use crate::store::insert_run;
use crate::{
    FireDecision, FireOutcome, Millis, NewSchedule, Overlap, Repin, ScheduleFleet, ScheduleRow, StateError, Store,
    format_ms,
};

fn stream(name: &str) -> String {
    format!("{SCHEDULE_STREAM}{name}")
}

const COLUMNS: &str = "name, cron, tz, runbook_name, runbook_text, runbook_sha256, source_path, params, overlap,
     catch_up_ms, \"window\", auto_approve, paused, created_at, updated_at, cursor_at, queued, version,
     (SELECT id FROM runs r WHERE r.schedule_name = s.name AND r.status IN ('pending', 'running', 'waiting')
      ORDER BY created_at DESC LIMIT 1),
     (SELECT fleet_text FROM schedule_fleets sf WHERE sf.schedule_name = s.name),
     (SELECT fleet_source FROM schedule_fleets sf WHERE sf.schedule_name = s.name)";

fn row(r: &Row) -> sql::Result<(ScheduleRow, String, Option<String>, String)> {
    Ok((
        ScheduleRow {
            name: r.get(0)?,
            cron: r.get(1)?,
            tz: r.get(2)?,
            runbook_name: r.get(3)?,
            runbook_text: r.get(4)?,
            runbook_sha256: r.get(5)?,
            source_path: r.get(6)?,
            params: serde_json::Value::Null,
            overlap: Overlap::Skip,
            catch_up_ms: r.get(9)?,
            window: None,
            auto_approve: r.get(11)?,
            paused: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
            cursor_at: r.get(15)?,
            queued: r.get(16)?,
            version: r.get(17)?,
            active_run: r.get(18)?,
            fleet: match r.get::<Option<String>>(19)? {
                Some(text) => Some(ScheduleFleet {
                    text,
                    source_path: r.get(20)?,
                }),
                None => None,
            },
        },
        r.get(7)?,
        r.get(10)?,
        r.get(8)?,
    ))
}

fn finish(raw: (ScheduleRow, String, Option<String>, String)) -> Result<ScheduleRow, StateError> {
    let (mut s, params, window, overlap) = raw;
    s.params = serde_json::from_str(&params).map_err(|source| StateError::Corrupt {
        what: "schedule params",
        source,
    })?;
    s.window = window
        .map(|w| serde_json::from_str(&w))
        .transpose()
        .map_err(|source| StateError::Corrupt {
            what: "schedule window",
            source,
        })?;
    s.overlap = overlap.parse().map_err(|message| StateError::CorruptValue {
        what: "schedule overlap",
        message,
    })?;
    Ok(s)
}

fn load(conn: &dyn Tx, name: &str) -> Result<ScheduleRow, StateError> {
    let raw = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM schedules s WHERE name = ?1 AND removed = 0"),
            params![name],
            row,
        )
        .optional()
        .during("reading a schedule")?;
    match raw {
        Some(raw) => finish(raw),
        None => Err(StateError::InvalidTransition {
            message: format!("no schedule named `{name}`"),
        }),
    }
}

impl Store {
    /// Creates a schedule; its first fire time is the first one after `now`.
    pub async fn add_schedule(&self, s: NewSchedule) -> Result<(), StateError> {
        self.write(move |tx| {
            let exists: bool = tx
                .query_row(
                    "SELECT count(*) FROM schedules WHERE name = ?1",
                    params![&s.name],
                    |r| r.get(0),
                )
                .during("checking schedule names")?;
            if exists {
                return Err(StateError::InvalidTransition {
                    message: format!("a schedule named `{}` already exists (names are never reused)", s.name),
                });
            }
            tx.execute(
                "INSERT INTO schedules (name, cron, tz, runbook_name, runbook_text, runbook_sha256, source_path, params,
                                        overlap, catch_up_ms, \"window\", auto_approve, created_at, updated_at, cursor_at,
                                        audit_head, audit_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?13, ?14, 0)",
                params![
                    s.name,
                    s.cron,
                    s.tz,
                    s.runbook_name,
                    s.runbook_text,
                    s.runbook_sha256,
                    s.source_path,
                    s.params.to_string(),
                    s.overlap.as_str(),
                    s.catch_up_ms,
                    s.window.as_ref().map(ToString::to_string),
                    s.auto_approve,
                    s.now,
                    GENESIS,
                ],
            )
            .during("creating a schedule")?;
            if let Some(f) = &s.fleet {
                tx.execute(
                    "INSERT INTO schedule_fleets (schedule_name, fleet_text, fleet_source) VALUES (?1, ?2, ?3)",
                    params![s.name, f.text, f.source_path],
                )
                .during("pinning a schedule's fleet")?;
            }
            audit::append(
                tx,
                &stream(&s.name),
                s.now,
                NewEvent::run(
                    "schedule.created",
                    json!({
                        "cron": s.cron, "tz": s.tz, "runbook": s.runbook_name, "sha256": s.runbook_sha256,
                        "params": s.params, "overlap": s.overlap, "catch_up_ms": s.catch_up_ms,
                        "window": s.window, "auto_approve": s.auto_approve, "by": s.created_by,
                        "fleet": s.fleet.as_ref().map(|f| json!({ "source": f.source_path, "sha256": crate::fleets::sha256_of(&f.text) })),
                    }),
                ),
            )
        })
        .await
    }

    /// Re-pins a schedule's runbook text and parameters (audited).
    pub async fn repin_schedule(&self, name: &str, repin: Repin) -> Result<(), StateError> {
        let name = name.to_owned();
        let Repin {
            runbook_name,
            runbook_text,
            runbook_sha256,
            params,
            by,
            now,
        } = repin;
        self.write(move |tx| {
            let old = load(tx, &name)?;
            tx.execute(
                "UPDATE schedules SET runbook_name = ?2, runbook_text = ?3, runbook_sha256 = ?4, params = ?5, updated_at = ?6
                 WHERE name = ?1",
                params![name, runbook_name, runbook_text, runbook_sha256, params.to_string(), now],
            )
            .during("re-pinning a schedule")?;
            audit::append(
                tx,
                &stream(&name),
                now,
                NewEvent::run(
                    "schedule.updated",
                    json!({ "old_sha256": old.runbook_sha256, "sha256": runbook_sha256, "params": params, "by": by }),
                ),
            )
        })
        .await
    }

    /// Pauses or resumes a schedule (audited). Fire times that pass while it is paused are
    /// skipped when it resumes.
    pub async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        by: String,
        now: Millis,
    ) -> Result<(), StateError> {
        let name = name.to_owned();
        self.write(move |tx| {
            load(tx, &name)?;
            tx.execute(
                "UPDATE schedules SET paused = ?2, updated_at = ?3 WHERE name = ?1",
                params![name, paused, now],
            )
            .during("pausing a schedule")?;
            let kind = if paused { "schedule.paused" } else { "schedule.resumed" };
            audit::append(tx, &stream(&name), now, NewEvent::run(kind, json!({ "by": by })))
        })
        .await
    }

    /// Removes a schedule. Its audit trail stays (the row is kept, marked removed).
    pub async fn remove_schedule(&self, name: &str, by: String, now: Millis) -> Result<(), StateError> {
        let name = name.to_owned();
        self.write(move |tx| {
            load(tx, &name)?;
            tx.execute(
                "UPDATE schedules SET removed = 1, updated_at = ?2 WHERE name = ?1",
                params![name, now],
            )
            .during("removing a schedule")?;
            audit::append(
                tx,
                &stream(&name),
                now,
                NewEvent::run("schedule.removed", json!({ "by": by })),
            )
        })
        .await
    }

    /// One schedule.
    pub async fn schedule(&self, name: &str) -> Result<ScheduleRow, StateError> {
        let name = name.to_owned();
        self.read(move |conn| load(conn, &name)).await
    }

    /// All schedules (not removed), by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StateError> {
        self.read(|conn| {
            let raws = conn
                .query_map(
                    &format!("SELECT {COLUMNS} FROM schedules s WHERE removed = 0 ORDER BY name"),
                    params![],
                    row,
                )
                .during("listing schedules")?;
            raws.into_iter().map(finish).collect()
        })
        .await
    }

    /// Applies a worker's decisions for one schedule, if nobody else has changed the
    /// schedule since the worker read it (`expected_version` still matches): creates runs,
    /// records skips and queued fires, and moves the cursor to `new_cursor`, all in one
    /// transaction. Returns `None` when another worker got there first. A fire whose
    /// resource is locked by another run is recorded as skipped, naming that run.
    pub async fn apply_schedule_tick(
        &self,
        name: &str,
        expected_version: i64,
        new_cursor: Millis,
        decisions: Vec<FireDecision>,
        now: Millis,
    ) -> Result<Option<Vec<FireOutcome>>, StateError> {
        let name = name.to_owned();
        self.write(move |tx| {
            crate::moved::refuse_new_work(tx)?;
            // Compare-and-set on a version that every tick bumps, so two workers that read the
            // same schedule cannot both act on it, even when the cursor does not move (a fire
            // taken from the queue).
            let changed = tx
                .execute(
                    "UPDATE schedules SET cursor_at = ?3, version = version + 1 WHERE name = ?1 AND version = ?2",
                    params![name, expected_version, new_cursor],
                )
                .during("advancing a schedule")?;
            if changed == 0 {
                return Ok(None);
            }
            let mut outcomes = Vec::new();
            for d in decisions {
                outcomes.push(apply(tx, &name, d, now)?);
            }
            Ok(Some(outcomes))
        })
        .await
    }
}

fn apply(tx: &dyn Tx, name: &str, decision: FireDecision, now: Millis) -> Result<FireOutcome, StateError> {
    let s = stream(name);
    match decision {
        FireDecision::Skip { fire_at, reason } => {
            audit::append(
                tx,
                &s,
                now,
                NewEvent::run(
                    "schedule.skipped",
                    json!({ "fire_at": format_ms(fire_at), "reason": reason }),
                ),
            )?;
            Ok(FireOutcome::Skipped { reason })
        }
        FireDecision::Queue { fire_at } => {
            tx.execute(
                "UPDATE schedules SET queued = queued + 1 WHERE name = ?1",
                params![name],
            )
            .during("queueing a fire")?;
            audit::append(
                tx,
                &s,
                now,
                NewEvent::run(
                    "schedule.queued",
                    json!({ "fire_at": format_ms(fire_at), "reason": "the previous run is still going" }),
                ),
            )?;
            Ok(FireOutcome::Queued)
        }
        FireDecision::FireFleet {
            fire_at,
            fleet,
            from_queue,
        } => {
            crate::fleets::insert_fleet(tx, &fleet)?;
            if from_queue {
                tx.execute(
                    "UPDATE schedules SET queued = CASE WHEN queued > 0 THEN queued - 1 ELSE 0 END WHERE name = ?1",
                    params![name],
                )
                .during("draining the queue")?;
            }
            audit::append(
                tx,
                &s,
                now,
                NewEvent::run(
                    "schedule.fired",
                    json!({ "fire_at": format_ms(fire_at), "fleet_id": fleet.id, "from_queue": from_queue }),
                ),
            )?;
            Ok(FireOutcome::FiredFleet { fleet_id: fleet.id })
        }
        FireDecision::Fire {
            fire_at,
            run,
            from_queue,
        } => {
            // A savepoint, so a lock conflict undoes the half-created run but not the tick.
            tx.execute("SAVEPOINT fire", params![]).during("firing")?;
            match insert_run(tx, &run) {
                Ok(()) => {
                    tx.execute("RELEASE fire", params![]).during("firing")?;
                    if from_queue {
                        tx.execute(
                            "UPDATE schedules SET queued = CASE WHEN queued > 0 THEN queued - 1 ELSE 0 END WHERE name = ?1",
                            params![name],
                        )
                        .during("draining the queue")?;
                    }
                    audit::append(
                        tx,
                        &s,
                        now,
                        NewEvent::run(
                            "schedule.fired",
                            json!({ "fire_at": format_ms(fire_at), "run_id": run.id, "from_queue": from_queue }),
                        ),
                    )?;
                    Ok(FireOutcome::Fired { run_id: run.id })
                }
                Err(StateError::LockHeld {
                    key,
                    holder,
                    holder_status,
                }) => {
                    tx.execute("ROLLBACK TO fire", params![]).during("firing")?;
                    tx.execute("RELEASE fire", params![]).during("firing")?;
                    let reason = format!("`{key}` is locked by run {holder} ({holder_status})");
                    audit::append(
                        tx,
                        &s,
                        now,
                        NewEvent::run(
                            "schedule.skipped",
                            json!({ "fire_at": format_ms(fire_at), "reason": reason }),
                        ),
                    )?;
                    Ok(FireOutcome::Skipped { reason })
                }
                Err(e) => Err(e),
            }
        }
    }
}
