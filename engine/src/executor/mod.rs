//! The checkpointed executor: creates runs and drives them step by step.
//!
//! Every transition is committed before the effect it announces: a step's start (attempt,
//! resolved input, deadline, the windows it opens) is durable before its activity runs,
//! and its outcome (output or error, the windows it closes, the run's next status) is one
//! transaction after it returns. Nothing is held open across an activity.

mod carry;
mod create;
mod drive;
mod driver;
mod engine;
mod heartbeat;
mod notify;
mod step;
mod window_limits;

pub use create::{CreateRun, sha256_hex};
pub use engine::{Engine, EngineConfig, RunOutcome};
