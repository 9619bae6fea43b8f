//! Durable state of fogbook runs: one SQLite file holding the pinned runbook of each run,
//! its steps, the hash-chained audit trail, unprotected windows, leases and resource locks.
//!
//! The engine sees [`Store`]. It keeps everything in one SQLite file (WAL,
//! `synchronous=FULL`) and runs all SQLite work on one dedicated thread, so no method
//! blocks the async runtime and every method returns only after its transaction is durable.
//!
//! Invariants:
//! - every state change and the audit event that describes it are written in the same
//!   transaction, so the trail never lacks a change nor records one that did not happen;
//! - a step's completion, its output, the window it opens or closes and the run's next
//!   status are one transaction;
//! - writes made on behalf of a driver carry its lease owner and fail with
//!   [`StateError::LeaseLost`] when another process holds the run (fencing);
//! - events are append-only (triggers refuse UPDATE and DELETE) and each carries the hash
//!   of the one before it, so [`Store::verify_audit`] detects edits and deletions.
//!
//! Only this crate touches rusqlite, and within it only the SQLite side of the seam: the
//! store's logic is written against `sql::Tx`, so another backend runs the same closures.

mod agree;
mod audit;
mod copy;
mod error;
#[cfg(feature = "test-hooks")]
mod fault;
mod fleets;
mod floor;
mod migrations;
mod moved;
mod operator;
pub mod pg;
mod records;
mod schedules;
mod sql;
mod store;
mod thread;
mod time_ms;

pub use audit::{AuditFailure, AuditReport, STORE_STREAM};
pub use copy::{CopyOutcome, CopyProgress, CopySnapshot, LiveLease};
pub use error::{BackendError, ErrorKind, StateError};
#[cfg(feature = "test-hooks")]
pub use fault::StoreFault;
pub use fleets::{FleetRow, FleetSnapshot, FleetTargetRow, NewFleet, NewFleetTarget};
pub use floor::durable_commit_floor;
pub use moved::{MarkRefused, MovedMark};
pub use operator::{Actor, CancelKind, NewPin, OPERATOR_STEP};
pub use records::{
    ApprovalRow, EventRow, FireDecision, FireOutcome, LeaseGrant, NewRun, NewSchedule, Overlap, Repin, RunFilter,
    RunRow, RunSnapshot, RunStatus, ScheduleFleet, ScheduleRow, StepFinish, StepOutcome, StepRow, StepStart,
    StepStatus, WindowKind, WindowRow,
};
pub use store::Store;
pub use time_ms::{Millis, format_ms};
