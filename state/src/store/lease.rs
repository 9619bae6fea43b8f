//! Leases of runs: acquire, renew, release, and the fencing check every driver write makes.

use std::time::Duration;

use serde_json::json;

use super::Store;
use super::steps::finished_word;
use crate::audit::{self, NewEvent};
use crate::error::SqlContext;
use crate::sql::{Keys, OptionalExt, Tx, params};
use crate::{LeaseGrant, Millis, RunStatus, StateError, format_ms};

impl Store {
    /// The time lease expiries are compared with, given the caller's clock `now`: `now`
    /// itself on SQLite, the database server's clock on PostgreSQL (`Tx::lease_now`).
    /// The worker compares the leases it lists with it, so a host whose clock runs ahead
    /// does not see live leases as expired.
    pub async fn lease_now(&self, now: Millis) -> Result<Millis, StateError> {
        match &self.conn {
            super::Backend::Sqlite(_) => Ok(now),
            super::Backend::Postgres(_) => {
                self.read(move |tx| tx.lease_now(now).during("reading the database's clock"))
                    .await
            }
        }
    }

    /// Makes this store's leases follow the times its callers pass instead of the
    /// database's clock (PostgreSQL; SQLite always does): for tests that step a clock of
    /// their own through lease expiries. Never for a store of several hosts.
    #[doc(hidden)]
    pub fn use_caller_clock_for_leases(&self) {
        if let super::Backend::Postgres(c) = &self.conn {
            c.use_caller_clock();
        }
    }

    /// Who holds the lease of `run_id` (expired or not), if anyone.
    pub async fn lease_owner(&self, run_id: &str) -> Result<Option<String>, StateError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| Ok(lease_of(conn, &run_id)?.owner)).await
    }

    /// Takes the lease of `run_id` for `owner` until `now + ttl`. Succeeds when the lease is
    /// free, expired, already `owner`'s, or held by `dead_owner` (a process the caller has
    /// proven gone). A takeover is an audit event. On PostgreSQL, "expired" and the new
    /// expiry are by the database's clock ([`Store::lease_now`]); `now` dates the event.
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
        let claimed = self.take_claim(&run_id);
        let (grant, epoch) = self
            .write(move |tx| {
                crate::moved::refuse_new_work(tx)?;
                let lease_now = tx.lease_now(now).during("reading the database's clock")?;
                let taking = Taking {
                    owner: &owner,
                    held,
                    dead_owner: dead_owner.as_deref(),
                    lease_now,
                    ttl,
                    now,
                };
                take_lease(tx, &run_id, &taking, !claimed)
            })
            .await?;
        self.hold_epoch(&key, &holder, epoch);
        Ok(grant)
    }

    /// Claims for a worker `owner` up to `limit` of `candidates` (run ids, oldest first)
    /// that are still free, expired, or held by one of `dead` (owners proven gone), taking
    /// their leases in one transaction (each audited as [`Store::acquire_lease`] does); the
    /// driver's own [`Store::acquire_lease`] that follows adds no second event. On
    /// PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED`, so workers on several hosts
    /// claiming at once get distinct runs. `None` on SQLite: one host, whose drivers take
    /// each lease as they start.
    pub async fn claim_runs(
        &self,
        owner: &str,
        candidates: Vec<String>,
        dead: Vec<String>,
        limit: usize,
        ttl: Duration,
        now: Millis,
    ) -> Result<Option<Vec<String>>, StateError> {
        if matches!(self.conn, super::Backend::Sqlite(_)) || limit == 0 || candidates.is_empty() {
            return Ok(matches!(self.conn, super::Backend::Postgres(_)).then(Vec::new));
        }
        let held: Vec<Option<i64>> = candidates.iter().map(|id| self.held_epoch(id, owner)).collect();
        let holder = owner.to_owned();
        let claimed = self
            .write(move |tx| {
                crate::moved::refuse_new_work(tx)?;
                let lease_now = tx.lease_now(now).during("reading the database's clock")?;
                let free =
                    crate::pg::claim::free_runs(tx, &candidates, &dead, lease_now, limit).during("claiming runs")?;
                let mut claimed = Vec::with_capacity(free.len());
                for id in free {
                    let i = candidates.iter().position(|c| *c == id);
                    let run_dead = lease_of(tx, &id)?.owner.filter(|o| dead.contains(o));
                    let taking = Taking {
                        owner: &holder,
                        held: i.and_then(|i| held[i]),
                        dead_owner: run_dead.as_deref(),
                        lease_now,
                        ttl,
                        now,
                    };
                    match take_lease(tx, &id, &taking, true) {
                        Ok((_, epoch)) => claimed.push((id, epoch)),
                        Err(StateError::LeaseHeld { .. } | StateError::InvalidTransition { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(claimed)
            })
            .await?;
        let mut ids = Vec::with_capacity(claimed.len());
        for (id, epoch) in claimed {
            self.hold_epoch(&id, owner, epoch);
            self.claims().insert(id.clone());
            ids.push(id);
        }
        Ok(Some(ids))
    }

    /// A listener woken when another process (or this one) makes work for a worker
    /// (PostgreSQL's `LISTEN/NOTIFY`, on a connection of its own); `None` on SQLite, whose
    /// workers poll.
    pub fn listen_for_work(&self) -> Result<Option<crate::pg::WorkListener>, StateError> {
        match &self.conn {
            super::Backend::Sqlite(_) => Ok(None),
            super::Backend::Postgres(c) => {
                crate::pg::WorkListener::start(c.url())
                    .map(Some)
                    .map_err(|e| StateError::OpenDatabase {
                        path: c.url().to_string().into(),
                        source: Box::new(e),
                    })
            }
        }
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.claimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this store claimed `run_id` and no driver has taken its lease since.
    fn take_claim(&self, run_id: &str) -> bool {
        self.claims().remove(run_id)
    }

    /// Extends `owner`'s lease. Returns whether an operator asked to cancel the run.
    pub async fn renew_lease(&self, run_id: &str, owner: &str, ttl: Duration, now: Millis) -> Result<bool, StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        let held = self.held_epoch(&run_id, &owner);
        self.write_keyed(Keys::run(&run_id, []), move |tx| {
            let lease_now = tx.lease_now(now).during("reading the database's clock")?;
            // The cancellation flag is read with the lease, in the same statement.
            let (cancel, _, _) = check_lease_at(tx, &run_id, &owner, held, lease_now)?;
            tx.execute_later(
                "UPDATE runs SET lease_expires_at = ?3 WHERE id = ?1 AND lease_owner = ?2",
                params![run_id, owner, lease_now + millis(ttl)],
            )
            .during("renewing the lease")?;
            Ok(cancel)
        })
        .await
    }

    /// Extends `owner`'s leases of all `run_ids` in one transaction (one commit: the
    /// heartbeat of an engine that drives many runs). Returns, in the order of `run_ids`,
    /// whether an operator asked to cancel each run, or why its lease was not renewed
    /// ([`StateError::LeaseLost`], [`StateError::UnknownRun`], [`StateError::StoreMoved`]:
    /// the store was copied away); the other runs are renewed
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
        let keys = Keys {
            runs: runs.iter().map(|(id, _)| (id.clone(), Vec::new())).collect(),
        };
        self.write_keyed(keys, move |tx| {
            let lease_now = tx.lease_now(now).during("reading the database's clock")?;
            renew_all(tx, &owner, &runs, lease_now + millis(ttl), lease_now)
        })
        .await
    }

    /// Gives the lease up, leaving the run to be resumed by anyone at once. A run left
    /// `running` becomes `pending`.
    pub async fn release_lease(&self, run_id: &str, owner: &str, now: Millis) -> Result<(), StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        self.drop_epoch(&run_id);
        self.take_claim(&run_id);
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

    /// Gives back a lease this process claimed for a run it then could not drive here
    /// (a worker whose environment does not fit the run: another ARM endpoint, a
    /// rehearsal's emulator it cannot restore), leaving the run as it was before the
    /// claim: a run that was `waiting` waits again; one that was `pending`, or `running`
    /// under a lease that had expired, is `pending`, as [`Store::release_lease`] leaves
    /// it. Audited as `lease.released` with `why` and the status the run is left in (which
    /// `audit verify` derives the run's status from), so `history` says which worker could
    /// not drive it. Nothing happens when another process holds the lease by now.
    pub async fn give_back(
        &self,
        run_id: &str,
        owner: &str,
        status_before: RunStatus,
        why: String,
        now: Millis,
    ) -> Result<(), StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        self.drop_epoch(&run_id);
        self.take_claim(&run_id);
        let left = match status_before {
            RunStatus::Waiting => RunStatus::Waiting,
            _ => RunStatus::Pending,
        };
        self.write(move |tx| {
            let status: Option<String> = tx
                .query_row(
                    "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4,
                            status = CASE WHEN status = 'running' THEN ?3 ELSE status END
                     WHERE id = ?1 AND lease_owner = ?2 RETURNING status",
                    params![run_id, owner, left.as_str(), now],
                    |r| r.get(0),
                )
                .optional()
                .during("giving back a claimed lease")?;
            if let Some(status) = status {
                audit::append(
                    tx,
                    &run_id,
                    now,
                    NewEvent::run(
                        "lease.released",
                        json!({ "owner": owner, "not_driven_here": why, "status": status }),
                    ),
                )?;
            }
            Ok(())
        })
        .await
    }
}

/// Who takes a lease, and by which clock.
struct Taking<'a> {
    owner: &'a str,
    /// The epoch this store holds for `owner`, if it took the lease.
    held: Option<i64>,
    /// A holder the caller has proven gone.
    dead_owner: Option<&'a str>,
    /// [`Tx::lease_now`].
    lease_now: Millis,
    ttl: Duration,
    /// The caller's clock (the event's time).
    now: Millis,
}

/// [`Store::acquire_lease`]'s transaction; `audit` false when a claim of this store
/// already audited the acquisition. Returns the grant and the lease's epoch.
fn take_lease(tx: &dyn Tx, run_id: &str, t: &Taking<'_>, audit: bool) -> Result<(LeaseGrant, i64), StateError> {
    let run = lease_of(tx, run_id)?;
    if run.status.is_terminal() {
        return Err(StateError::InvalidTransition {
            message: format!("run {run_id} has already {}", finished_word(run.status)),
        });
    }
    let (owner, now) = (t.owner, t.now);
    let expires_at = t.lease_now + millis(t.ttl);
    let taken_over_from = match (&run.owner, run.expires_at) {
        (Some(current), _) if *current == owner => None,
        (Some(current), Some(exp)) => {
            let dead = t.dead_owner == Some(current.as_str());
            if exp > t.lease_now && !dead {
                return Err(StateError::LeaseHeld {
                    run_id: run_id.to_owned(),
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
    let raise = !(run.owner.as_deref() == Some(owner) && t.held == Some(run.epoch));
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
    if !audit && !raise {
        return Ok((LeaseGrant { taken_over_from }, epoch));
    }
    let data = match &taken_over_from {
        Some(prev) => json!({ "owner": owner, "previous_owner": prev,
            "reason": if t.dead_owner == Some(prev.as_str()) { "previous owner's process is gone" } else { "previous lease expired" } }),
        None => json!({ "owner": owner }),
    };
    let kind = if taken_over_from.is_some() {
        "lease.taken_over"
    } else {
        "lease.acquired"
    };
    audit::append(tx, run_id, now, NewEvent::run(kind, data))?;
    Ok((LeaseGrant { taken_over_from }, epoch))
}

/// [`Store::renew_leases`]'s transaction (`lease_now` by [`Tx::lease_now`]).
fn renew_all(
    tx: &dyn Tx,
    owner: &str,
    runs: &[(String, Option<i64>)],
    expires_at: Millis,
    lease_now: Millis,
) -> Result<Vec<Result<bool, StateError>>, StateError> {
    let mut outcomes = Vec::with_capacity(runs.len());
    for (run_id, held) in runs {
        match check_lease_at(tx, run_id, owner, *held, lease_now) {
            Ok((cancel, _, _)) => {
                tx.execute_later(
                    "UPDATE runs SET lease_expires_at = ?3 WHERE id = ?1 AND lease_owner = ?2",
                    params![run_id, owner, expires_at],
                )
                .during("renewing the leases")?;
                outcomes.push(Ok(cancel));
            }
            Err(e @ (StateError::LeaseLost { .. } | StateError::UnknownRun { .. } | StateError::StoreMoved { .. })) => {
                outcomes.push(Err(e));
            }
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
/// Expiry is by [`Tx::lease_now`] (the database's clock on PostgreSQL), whatever `now`
/// the caller's clock says.
///
/// Returns whether an operator asked to cancel the run, the run's audit count and
/// whether its status is `running`, read in the same statement (a transition then neither
/// reads them again nor rewrites an unchanged status, which is indexed); a store marked as
/// moved refuses, read in the same statement too. A write that declared its run
/// ([`crate::sql::Keys`]) is answered from the row read with its group's start, without a
/// round trip.
pub(super) fn check_lease_counting(
    conn: &dyn Tx,
    run_id: &str,
    owner: &str,
    held: Option<i64>,
    now: Millis,
) -> Result<(bool, i64, bool), StateError> {
    let lease_now = conn.lease_now(now).during("reading the database's clock")?;
    check_lease_at(conn, run_id, owner, held, lease_now)
}

/// A run's lease owner, expiry, cancellation flag and epoch, with its audit count, whether
/// it is running, and whether the store is marked as moved.
type LeaseRow = (Option<String>, Option<Millis>, bool, i64, (i64, bool, bool));

/// [`check_lease_counting`] at `lease_now`, already read by [`Tx::lease_now`].
fn check_lease_at(
    conn: &dyn Tx,
    run_id: &str,
    owner: &str,
    held: Option<i64>,
    now: Millis,
) -> Result<(bool, i64, bool), StateError> {
    let current: Option<LeaseRow> = match conn.prefetched_run(run_id) {
        Some(r) => Some((
            r.owner,
            r.expires_at,
            r.cancel,
            r.epoch,
            (r.audit_count, r.status == "running", r.moved),
        )),
        None => conn
            .query_row(
                "SELECT lease_owner, lease_expires_at, cancel_requested, lease_epoch, audit_count, status = 'running',
                        EXISTS (SELECT 1 FROM store_moves WHERE state = 'moved')
                 FROM runs WHERE id = ?1",
                params![run_id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        (r.get(4)?, r.get(5)?, r.get(6)?),
                    ))
                },
            )
            .optional()
            .during("checking the lease")?,
    };
    match current {
        None => Err(StateError::UnknownRun {
            run_id: run_id.to_owned(),
        }),
        // The store was copied away (a process that opened it before the copy): its runs
        // are driven in the target, so no lease here is held any more.
        Some((_, _, _, _, (_, _, true))) => match crate::moved::current(conn)? {
            Some(mark) => Err(StateError::StoreMoved { mark }),
            None => Err(StateError::InvalidTransition {
                message: "the store's moved mark changed while it was read".to_owned(),
            }),
        },
        Some((Some(o), _, _, epoch, _)) if o == owner && held.is_some_and(|h| h != epoch) => {
            Err(StateError::LeaseLost {
                run_id: run_id.to_owned(),
                owner: format!(
                    "{o} again, in another process (the lease was taken over: epoch {epoch}, this process holds {})",
                    held.unwrap_or_default()
                ),
            })
        }
        Some((Some(o), Some(exp), cancel, _, (count, running, _))) if o == owner && exp > now => {
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
