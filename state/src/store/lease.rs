//! Leases of runs: acquire, renew, release, and the fencing check every driver write makes.

use std::time::Duration;

use serde_json::json;

use super::Store;
use super::steps::finished_word;
use crate::audit::{self, NewEvent};
use crate::error::SqlContext;
use crate::sql::{OptionalExt, Tx, params};
use crate::{LeaseGrant, Millis, RunStatus, StateError, format_ms};

impl Store {
    /// Who holds the lease of `run_id` (expired or not), if anyone.
    pub async fn lease_owner(&self, run_id: &str) -> Result<Option<String>, StateError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| Ok(lease_of(conn, &run_id)?.owner)).await
    }

    /// Takes the lease of `run_id` for `owner` until `now + ttl`. Succeeds when the lease is
    /// free, expired, already `owner`'s, or held by `dead_owner` (a process the caller has
    /// proven gone). A takeover is an audit event.
    pub async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        dead_owner: Option<String>,
        now: Millis,
    ) -> Result<LeaseGrant, StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        let held = self.held_epoch(&run_id, &owner);
        let (key, holder) = (run_id.clone(), owner.clone());
        let (grant, epoch) = self
            .write(move |tx| {
            let run = lease_of(tx, &run_id)?;
            if run.status.is_terminal() {
                return Err(StateError::InvalidTransition {
                    message: format!("run {run_id} has already {}", finished_word(run.status)),
                });
            }
            let expires_at = now + millis(ttl);
            let taken_over_from = match (&run.owner, run.expires_at) {
                (Some(current), _) if *current == owner => None,
                (Some(current), Some(exp)) => {
                    let dead = dead_owner.as_deref() == Some(current.as_str());
                    if exp > now && !dead {
                        return Err(StateError::LeaseHeld {
                            run_id: run_id.clone(),
                            owner: current.clone(),
                            expires_at: format_ms(exp),
                        });
                    }
                    Some(current.clone())
                }
                _ => None,
            };
            // A new epoch unless this store already holds the current one (a renewal by
            // another name): whoever held the lease before is fenced from here on.
            let raise = !(run.owner.as_deref() == Some(owner.as_str()) && held == Some(run.epoch));
            let epoch: i64 = tx
                .query_row(
                    "UPDATE runs SET lease_owner = ?2, lease_expires_at = ?3, updated_at = ?4,
                            status = CASE WHEN status IN ('pending', 'waiting') THEN 'running' ELSE status END,
                            lease_epoch = lease_epoch + ?5
                     WHERE id = ?1 RETURNING lease_epoch",
                    params![run_id, owner, expires_at, now, i64::from(raise)],
                    |r| r.get(0),
                )
                .during("taking the lease")?;
            let data = match &taken_over_from {
                Some(prev) => json!({ "owner": owner, "previous_owner": prev,
                    "reason": if dead_owner.as_deref() == Some(prev.as_str()) { "previous owner's process is gone" } else { "previous lease expired" } }),
                None => json!({ "owner": owner }),
            };
            let kind = if taken_over_from.is_some() { "lease.taken_over" } else { "lease.acquired" };
            audit::append(tx, &run_id, now, NewEvent::run(kind, data))?;
            Ok((LeaseGrant { taken_over_from }, epoch))
        })
        .await?;
        self.hold_epoch(&key, &holder, epoch);
        Ok(grant)
    }

    /// Extends `owner`'s lease. Returns whether an operator asked to cancel the run.
    pub async fn renew_lease(&self, run_id: &str, owner: &str, ttl: Duration, now: Millis) -> Result<bool, StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        let held = self.held_epoch(&run_id, &owner);
        self.write(move |tx| {
            check_lease(tx, &run_id, &owner, held, now)?;
            tx.execute(
                "UPDATE runs SET lease_expires_at = ?3 WHERE id = ?1 AND lease_owner = ?2",
                params![run_id, owner, now + millis(ttl)],
            )
            .during("renewing the lease")?;
            let cancel: bool = tx
                .query_row(
                    "SELECT cancel_requested FROM runs WHERE id = ?1",
                    params![&run_id],
                    |r| r.get(0),
                )
                .during("renewing the lease")?;
            Ok(cancel)
        })
        .await
    }

    /// Extends `owner`'s leases of all `run_ids` in one transaction (one commit: the
    /// heartbeat of an engine that drives many runs). Returns, in the order of `run_ids`,
    /// whether an operator asked to cancel each run, or why its lease was not renewed
    /// ([`StateError::LeaseLost`], [`StateError::UnknownRun`]); the other runs are renewed
    /// all the same. Fails as a whole only when the store itself does.
    pub async fn renew_leases(
        &self,
        owner: &str,
        run_ids: &[String],
        ttl: Duration,
        now: Millis,
    ) -> Result<Vec<Result<bool, StateError>>, StateError> {
        // Each run with the lease epoch this store took it at (fencing, as `renew_lease`).
        let runs: Vec<(String, Option<i64>)> = run_ids
            .iter()
            .map(|id| (id.clone(), self.held_epoch(id, owner)))
            .collect();
        let owner = owner.to_owned();
        self.write(move |tx| renew_all(tx, &owner, &runs, now + millis(ttl), now))
            .await
    }

    /// Gives the lease up, leaving the run to be resumed by anyone at once. A run left
    /// `running` becomes `pending`.
    pub async fn release_lease(&self, run_id: &str, owner: &str, now: Millis) -> Result<(), StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        self.drop_epoch(&run_id);
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ?3,
                            status = CASE WHEN status = 'running' THEN 'pending' ELSE status END
                     WHERE id = ?1 AND lease_owner = ?2",
                    params![run_id, owner, now],
                )
                .during("releasing the lease")?;
            if changed > 0 {
                audit::append(
                    tx,
                    &run_id,
                    now,
                    NewEvent::run("lease.released", json!({ "owner": owner })),
                )?;
            }
            Ok(())
        })
        .await
    }
}

/// [`Store::renew_leases`]'s transaction.
fn renew_all(
    tx: &dyn Tx,
    owner: &str,
    runs: &[(String, Option<i64>)],
    expires_at: Millis,
    now: Millis,
) -> Result<Vec<Result<bool, StateError>>, StateError> {
    let mut outcomes = Vec::with_capacity(runs.len());
    for (run_id, held) in runs {
        match check_lease(tx, run_id, owner, *held, now) {
            Ok(cancel) => {
                tx.execute(
                    "UPDATE runs SET lease_expires_at = ?3 WHERE id = ?1 AND lease_owner = ?2",
                    params![run_id, owner, expires_at],
                )
                .during("renewing the leases")?;
                outcomes.push(Ok(cancel));
            }
            Err(e @ (StateError::LeaseLost { .. } | StateError::UnknownRun { .. })) => outcomes.push(Err(e)),
            Err(e) => return Err(e),
        }
    }
    Ok(outcomes)
}

pub(super) fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A run's status and lease, without the rest of its row.
pub(super) struct Lease {
    pub(super) status: RunStatus,
    pub(super) owner: Option<String>,
    pub(super) expires_at: Option<Millis>,
    /// The fencing token, raised by every takeover.
    pub(super) epoch: i64,
}

pub(super) fn lease_of(conn: &dyn Tx, run_id: &str) -> Result<Lease, StateError> {
    let (status, owner, expires_at, epoch): (String, Option<String>, Option<Millis>, i64) = conn
        .query_row(
            "SELECT status, lease_owner, lease_expires_at, lease_epoch FROM runs WHERE id = ?1",
            params![run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .during("reading the lease")?
        .ok_or_else(|| StateError::UnknownRun {
            run_id: run_id.to_owned(),
        })?;
    let status = status.parse().map_err(|message| StateError::CorruptValue {
        what: "run status",
        message,
    })?;
    Ok(Lease {
        status,
        owner,
        expires_at,
        epoch,
    })
}

/// Fencing: a driver may write only while it holds an unexpired lease. A driver that
/// stalled past its expiry is refused even if nobody has taken the run over yet, because
/// from that moment another process may have read the run's state and acted on it.
///
/// The write also carries the lease epoch the driver holds (`held`, from the store that
/// took the lease): a row whose epoch has moved on was taken over, by whatever name, and
/// the write is refused. `None` (this store never took the lease) checks the owner only.
///
/// Returns whether an operator asked to cancel the run (read in the same statement).
pub(super) fn check_lease(
    conn: &dyn Tx,
    run_id: &str,
    owner: &str,
    held: Option<i64>,
    now: Millis,
) -> Result<bool, StateError> {
    check_lease_counting(conn, run_id, owner, held, now).map(|(cancel, _, _)| cancel)
}

/// A run's lease owner, expiry, cancellation flag and epoch, with its audit count and
/// whether it is running.
type LeaseRow = (Option<String>, Option<Millis>, bool, i64, (i64, bool));

/// As [`check_lease`], and also returns the run's audit count and whether its status is
/// `running`, read in the same statement (a transition then neither reads them again nor
/// rewrites an unchanged status, which is indexed).
pub(super) fn check_lease_counting(
    conn: &dyn Tx,
    run_id: &str,
    owner: &str,
    held: Option<i64>,
    now: Millis,
) -> Result<(bool, i64, bool), StateError> {
    let current: Option<LeaseRow> = conn
        .query_row(
            "SELECT lease_owner, lease_expires_at, cancel_requested, lease_epoch, audit_count, status = 'running'
             FROM runs WHERE id = ?1",
            params![run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, (r.get(4)?, r.get(5)?))),
        )
        .optional()
        .during("checking the lease")?;
    match current {
        None => Err(StateError::UnknownRun {
            run_id: run_id.to_owned(),
        }),
        Some((Some(o), _, _, epoch, _)) if o == owner && held.is_some_and(|h| h != epoch) => {
            Err(StateError::LeaseLost {
                run_id: run_id.to_owned(),
                owner: format!(
                    "{o} again, in another process (the lease was taken over: epoch {epoch}, this process holds {})",
                    held.unwrap_or_default()
                ),
            })
        }
        Some((Some(o), Some(exp), cancel, _, (count, running))) if o == owner && exp > now => {
            Ok((cancel, count, running))
        }
        Some((Some(o), _, _, _, _)) if o == owner => Err(StateError::LeaseLost {
            run_id: run_id.to_owned(),
            owner: "nobody (this process's lease expired)".to_owned(),
        }),
        Some((other, _, _, _, _)) => Err(StateError::LeaseLost {
            run_id: run_id.to_owned(),
            owner: other.unwrap_or_else(|| "nobody".to_owned()),
        }),
    }
}
