//! Store-fault injection for the reliability tests (feature `test-hooks` only; without it
//! none of this is compiled and the write path takes no lock for it).
//!
//! The engine's tests use it to prove that no side effect happens whose start was not
//! durably committed.

use std::sync::{Mutex, PoisonError};

use crate::StateError;

/// A fault to inject into the write path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFault {
    /// The write fails before anything is committed (as on SQLITE_IOERR).
    FailBeforeCommit,
    /// The database is locked past the busy timeout (SQLITE_BUSY): nothing is committed.
    Busy,
    /// The disk is full (SQLITE_FULL): nothing is committed.
    DiskFull,
    /// The write is committed, but the caller sees an error (a lost acknowledgement).
    CommitThenFail,
}

/// The one fault planned, and how many writes pass before it.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    /// Writes to let through before the fault.
    skip: u64,
    fault: Option<StoreFault>,
}

/// Makes the write after the next `skip` ones fail with `fault` (once).
pub(crate) fn plan(plan: &Mutex<FaultPlan>, skip: u64, fault: StoreFault) {
    let mut plan = plan.lock().unwrap_or_else(PoisonError::into_inner);
    *plan = FaultPlan {
        skip,
        fault: Some(fault),
    };
}

/// Called before a write is queued: fails it when a fault that commits nothing is due, and
/// otherwise returns the fault (if any) the write must suffer after its commit.
pub(crate) fn before_write(plan: &Mutex<FaultPlan>) -> Result<Option<StoreFault>, StateError> {
    let fault = due(plan);
    match fault {
        Some(StoreFault::FailBeforeCommit) => Err(injected("I/O error before the commit")),
        Some(StoreFault::Busy) => Err(injected("database is locked (SQLITE_BUSY)")),
        Some(StoreFault::DiskFull) => Err(injected("database or disk is full (SQLITE_FULL)")),
        Some(StoreFault::CommitThenFail) | None => Ok(fault),
    }
}

/// Called after a write was answered: a committed write loses its acknowledgement when
/// `fault` says so.
pub(crate) fn after_write<T>(fault: Option<StoreFault>, result: &Result<T, StateError>) -> Result<(), StateError> {
    if fault == Some(StoreFault::CommitThenFail) && result.is_ok() {
        return Err(injected("the commit succeeded but its acknowledgement was lost"));
    }
    Ok(())
}

/// The fault this write must suffer, if one is due.
fn due(plan: &Mutex<FaultPlan>) -> Option<StoreFault> {
    let mut plan = plan.lock().unwrap_or_else(PoisonError::into_inner);
    plan.fault?;
    if plan.skip > 0 {
        plan.skip -= 1;
        return None;
    }
    plan.fault.take()
}

fn injected(what: &str) -> StateError {
    StateError::commit_failed(format!("injected fault: {what}"))
}
