//! The fogbook engine: the runbook model, its parser and validator, expressions, and the
//! checkpointed executor that drives runs through the durable state store.
//!
//! Entry points: [`runbook::parse`] (text to a validated [`runbook::Runbook`]),
//! [`Engine::create_run`] (pin and lock), [`Engine::drive`] (run or resume under a lease).
//!
//! Invariants (docs/DESIGN.md §3): a step's start is committed before its activity runs, and its
//! outcome with its window changes in one transaction after; a completed step never runs
//! again; a run is driven only under its lease; durable deadlines (retries, waits,
//! approvals, timeouts) are stored and continue after a restart for the time that remains.

pub mod bench;
mod clock;
mod error;
mod executor;
pub mod expr;
mod failpoint;
pub mod fleet;
mod host;
mod lease;
mod observer;
pub mod owner;
pub mod plan;
mod retry;
pub mod runbook;
pub mod schedule;
mod worker;

pub use clock::{Clock, MachineTime, SteadyClock, SystemClock, TimeSource};
pub use error::{EngineError, ErrorKind};
pub use executor::{CreateRun, Engine, EngineConfig, RunOutcome, sha256_hex};
pub use lease::lease_margin;
pub use observer::{Observer, Silent};
pub use owner::Owner;
/// Whether this build reads the test switches (`FOGBOOK_FAILPOINTS`): built with the feature
/// `test-hooks`, as the tests, the chaos runner and `fogbook bench` are; a release build is not.
pub const TEST_HOOKS: bool = cfg!(feature = "test-hooks");
pub use worker::{PreparedEnv, RunEnv, RunEnvHook, WorkerConfig, WorkerReport, run_worker};
