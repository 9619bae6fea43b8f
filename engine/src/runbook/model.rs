//! The validated runbook model the executor works from.
//!
//! The parser (`runbook::parse`) turns YAML into these types only after every check has
//! passed, so the executor never sees an unknown activity, a dangling reference or a bad
//! duration.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::expr::{Expr, Template};

/// A step id, unique within its runbook.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub String);

impl StepId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed and validated runbook.
#[derive(Clone, Debug)]
pub struct Runbook {
    /// The `runbook:` name.
    pub name: String,
    /// The `version:` number.
    pub version: u32,
    /// Free text shown by `plan` and `status`.
    pub description: Option<String>,
    /// Declared parameters, in declaration order.
    pub params: Vec<ParamDecl>,
    /// Run-level limits.
    pub limits: Limits,
    /// Resource keys locked for the whole run (templates over `params`), e.g.
    /// `fog/${{ params.failover_group }}`. A second run whose keys overlap is refused.
    pub locks: Vec<Template>,
    /// Where engine events (windows opened and closed, limits exceeded) are posted.
    pub notify: Option<NotifyConfig>,
    /// The steps, in execution order.
    pub steps: Vec<Step>,
    /// Warnings found by validation (for example a window still open at the end). They
    /// do not prevent a run; `validate` and `run` should show them. Each message starts
    /// with `warning: `.
    pub warnings: Vec<super::Diagnostic>,
}

impl Runbook {
    /// The step with this id, if any.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.as_str() == id)
    }
}

/// One declared parameter.
#[derive(Clone, Debug)]
pub struct ParamDecl {
    /// The parameter name (`params.<name>` in expressions).
    pub name: String,
    /// Its type.
    pub ty: ParamType,
    /// The default used when the parameter file does not set it. `None` means required.
    pub default: Option<serde_json::Value>,
    /// Free text for `--help`-like listings.
    pub description: Option<String>,
}

/// The type of a parameter. Values are checked against it before a run is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Any string.
    String,
    /// A resource name (a failover group, an instance): a non-empty string without `/`,
    /// `\\`, `..` or control characters, because it goes into an ARM URL path.
    Name,
    /// A signed 64-bit integer.
    Int,
    /// A number (integer or float).
    Number,
    /// `true` or `false`.
    Bool,
    /// A duration such as `90s`, `15m`, `2h`, `7d`.
    Duration,
    /// A managed instance reference: `{subscription, resource_group, name}` plus optional
    /// `location` and `subnet_id`.
    Instance,
    /// A list of strings.
    List,
    /// Any mapping (passed through as is).
    Object,
    /// A file path. A relative one is made absolute when the run is created: against the
    /// parameter file's folder when that file gives it, else the current directory.
    Path,
}

/// Run-level limits.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Warn (and notify) when an unprotected window stays open longer than this.
    pub max_unprotected: Option<Duration>,
}

/// Where engine events are posted.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Webhook URL (a template over `params`).
    pub url: Template,
    /// Which engine events are posted.
    pub on: Vec<NotifyEvent>,
}

/// Engine events a runbook can ask to be notified of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// An unprotected (or listener) window opened.
    WindowOpened,
    /// A window closed.
    WindowClosed,
    /// A window has been open longer than `limits.max_unprotected`.
    MaxUnprotectedExceeded,
    /// The run succeeded.
    RunSucceeded,
    /// The run failed.
    RunFailed,
}

/// One step of a runbook.
#[derive(Clone, Debug)]
pub struct Step {
    /// Unique id.
    pub id: StepId,
    /// Optional human title.
    pub name: Option<String>,
    /// The activity (`uses:`), e.g. `wait`, `command`, `fog.create`.
    pub uses: String,
    /// The inputs (`with:`), unresolved: string values may hold `${{ }}` templates.
    /// Resolved into JSON when the step starts and stored as the step's input.
    pub with: BTreeMap<String, WithValue>,
    /// Run the step only when this is true; otherwise it is recorded as skipped.
    pub when: Option<Expr>,
    /// Fail the attempt (class `timeout`) when it runs longer than this. The deadline is
    /// stored, so it survives restarts.
    pub timeout: Option<Duration>,
    /// Retry policy for failed attempts.
    pub retry: RetryPolicy,
    /// What a failed step does to the run.
    pub on_failure: OnFailure,
    /// Whether this step opens or closes the unprotected window.
    pub unprotected: Option<WindowEdge>,
    /// Whether this step opens or closes the listener-unavailable window.
    pub listener: Option<WindowEdge>,
    /// The step disrupts service (a failover, a delete). A scheduled run whose maintenance
    /// window asks for it pauses before such a step while the window is closed.
    pub disruptive: bool,
}

/// An input value that may contain templates. Strings hold a [`Template`]; lists and maps
/// nest; other scalars are literal.
#[derive(Clone, Debug)]
pub enum WithValue {
    /// A literal scalar (number, bool, null).
    Literal(serde_json::Value),
    /// A string, possibly with `${{ }}` parts.
    Template(Template),
    /// A list.
    List(Vec<WithValue>),
    /// A mapping.
    Map(BTreeMap<String, WithValue>),
}

/// Which edge of a window a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowEdge {
    /// The window opens when this step starts (before its effect can happen).
    Opens,
    /// The window closes when this step completes.
    Closes,
}

/// What a failed step does to the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The run fails (default).
    #[default]
    Fail,
    /// The step is recorded as failed and the run goes on with the next step.
    Continue,
}

/// Classes of activity errors, used by `retry.on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Throttling, 5xx, dropped connections: worth retrying.
    Transient,
    /// The step's timeout expired.
    Timeout,
    /// The activity ran and reported failure (a non-zero exit, a 4xx, a false assertion).
    Failed,
}

/// Retry policy of a step. Back-off deadlines are stored, so a restart continues the wait
/// for the time that remains.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_interval: Duration,
    /// Upper bound of the delay.
    pub max_interval: Duration,
    /// Growth factor between delays.
    pub multiplier: f64,
    /// Random spread, a fraction in `0.0..=1.0` of the delay.
    pub jitter: f64,
    /// Which error classes are retried.
    pub on: Vec<ErrorClass>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            on: vec![ErrorClass::Transient, ErrorClass::Timeout],
        }
    }
}
