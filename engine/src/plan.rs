//! `fogbook plan`: what a run would do, without doing it.
//!
//! Every step is resolved as far as it can be: its `when` and inputs are evaluated; steps
//! whose activity only reads (`fogbook_activities::is_read_only`: instance and group reads,
//! preflight, drift, assertions) run for real against Azure or the emulator, so later
//! expressions see their outputs (that is how `scale` shows the direction it will take);
//! every other step is only described, with an estimate of its duration. Windows are
//! predicted from the `unprotected` and `listener` edges of the steps that will run.
//!
//! Invariant: no state is written and no mutating activity is called; a plan leaves the
//! database and the cloud as they were.

use std::collections::BTreeMap;
use std::sync::Arc;

use fogbook_activities::{ActivityCtx, ActivityError, ApprovalRecord, BoxFuture, Env, Estimate, StepHost};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::expr::{Scope, StepScope};
use crate::runbook::{Runbook, WindowEdge};

/// What `plan` found for one step.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    /// Step id.
    pub id: String,
    /// Activity.
    pub uses: String,
    /// `run`, `skip` (its `when` is false) or `decided at run time`.
    pub decision: String,
    /// The resolved inputs, when they can be resolved now.
    pub input: Option<serde_json::Value>,
    /// For read-only steps that ran: their output.
    pub output: Option<serde_json::Value>,
    /// For read-only steps that ran and failed: why (the run would stop here).
    pub error: Option<String>,
    /// Likely duration of a long step.
    pub estimate: Option<Estimate>,
    /// Windows this step opens (`unprotected`, `listener_unavailable`).
    pub opens: Vec<String>,
    /// Windows this step closes.
    pub closes: Vec<String>,
    /// The step disrupts service (failover, delete).
    pub disruptive: bool,
}

/// A window the run is expected to open and close.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedWindow {
    /// `unprotected` or `listener_unavailable`.
    pub kind: String,
    /// The step that opens it.
    pub opened_by: String,
    /// The step that closes it (none: it stays open at the end).
    pub closed_by: Option<String>,
    /// Sum of the estimates of the steps from the opening one to the closing one.
    pub estimated_hours: f64,
}

/// The whole plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Runbook name.
    pub runbook: String,
    /// Steps in order.
    pub steps: Vec<PlannedStep>,
    /// Predicted windows.
    pub windows: Vec<PlannedWindow>,
    /// Things to look at before running (seeding near the 7-day limit, a failing preflight).
    pub warnings: Vec<String>,
}

/// A host for read-only activities: nothing is saved, nothing is approved.
struct ReadOnlyHost;

impl StepHost for ReadOnlyHost {
    fn save_progress(&self, _progress: serde_json::Value) -> BoxFuture<'_, Result<(), ActivityError>> {
        Box::pin(async { Ok(()) })
    }

    fn approval(&self) -> BoxFuture<'_, Result<Option<ApprovalRecord>, ActivityError>> {
        Box::pin(async { Ok(None) })
    }

    fn auto_approve(&self) -> BoxFuture<'_, Result<ApprovalRecord, ActivityError>> {
        Box::pin(async { Err(ActivityError::invalid("a plan approves nothing")) })
    }

    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

fn kinds(step: &crate::runbook::Step, edge: WindowEdge) -> Vec<String> {
    let mut out = Vec::new();
    if step.unprotected == Some(edge) {
        out.push("unprotected".to_owned());
    }
    if step.listener == Some(edge) {
        out.push("listener_unavailable".to_owned());
    }
    out
}

/// Plans a run of `runbook` with resolved `params`, reading through `env`.
pub async fn plan(runbook: &Runbook, params: &serde_json::Value, env: &Env) -> Plan {
    let run = json!({ "id": "(plan)", "runbook": runbook.name });
    let mut scopes: BTreeMap<String, StepScope> = BTreeMap::new();
    let mut steps = Vec::new();
    let mut warnings = Vec::new();
    let host: Arc<dyn StepHost> = Arc::new(ReadOnlyHost);
    // Reads after the first change would read the world before that change (a preflight of
    // an instance the run has not created yet): they are described, not run.
    let mut changed_before = false;
    for step in &runbook.steps {
        let scope = Scope {
            params,
            steps: &scopes,
            run: &run,
        };
        let decision = match step.when.as_ref().map(|w| w.eval_bool(&scope)) {
            None | Some(Ok(true)) => "run",
            Some(Ok(false)) => "skip",
            Some(Err(_)) => "decided at run time",
        };
        let input = crate::expr::resolve_with(&step.with, &scope).ok();
        let ctx = ActivityCtx::new(
            "plan",
            step.id.as_str(),
            1,
            None,
            host.clone(),
            CancellationToken::new(),
        );
        let (mut output, mut error, mut estimate) = (None, None, None);
        if decision != "skip"
            && let Some(input) = &input
        {
            if fogbook_activities::is_read_only(&step.uses) && !changed_before {
                match fogbook_activities::execute(&step.uses, input.clone(), &ctx, env).await {
                    Ok(out) => output = Some(out),
                    Err(e) => {
                        warnings.push(format!("step `{}` would fail now: {e}", step.id));
                        error = Some(e.to_string());
                    }
                }
            } else if !fogbook_activities::is_read_only(&step.uses) {
                match fogbook_activities::estimate(&step.uses, input.clone(), &ctx, env).await {
                    Ok(est) => estimate = est,
                    Err(e) => warnings.push(format!("no estimate for step `{}`: {e}", step.id)),
                }
            }
        }
        if decision != "skip" && !fogbook_activities::is_read_only(&step.uses) {
            changed_before = true;
        }
        if let Some(w) = estimate.as_ref().and_then(|e| e.warning.clone()) {
            warnings.push(format!("step `{}`: {w}", step.id));
        }
        let status = match (decision, &output) {
            ("skip", _) => "skipped",
            (_, Some(_)) => "completed",
            _ => "pending",
        };
        scopes.insert(
            step.id.0.clone(),
            StepScope {
                status: status.to_owned(),
                outputs: output.clone().unwrap_or(serde_json::Value::Null),
            },
        );
        steps.push(PlannedStep {
            id: step.id.0.clone(),
            uses: step.uses.clone(),
            decision: decision.to_owned(),
            input,
            output,
            error,
            estimate,
            opens: if decision == "skip" {
                vec![]
            } else {
                kinds(step, WindowEdge::Opens)
            },
            closes: if decision == "skip" {
                vec![]
            } else {
                kinds(step, WindowEdge::Closes)
            },
            disruptive: step.disruptive,
        });
    }
    let windows = predict_windows(&steps);
    Plan {
        runbook: runbook.name.clone(),
        steps,
        windows,
        warnings,
    }
}

fn predict_windows(steps: &[PlannedStep]) -> Vec<PlannedWindow> {
    let mut windows: Vec<PlannedWindow> = Vec::new();
    for s in steps {
        for kind in &s.opens {
            if windows.iter().any(|w| &w.kind == kind && w.closed_by.is_none()) {
                continue;
            }
            windows.push(PlannedWindow {
                kind: kind.clone(),
                opened_by: s.id.clone(),
                closed_by: None,
                estimated_hours: 0.0,
            });
        }
        for kind in &s.closes {
            if let Some(w) = windows.iter_mut().find(|w| &w.kind == kind && w.closed_by.is_none()) {
                w.closed_by = Some(s.id.clone());
            }
        }
    }
    for w in &mut windows {
        let start = steps.iter().position(|s| s.id == w.opened_by).unwrap_or(0);
        let end = w
            .closed_by
            .as_ref()
            .and_then(|c| steps.iter().position(|s| &s.id == c))
            .unwrap_or(steps.len().saturating_sub(1));
        w.estimated_hours = steps[start..=end.max(start)]
            .iter()
            .filter_map(|s| s.estimate.as_ref().map(|e| e.hours))
            .sum();
    }
    windows
}
