// Over 600 lines on purpose: plain data types only (one per row or request), the store API's whole vocabulary in one place.
//! The rows and requests the store reads and writes.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::Millis;

/// Status of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, not driven yet (or released by a driver before it finished).
    Pending,
    /// A driver holds it.
    Running,
    /// Suspended at an approval step.
    Waiting,
    /// All steps done.
    Succeeded,
    /// A step failed and the run stopped; locks stay held until the run is cancelled or
    /// retried.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl RunStatus {
    /// Whether the run can change no more (unless an operator retries a failed one).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(format!("unknown run status `{other}`")),
        })
    }
}

/// Status of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// An attempt has started (committed) and has not finished.
    Running,
    /// An attempt failed; the next one starts at `next_attempt_at`.
    RetryWait,
    /// Done; the output is stored.
    Completed,
    /// Its `when` was false.
    Skipped,
    /// Failed for good.
    Failed,
}

impl StepStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::RetryWait => "retry_wait",
            Self::Completed => "completed",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }

    /// Whether the step will not run again.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Completed | Self::Skipped | Self::Failed)
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "retry_wait" => Self::RetryWait,
            "completed" => Self::Completed,
            "skipped" => Self::Skipped,
            "failed" => Self::Failed,
            other => return Err(format!("unknown step status `{other}`")),
        })
    }
}

/// The two kinds of windows a run records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The databases have no geo-replica.
    Unprotected,
    /// The failover group's listener DNS records do not exist.
    ListenerUnavailable,
}

impl WindowKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unprotected => "unprotected",
            Self::ListenerUnavailable => "listener_unavailable",
        }
    }
}

impl FromStr for WindowKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "unprotected" => Self::Unprotected,
            "listener_unavailable" => Self::ListenerUnavailable,
            other => return Err(format!("unknown window kind `{other}`")),
        })
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// A fresh id (UUID v7).
    pub id: String,
    /// `runbook:` name.
    pub runbook_name: String,
    /// `version:`.
    pub runbook_version: u32,
    /// The exact runbook text the run is pinned to.
    pub runbook_text: String,
    /// Its sha256, hex.
    pub runbook_sha256: String,
    /// Where it was read from, for the "file changed" check on resume.
    pub source_path: Option<String>,
    /// Resolved parameters (defaults applied).
    pub params: serde_json::Value,
    /// Step ids in order.
    pub steps: Vec<String>,
    /// Resource keys to lock for the whole run.
    pub locks: Vec<String>,
    /// Approve approval steps automatically.
    pub auto_approve: bool,
    /// The creating process takes the lease at once (`None`: the run waits for a worker).
    pub lease: Option<(String, Millis)>,
    /// Extra data for the `run.created` event (who, how).
    pub created_by: serde_json::Value,
    /// The schedule that fired this run, if any.
    pub schedule: Option<String>,
    /// The maintenance window its disruptive steps wait for (`Window` JSON), if any.
    pub window: Option<serde_json::Value>,
    /// Creation time.
    pub now: Millis,
}

/// What a schedule does when it fires while its previous run is still going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The fire is skipped (and recorded as skipped).
    Skip,
    /// The fire waits; its run is created when the previous run ends.
    Queue,
}

impl Overlap {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Queue => "queue",
        }
    }
}

impl FromStr for Overlap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(Self::Skip),
            "queue" => Ok(Self::Queue),
            other => Err(format!("unknown overlap policy `{other}` (skip or queue)")),
        }
    }
}

/// A schedule to create.
#[derive(Clone, Debug)]
pub struct NewSchedule {
    /// Unique name.
    pub name: String,
    /// Cron expression (5 or 6 fields).
    pub cron: String,
    /// IANA time zone the expression is read in.
    pub tz: String,
    /// Runbook name.
    pub runbook_name: String,
    /// Pinned runbook text.
    pub runbook_text: String,
    /// Its sha256.
    pub runbook_sha256: String,
    /// Where it came from.
    pub source_path: Option<String>,
    /// Pinned parameters (as given; checked against the runbook when pinned).
    pub params: serde_json::Value,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Fire times missed by at most this much are still fired.
    pub catch_up_ms: Millis,
    /// Maintenance window (`{"start_min", "end_min", "tz", "text"}`), if any.
    pub window: Option<serde_json::Value>,
    /// Runs approve their approval steps automatically.
    pub auto_approve: bool,
    /// Who created it.
    pub created_by: serde_json::Value,
    /// Now; fire times after this are the schedule's first.
    pub now: Millis,
    /// The fleet it fires (`None`: it fires a run of the runbook).
    pub fleet: Option<ScheduleFleet>,
}

/// The fleet a schedule fires: the pinned fleet file (its runbook is the schedule's).
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleFleet {
    /// The fleet file's exact text.
    #[serde(skip)]
    pub text: String,
    /// Where it was read from.
    pub source_path: Option<String>,
}

/// A schedule as stored.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleRow {
    /// Name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// Time zone.
    pub tz: String,
    /// Runbook name.
    pub runbook_name: String,
    /// Pinned text.
    #[serde(skip)]
    pub runbook_text: String,
    /// Its sha256.
    pub runbook_sha256: String,
    /// Where it came from.
    pub source_path: Option<String>,
    /// Pinned parameters.
    pub params: serde_json::Value,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Catch-up window.
    pub catch_up_ms: Millis,
    /// Maintenance window.
    pub window: Option<serde_json::Value>,
    /// Auto-approve.
    pub auto_approve: bool,
    /// Paused schedules do not fire (fire times passing while paused are skipped).
    pub paused: bool,
    /// Created.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// Fire times up to here have been handled.
    pub cursor_at: Millis,
    /// Fires waiting for the previous run to end.
    pub queued: i64,
    /// Bumped by every applied tick (compare-and-set between workers).
    pub version: i64,
    /// Newest unfinished run of this schedule, if any (a fleet it fired: see the engine's
    /// `fleet::active_fleet_of`).
    pub active_run: Option<String>,
    /// The fleet it fires, if it fires one.
    pub fleet: Option<ScheduleFleet>,
}

/// What a worker decided for one fire time of a schedule.
#[derive(Clone, Debug)]
pub enum FireDecision {
    /// Start a run.
    Fire {
        /// The fire time.
        fire_at: Millis,
        /// The run to create.
        run: Box<NewRun>,
        /// The run comes from the queue, not from a fresh fire time.
        from_queue: bool,
    },
    /// Start a fleet (its driver is whichever worker takes its lease first).
    FireFleet {
        /// The fire time.
        fire_at: Millis,
        /// The fleet to create (without a lease).
        fleet: Box<crate::NewFleet>,
        /// The fleet comes from the queue, not from a fresh fire time.
        from_queue: bool,
    },
    /// Record the fire time as skipped.
    Skip {
        /// The fire time.
        fire_at: Millis,
        /// Why.
        reason: String,
    },
    /// Queue the fire until the previous run ends.
    Queue {
        /// The fire time.
        fire_at: Millis,
    },
}

/// A schedule's new pinned runbook and parameters.
#[derive(Clone, Debug)]
pub struct Repin {
    /// Runbook name.
    pub runbook_name: String,
    /// Pinned text.
    pub runbook_text: String,
    /// Its sha256.
    pub runbook_sha256: String,
    /// Pinned parameters.
    pub params: serde_json::Value,
    /// Who re-pins.
    pub by: String,
    /// Now.
    pub now: Millis,
}

/// What became of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FireOutcome {
    /// A run was created.
    Fired {
        /// Its id.
        run_id: String,
    },
    /// A fleet was created (a worker drives it).
    FiredFleet {
        /// Its id.
        fleet_id: String,
    },
    /// Skipped (as decided, or because a resource was locked).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Queued.
    Queued,
}

/// The start of an attempt.
#[derive(Clone, Debug)]
pub struct StepStart {
    /// The step.
    pub step_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The resolved input.
    pub input: serde_json::Value,
    /// When the attempt times out.
    pub deadline_at: Option<Millis>,
    /// Windows this step opens (opened at start, before its effect can happen).
    pub opens: Vec<WindowKind>,
    /// Whose databases the windows concern (the primary of that moment), when known.
    pub subject: Option<String>,
    /// Keep the progress of the earlier attempt (re-attach) or clear it.
    pub keep_progress: bool,
    /// Now.
    pub now: Millis,
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub enum StepOutcome {
    /// The step is done with this output.
    Completed {
        /// The activity's output.
        output: serde_json::Value,
    },
    /// The step did not run because its `when` was false.
    Skipped {
        /// The condition, for the trail.
        reason: String,
    },
    /// The attempt failed and another starts at `next_attempt_at`.
    RetryScheduled {
        /// `{code, message}`.
        error: serde_json::Value,
        /// When the next attempt may start.
        next_attempt_at: Millis,
    },
    /// The step failed for good.
    Failed {
        /// `{code, message, ...}`.
        error: serde_json::Value,
        /// `on_failure: continue`: the run goes on.
        run_continues: bool,
    },
}

/// The end of an attempt, committed with its window changes and the run's next status.
#[derive(Clone, Debug)]
pub struct StepFinish {
    /// The step.
    pub step_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// What happened.
    pub outcome: StepOutcome,
    /// Windows this step closes (only applied on completion).
    pub closes: Vec<WindowKind>,
    /// The run's status after this transition, when it changes (e.g. failed, succeeded).
    pub run_status: Option<RunStatus>,
    /// Now.
    pub now: Millis,
}

/// Result of taking a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The previous owner whose lease was taken over (expired or dead), if any.
    pub taken_over_from: Option<String>,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs with one of these statuses (empty: all).
    pub statuses: Vec<RunStatus>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// A run as stored.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    /// Id.
    pub id: String,
    /// Runbook name.
    pub runbook_name: String,
    /// Runbook version.
    pub runbook_version: u32,
    /// Pinned text.
    #[serde(skip)]
    pub runbook_text: String,
    /// sha256 of the pinned text.
    pub runbook_sha256: String,
    /// Where it came from.
    pub source_path: Option<String>,
    /// Parameters.
    pub params: serde_json::Value,
    /// Status.
    pub status: RunStatus,
    /// `--auto-approve`.
    pub auto_approve: bool,
    /// Created.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// Finished (terminal status reached).
    pub finished_at: Option<Millis>,
    /// Why it failed.
    pub error: Option<serde_json::Value>,
    /// Lease owner.
    pub lease_owner: Option<String>,
    /// Lease expiry.
    pub lease_expires_at: Option<Millis>,
    /// An operator asked for cancellation while a driver held it.
    pub cancel_requested: bool,
    /// The maintenance window its disruptive steps wait for, if any.
    pub window: Option<serde_json::Value>,
    /// Hash of the newest audit event.
    pub audit_head: String,
    /// Number of audit events.
    pub audit_count: i64,
}

/// A step as stored.
#[derive(Clone, Debug, Serialize)]
pub struct StepRow {
    /// Step id.
    pub step_id: String,
    /// Position in the runbook.
    pub position: i64,
    /// Status.
    pub status: StepStatus,
    /// Latest attempt (0: never started).
    pub attempt: u32,
    /// Resolved input of the latest attempt.
    pub input: Option<serde_json::Value>,
    /// Output, once completed.
    pub output: Option<serde_json::Value>,
    /// Saved progress (polling URL, intent, phase).
    pub progress: Option<serde_json::Value>,
    /// Last error.
    pub error: Option<serde_json::Value>,
    /// When the first attempt started.
    pub first_started_at: Option<Millis>,
    /// When the latest attempt started.
    pub started_at: Option<Millis>,
    /// When the step finished.
    pub finished_at: Option<Millis>,
    /// When the latest attempt times out.
    pub deadline_at: Option<Millis>,
    /// When the next attempt may start.
    pub next_attempt_at: Option<Millis>,
}

/// A window.
#[derive(Clone, Debug, Serialize)]
pub struct WindowRow {
    /// Row id.
    pub id: i64,
    /// Kind.
    pub kind: WindowKind,
    /// Step that opened it.
    pub opened_step: String,
    /// Opened at.
    pub opened_at: Millis,
    /// Whose databases are unprotected (the primary of that moment), when known.
    pub subject: Option<String>,
    /// Step that closed it.
    pub closed_step: Option<String>,
    /// Closed at.
    pub closed_at: Option<Millis>,
    /// `max_unprotected` exceeded was already reported.
    pub limit_notified: bool,
}

/// An approval.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalRow {
    /// Step.
    pub step_id: String,
    /// Who.
    pub by: String,
    /// Comment.
    pub comment: Option<String>,
    /// When.
    pub at: Millis,
    /// From `--auto-approve`.
    pub auto: bool,
}

/// Everything about one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunSnapshot {
    /// The run.
    pub run: RunRow,
    /// Its steps in runbook order.
    pub steps: Vec<StepRow>,
    /// Its windows in opening order.
    pub windows: Vec<WindowRow>,
    /// Its approvals.
    pub approvals: Vec<ApprovalRow>,
}

impl RunSnapshot {
    /// The step row with this id.
    pub fn step(&self, id: &str) -> Option<&StepRow> {
        self.steps.iter().find(|s| s.step_id == id)
    }

    /// The step row with this id, looked up first at `position` (rows are in runbook
    /// order, so a caller walking the runbook finds each row at once).
    pub fn step_at(&self, position: usize, id: &str) -> Option<&StepRow> {
        match self.steps.get(position) {
            Some(row) if row.step_id == id => Some(row),
            _ => self.step(id),
        }
    }
}

/// One audit event.
#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    /// Run.
    pub run_id: String,
    /// Position in the run's trail, from 1.
    pub seq: i64,
    /// When.
    pub at: Millis,
    /// What (`run.created`, `step.started`, `window.opened`, ...).
    pub kind: String,
    /// Step, if any.
    pub step_id: Option<String>,
    /// Attempt, if any.
    pub attempt: Option<u32>,
    /// Details.
    pub data: serde_json::Value,
    /// Hash of the previous event.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}
