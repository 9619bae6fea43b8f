//! [`Store`]: the SQLite-backed state of all runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::json;

use crate::audit::{self, GENESIS, NewEvent};
use crate::error::{CachedExt, SqlContext, opt_text, text};
use crate::thread::ConnThread;
use crate::{
    ApprovalRow, AuditReport, EventRow, LeaseGrant, Millis, NewRun, RunFilter, RunRow, RunSnapshot, RunStatus,
    StateError, StepFinish, StepOutcome, StepRow, StepStart, StepStatus, WindowKind, WindowRow, format_ms,
};

/// The state of all runs, in one SQLite file. Cheap to clone; all clones share one
/// connection thread.
#[derive(Clone, Debug)]
pub struct Store {
    conn: ConnThread,
    path: PathBuf,
}

impl Store {
    /// Opens (creating with mode 0600 if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StateError::OpenDatabase {
            path: path.to_owned(),
            source: e,
        };
        create_private(path).map_err(|e| open_err(Box::new(e)))?;
        let mut conn = Connection::open(path).map_err(|e| open_err(Box::new(e)))?;
        conn.set_prepared_statement_cache_capacity(128);
        // Query-planner stability: a cached statement keeps its plan whatever values are
        // bound. Without it, SQLite (built with STAT4) re-prepares a statement each time a
        // new value is bound to a parameter the planner looked at, which was a tenth of the
        // SQLite thread's time with many runs at once.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(|e| open_err(Box::new(e)))?;
        // 8 MiB of page cache (SQLite's default is 2 MiB): with many runs at once the pages
        // of their rows stay cached instead of being read back from the file.
        conn.pragma_update(None, "cache_size", -8192)
            .map_err(|e| open_err(Box::new(e)))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| open_err(Box::new(e)))?;
        let mode = wal_mode(&conn).map_err(|e| open_err(Box::new(e)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!("journal_mode is {mode}, WAL is required").into()));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| open_err(Box::new(e)))?;
        crate::migrations::apply(&mut conn, path)?;
        Ok(Self {
            conn: ConnThread::spawn(conn),
            path: path.to_owned(),
        })
    }

    /// Opens an existing database for a command that only reads it (`status`, `runs`,
    /// `history`, `report`, `audit verify`). When this process may write the file it is
    /// opened as by [`Store::open`] (so closing it still checkpoints and removes the WAL);
    /// otherwise it is opened read-only, and nothing is created or written, so a read-only
    /// file (or folder, or medium) works. A database whose schema is older than this
    /// build's must be opened with write access once, to bring it up to date.
    pub fn open_read_only(path: &Path) -> Result<Self, StateError> {
        use rusqlite::OpenFlags;
        let writable = std::fs::OpenOptions::new().read(true).write(true).open(path).is_ok();
        if writable && let Ok(store) = Self::open(path) {
            return Ok(store);
        }
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StateError::OpenDatabase {
            path: path.to_owned(),
            source: e,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open = |target: &str, flags: OpenFlags| -> Result<(Connection, bool), StateError> {
            let conn = Connection::open_with_flags(target, flags).map_err(|e| open_err(Box::new(e)))?;
            conn.set_prepared_statement_cache_capacity(128);
            conn.busy_timeout(Duration::from_secs(10))
                .map_err(|e| open_err(Box::new(e)))?;
            let upgrade = crate::migrations::needs_upgrade(&conn, path)?;
            Ok((conn, upgrade))
        };
        let (conn, upgrade) = match open(&path.to_string_lossy(), flags) {
            Ok(opened) => opened,
            // WAL needs its `-shm` index, which a read-only folder cannot hold. With no
            // `-wal` file no process has the database open for writing (a writer keeps
            // one), so the main file is the whole database: read it as immutable.
            Err(StateError::OpenDatabase { source, .. })
                if is_cannot_init(source.as_ref()) && !wal_file(path, "-wal").exists() =>
            {
                open(&immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)?
            }
            Err(e) => return Err(e),
        };
        if upgrade {
            drop(conn);
            return Self::open(path);
        }
        Ok(Self {
            conn: ConnThread::spawn(conn),
            path: path.to_owned(),
        })
    }

    /// Closes the database cleanly: the WAL is checkpointed into the main file and
    /// removed. A process should call this before it exits; a crash instead leaves the WAL,
    /// which SQLite replays on the next open, so nothing committed is lost either way.
    pub async fn close(&self) {
        self.conn.close().await;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a run with its steps, locks its resource keys and (optionally) gives the
    /// creator its lease, all in one transaction. Fails with [`StateError::LockHeld`]
    /// naming the holder when a key is taken, and then changes nothing.
    pub async fn create_run(&self, run: NewRun) -> Result<(), StateError> {
        self.write(move |tx| insert_run(tx, &run)).await
    }

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
        self.write(move |tx| {
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
            tx.cached_execute(
                "UPDATE runs SET lease_owner = ?2, lease_expires_at = ?3, updated_at = ?4,
                        status = CASE WHEN status IN ('pending', 'waiting') THEN 'running' ELSE status END
                 WHERE id = ?1",
                params![run_id, owner, expires_at, now],
            )
            .during("taking the lease")?;
            let data = match &taken_over_from {
                Some(prev) => json!({ "owner": owner, "previous_owner": prev,
                    "reason": if dead_owner.as_deref() == Some(prev.as_str()) { "previous owner's process is gone" } else { "previous lease expired" } }),
                None => json!({ "owner": owner }),
            };
            let kind = if taken_over_from.is_some() { "lease.taken_over" } else { "lease.acquired" };
            audit::append(tx, &run_id, now, NewEvent::run(kind, data))?;
            Ok(LeaseGrant { taken_over_from })
        })
        .await
    }

    /// Extends `owner`'s lease. Returns whether an operator asked to cancel the run.
    pub async fn renew_lease(&self, run_id: &str, owner: &str, ttl: Duration, now: Millis) -> Result<bool, StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        self.write(move |tx| {
            check_lease(tx, &run_id, &owner, now)?;
            tx.cached_execute(
                "UPDATE runs SET lease_expires_at = ?3 WHERE id = ?1 AND lease_owner = ?2",
                params![run_id, owner, now + millis(ttl)],
            )
            .during("renewing the lease")?;
            let cancel: bool = tx
                .cached_query_row("SELECT cancel_requested FROM runs WHERE id = ?1", [&run_id], |r| {
                    r.get(0)
                })
                .during("renewing the lease")?;
            Ok(cancel)
        })
        .await
    }

    /// Gives the lease up, leaving the run to be resumed by anyone at once. A run left
    /// `running` becomes `pending`.
    pub async fn release_lease(&self, run_id: &str, owner: &str, now: Millis) -> Result<(), StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        self.write(move |tx| {
            let changed = tx
                .cached_execute(
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

    /// Commits the start of an attempt (and the windows it opens) before its effect runs.
    pub async fn start_step(&self, run_id: &str, owner: &str, start: StepStart) -> Result<(), StateError> {
        self.advance(run_id, owner, Vec::new(), Some(start)).await
    }

    /// Commits progress saved by a running activity (a polling URL, an intent, a phase).
    pub async fn save_progress(
        &self,
        run_id: &str,
        owner: &str,
        step_id: &str,
        attempt: u32,
        progress: serde_json::Value,
        now: Millis,
    ) -> Result<(), StateError> {
        let (run_id, owner, step_id) = (run_id.to_owned(), owner.to_owned(), step_id.to_owned());
        let (named, named_step) = (run_id.clone(), step_id.clone());
        self.write(move |tx| {
            check_lease(tx, &run_id, &owner, now)?;
            let changed = tx
                .cached_execute(
                    "UPDATE steps SET progress = ?3 WHERE run_id = ?1 AND step_id = ?2 AND status = 'running'",
                    params![run_id, step_id, progress.to_string()],
                )
                .during("saving step progress")?;
            if changed == 0 {
                return Err(StateError::InvalidTransition {
                    message: format!("step `{step_id}` is not running; its progress cannot change"),
                });
            }
            audit::append(
                tx,
                &run_id,
                now,
                NewEvent::step("step.progress", &step_id, Some(attempt), progress),
            )
        })
        .await
        .map_err(|e| e.naming(&named, || format!("the progress of step `{named_step}`")))
    }

    /// Commits the end of an attempt: the step's new status and output, the windows it
    /// closes and the run's next status, in one transaction.
    pub async fn finish_step(&self, run_id: &str, owner: &str, finish: StepFinish) -> Result<(), StateError> {
        self.advance(run_id, owner, vec![finish], None).await
    }

    /// Moves a run forward in one transaction: the ends of `finished` attempts (in order),
    /// then the start of the next attempt. This is how a run goes from one step to the next
    /// with one durable commit: the completion of a step and the start of the next are one
    /// transition, committed before the next step's effect runs.
    ///
    /// A cancellation requested by an operator refuses the start with
    /// [`StateError::CancelRequested`], but the ends of `finished` are still committed: they
    /// record effects that already happened.
    pub async fn advance(
        &self,
        run_id: &str,
        owner: &str,
        finished: Vec<StepFinish>,
        start: Option<StepStart>,
    ) -> Result<(), StateError> {
        let what = transition(&finished, start.as_ref());
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        let named = run_id.clone();
        self.write(move |tx| {
            let now = start
                .as_ref()
                .map(|s| s.now)
                .or(finished.last().map(|f| f.now))
                .unwrap_or(0);
            let cancel = check_lease(tx, &run_id, &owner, now)?;
            let mut events = Vec::new();
            let mut status_set = false;
            for finish in &finished {
                status_set = apply_finish(tx, &run_id, finish, &mut events)?;
            }
            let refusal = match &start {
                None => None,
                Some(_) if cancel => Some(StateError::CancelRequested { run_id: run_id.clone() }),
                // A step whose completion is in the trail never runs again, whatever its
                // row says (a row edited outside fogbook).
                Some(start) => match audit::done_in_trail(tx, &run_id, &start.step_id)? {
                    Some(recorded) => disagreement(tx, &run_id, &start.step_id, &recorded)?,
                    None => None,
                },
            };
            let start = match (&start, refusal) {
                (Some(start), None) => start,
                // Only the ends: there is no start, or it is refused. The ends are still
                // committed: they record effects that already happened.
                (_, refusal) => {
                    if status_set {
                        audit::append_all(tx, &run_id, events)?;
                    } else {
                        audit::append_and_touch(tx, &run_id, events, None, now)?;
                    }
                    return Ok(match refusal {
                        Some(e) => Err(e),
                        None => Ok(()),
                    });
                }
            };
            let changed = tx
                .cached_execute(
                    "UPDATE steps SET status = 'running', attempt = ?3, input = ?4, started_at = ?5,
                            first_started_at = COALESCE(first_started_at, ?5), deadline_at = ?6,
                            next_attempt_at = NULL, progress = CASE WHEN ?7 THEN progress ELSE NULL END
                     WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                    params![
                        run_id,
                        start.step_id,
                        start.attempt,
                        start.input.to_string(),
                        start.now,
                        start.deadline_at,
                        start.keep_progress
                    ],
                )
                .during("starting a step")?;
            if changed == 0 {
                return Err(refuse_done(tx, &run_id, &start.step_id, "; it is never run again")?);
            }
            events.push((
                start.now,
                NewEvent::step(
                    "step.started",
                    &start.step_id,
                    Some(start.attempt),
                    json!({ "input": start.input, "deadline_at": start.deadline_at.map(format_ms) }),
                ),
            ));
            for kind in &start.opens {
                open_window(
                    tx,
                    &run_id,
                    *kind,
                    &start.step_id,
                    start.subject.as_deref(),
                    start.now,
                    &mut events,
                )?;
            }
            audit::append_and_touch(tx, &run_id, events, Some(RunStatus::Running.as_str()), start.now)?;
            Ok(Ok(()))
        })
        .await
        .map_err(|e| e.naming(&named, || what))?
    }

    /// Changes the run's status (succeeded, waiting, failed) as its driver.
    pub async fn set_run_status(
        &self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        error: Option<serde_json::Value>,
        now: Millis,
    ) -> Result<(), StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        let named = run_id.clone();
        self.write(move |tx| {
            check_lease(tx, &run_id, &owner, now)?;
            set_status(tx, &run_id, status, error, now)
        })
        .await
        .map_err(|e| e.naming(&named, || format!("the change of its status to {status}")))
    }

    /// Appends an event that changes no other state (credential used, runbook file changed,
    /// a window limit exceeded, a notification delivered).
    pub async fn record_event(
        &self,
        run_id: &str,
        kind: &'static str,
        step_id: Option<String>,
        data: serde_json::Value,
        now: Millis,
    ) -> Result<(), StateError> {
        let run_id = run_id.to_owned();
        self.write(move |tx| {
            // Re-entering a step is a start: a step the trail records as done is refused.
            if kind == "step.reentered"
                && let Some(sid) = step_id.as_deref()
                && let Some(recorded) = audit::done_in_trail(tx, &run_id, sid)?
                && let Some(refusal) = disagreement(tx, &run_id, sid, &recorded)?
            {
                return Err(refusal);
            }
            let ev = NewEvent {
                kind,
                step_id: step_id.as_deref(),
                attempt: None,
                data,
            };
            audit::append(tx, &run_id, now, ev)
        })
        .await
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
                .cached_query_row("SELECT status FROM runs WHERE id = ?1", [&run_id], |r| r.get(0))
                .optional()
                .during("reading the run status")?
                .ok_or_else(|| StateError::UnknownRun { run_id: run_id.clone() })?;
            if status != RunStatus::Failed.as_str() {
                return Ok(Vec::new());
            }
            let mut stmt = tx
                .prepare_cached("SELECT key FROM locks WHERE run_id = ?1 ORDER BY key")
                .during("reading resource locks")?;
            let keys = stmt
                .query_map([&run_id], |r| r.get::<_, String>(0))
                .and_then(Iterator::collect::<Result<Vec<String>, _>>)
                .during("reading resource locks")?;
            drop(stmt);
            if keys.is_empty() {
                return Ok(keys);
            }
            tx.cached_execute("DELETE FROM locks WHERE run_id = ?1", [&run_id])
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
                    .cached_query_row(
                        "SELECT l.run_id, r.status FROM locks l JOIN runs r ON r.id = l.run_id WHERE l.key = ?1",
                        [key],
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
                        tx.cached_execute(
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

    /// Marks that `max_unprotected` was reported for this window, with its audit event.
    pub async fn mark_window_limit_exceeded(
        &self,
        run_id: &str,
        window_id: i64,
        limit: String,
        now: Millis,
    ) -> Result<bool, StateError> {
        let run_id = run_id.to_owned();
        self.write(move |tx| {
            let changed = tx
                .cached_execute(
                    "UPDATE windows SET limit_notified = 1 WHERE id = ?1 AND run_id = ?2 AND limit_notified = 0",
                    params![window_id, run_id],
                )
                .during("marking a window limit")?;
            if changed > 0 {
                audit::append(
                    tx,
                    &run_id,
                    now,
                    NewEvent::run("window.limit_exceeded", json!({ "window": window_id, "limit": limit })),
                )?;
            }
            Ok(changed > 0)
        })
        .await
    }

    /// Records an approval of `step_id` (which must be running or not yet started).
    pub async fn approve(
        &self,
        run_id: &str,
        step_id: &str,
        by: &str,
        comment: Option<String>,
        auto: bool,
        now: Millis,
    ) -> Result<ApprovalRow, StateError> {
        self.approve_with(run_id, step_id, by, comment, auto, serde_json::Value::Null, now)
            .await
    }

    /// As [`Store::approve`], with more fields for the audit event (`by_source`, `reason`).
    #[allow(clippy::too_many_arguments)]
    pub async fn approve_with(
        &self,
        run_id: &str,
        step_id: &str,
        by: &str,
        comment: Option<String>,
        auto: bool,
        extra: serde_json::Value,
        now: Millis,
    ) -> Result<ApprovalRow, StateError> {
        let (run_id, step_id, by) = (run_id.to_owned(), step_id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if run.status.is_terminal() {
                return Err(StateError::InvalidTransition {
                    message: format!(
                        "run {run_id} has already {}; nothing to approve",
                        finished_word(run.status)
                    ),
                });
            }
            let step = load_step_row(tx, &run_id, &step_id)?;
            if step.status.is_done() {
                return Err(StateError::InvalidTransition {
                    message: format!("step `{step_id}` is already {}", step.status),
                });
            }
            let existing: Option<String> = tx
                .cached_query_row(
                    "SELECT by FROM approvals WHERE run_id = ?1 AND step_id = ?2",
                    params![run_id, step_id],
                    |r| r.get(0),
                )
                .optional()
                .during("reading approvals")?;
            if let Some(who) = existing {
                return Err(StateError::InvalidTransition {
                    message: format!("step `{step_id}` was already approved by {who}"),
                });
            }
            tx.cached_execute(
                "INSERT INTO approvals (run_id, step_id, by, comment, at, auto) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run_id, step_id, by, comment, now, auto],
            )
            .during("recording an approval")?;
            audit::append(
                tx,
                &run_id,
                now,
                NewEvent::step("step.approved", &step_id, None, {
                    let mut data = json!({ "by": by, "comment": comment, "auto": auto });
                    if let (Some(d), Some(x)) = (data.as_object_mut(), extra.as_object()) {
                        d.extend(x.clone());
                    }
                    data
                }),
            )?;
            Ok(ApprovalRow {
                step_id,
                by,
                comment,
                at: now,
                auto,
            })
        })
        .await
    }

    /// The approval of a step, if any.
    pub async fn approval(&self, run_id: &str, step_id: &str) -> Result<Option<ApprovalRow>, StateError> {
        let (run_id, step_id) = (run_id.to_owned(), step_id.to_owned());
        self.read(move |conn| {
            conn.cached_query_row(
                "SELECT step_id, by, comment, at, auto FROM approvals WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step_id],
                approval_row,
            )
            .optional()
            .during("reading an approval")
        })
        .await
    }

    /// Cancels a run. When nobody drives it (no lease, an expired one, or `dead_owner`'s),
    /// it becomes `cancelled` at once and its locks are released; otherwise the driver is
    /// asked to stop at its next safe point. Returns whether it is cancelled now.
    pub async fn cancel(
        &self,
        run_id: &str,
        by: &str,
        dead_owner: Option<String>,
        now: Millis,
    ) -> Result<bool, StateError> {
        let (run_id, by) = (run_id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if matches!(run.status, RunStatus::Succeeded | RunStatus::Cancelled) {
                return Err(StateError::InvalidTransition {
                    message: format!("run {run_id} has already {}", finished_word(run.status)),
                });
            }
            let driven = match (&run.lease_owner, run.lease_expires_at) {
                (Some(owner), Some(exp)) => exp > now && dead_owner.as_deref() != Some(owner.as_str()),
                _ => false,
            };
            if driven {
                tx.cached_execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", [&run_id])
                    .during("requesting cancellation")?;
                audit::append(
                    tx,
                    &run_id,
                    now,
                    NewEvent::run("run.cancel_requested", json!({ "by": by })),
                )?;
                return Ok(false);
            }
            tx.cached_execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1",
                [&run_id],
            )
            .during("cancelling")?;
            set_status(
                tx,
                &run_id,
                RunStatus::Cancelled,
                Some(json!({ "cancelled_by": by })),
                now,
            )?;
            Ok(true)
        })
        .await
    }

    /// Completes a cancellation requested while the run was driven (called by the driver).
    pub async fn finish_cancel(&self, run_id: &str, owner: &str, now: Millis) -> Result<(), StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        self.write(move |tx| {
            // Completing a requested cancellation needs the owner, not an unexpired lease:
            // stopping is always allowed.
            let held: Option<String> = tx
                .cached_query_row("SELECT lease_owner FROM runs WHERE id = ?1", [&run_id], |r| r.get(0))
                .during("cancelling")?;
            if held.as_deref() != Some(owner.as_str()) {
                return Err(StateError::LeaseLost {
                    run_id: run_id.clone(),
                    owner: held.unwrap_or_else(|| "nobody".to_owned()),
                });
            }
            tx.cached_execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1",
                [&run_id],
            )
            .during("cancelling")?;
            // The run ends with the record of the request (who, why, what it abandons).
            let requested: Option<String> = tx
                .cached_query_row(
                    "SELECT data FROM events WHERE run_id = ?1 AND kind = 'run.cancel_requested' ORDER BY seq DESC LIMIT 1",
                    [&run_id],
                    |r| r.get(0),
                )
                .optional()
                .during("reading the cancel request")?;
            let record = requested
                .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                .filter(serde_json::Value::is_object)
                .map(|mut d| {
                    if d.get("cancelled_by").is_none() {
                        d["cancelled_by"] = d["by"].clone();
                    }
                    d
                })
                .unwrap_or_else(|| json!({ "cancelled_by": "operator request" }));
            set_status(tx, &run_id, RunStatus::Cancelled, Some(record), now)
        })
        .await
    }

    /// Re-opens a failed run: its failed step gets a fresh attempt (progress cleared).
    pub async fn retry_failed(&self, run_id: &str, by: &crate::Actor, now: Millis) -> Result<String, StateError> {
        let (run_id, by) = (run_id.to_owned(), by.record());
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if run.status != RunStatus::Failed {
                return Err(StateError::InvalidTransition {
                    message: format!("run {run_id} is {}, not failed; there is nothing to retry", run.status),
                });
            }
            let step: Option<String> = tx
                .cached_query_row(
                    "SELECT step_id FROM steps WHERE run_id = ?1 AND status = 'failed' ORDER BY position DESC LIMIT 1",
                    [&run_id],
                    |r| r.get(0),
                )
                .optional()
                .during("finding the failed step")?;
            let Some(step) = step else {
                return Err(StateError::InvalidTransition {
                    message: format!("run {run_id} has no failed step to retry"),
                });
            };
            tx.cached_execute(
                "UPDATE steps SET status = 'pending', next_attempt_at = NULL, finished_at = NULL
                 WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step],
            )
            .during("re-opening the failed step")?;
            tx.cached_execute(
                "UPDATE runs SET status = 'pending', error = NULL, finished_at = NULL, updated_at = ?2 WHERE id = ?1",
                params![run_id, now],
            )
            .during("re-opening the run")?;
            audit::append(
                tx,
                &run_id,
                now,
                NewEvent::step("step.retry_requested", &step, None, by),
            )?;
            Ok(step)
        })
        .await
    }

    /// Everything about one run.
    pub async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, StateError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            let run = load_run_row(conn, &run_id)?;
            let steps = {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 ORDER BY position"
                    ))
                    .during("reading steps")?;
                stmt.query_map([&run_id], step_row)
                    .during("reading steps")?
                    .collect::<Result<Vec<_>, _>>()
                    .during("reading steps")?
            };
            let windows = {
                let mut stmt = conn
                    .prepare(
                        "SELECT id, kind, opened_step, opened_at, closed_step, closed_at, limit_notified, subject
                         FROM windows WHERE run_id = ?1 ORDER BY id",
                    )
                    .during("reading windows")?;
                stmt.query_map([&run_id], window_row)
                    .during("reading windows")?
                    .collect::<Result<Vec<_>, _>>()
                    .during("reading windows")?
            };
            let approvals = {
                let mut stmt = conn
                    .prepare("SELECT step_id, by, comment, at, auto FROM approvals WHERE run_id = ?1 ORDER BY at")
                    .during("reading approvals")?;
                stmt.query_map([&run_id], approval_row)
                    .during("reading approvals")?
                    .collect::<Result<Vec<_>, _>>()
                    .during("reading approvals")?
            };
            Ok(RunSnapshot {
                run,
                steps: steps.into_iter().map(|s| s.and_then_json()).collect::<Result<_, _>>()?,
                windows,
                approvals,
            })
        })
        .await
    }

    /// Runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunRow>, StateError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {RUN_COLUMNS} FROM {RUN_FROM} ORDER BY r.created_at DESC, r.id DESC"
                ))
                .during("listing runs")?;
            let rows = stmt
                .query_map([], run_row_raw)
                .during("listing runs")?
                .collect::<Result<Vec<_>, _>>()
                .during("listing runs")?;
            let mut out = Vec::new();
            for raw in rows {
                let row = raw.into_row()?;
                if filter.statuses.is_empty() || filter.statuses.contains(&row.status) {
                    out.push(row);
                }
                if filter.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    /// The audit trail of a run (or of a schedule, `schedule:<name>`), oldest first.
    pub async fn events(&self, run_id: &str) -> Result<Vec<EventRow>, StateError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            audit::stream_exists(conn, &run_id)?;
            let mut stmt = conn
                .prepare(
                    "SELECT run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash
                     FROM events WHERE run_id = ?1 ORDER BY seq",
                )
                .during("reading the audit trail")?;
            let rows = stmt
                .query_map([&run_id], |r| {
                    let (run, seq): (String, i64) = (r.get(0)?, r.get(1)?);
                    let event = || format!("event #{seq} of run {run}");
                    let kind = text(r, 3, &event)?;
                    let event = || format!("event #{seq} ({kind}) of run {run}");
                    Ok((
                        run.clone(),
                        seq,
                        r.get::<_, i64>(2)?,
                        kind.clone(),
                        opt_text(r, 4, &event)?,
                        r.get::<_, Option<u32>>(5)?,
                        text(r, 6, &event)?,
                        text(r, 7, &event)?,
                        text(r, 8, &event)?,
                    ))
                })
                .during("reading the audit trail")?
                .collect::<Result<Vec<_>, _>>()
                .during("reading the audit trail")?;
            rows.into_iter()
                .map(|(run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash)| {
                    Ok(EventRow {
                        run_id,
                        seq,
                        at,
                        kind,
                        step_id,
                        attempt,
                        data: parse_json(&data, "event data")?,
                        prev_hash,
                        hash,
                    })
                })
                .collect()
        })
        .await
    }

    /// Recomputes the hash chains of one run (or all) and reports the first bad event.
    pub async fn verify_audit(&self, run_id: Option<&str>) -> Result<AuditReport, StateError> {
        self.verify_audit_since(run_id, None).await
    }

    /// As [`Store::verify_audit`], and the chain must still contain the event whose hash is
    /// `since_head` (a head recorded earlier, outside this database).
    pub async fn verify_audit_since(
        &self,
        run_id: Option<&str>,
        since_head: Option<&str>,
    ) -> Result<AuditReport, StateError> {
        let (run_id, since) = (run_id.map(str::to_owned), since_head.map(str::to_owned));
        self.read(move |conn| audit::verify(conn, run_id.as_deref(), since.as_deref()))
            .await
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StateError> + Send + 'static,
    {
        self.conn.write(f).await
    }

    /// Makes the write after the next `skip` ones fail with `fault`, once (reliability
    /// tests: no side effect may follow a start that was not durably committed).
    #[cfg(feature = "test-util")]
    pub fn inject_fault(&self, skip: u64, fault: crate::StoreFault) {
        self.conn.inject(skip, fault);
    }

    /// How many write transactions this store has committed (each one fsync of the WAL;
    /// concurrent writes share one). For benchmarks.
    pub fn commit_count(&self) -> u64 {
        self.conn.commits()
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StateError> + Send + 'static,
    {
        self.conn.read(move |conn| f(conn)).await
    }
}

/// Creates a run inside the caller's transaction (see [`Store::create_run`]).
pub(crate) fn insert_run(tx: &Transaction<'_>, run: &NewRun) -> Result<(), StateError> {
    for key in &run.locks {
        let holder: Option<(String, String)> = tx
            .cached_query_row(
                "SELECT l.run_id, r.status FROM locks l JOIN runs r ON r.id = l.run_id WHERE l.key = ?1",
                [key],
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
    let status = if owner.is_some() {
        RunStatus::Running
    } else {
        RunStatus::Pending
    };
    tx.cached_execute(
        "INSERT OR IGNORE INTO runbook_texts (sha256, text) VALUES (?1, ?2)",
        params![run.runbook_sha256, run.runbook_text],
    )
    .during("pinning the runbook text")?;
    tx.cached_execute(
        "INSERT INTO runs (id, runbook_name, runbook_version, runbook_sha256, source_path,
                           params, status, auto_approve, created_at, updated_at, lease_owner,
                           lease_expires_at, audit_head, audit_count, schedule_name, window)
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
        tx.cached_execute(
            "INSERT INTO steps (run_id, step_id, position, status) VALUES (?1, ?2, ?3, 'pending')",
            params![run.id, step, position as i64],
        )
        .during("creating the run's steps")?;
    }
    for key in &run.locks {
        tx.cached_execute(
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

fn create_private(path: &Path) -> std::io::Result<()> {
    use std::fs::OpenOptions;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether SQLite could not set up the WAL index of a read-only database (its `-shm`, in a
/// folder this process cannot write).
fn is_cannot_init(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(
        e.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(f, _))
            if matches!(
                f.extended_code,
                rusqlite::ffi::SQLITE_READONLY_CANTINIT | rusqlite::ffi::SQLITE_READONLY_DIRECTORY
            ) || f.code == rusqlite::ErrorCode::CannotOpen
    )
}

/// `X.db-wal` or `X.db-shm` beside `X.db`.
fn wal_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A `file:` URI that opens `path` as immutable (no locks, no `-shm`).
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn finished_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed (use `resume --retry-failed` or `cancel`)",
        RunStatus::Cancelled => "been cancelled",
        _ => "finished",
    }
}

/// A run's status and lease, without the rest of its row.
struct Lease {
    status: RunStatus,
    owner: Option<String>,
    expires_at: Option<Millis>,
}

fn lease_of(conn: &Connection, run_id: &str) -> Result<Lease, StateError> {
    let (status, owner, expires_at): (String, Option<String>, Option<Millis>) = conn
        .cached_query_row(
            "SELECT status, lease_owner, lease_expires_at FROM runs WHERE id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .during("reading the lease")?
        .ok_or_else(|| StateError::UnknownRun {
            run_id: run_id.to_owned(),
        })?;
    let status = status
        .parse()
        .map_err(|e: String| StateError::InvalidTransition { message: e })?;
    Ok(Lease {
        status,
        owner,
        expires_at,
    })
}

/// Fencing: a driver may write only while it holds an unexpired lease. A driver that
/// stalled past its expiry is refused even if nobody has taken the run over yet, because
/// from that moment another process may have read the run's state and acted on it.
///
/// Returns whether an operator asked to cancel the run (read in the same statement).
fn check_lease(conn: &Connection, run_id: &str, owner: &str, now: Millis) -> Result<bool, StateError> {
    let current: Option<(Option<String>, Option<Millis>, bool)> = conn
        .cached_query_row(
            "SELECT lease_owner, lease_expires_at, cancel_requested FROM runs WHERE id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .during("checking the lease")?;
    match current {
        None => Err(StateError::UnknownRun {
            run_id: run_id.to_owned(),
        }),
        Some((Some(o), Some(exp), cancel)) if o == owner && exp > now => Ok(cancel),
        Some((Some(o), _, _)) if o == owner => Err(StateError::LeaseLost {
            run_id: run_id.to_owned(),
            owner: "nobody (this process's lease expired)".to_owned(),
        }),
        Some((other, _, _)) => Err(StateError::LeaseLost {
            run_id: run_id.to_owned(),
            owner: other.unwrap_or_else(|| "nobody".to_owned()),
        }),
    }
}

pub(crate) fn set_status(
    tx: &Transaction<'_>,
    run_id: &str,
    status: RunStatus,
    error: Option<serde_json::Value>,
    now: Millis,
) -> Result<(), StateError> {
    let finished = status.is_terminal().then_some(now);
    tx.cached_execute(
        "UPDATE runs SET status = ?2, error = ?3, updated_at = ?4, finished_at = ?5,
                cancel_requested = CASE WHEN ?6 THEN 0 ELSE cancel_requested END
         WHERE id = ?1",
        params![
            run_id,
            status.as_str(),
            error.as_ref().map(|e| e.to_string()),
            now,
            finished,
            status.is_terminal()
        ],
    )
    .during("changing the run status")?;
    // A failed run keeps its locks: the resources are half-way through a procedure and no
    // other run should touch them until an operator retries or cancels this one.
    if matches!(status, RunStatus::Succeeded | RunStatus::Cancelled) {
        tx.cached_execute("DELETE FROM locks WHERE run_id = ?1", [run_id])
            .during("releasing resource locks")?;
    }
    let kind = match status {
        RunStatus::Pending => "run.pending",
        RunStatus::Running => "run.running",
        RunStatus::Waiting => "run.waiting",
        RunStatus::Succeeded => "run.succeeded",
        RunStatus::Failed => "run.failed",
        RunStatus::Cancelled => "run.cancelled",
    };
    audit::append(
        tx,
        run_id,
        now,
        NewEvent::run(kind, error.unwrap_or(serde_json::Value::Null)),
    )
}

/// The events of one transition, appended together at its end.
type Events<'a> = Vec<(Millis, NewEvent<'a>)>;

/// Applies the end of an attempt; returns whether it set the run's status.
fn apply_finish<'a>(
    tx: &Transaction<'_>,
    run_id: &str,
    finish: &'a StepFinish,
    events: &mut Events<'a>,
) -> Result<bool, StateError> {
    let sid = finish.step_id.as_str();
    let attempt = Some(finish.attempt);
    let now = finish.now;
    let changed = match &finish.outcome {
        StepOutcome::Completed { output } => {
            let changed = tx
                .cached_execute(
                    "UPDATE steps SET status = 'completed', output = ?3, error = NULL, finished_at = ?4,
                            next_attempt_at = NULL
                     WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                    params![run_id, sid, output.to_string(), now],
                )
                .during("completing a step")?;
            if changed > 0 {
                events.push((
                    now,
                    NewEvent::step("step.completed", sid, attempt, json!({ "output": output })),
                ));
                for kind in &finish.closes {
                    close_window(tx, run_id, *kind, sid, now, events)?;
                }
            }
            changed
        }
        StepOutcome::Skipped { reason } => {
            let changed = tx
                .cached_execute(
                    "UPDATE steps SET status = 'skipped', finished_at = ?3
                     WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                    params![run_id, sid, now],
                )
                .during("skipping a step")?;
            events.push((
                now,
                NewEvent::step("step.skipped", sid, None, json!({ "when": reason })),
            ));
            changed
        }
        StepOutcome::RetryScheduled { error, next_attempt_at } => {
            let changed = tx
                .cached_execute(
                    "UPDATE steps SET status = 'retry_wait', error = ?3, next_attempt_at = ?4
                     WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                    params![run_id, sid, error.to_string(), next_attempt_at],
                )
                .during("scheduling a retry")?;
            events.push((
                now,
                NewEvent::step(
                    "step.retry_scheduled",
                    sid,
                    attempt,
                    json!({ "error": error, "next_attempt_at": format_ms(*next_attempt_at) }),
                ),
            ));
            changed
        }
        StepOutcome::Failed { error, run_continues } => {
            let changed = tx
                .cached_execute(
                    "UPDATE steps SET status = 'failed', error = ?3, finished_at = ?4
                     WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                    params![run_id, sid, error.to_string(), now],
                )
                .during("failing a step")?;
            events.push((
                now,
                NewEvent::step(
                    "step.failed",
                    sid,
                    attempt,
                    json!({ "error": error, "run_continues": run_continues }),
                ),
            ));
            changed
        }
    };
    if changed == 0 {
        return Err(refuse_done(tx, run_id, sid, "")?);
    }
    let Some(status) = finish.run_status else {
        return Ok(false);
    };
    let error = match &finish.outcome {
        StepOutcome::Failed { error, .. } if status == RunStatus::Failed => {
            Some(json!({ "step": sid, "error": error }))
        }
        _ => None,
    };
    // The run's own event follows the step's: append what is queued first.
    audit::append_all(tx, run_id, events.drain(..))?;
    set_status(tx, run_id, status, error, now)?;
    Ok(true)
}

/// The error for a transition of a step that is already done (or does not exist).
fn refuse_done(tx: &Transaction<'_>, run_id: &str, step_id: &str, tail: &str) -> Result<StateError, StateError> {
    let status: Option<String> = tx
        .cached_query_row(
            "SELECT status FROM steps WHERE run_id = ?1 AND step_id = ?2",
            [run_id, step_id],
            |r| r.get(0),
        )
        .optional()
        .during("reading a step")?;
    Ok(match status {
        None => StateError::UnknownStep {
            run_id: run_id.to_owned(),
            step_id: step_id.to_owned(),
        },
        Some(status) => StateError::InvalidTransition {
            message: format!("step `{step_id}` is already {status}{tail}"),
        },
    })
}

/// Names a transition for an error: "the end of step `a` and the start of step `b`".
fn transition(finished: &[StepFinish], start: Option<&StepStart>) -> String {
    let ends: Vec<String> = finished.iter().map(|f| format!("`{}`", f.step_id)).collect();
    let ends = match ends.as_slice() {
        [] => None,
        [one] => Some(format!("the end of step {one}")),
        many => Some(format!("the ends of steps {}", many.join(", "))),
    };
    let start = start.map(|s| format!("the start of step `{}`", s.step_id));
    match (ends, start) {
        (Some(e), Some(s)) => format!("{e} and {s}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "a transition".to_owned(),
    }
}

/// The refusal of a step whose row says it may run while the trail records it as done
/// (`None` when the row agrees that the step is done: the usual refusal applies).
fn disagreement(
    tx: &Transaction<'_>,
    run_id: &str,
    step_id: &str,
    recorded: &str,
) -> Result<Option<StateError>, StateError> {
    let row: Option<String> = tx
        .cached_query_row(
            "SELECT status FROM steps WHERE run_id = ?1 AND step_id = ?2",
            [run_id, step_id],
            |r| r.get(0),
        )
        .optional()
        .during("reading a step")?;
    if matches!(row.as_deref(), Some("completed" | "skipped" | "failed")) {
        return Ok(None);
    }
    Ok(Some(StateError::TrailDisagrees {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
        row: row.unwrap_or_else(|| "missing".to_owned()),
        recorded: recorded.to_owned(),
    }))
}

/// Switches the connection to WAL and returns the journal mode SQLite reports. Setting the
/// mode needs a lock that SQLite does not wait for through the busy handler when another
/// process is opening (or migrating) the same new database at that instant, so `SQLITE_BUSY`
/// is retried here for as long as the busy timeout would have waited.
fn wal_mode(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                // A lock wait, not a timing assumption: the other opener holds the lock for
                // the few milliseconds its own switch or migration takes.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn open_window<'a>(
    tx: &Transaction<'_>,
    run_id: &str,
    kind: WindowKind,
    step: &'a str,
    subject: Option<&str>,
    now: Millis,
    events: &mut Events<'a>,
) -> Result<(), StateError> {
    let already: Option<i64> = tx
        .cached_query_row(
            "SELECT id FROM windows WHERE run_id = ?1 AND kind = ?2 AND closed_at IS NULL",
            params![run_id, kind.as_str()],
            |r| r.get(0),
        )
        .optional()
        .during("reading windows")?;
    if already.is_some() {
        // A retried attempt of the opening step: the window has been open since the first.
        return Ok(());
    }
    tx.cached_execute(
        "INSERT INTO windows (run_id, kind, opened_step, opened_at, subject) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![run_id, kind.as_str(), step, now, subject],
    )
    .during("opening a window")?;
    let id = tx.last_insert_rowid();
    events.push((
        now,
        NewEvent::step(
            "window.opened",
            step,
            None,
            json!({ "kind": kind, "window": id, "subject": subject }),
        ),
    ));
    Ok(())
}

fn close_window<'a>(
    tx: &Transaction<'_>,
    run_id: &str,
    kind: WindowKind,
    step: &'a str,
    now: Millis,
    events: &mut Events<'a>,
) -> Result<(), StateError> {
    let open: Option<(i64, i64)> = tx
        .cached_query_row(
            "SELECT id, opened_at FROM windows WHERE run_id = ?1 AND kind = ?2 AND closed_at IS NULL",
            params![run_id, kind.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .during("reading windows")?;
    let Some((id, opened_at)) = open else {
        return Ok(());
    };
    // A window never closes before it opened: a clock stepped back between the two reads
    // an earlier time, and a stored negative duration would be a lie about the outage.
    let closed_at = now.max(opened_at);
    if closed_at != now {
        tracing::warn!(
            window = id,
            opened_at,
            now,
            "the clock reads a time before the window opened; its close is recorded at its open"
        );
    }
    tx.cached_execute(
        "UPDATE windows SET closed_step = ?2, closed_at = ?3 WHERE id = ?1",
        params![id, step, closed_at],
    )
    .during("closing a window")?;
    events.push((
        closed_at,
        NewEvent::step(
            "window.closed",
            step,
            None,
            json!({ "kind": kind, "window": id, "duration_ms": closed_at - opened_at }),
        ),
    ));
    Ok(())
}

/// The run's columns with its pinned text (`RUN_FROM` joins the two tables).
const RUN_COLUMNS: &str =
    "r.id, r.runbook_name, r.runbook_version, t.text, r.runbook_sha256, r.source_path, r.params, r.status,
     r.auto_approve, r.created_at, r.updated_at, r.finished_at, r.error, r.lease_owner, r.lease_expires_at,
     r.cancel_requested, r.audit_head, r.audit_count, r.window";
const RUN_FROM: &str = "runs r JOIN runbook_texts t ON t.sha256 = r.runbook_sha256";

struct RawRun {
    row: RunRow,
    params: String,
    status: String,
    error: Option<String>,
    window: Option<String>,
}

impl RawRun {
    fn into_row(self) -> Result<RunRow, StateError> {
        let mut row = self.row;
        row.params = parse_json(&self.params, "run parameters")?;
        row.status = self
            .status
            .parse()
            .map_err(|e: String| StateError::InvalidTransition { message: e })?;
        row.error = self.error.as_deref().map(|e| parse_json(e, "run error")).transpose()?;
        row.window = self
            .window
            .as_deref()
            .map(|w| parse_json(w, "run window"))
            .transpose()?;
        Ok(row)
    }
}

fn run_row_raw(r: &Row<'_>) -> rusqlite::Result<RawRun> {
    let id = text(r, 0, &|| "the id of a run's row".to_owned())?;
    let row = || format!("run {id}");
    Ok(RawRun {
        row: RunRow {
            runbook_name: text(r, 1, &row)?,
            runbook_version: r.get(2)?,
            runbook_text: text(r, 3, &row)?,
            runbook_sha256: text(r, 4, &row)?,
            source_path: opt_text(r, 5, &row)?,
            params: serde_json::Value::Null,
            status: RunStatus::Pending,
            auto_approve: r.get(8)?,
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
            finished_at: r.get(11)?,
            error: None,
            lease_owner: opt_text(r, 13, &row)?,
            lease_expires_at: r.get(14)?,
            cancel_requested: r.get(15)?,
            window: None,
            audit_head: text(r, 16, &row)?,
            audit_count: r.get(17)?,
            id: id.clone(),
        },
        params: text(r, 6, &row)?,
        status: text(r, 7, &row)?,
        error: opt_text(r, 12, &row)?,
        window: opt_text(r, 18, &row)?,
    })
}

pub(crate) fn load_run_row(conn: &Connection, run_id: &str) -> Result<RunRow, StateError> {
    conn.cached_query_row(
        &format!("SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE r.id = ?1"),
        [run_id],
        run_row_raw,
    )
    .optional()
    .during("reading a run")?
    .ok_or_else(|| StateError::UnknownRun {
        run_id: run_id.to_owned(),
    })?
    .into_row()
}

const STEP_COLUMNS: &str = "step_id, position, status, attempt, input, output, progress, error, first_started_at,
     started_at, finished_at, deadline_at, next_attempt_at";

struct RawStep {
    row: StepRow,
    status: String,
    input: Option<String>,
    output: Option<String>,
    progress: Option<String>,
    error: Option<String>,
}

impl RawStep {
    fn and_then_json(self) -> Result<StepRow, StateError> {
        let mut row = self.row;
        let j = |v: Option<String>, what| v.as_deref().map(|s| parse_json(s, what)).transpose();
        row.status = self
            .status
            .parse()
            .map_err(|e: String| StateError::InvalidTransition { message: e })?;
        row.input = j(self.input, "step input")?;
        row.output = j(self.output, "step output")?;
        row.progress = j(self.progress, "step progress")?;
        row.error = j(self.error, "step error")?;
        Ok(row)
    }
}

fn step_row(r: &Row<'_>) -> rusqlite::Result<RawStep> {
    let id = text(r, 0, &|| "the id of a step's row".to_owned())?;
    let row = || format!("step `{id}`");
    Ok(RawStep {
        row: StepRow {
            position: r.get(1)?,
            status: StepStatus::Pending,
            attempt: r.get(3)?,
            input: None,
            output: None,
            progress: None,
            error: None,
            first_started_at: r.get(8)?,
            started_at: r.get(9)?,
            finished_at: r.get(10)?,
            deadline_at: r.get(11)?,
            next_attempt_at: r.get(12)?,
            step_id: id.clone(),
        },
        status: text(r, 2, &row)?,
        input: opt_text(r, 4, &row)?,
        output: opt_text(r, 5, &row)?,
        progress: opt_text(r, 6, &row)?,
        error: opt_text(r, 7, &row)?,
    })
}

pub(crate) fn load_step_row(conn: &Connection, run_id: &str, step_id: &str) -> Result<StepRow, StateError> {
    conn.cached_query_row(
        &format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 AND step_id = ?2"),
        [run_id, step_id],
        step_row,
    )
    .optional()
    .during("reading a step")?
    .ok_or_else(|| StateError::UnknownStep {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
    })?
    .and_then_json()
}

fn window_row(r: &Row<'_>) -> rusqlite::Result<WindowRow> {
    let kind: String = r.get(1)?;
    Ok(WindowRow {
        id: r.get(0)?,
        kind: kind.parse().unwrap_or(WindowKind::Unprotected),
        opened_step: r.get(2)?,
        opened_at: r.get(3)?,
        closed_step: r.get(4)?,
        closed_at: r.get(5)?,
        limit_notified: r.get(6)?,
        subject: r.get(7)?,
    })
}

fn approval_row(r: &Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(ApprovalRow {
        step_id: r.get(0)?,
        by: r.get(1)?,
        comment: r.get(2)?,
        at: r.get(3)?,
        auto: r.get(4)?,
    })
}

fn parse_json(s: &str, what: &'static str) -> Result<serde_json::Value, StateError> {
    serde_json::from_str(s).map_err(|source| StateError::Corrupt { what, source })
}
