//! [`Store`]: the SQLite-backed state of all runs.

use crate::sql::Tx;
use crate::thread::ConnThread;

mod actions;
mod create;
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

/// The state of all runs, in one SQLite file. Cheap to clone; all clones share one
/// connection thread.
#[derive(Clone, Debug)]
pub struct Store {
    conn: ConnThread,
}

impl Store {
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        self.conn.write(f).await
    }

    /// Makes the write after the next `skip` ones fail with `fault`, once (reliability
    /// tests: no side effect may follow a start that was not durably committed).
    #[cfg(feature = "test-hooks")]
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
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        self.conn.read(f).await
    }
}
