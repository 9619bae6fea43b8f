//! The seam between the store's logic and a database backend.
//!
//! Every transition, the audit chain, operator actions, fleets, schedules and the trail
//! comparison are written once, as closures over [`Tx`]. A backend runs them on its writer
//! thread (group commit included) by implementing `Tx` for its connection or transaction;
//! SQLite ([`sqlite::SqliteTx`]) and PostgreSQL (`pg::tx::PgTx`).
//!
//! SQL text given to a `Tx` is written in the dialect SQLite and PostgreSQL share:
//! placeholders `?1…?N` (a PostgreSQL backend rewrites them to `$N`), `ON CONFLICT … DO …`
//! rather than `INSERT OR …`, `RETURNING` rather than `last_insert_rowid()`, no `rowid`, no
//! backend-only functions. Where the backends must differ, [`Tx::dialect`] says which one
//! runs the statement.

pub(crate) mod sqlite;
mod value;

use std::cell::RefCell;
use std::sync::Arc;

pub(crate) use value::{Row, ToValue, Value};

use crate::BackendError;
use crate::error::UnreadableCell;

/// Which SQL dialect a [`Tx`] speaks, for the few statements that cannot be written once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite (the embedded store).
    Sqlite,
    /// PostgreSQL (`--db postgres://…`).
    Postgres,
}

/// Why a statement failed, or a value could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The backend refused or failed the statement.
    #[error(transparent)]
    Backend(BackendError),
    /// A query that must return a row returned none.
    #[error("the query returned no rows")]
    NoRows,
    /// A column holds a value of another type than the one asked for.
    #[error("column {column} holds {found}, not {expected}")]
    Conversion {
        /// The column's name.
        column: String,
        /// The type of the value found.
        found: &'static str,
        /// The type asked for.
        expected: &'static str,
    },
    /// A text cell is not valid UTF-8 (the file was changed outside fogbook).
    #[error(transparent)]
    Unreadable(UnreadableCell),
}

impl Error {
    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Arc::new(e))
    }
}

/// The result of a statement.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// One transaction (or, for reads, one connection) of a backend.
///
/// Dyn-compatible on purpose: the store's closures take `&dyn Tx`, so they are compiled
/// once whatever the backend.
pub(crate) trait Tx {
    /// Runs a statement that returns no rows; returns how many rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize>;
    /// Runs a statement whose answer nobody reads (how many rows it changed, any rows it
    /// returns): SQLite runs it at once; PostgreSQL, in a write, queues it and sends it in
    /// one pipeline with the next statement that needs an answer, or with the write's end.
    /// Its failure fails the write all the same (reported by that later statement, or by
    /// the write's end), and only that write: its savepoint is rolled back.
    fn execute_later(&self, sql: &str, params: &[Value]) -> Result<()> {
        self.execute(sql, params).map(|_| ())
    }
    /// Runs a query and returns all its rows.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// The dialect of this backend.
    fn dialect(&self) -> Dialect;
    /// The time lease expiries are compared with and computed from, given the caller's
    /// clock `caller`: the caller's own on SQLite (one host, one clock), the database
    /// server's on PostgreSQL (workers on several hosts, whose clocks differ, agree on it).
    fn lease_now(&self, caller: crate::Millis) -> Result<crate::Millis> {
        Ok(caller)
    }

    /// The head of the audit chain as this transaction has moved it so far, when the
    /// backend keeps it in memory for the transaction and writes the `chain` row once, at
    /// its end (`None`: the row is read and written by every append).
    ///
    /// Only a backend whose transaction excludes every other writer from its start may keep
    /// it (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's advisory write lock taken at `BEGIN`);
    /// the backend restores it when it rolls a write back.
    fn chain_head(&self) -> Option<&RefCell<Option<ChainHead>>> {
        None
    }

    /// The lease row of `run_id` as read at the start of this write transaction, if the
    /// backend read it ahead ([`Keys`]) and nothing of the transaction has changed it since;
    /// taken: a second call answers `None`, and the caller reads the row itself.
    fn prefetched_run(&self, run_id: &str) -> Option<RunAhead> {
        let _ = run_id;
        None
    }

    /// The status of a step and the last end the trail records for it, as
    /// [`Tx::prefetched_run`] (taken).
    fn prefetched_step(&self, run_id: &str, step_id: &str) -> Option<StepAhead> {
        let _ = (run_id, step_id);
        None
    }
}

/// The rows a write says it will check (its runs, and steps of them): a backend whose
/// round trips cost (PostgreSQL) reads them for a whole group of writes with the group's
/// start, so the checks of a driver's transition need no round trip of their own.
///
/// A write that declares keys changes no row of the runs, steps or step ends of any other
/// run; the backend forgets what it read of a write's runs once that write ran, and all of
/// it after a write that declared none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Keys {
    /// Each run with the steps of it the write checks.
    pub(crate) runs: Vec<(String, Vec<String>)>,
}

impl Keys {
    /// One run and `steps` of it.
    pub(crate) fn run(run_id: &str, steps: impl IntoIterator<Item = String>) -> Self {
        Self {
            runs: vec![(run_id.to_owned(), steps.into_iter().collect())],
        }
    }
}

/// A run's lease row read ahead ([`Tx::prefetched_run`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunAhead {
    pub(crate) owner: Option<String>,
    pub(crate) expires_at: Option<crate::Millis>,
    pub(crate) cancel: bool,
    pub(crate) epoch: i64,
    pub(crate) audit_count: i64,
    pub(crate) status: String,
    /// Whether the store is marked as moved (`store copy`): every driver write refuses.
    pub(crate) moved: bool,
}

/// A step read ahead ([`Tx::prefetched_step`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepAhead {
    /// The step row's status.
    pub(crate) status: String,
    /// The kind of the newest `step.completed`, `step.skipped` or `step.retry_requested`
    /// event of the step, if any.
    pub(crate) last_end: Option<String>,
}

impl StepAhead {
    /// Whether the step's row may still change (its status is not final).
    pub(crate) fn open(&self) -> bool {
        !matches!(self.status.as_str(), "completed" | "skipped" | "failed")
    }

    /// Whether a new attempt may start: the row is open and the trail does not record the
    /// step as done (`step.retry_requested` re-opens it), as `try_start`'s statement checks.
    pub(crate) fn may_start(&self) -> bool {
        self.open() && self.last_end.as_deref().is_none_or(|k| k == "step.retry_requested")
    }
}

/// The newest event of the whole audit chain: its hash and its global position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainHead {
    /// The hash of the newest event ([`crate::audit::GENESIS`] before the first).
    pub(crate) hash: String,
    /// How many events the chain holds (the newest one's global position).
    pub(crate) count: i64,
}

impl dyn Tx + '_ {
    /// The first row of a query, mapped by `f`; [`Error::NoRows`] when there is none.
    pub(crate) fn query_row<T>(&self, sql: &str, params: &[Value], f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        let rows = self.query(sql, params)?;
        rows.first().map_or(Err(Error::NoRows), f)
    }

    /// Every row of a query, mapped by `f`.
    pub(crate) fn query_map<T>(&self, sql: &str, params: &[Value], f: impl FnMut(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(f).collect()
    }
}

/// [`Error::NoRows`] as `None`, as rusqlite's `OptionalExtension` does.
pub(crate) trait OptionalExt<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExt<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The parameters of a statement: `params![a, b]` is `&[Value]`, each converted by
/// [`ToValue`] from a reference (so nothing is moved), as rusqlite's `params!` does.
macro_rules! params {
    () => {
        &[] as &[$crate::sql::Value]
    };
    ($($p:expr),+ $(,)?) => {
        &[$($crate::sql::ToValue::to_value(&$p)),+] as &[$crate::sql::Value]
    };
}
pub(crate) use params;
