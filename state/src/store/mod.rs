//! [`Store`]: the state of all runs, in SQLite or PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::SqlContext;
use crate::pg::thread::PgThread;
use crate::sql::{Dialect, Keys, Tx, params};
use crate::thread::ConnThread;

mod actions;
mod create;
#[cfg(test)]
pub(crate) mod hold;
mod lease;
mod open;
mod reads;
mod rows;
mod steps;
mod windows;

use crate::StateError;
pub(crate) use create::insert_run;
pub(crate) use rows::{load_run_row, load_step_row};
pub(crate) use steps::{finished_word, set_status};

/// The state of all runs, in one SQLite file or one PostgreSQL database. Cheap to clone;
/// all clones share the backend's threads.
#[derive(Clone, Debug)]
pub struct Store {
    conn: Backend,
    /// The lease epochs this process holds, by run id (`fleet:ID` for a fleet): the fencing
    /// token each driver write carries. A lease taken here records the epoch it got; a
    /// write compares it with the row's, so once another process (or store) has taken the
    /// lease over, whatever the owner's name, this one's writes are refused.
    epochs: Arc<Mutex<HashMap<String, (String, i64)>>>,
    /// Runs this store claimed for a worker (PostgreSQL) whose claim was audited and whose
    /// driver has not taken the lease yet: taking it then is no new acquisition.
    claimed: Arc<Mutex<std::collections::HashSet<String>>>,
    /// The store's moved mark when it was opened (`moved.rs`).
    pub(crate) moved: Option<crate::MovedMark>,
}

/// The threads that run the store's closures.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(ConnThread),
    Postgres(PgThread),
}

impl Store {
    fn new(conn: Backend, moved: Option<crate::MovedMark>) -> Self {
        Self {
            conn,
            epochs: Arc::default(),
            claimed: Arc::default(),
            moved,
        }
    }

    /// The epoch of `key`'s lease this store holds for `owner`, if it took that lease.
    pub(crate) fn held_epoch(&self, key: &str, owner: &str) -> Option<i64> {
        let epochs = self.epochs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        epochs.get(key).filter(|(o, _)| o == owner).map(|(_, e)| *e)
    }

    /// Records that this store holds `key`'s lease for `owner` at `epoch`.
    pub(crate) fn hold_epoch(&self, key: &str, owner: &str, epoch: i64) {
        let mut epochs = self.epochs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        epochs.insert(key.to_owned(), (owner.to_owned(), epoch));
    }

    /// Forgets `key`'s lease (released).
    pub(crate) fn drop_epoch(&self, key: &str) {
        let mut epochs = self.epochs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        epochs.remove(key);
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        match &self.conn {
            Backend::Sqlite(c) => c.write(f).await,
            Backend::Postgres(c) => c.write(f).await,
        }
    }

    /// Makes the write after the next `skip` ones fail with `fault`, once (reliability
    /// tests: no side effect may follow a start that was not durably committed).
    #[cfg(feature = "test-hooks")]
    pub fn inject_fault(&self, skip: u64, fault: crate::StoreFault) {
        match &self.conn {
            Backend::Sqlite(c) => c.inject(skip, fault),
            Backend::Postgres(c) => c.inject(skip, fault),
        }
    }

    /// How many write transactions this store has committed (each one fsync of the WAL,
    /// or one PostgreSQL commit; concurrent writes share one). For benchmarks.
    pub fn commit_count(&self) -> u64 {
        match &self.conn {
            Backend::Sqlite(c) => c.commits(),
            Backend::Postgres(c) => c.commits(),
        }
    }

    /// How many round trips to the database server this store made (PostgreSQL: each
    /// request whose answer it waited for, a pipeline counting once; `None` on SQLite,
    /// which has no server). For benchmarks and tests.
    pub fn round_trips(&self) -> Option<u64> {
        match &self.conn {
            Backend::Sqlite(_) => None,
            Backend::Postgres(c) => Some(c.round_trips()),
        }
    }

    /// Which backend holds the state (`"sqlite"` or `"postgres"`).
    pub fn backend(&self) -> &'static str {
        match &self.conn {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A write that refuses only before its first change (see [`crate::thread::Guard`]):
    /// on SQLite it needs no savepoint of its own in a group; PostgreSQL keeps its savepoint,
    /// and reads the rows `keys` names with its group's start ([`Store::write_keyed`]).
    pub(crate) async fn write_refusing_first<T, F>(&self, keys: Option<Keys>, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        match &self.conn {
            Backend::Sqlite(c) => c.write_guarded(crate::thread::Guard::None, f).await,
            Backend::Postgres(c) => c.write_keyed(keys, f).await,
        }
    }

    /// A driver's write that checks only the rows `keys` names (its run, steps of it) and
    /// changes no other run's: on PostgreSQL those rows are read with its group's start
    /// (one round trip for the whole group), and its statements go out with the group's
    /// commit, so it needs no round trip of its own ([`crate::sql::Keys`]); a statement of
    /// it that fails then fails its whole group. SQLite runs it as [`Store::write`].
    pub(crate) async fn write_keyed<T, F>(&self, keys: Keys, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        match &self.conn {
            Backend::Sqlite(c) => c.write(f).await,
            Backend::Postgres(c) => c.write_keyed(Some(keys), f).await,
        }
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        match &self.conn {
            Backend::Sqlite(c) => c.read(f).await,
            Backend::Postgres(c) => c.read(f).await,
        }
    }

    /// As [`Store::read`], every statement of `f` seeing the same instant: on PostgreSQL a
    /// read is one `REPEATABLE READ` transaction already; on SQLite a read outside a
    /// transaction sees each statement's own snapshot, so `f` runs inside one (`BEGIN`, ended
    /// whatever the outcome). For reads that compare tables with each other while other
    /// processes write (`audit verify` checks the runs and steps against the trail).
    pub(crate) async fn read_consistent<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        self.read(move |tx| {
            if tx.dialect() != Dialect::Sqlite {
                return f(tx);
            }
            tx.execute("BEGIN", params![]).during("beginning a consistent read")?;
            let read = f(tx);
            // Ended whatever the outcome, so the connection is left outside a transaction.
            let ended = tx.execute("COMMIT", params![]).during("ending a consistent read");
            read.and_then(|r| ended.map(|_| r))
        })
        .await
    }
}
