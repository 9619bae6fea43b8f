//! What a fogbook step does.
//!
//! Every step of a runbook names an activity (`uses:`) and gives it inputs (`with:`). The set
//! of activities is closed: [`ActivityKind`] names each one, and every question about an
//! activity is an exhaustive `match` on it — its dispatch ([`ActivityKind::execute`]), the JSON
//! Schema of its inputs ([`ActivityKind::input_schema`], which the runbook validator uses to
//! reject unknown fields and wrong types before a run is created), its output fields, whether
//! it only reads, whether it needs ARM, and its duration estimate. The free functions
//! ([`execute`], [`input_schema`], …) take the name a runbook wrote.
//!
//! Activities talk to the durable state only through [`ActivityCtx`]: the progress saved by
//! an earlier attempt of the same step ([`ActivityCtx::progress`]), and
//! [`ActivityCtx::save_progress`], which returns only once the progress is committed. An
//! activity that must not repeat an effect saves its intent first and, when re-entered with
//! an intent and no result, finds out what happened instead of doing it again.
//!
//! The Azure activities (`instance.*`, `databases.*`, `network.*`, `fog.*`) talk to Azure
//! Resource Manager through [`arm::ArmClient`], which the process puts in [`Env`] with
//! [`Env::with_arm`]; without one they fail with `ArmNotConfigured`.
//!
//! Invariant: no activity touches SQLite or the engine; they see the store through the
//! [`StepHost`] trait the engine implements. Every secret value the process knows is in
//! [`secrets`], which the engine applies to what it saves.

pub mod arm;
mod azure;
mod builtin;
mod catalog;
mod context;
pub mod duration;
mod error;
pub mod secrets;

pub use azure::{Estimate, find_failover_groups};
pub use catalog::{
    ActivityKind, KINDS, estimate, execute, input_schema, is_read_only, mutates, needs_arm, output_fields, post_event,
};
pub use context::{ActivityCtx, ApprovalRecord, BoxFuture, Env, StepHost};
pub use error::ActivityError;
