//! The driver of one run: what it knows while it walks the steps.

use std::sync::Arc;

use fogbook_state::{Millis, StepFinish};
use tokio_util::sync::CancellationToken;

use super::carry::Shown;
use super::engine::{Engine, RunOutcome};
use crate::lease::LeaseClock;
use crate::runbook::Runbook;

pub(super) enum StepEnd {
    Completed(serde_json::Value),
    Skipped,
    FailedContinue(serde_json::Value),
    Stop(RunOutcome),
}

pub(super) struct Driver<'a> {
    pub(super) engine: &'a Engine,
    pub(super) run_id: &'a str,
    pub(super) runbook: &'a Runbook,
    pub(super) auto_approve: bool,
    /// The maintenance window disruptive steps wait for.
    pub(super) window: Option<&'a serde_json::Value>,
    pub(super) stop: &'a CancellationToken,
    /// The driver's lease deadline, the fence of its cloud calls.
    pub(super) lease: Option<Arc<LeaseClock>>,
    /// Ends of attempts whose effects are over but which are not committed yet: they are
    /// committed with the next transition (the start of the next step, as one durable
    /// commit), and before anything else is written or sent. Between an end and its commit
    /// the driver only evaluates the next step's condition and inputs, in memory.
    pub(super) carry: std::sync::Mutex<Vec<StepFinish>>,
    /// What the ends in the carry will show once committed: nothing is reported as done before
    /// its commit.
    pub(super) shown: std::sync::Mutex<Vec<Shown>>,
}

impl Driver<'_> {
    pub(super) fn owner(&self) -> &str {
        self.engine.owner.as_str()
    }

    pub(super) fn now(&self) -> Millis {
        self.engine.clock.now_ms()
    }
}
