//! [`StateError`], what it says to a caller ([`StateError::kind`]), and the helpers that
//! turn a backend's errors into it while keeping them as sources.

use std::path::PathBuf;
use std::sync::Arc;

/// The database backend's own error (rusqlite's for SQLite), kept as the source of a
/// [`StateError`]. Shared (`Arc`) because one failed group commit fails every write in it.
pub type BackendError = Arc<dyn std::error::Error + Send + Sync>;

/// What kind of failure a [`StateError`] is, for a caller that decides what happens next
/// (the CLI's exit code) without reading messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Another process holds what was asked for (a run's or fleet's lease, a resource
    /// lock), or this process lost its lease: trying again later may succeed.
    Busy,
    /// The run, step or fleet does not exist.
    NotFound,
    /// The change does not fit the current state (a bad transition, a run being
    /// cancelled); nothing was changed.
    Refused,
    /// The database itself failed or holds what fogbook never writes (I/O, disk full, a
    /// newer schema, corrupt or edited rows, the store thread gone).
    Database,
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The database file could not be opened or created.
    #[error("cannot open state database {path}")]
    OpenDatabase {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database was written by a newer fogbook.
    #[error(
        "state database {path} has schema version {found}, newer than this fogbook knows ({known}); upgrade fogbook"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// The schema version in the file is one no fogbook ever writes.
    #[error(
        "state database {path} has schema version {found}, which no fogbook writes: the file was changed outside fogbook or is not a fogbook database; restore it from a backup, or pass another --db"
    )]
    UnknownSchema {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
    },
    /// The file is an SQLite database of another program (it has tables but no fogbook
    /// schema): fogbook never adds its tables to it.
    #[error(
        "{path} is an SQLite database, but not a fogbook one (it has tables of its own and no fogbook schema); fogbook leaves it untouched: pass another --db"
    )]
    NotFogbook {
        /// The file.
        path: PathBuf,
    },
    /// Applying a schema migration failed.
    #[error("cannot apply schema migration {version}")]
    ApplyMigrations {
        /// The migration that failed.
        version: usize,
        /// Why.
        #[source]
        source: BackendError,
    },
    /// No run with this id.
    #[error("no run `{run_id}` in this database")]
    UnknownRun {
        /// The id asked for.
        run_id: String,
    },
    /// No fleet with this id.
    #[error("no fleet `{fleet_id}` in this database")]
    UnknownFleet {
        /// The id asked for.
        fleet_id: String,
    },
    /// Another process drives the fleet.
    #[error("fleet {fleet_id} is driven by {owner} (lease valid until {expires_at})")]
    FleetLeaseHeld {
        /// The fleet.
        fleet_id: String,
        /// The current lease owner.
        owner: String,
        /// Lease expiry, RFC 3339.
        expires_at: String,
    },
    /// No step with this id in the run.
    #[error("run `{run_id}` has no step `{step_id}`")]
    UnknownStep {
        /// The run.
        run_id: String,
        /// The step asked for.
        step_id: String,
    },
    /// A resource key is locked by another run.
    #[error("`{key}` is locked by run {holder} ({holder_status})")]
    LockHeld {
        /// The contested resource key.
        key: String,
        /// The run holding it.
        holder: String,
        /// That run's status.
        holder_status: String,
    },
    /// Another process drives the run.
    #[error("run {run_id} is driven by {owner} (lease valid until {expires_at})")]
    LeaseHeld {
        /// The run.
        run_id: String,
        /// The current lease owner.
        owner: String,
        /// Lease expiry, RFC 3339.
        expires_at: String,
    },
    /// This process lost its lease (it expired and was taken over).
    #[error("lost the lease on run {run_id}: it is now held by {owner}")]
    LeaseLost {
        /// The run.
        run_id: String,
        /// The new owner, or `nobody`.
        owner: String,
    },
    /// An operator asked to cancel the run; no new step may start.
    #[error("run {run_id} is being cancelled; no step starts any more")]
    CancelRequested {
        /// The run.
        run_id: String,
    },
    /// The requested change does not fit the current state.
    #[error("{message}")]
    InvalidTransition {
        /// What was refused and why.
        message: String,
    },
    /// A step's row says it may run, but the audit trail records it as done: the database
    /// was changed outside fogbook. The step is not run again.
    #[error(
        "step `{step_id}` of run {run_id} is `{row}` in its row, but the audit trail records it as done ({recorded}): it is not run again; the state database was changed outside fogbook: run `fogbook audit verify` to see what disagrees, and restore the database from a backup"
    )]
    TrailDisagrees {
        /// The run.
        run_id: String,
        /// The step.
        step_id: String,
        /// The status in the step's row.
        row: String,
        /// The event that records the step as done.
        recorded: String,
    },
    /// A statement failed.
    #[error("state database error during {operation}")]
    Database {
        /// What the store was doing.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// A stored value is not one fogbook writes (a status or kind it does not know).
    #[error(
        "corrupt {what} in the state database: {message}; the file was changed outside fogbook or by a newer fogbook: run `fogbook audit verify`, or restore the database from a backup"
    )]
    CorruptValue {
        /// Which column.
        what: &'static str,
        /// What is wrong with the value.
        message: String,
    },
    /// Stored JSON could not be read back.
    #[error("corrupt {what} in the state database")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The transaction holding this change could not be committed; nothing of it is saved
    /// (or, on PostgreSQL, the answer to its COMMIT was lost: it may have been saved).
    #[error("{}", commit_text(source.as_ref()))]
    Commit {
        /// Why (the backend's error, or the injected fault).
        #[source]
        source: BackendError,
    },
    /// A transition of a run could not be committed (the disk is full, the file cannot be
    /// written); nothing of it is saved and nothing of it was reported as done.
    ///
    /// Like every next command this crate and the engine write, `fogbook resume RUN` is
    /// written without a `--db`: the CLI gives each `fogbook SUBCOMMAND` in a message its own
    /// invocation's prefix before printing it (`output::commands`).
    /// On PostgreSQL, a COMMIT whose answer was lost ([`crate::pg::PgError::CommitUnanswered`])
    /// may have been saved: the message says so, and that `status` shows which.
    #[error("{}", not_committed(run_id, what, source.as_ref()))]
    NotCommitted {
        /// The run.
        run_id: String,
        /// What the transition was (`the end of step `a` and the start of step `b``).
        what: String,
        /// Why (the backend's error, or the injected fault).
        #[source]
        source: BackendError,
    },
    /// A row's bytes cannot be read (text that is not valid UTF-8): the file was changed
    /// outside fogbook.
    #[error(
        "cannot read {what} in the state database: it is not valid UTF-8, so the file was changed outside fogbook; run `fogbook audit verify` to find what was altered, and restore the database from a backup"
    )]
    Unreadable {
        /// The row and column (`event #5 (step.completed) of run …, column data`).
        what: String,
    },
    /// The PostgreSQL backend failed: connecting, TLS, migrating, or a lost connection.
    #[error("the PostgreSQL state store failed")]
    Postgres(#[source] crate::pg::PgError),
    /// The store location (`--db`, `FOGBOOK_DB`) is not one fogbook can use.
    #[error("invalid state store location")]
    StoreUrl(#[source] crate::pg::StoreUrlError),
    /// The store has a moved mark (`fogbook store copy`), read in the write that was
    /// refused: it takes no new lease, claim, run or fire while a copy reads it, and drives
    /// nothing once its runs live in the target.
    #[error("{}", moved_message(.mark))]
    StoreMoved {
        /// The mark: where the runs went (or are going), and when.
        mark: crate::MovedMark,
    },
    /// The store thread is gone (it panicked or the store was closed).
    #[error("the state store thread has stopped")]
    StoreClosed,
}

fn moved_message(mark: &crate::MovedMark) -> String {
    if mark.done {
        format!(
            "this store was moved to {} by a `store copy` ({}): its runs are driven there now",
            mark.target, mark.by
        )
    } else {
        format!(
            "this store is being copied to {} by a `store copy` ({}): it takes on no new work until the copy ends",
            mark.target, mark.by
        )
    }
}

impl StateError {
    /// What kind of failure this is (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::LeaseHeld { .. } | Self::LeaseLost { .. } | Self::LockHeld { .. } | Self::FleetLeaseHeld { .. } => {
                ErrorKind::Busy
            }
            Self::UnknownRun { .. } | Self::UnknownFleet { .. } | Self::UnknownStep { .. } => ErrorKind::NotFound,
            Self::InvalidTransition { .. }
            | Self::CancelRequested { .. }
            | Self::StoreUrl(_)
            | Self::StoreMoved { .. } => ErrorKind::Refused,
            Self::OpenDatabase { .. }
            | Self::NewerSchema { .. }
            | Self::UnknownSchema { .. }
            | Self::NotFogbook { .. }
            | Self::ApplyMigrations { .. }
            | Self::TrailDisagrees { .. }
            | Self::Database { .. }
            | Self::CorruptValue { .. }
            | Self::Corrupt { .. }
            | Self::Commit { .. }
            | Self::NotCommitted { .. }
            | Self::Unreadable { .. }
            | Self::Postgres(_)
            | Self::StoreClosed => ErrorKind::Database,
        }
    }

    /// Whether this failure is PostgreSQL's answer to a COMMIT lost with the connection:
    /// the change may have been saved, so nothing may be concluded from it alone.
    pub fn commit_unanswered(&self) -> bool {
        failure(self) == Failure::Unanswered
    }

    /// Names the run and the transition a failed commit was for.
    pub(crate) fn naming(self, run_id: &str, what: impl FnOnce() -> String) -> Self {
        match self {
            Self::Commit { source } => Self::NotCommitted {
                run_id: run_id.to_owned(),
                what: what(),
                source,
            },
            other => other,
        }
    }

    /// A failed commit, for a reason that is not a backend error (no transaction could be
    /// begun for the write, or a fault was injected).
    pub(crate) fn commit_failed(reason: impl Into<String>) -> Self {
        Self::Commit {
            source: Arc::new(Reason(reason.into())),
        }
    }
}

/// What the causes of a failed commit say of it.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// PostgreSQL's answer to the COMMIT was lost: it may have been applied.
    Unanswered,
    /// PostgreSQL failed before committing (a lost connection, a refused statement).
    Postgres,
    /// Anything else (SQLite: the disk, the file, a lock; an injected fault).
    Other,
}

fn failure(source: &(dyn std::error::Error + 'static)) -> Failure {
    let mut postgres = false;
    let mut cause = Some(source);
    while let Some(e) = cause {
        if let Some(pg) = e.downcast_ref::<crate::pg::PgError>() {
            if matches!(pg, crate::pg::PgError::CommitUnanswered { .. }) {
                return Failure::Unanswered;
            }
            postgres = true;
        }
        postgres |= e.is::<postgres::Error>();
        cause = e.source();
    }
    if postgres { Failure::Postgres } else { Failure::Other }
}

/// The innermost cause of `e` (what the disk or the database said), for a message that
/// names it without the layers above it.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The text of [`StateError::Commit`].
fn commit_text(source: &(dyn std::error::Error + 'static)) -> String {
    match failure(source) {
        Failure::Unanswered => "the state database may or may not have committed the change (the answer to its COMMIT \
                                was lost with the connection); check what was saved before doing it again"
            .to_owned(),
        Failure::Postgres | Failure::Other => {
            "the state database could not commit the change; nothing of it is saved".to_owned()
        }
    }
}

/// The text of [`StateError::NotCommitted`]: what was not committed, why, and what to do
/// once that cause is gone (which depends on the backend that failed).
fn not_committed(run_id: &str, what: &str, source: &(dyn std::error::Error + 'static)) -> String {
    match failure(source) {
        Failure::Unanswered => format!(
            "cannot tell whether {what} of run {run_id} was saved (the answer to its COMMIT was lost with the \
             connection to PostgreSQL); nothing that depends on it was done; once the server answers, `fogbook \
             status {run_id}` shows what was saved and `fogbook resume {run_id}` carries the run on from there"
        ),
        Failure::Postgres => format!(
            "could not commit {what} of run {run_id}: {}; nothing of it is saved; once the server answers again, run \
             `fogbook resume {run_id}`",
            root_cause(source)
        ),
        Failure::Other => format!(
            "could not commit {what} of run {run_id}: {}; nothing of it is saved; once the cause is fixed (free disk \
             space, file permissions, a lock held by another program), run `fogbook resume {run_id}`",
            root_cause(source)
        ),
    }
}

/// A reason given as text, as the source of a [`StateError`].
#[derive(Debug)]
struct Reason(String);

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reason {}

pub(crate) trait SqlContext<T> {
    /// The error as a [`StateError`] naming what the store was doing.
    fn during(self, operation: &'static str) -> Result<T, StateError>;
}

impl<T> SqlContext<T> for crate::sql::Result<T> {
    fn during(self, operation: &'static str) -> Result<T, StateError> {
        use crate::sql::Error;
        self.map_err(|e| match e {
            Error::Unreadable(cell) => StateError::Unreadable { what: cell.0 },
            Error::Backend(source) => StateError::Database { operation, source },
            other => StateError::Database {
                operation,
                source: Arc::new(other),
            },
        })
    }
}

/// A cell whose text is not valid UTF-8, named by its row and column.
#[derive(Debug)]
pub(crate) struct UnreadableCell(pub(crate) String);

impl std::fmt::Display for UnreadableCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not valid UTF-8", self.0)
    }
}

impl std::error::Error for UnreadableCell {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::PgError;

    fn not_committed(source: BackendError) -> String {
        StateError::NotCommitted {
            run_id: "RUN1".to_owned(),
            what: "the start of step `a`".to_owned(),
            source,
        }
        .to_string()
    }

    fn postgres(e: PgError) -> BackendError {
        Arc::new(StateError::Postgres(e))
    }

    /// A failed commit says what is known of it: maybe saved when PostgreSQL's answer to
    /// the COMMIT was lost, not saved otherwise, with advice for the backend that failed.
    #[test]
    fn a_failed_commit_says_what_is_known_of_it_and_what_to_do_on_its_backend() {
        let unanswered = postgres(PgError::CommitUnanswered {
            target: "postgres://db".to_owned(),
            reason: "connection closed".to_owned(),
        });
        let text = not_committed(unanswered.clone());
        assert!(
            text.starts_with("cannot tell whether the start of step `a` of run RUN1 was saved"),
            "{text}"
        );
        assert!(
            text.contains("`fogbook status RUN1`") && !text.contains("nothing of it is saved"),
            "{text}"
        );
        let text = StateError::Commit { source: unanswered }.to_string();
        assert!(
            text.contains("may or may not have committed") && !text.contains("nothing"),
            "{text}"
        );

        let lost = postgres(PgError::ConnectionLost {
            target: "postgres://db".to_owned(),
            reason: "connection closed".to_owned(),
        });
        let text = not_committed(lost.clone());
        assert!(
            text.contains("nothing of it is saved; once the server answers again"),
            "{text}"
        );
        assert!(
            !text.contains("free disk space"),
            "no SQLite advice for PostgreSQL: {text}"
        );
        let text = StateError::Commit { source: lost }.to_string();
        assert!(text.ends_with("nothing of it is saved"), "{text}");

        let disk: BackendError = Arc::new(std::io::Error::other("disk full"));
        let text = not_committed(disk);
        assert!(
            text.contains("could not commit the start of step `a` of run RUN1: disk full"),
            "{text}"
        );
        assert!(text.contains("free disk space"), "{text}");
    }
}
