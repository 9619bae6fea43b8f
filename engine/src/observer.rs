//! Hooks through which the CLI shows progress. The engine calls them; they must not block.

use fogbook_state::Millis;

/// Receives lifecycle notifications of a run being driven. Every method has a no-op default.
pub trait Observer: Send + Sync + 'static {
    /// A step attempt starts (or is re-entered after a restart when `reentered`).
    fn step_started(&self, _step: &str, _uses: &str, _attempt: u32, _reentered: bool) {}
    /// A step completed.
    fn step_completed(&self, _step: &str, _elapsed_ms: Millis) {}
    /// A step was skipped because its `when` was false.
    fn step_skipped(&self, _step: &str) {}
    /// An attempt failed and another is scheduled.
    fn retry_scheduled(&self, _step: &str, _attempt: u32, _error: &str, _delay_ms: Millis) {}
    /// A step failed for good.
    fn step_failed(&self, _step: &str, _error: &str) {}
    /// A window opened or closed.
    fn window(&self, _kind: &str, _opened: bool, _step: &str) {}
    /// A window has been open longer than the runbook's limit.
    fn window_limit_exceeded(&self, _kind: &str, _age_ms: Millis, _limit: &str) {}
    /// A lease was taken over from a dead or expired owner.
    fn took_over(&self, _from: &str) {}
    /// The pinned runbook differs from the file on disk.
    fn runbook_file_changed(&self, _path: &str) {}
    /// A worker fired schedule `schedule` for `fire_at`, creating run `run_id` of `runbook`.
    fn schedule_fired(&self, _schedule: &str, _fire_at: Millis, _run_id: &str, _runbook: &str) {}
    /// A worker recorded fire time `fire_at` of `schedule` as skipped, for `reason`.
    fn schedule_skipped(&self, _schedule: &str, _fire_at: Millis, _reason: &str) {}
    /// A worker queued fire time `fire_at` of `schedule` behind its unfinished run.
    fn schedule_queued(&self, _schedule: &str, _fire_at: Millis) {}
    /// A worker starts driving run `run_id` of `runbook` (created by `schedule`, if any).
    fn run_picked_up(&self, _run_id: &str, _runbook: &str, _schedule: Option<&str>) {}
    /// A worker about to drive `run_id` found that `owner` got its lease first.
    fn run_left_to(&self, _run_id: &str, _owner: &str) {}
    /// The observer of run `run_id` alone, for a worker that drives several runs at once
    /// (its lines name the run); `None`: this one serves every run as it is.
    fn for_run(&self, _run_id: &str) -> Option<std::sync::Arc<dyn Observer>> {
        None
    }
    /// A worker's drive of `run_id` ended with `outcome` (an end, a wait or a stop).
    fn run_driven(&self, _run_id: &str, _outcome: &crate::RunOutcome) {}
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {}
