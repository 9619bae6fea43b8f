//! Creating runs with their steps, resource locks and first lease; releasing and retaking locks.

use serde_json::json;

use super::Store;
use crate::audit::{self, GENESIS, NewEvent};
use crate::error::SqlContext;
use crate::sql::{OptionalExt, Tx, params};
use crate::{Millis, NewRun, RunStatus, StateError};

impl Store {
    /// Creates a run with its steps, locks its resource keys and (optionally) gives the
    /// creator its lease, all in one transaction. Fails with [`StateError::LockHeld`]
    /// naming the holder when a key is taken, and then changes nothing.
    pub async fn create_run(&self, run: NewRun) -> Result<(), StateError> {
        let lease = run.lease.as_ref().map(|(owner, _)| (run.id.clone(), owner.clone()));
        self.write(move |tx| {
            crate::moved::refuse_new_work(tx)?;
            insert_run(tx, &run)
        })
        .await?;
        if let Some((run_id, owner)) = lease {
            // A new run's lease is at epoch 0 (the column's default).
            self.hold_epoch(&run_id, &owner, 0);
        }
        Ok(())
    }

    // --- Locks of a run that failed before it changed anything (task `operator`). ---

    /// Releases the locks of a failed run (an operator path decided it changed nothing: no
    /// mutating step started), with a `locks.released` event carrying the keys and `why`.
    /// Returns the keys released (none when the run is not failed or holds no lock).
    pub async fn release_failed_run_locks(
        &self,
        run_id: &str,
        why: String,
        now: Millis,
    ) -> Result<Vec<String>, StateError> {
        let run_id = run_id.to_owned();
        self.write(move |tx| {
            let status: String = tx
                .query_row("SELECT status FROM runs WHERE id = ?1", params![&run_id], |r| r.get(0))
                .optional()
                .during("reading the run status")?
                .ok_or_else(|| StateError::UnknownRun { run_id: run_id.clone() })?;
            if status != RunStatus::Failed.as_str() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = tx
                .query_map(
                    "SELECT key FROM locks WHERE run_id = ?1 ORDER BY key",
                    params![run_id],
                    |r| r.get(0),
                )
                .during("reading resource locks")?;
            if keys.is_empty() {
                return Ok(keys);
            }
            tx.execute("DELETE FROM locks WHERE run_id = ?1", params![&run_id])
                .during("releasing resource locks")?;
            audit::append(
                tx,
                &run_id,
                now,
                NewEvent::run("locks.released", json!({ "keys": keys, "why": why })),
            )?;
            Ok(keys)
        })
        .await
    }

    /// Takes `keys` again for a run whose locks were released (before `--retry-failed`), with
    /// a `locks.retaken` event; `LockHeld` when another run took one meanwhile.
    pub async fn retake_locks(&self, run_id: &str, keys: Vec<String>, now: Millis) -> Result<(), StateError> {
        let run_id = run_id.to_owned();
        self.write(move |tx| {
            for key in &keys {
                let holder: Option<(String, String)> = tx
                    .query_row(
                        "SELECT l.run_id, r.status FROM locks l JOIN runs r ON r.id = l.run_id WHERE l.key = ?1",
                        params![key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .during("checking resource locks")?;
                match holder {
                    Some((holder, _)) if holder == run_id => {}
                    Some((holder, holder_status)) => {
                        return Err(StateError::LockHeld {
                            key: key.clone(),
                            holder,
                            holder_status,
                        });
                    }
                    None => {
                        tx.execute(
                            "INSERT INTO locks (key, run_id, acquired_at) VALUES (?1, ?2, ?3)",
                            params![key, run_id, now],
                        )
                        .during("taking resource locks")?;
                    }
                }
            }
            audit::append(
                tx,
                &run_id,
                now,
                NewEvent::run("locks.retaken", json!({ "keys": keys })),
            )
        })
        .await
    }
}

/// Creates a run inside the caller's transaction (see [`Store::create_run`]).
pub(crate) fn insert_run(tx: &dyn Tx, run: &NewRun) -> Result<(), StateError> {
    for key in &run.locks {
        let holder: Option<(String, String)> = tx
            .query_row(
                "SELECT l.run_id, r.status FROM locks l JOIN runs r ON r.id = l.run_id WHERE l.key = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .during("checking resource locks")?;
        if let Some((holder, holder_status)) = holder {
            return Err(StateError::LockHeld {
                key: key.clone(),
                holder,
                holder_status,
            });
        }
    }
    let (owner, expires) = run.lease.clone().unzip();
    // The first lease lasts as long as asked, by the clock leases are decided by (the
    // database's on PostgreSQL: `Tx::lease_now`).
    let expires = match expires {
        Some(at) => Some(tx.lease_now(run.now).during("reading the database's clock")? + (at - run.now)),
        None => None,
    };
    let status = if owner.is_some() {
        RunStatus::Running
    } else {
        RunStatus::Pending
    };
    tx.execute(
        "INSERT INTO runbook_texts (sha256, text) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING",
        params![run.runbook_sha256, run.runbook_text],
    )
    .during("pinning the runbook text")?;
    tx.execute(
        "INSERT INTO runs (id, runbook_name, runbook_version, runbook_sha256, source_path,
                           params, status, auto_approve, created_at, updated_at, lease_owner,
                           lease_expires_at, audit_head, audit_count, schedule_name, \"window\")
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, 0, ?13, ?14)",
        params![
            run.id,
            run.runbook_name,
            run.runbook_version,
            run.runbook_sha256,
            run.source_path,
            run.params.to_string(),
            status.as_str(),
            run.auto_approve,
            run.now,
            owner,
            expires,
            GENESIS,
            run.schedule,
            run.window.as_ref().map(ToString::to_string),
        ],
    )
    .during("creating the run")?;
    for (position, step) in run.steps.iter().enumerate() {
        tx.execute(
            "INSERT INTO steps (run_id, step_id, position, status) VALUES (?1, ?2, ?3, 'pending')",
            params![run.id, step, position as i64],
        )
        .during("creating the run's steps")?;
    }
    for key in &run.locks {
        tx.execute(
            "INSERT INTO locks (key, run_id, acquired_at) VALUES (?1, ?2, ?3)",
            params![key, run.id, run.now],
        )
        .during("taking resource locks")?;
    }
    audit::append(
        tx,
        &run.id,
        run.now,
        NewEvent::run(
            "run.created",
            json!({
                "runbook": run.runbook_name,
                "version": run.runbook_version,
                "sha256": run.runbook_sha256,
                "source": run.source_path,
                "params": run.params,
                "locks": run.locks,
                "auto_approve": run.auto_approve,
                "by": run.created_by,
                "schedule": run.schedule,
            }),
        ),
    )?;
    if let Some(owner) = owner {
        audit::append(
            tx,
            &run.id,
            run.now,
            NewEvent::run("lease.acquired", json!({ "owner": owner })),
        )?;
    }
    Ok(())
}
