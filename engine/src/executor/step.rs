//! Running one step: its start, its activity under the deadline, retries and its end.

use std::sync::Arc;
use std::time::Duration;

use fogbook_activities::{ActivityCtx, ActivityError};
use fogbook_state::{
    Millis, RunStatus, StateError, StepFinish, StepOutcome, StepRow, StepStart, StepStatus, WindowKind,
};
use serde_json::json;

use super::carry::Shown;
use super::driver::{Driver, StepEnd};
use super::engine::RunOutcome;
use crate::clock::{ms, to_datetime};
use crate::expr::{Scope, StepScope};
use crate::failpoint::{self, Point};
use crate::host::Host;
use crate::runbook::{ErrorClass, NotifyEvent, OnFailure, Step, WindowEdge};
use crate::{EngineError, retry};

impl Driver<'_> {
    /// Runs `step` from its stored `row` until it ends or the run stops: starts (or
    /// re-enters) an attempt, runs its activity, and retries while the retry policy allows.
    #[tracing::instrument(name = "step", skip_all, fields(step_id = %step.id, uses = %step.uses))]
    pub(super) async fn run_step(
        &self,
        step: &Step,
        mut row: StepRow,
        scope: &Scope<'_>,
    ) -> Result<StepEnd, EngineError> {
        let first_started = row.first_started_at.unwrap_or_else(|| self.now());
        loop {
            let attempt = match row.status {
                StepStatus::Pending => match self.begin(step, &row, scope).await? {
                    Begun::Attempt(a) => a,
                    Begun::Ended(end) => return Ok(end),
                },
                StepStatus::Running => self.reenter(step, &row).await?,
                StepStatus::RetryWait => match self.retry_when_due(step, &row).await? {
                    Some(a) => a,
                    None => return Ok(StepEnd::Stop(RunOutcome::Interrupted)),
                },
                StepStatus::Completed | StepStatus::Skipped | StepStatus::Failed => {
                    // The walk passes only steps that may run.
                    return Err(EngineError::internal(format!(
                        "step `{}` is already {}",
                        step.id, row.status
                    )));
                }
            };
            let number = attempt.number;
            let error = match self.attempt(step, attempt).await {
                Ok(output) => return Ok(self.completed(step, number, output, first_started).await),
                Err(e) => match self.stopped_by(step, e).await? {
                    Stopped::Yes(end) => return Ok(end),
                    Stopped::No(e) => e,
                },
            };
            let (class, code, message, retry_after, output) = error.describe();
            let retryable = class.is_some_and(|c| step.retry.on.contains(&c));
            if retryable && number < step.retry.max_attempts {
                row = self.schedule_retry(step, number, &code, &message, retry_after).await?;
                continue;
            }
            return self.fail_for_good(step, number, &code, &message, output).await;
        }
    }

    /// A pending step: waits for its maintenance window, evaluates its `when`, resolves its
    /// inputs and commits the start of its next attempt.
    async fn begin(&self, step: &Step, row: &StepRow, scope: &Scope<'_>) -> Result<Begun, EngineError> {
        let sid = step.id.as_str();
        if let Some(outside) = self.outside_window(step).await? {
            return Ok(Begun::Ended(StepEnd::Stop(outside)));
        }
        if let Some(when) = &step.when {
            match when.eval_bool(scope) {
                Ok(true) => {}
                Ok(false) => {
                    // Committed with the next transition, like a completion.
                    self.carry_end(StepFinish {
                        step_id: sid.to_owned(),
                        attempt: 0,
                        outcome: StepOutcome::Skipped {
                            reason: when.source().to_owned(),
                        },
                        closes: vec![],
                        run_status: None,
                        now: self.now(),
                    });
                    self.show_after_commit(Shown::Skipped(sid.to_owned()));
                    return Ok(Begun::Ended(StepEnd::Skipped));
                }
                Err(e) => {
                    let message = format!("`when` could not be evaluated: {e}");
                    let end = self.fail_for_good(step, 0, "ExpressionError", &message, None).await?;
                    return Ok(Begun::Ended(end));
                }
            }
        }
        let input = match crate::expr::resolve_with(&step.with, scope) {
            Ok(v) => v,
            Err(e) => {
                let message = format!("inputs could not be resolved: {e}");
                let end = self.fail_for_good(step, 0, "ExpressionError", &message, None).await?;
                return Ok(Begun::Ended(end));
            }
        };
        let number = row.attempt + 1;
        // A step an operator re-opened (`resume --retry-failed`) keeps what its earlier
        // attempts saved: an intent or a polling URL must not be forgotten.
        let reopened = row.attempt > 0;
        let deadline = self.start(step, number, &input, reopened).await?;
        let progress = if reopened { row.progress.clone() } else { None };
        Ok(Begun::Attempt(Attempt {
            number,
            input,
            progress,
            deadline,
            reentered: false,
        }))
    }

    /// A step that was running when its driver stopped, re-entered after a restart: the same
    /// attempt with its stored input, deadline and progress. The activity decides from its
    /// progress how to continue.
    async fn reenter(&self, step: &Step, row: &StepRow) -> Result<Attempt, EngineError> {
        self.flush().await?;
        self.engine
            .store
            .record_event(
                self.run_id,
                "step.reentered",
                Some(step.id.0.clone()),
                json!({ "attempt": row.attempt, "progress": row.progress }),
                self.now(),
            )
            .await?;
        Ok(Attempt {
            number: row.attempt,
            input: row.input.clone().unwrap_or_default(),
            progress: row.progress.clone(),
            deadline: row.deadline_at,
            reentered: true,
        })
    }

    /// A step waiting to retry: waits until its next attempt is due and commits its start.
    /// `None` when the run was stopped meanwhile.
    async fn retry_when_due(&self, step: &Step, row: &StepRow) -> Result<Option<Attempt>, EngineError> {
        let at = row.next_attempt_at.unwrap_or_else(|| self.now());
        let remaining = at - self.now();
        if remaining > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(remaining.unsigned_abs())) => {}
                () = self.stop.cancelled() => return Ok(None),
            }
        }
        let input = row.input.clone().unwrap_or_default();
        let number = row.attempt + 1;
        let deadline = self.start(step, number, &input, true).await?;
        Ok(Some(Attempt {
            number,
            input,
            progress: row.progress.clone(),
            deadline,
            reentered: false,
        }))
    }

    /// Runs an attempt whose start is committed.
    async fn attempt(&self, step: &Step, attempt: Attempt) -> Result<serde_json::Value, StepError> {
        let sid = step.id.as_str();
        // An approval step re-entered after its run waited is not a restart: it goes on
        // with the approval (or asks again), and says nothing about re-entering.
        let shown_reentered = attempt.reentered && step.uses != "approval";
        self.engine
            .observer
            .step_started(sid, &step.uses, attempt.number, shown_reentered);
        tracing::info!(attempt = attempt.number, reentered = attempt.reentered, "step.started");
        failpoint::hit(Point::AfterStart, sid);
        let result = self
            .execute(step, attempt.number, attempt.input, attempt.progress, attempt.deadline)
            .await;
        failpoint::hit(Point::BeforeFinish, sid);
        result
    }

    /// The attempt completed: its end joins the carry, committed with the next transition
    /// (the next step's start, the run's end, or before anything else is written or sent).
    async fn completed(&self, step: &Step, attempt: u32, output: serde_json::Value, first_started: Millis) -> StepEnd {
        let sid = step.id.as_str();
        let closes = edges(step, WindowEdge::Closes);
        self.carry_end(StepFinish {
            step_id: sid.to_owned(),
            attempt,
            outcome: StepOutcome::Completed { output: output.clone() },
            closes: closes.clone(),
            run_status: None,
            now: self.now(),
        });
        self.show_after_commit(Shown::Completed {
            step: sid.to_owned(),
            elapsed: self.now() - first_started,
            closes: closes.clone(),
        });
        for kind in closes {
            self.notify(NotifyEvent::WindowClosed, json!({ "kind": kind, "step": sid }))
                .await;
        }
        tracing::info!("step.completed");
        StepEnd::Completed(output)
    }

    /// Whether an attempt's error stops the run here (interrupted, awaiting an approval) or
    /// stops the driver (fenced, the store failed), rather than going to the retry policy.
    async fn stopped_by(&self, step: &Step, error: StepError) -> Result<Stopped, EngineError> {
        let sid = step.id.as_str();
        match error {
            StepError::Activity(ActivityError::Interrupted) => Ok(Stopped::Yes(StepEnd::Stop(RunOutcome::Interrupted))),
            StepError::Activity(ActivityError::LeaseExpired { message }) => {
                // Nothing was sent and nothing more is written: the run belongs to whoever
                // holds the lease now.
                Err(EngineError::Fenced {
                    run_id: self.run_id.to_owned(),
                    step_id: sid.to_owned(),
                    message,
                })
            }
            StepError::Activity(ActivityError::AwaitingApproval { message }) => {
                self.flush().await?;
                self.engine
                    .store
                    .set_run_status(self.run_id, self.owner(), RunStatus::Waiting, None, self.now())
                    .await?;
                Ok(Stopped::Yes(StepEnd::Stop(RunOutcome::Waiting {
                    step: sid.to_owned(),
                    message,
                })))
            }
            // Progress could not be committed (lost lease, database error): stop without
            // recording anything else; resume re-enters the step. The store's error keeps its
            // type (only the host reports store errors, and it passes the `StateError` on).
            StepError::Activity(ActivityError::Store { source }) => match source.downcast::<StateError>() {
                Ok(state) => Err(EngineError::State(*state)),
                Err(other) => Err(EngineError::internal(format!(
                    "an activity reported a store error that is not the store's: {other}"
                ))),
            },
            other => Ok(Stopped::No(other)),
        }
    }

    /// Commits the failed attempt's end with the time of the next one, and returns the step's
    /// row as committed (input, attempt, deadline, the progress the failed attempt saved):
    /// the next attempt continues from it, not from what the driver remembers.
    async fn schedule_retry(
        &self,
        step: &Step,
        attempt: u32,
        code: &str,
        message: &str,
        retry_after: Option<Duration>,
    ) -> Result<StepRow, EngineError> {
        let sid = step.id.as_str();
        let unit = rand::random::<f64>() * 2.0 - 1.0;
        let delay = retry::delay(&step.retry, attempt, retry_after, unit);
        let next = self.now() + ms(delay);
        self.advance(
            Some(StepFinish {
                step_id: sid.to_owned(),
                attempt,
                outcome: StepOutcome::RetryScheduled {
                    error: json!({ "code": code, "message": message }),
                    next_attempt_at: next,
                },
                closes: vec![],
                run_status: None,
                now: self.now(),
            }),
            None,
        )
        .await?;
        self.engine
            .observer
            .retry_scheduled(sid, attempt, &format!("{code}: {message}"), ms(delay));
        tracing::info!(delay_ms = ms(delay), code = %code, "step.retry_scheduled");
        let row = self
            .engine
            .store
            .load_run(self.run_id)
            .await?
            .step(sid)
            .cloned()
            .ok_or_else(|| StateError::UnknownStep {
                run_id: self.run_id.to_owned(),
                step_id: sid.to_owned(),
            })?;
        Ok(row)
    }

    /// A disruptive step of a run with a pausing maintenance window does not start while
    /// the window is closed: the run waits (status `waiting`) and a worker resumes it when
    /// the window opens.
    async fn outside_window(&self, step: &Step) -> Result<Option<RunOutcome>, EngineError> {
        let Some(json) = self.window.filter(|_| step.disruptive) else {
            return Ok(None);
        };
        let Some(window) = crate::schedule::Window::from_json(json) else {
            return Ok(None);
        };
        if window.contains(self.now()) {
            return Ok(None);
        }
        let text = json.get("text").and_then(|t| t.as_str()).unwrap_or("?").to_owned();
        self.flush().await?;
        self.engine
            .store
            .set_run_status(
                self.run_id,
                self.owner(),
                RunStatus::Waiting,
                Some(json!({ "waiting_for": "maintenance window", "window": text, "step": step.id.as_str() })),
                self.now(),
            )
            .await?;
        Ok(Some(RunOutcome::OutsideWindow {
            step: step.id.0.clone(),
            window: text,
        }))
    }

    /// Commits the start of `attempt` (and the windows the step opens) and returns its
    /// deadline.
    async fn start(
        &self,
        step: &Step,
        attempt: u32,
        input: &serde_json::Value,
        keep_progress: bool,
    ) -> Result<Option<Millis>, EngineError> {
        let sid = step.id.as_str();
        failpoint::hit(Point::BeforeStart, sid);
        let now = self.now();
        let deadline = step.timeout.map(|t| now + ms(t));
        let opens = edges(step, WindowEdge::Opens);
        let subject = (!opens.is_empty()).then(|| window_subject(input)).flatten();
        // The ends of the steps before are committed in the same transaction: one durable
        // commit takes the run from one step to the next.
        self.advance(
            None,
            Some(StepStart {
                step_id: sid.to_owned(),
                attempt,
                input: input.clone(),
                deadline_at: deadline,
                opens: opens.clone(),
                subject,
                keep_progress,
                now,
            }),
        )
        .await?;
        for kind in opens {
            self.engine.observer.window(kind.as_str(), true, sid);
            self.notify(NotifyEvent::WindowOpened, json!({ "kind": kind, "step": sid }))
                .await;
        }
        Ok(deadline)
    }

    async fn execute(
        &self,
        step: &Step,
        attempt: u32,
        input: serde_json::Value,
        progress: Option<serde_json::Value>,
        deadline: Option<Millis>,
    ) -> Result<serde_json::Value, StepError> {
        let host = Arc::new(Host {
            store: self.engine.store.clone(),
            clock: self.engine.clock.clone(),
            run_id: self.run_id.to_owned(),
            step_id: step.id.0.clone(),
            attempt,
            owner: self.owner().to_owned(),
            lease: self.lease.clone(),
        });
        let ctx = ActivityCtx::new(
            self.run_id,
            step.id.as_str(),
            attempt,
            progress,
            host,
            self.stop.clone(),
        )
        .with_approval_mode(self.auto_approve, self.engine.config.wait_for_approval)
        .with_priority(crate::fleet::request_priority(self.runbook, step));
        // What the store saves from here on (output, error) holds no secret the process knows.
        let run = async {
            fogbook_activities::secrets::redact_result(
                fogbook_activities::execute(&step.uses, input, &ctx, &self.engine.env).await,
            )
        };
        match deadline {
            None => run.await.map_err(StepError::Activity),
            // Already past the deadline (re-entered late): the activity is not even polled
            // once, so it cannot send a first request.
            Some(at) if at <= self.now() => Err(StepError::Timeout(at)),
            Some(at) => {
                let remaining = Duration::from_millis(u64::try_from(at - self.now()).unwrap_or(0));
                match tokio::time::timeout(remaining, run).await {
                    Ok(r) => r.map_err(StepError::Activity),
                    Err(_) => Err(StepError::Timeout(at)),
                }
            }
        }
    }

    async fn fail_for_good(
        &self,
        step: &Step,
        attempt: u32,
        code: &str,
        message: &str,
        output: Option<serde_json::Value>,
    ) -> Result<StepEnd, EngineError> {
        let sid = step.id.as_str();
        let continues = step.on_failure == OnFailure::Continue;
        let mut error = json!({ "code": code, "message": message });
        if let Some(out) = output {
            error["output"] = out;
        }
        self.advance(
            Some(StepFinish {
                step_id: sid.to_owned(),
                attempt,
                outcome: StepOutcome::Failed {
                    error: error.clone(),
                    run_continues: continues,
                },
                closes: vec![],
                run_status: (!continues).then_some(RunStatus::Failed),
                now: self.now(),
            }),
            None,
        )
        .await?;
        self.engine.observer.step_failed(sid, &format!("{code}: {message}"));
        // Info, not warn: the CLI prints the failure once (its observer and final line).
        tracing::info!(code, message, "step.failed");
        if continues {
            Ok(StepEnd::FailedContinue(error))
        } else {
            Ok(StepEnd::Stop(RunOutcome::Failed {
                step: sid.to_owned(),
                code: code.to_owned(),
                message: message.to_owned(),
            }))
        }
    }
}

/// An attempt that is about to run: its start is committed (or it was re-entered).
struct Attempt {
    number: u32,
    input: serde_json::Value,
    progress: Option<serde_json::Value>,
    deadline: Option<Millis>,
    /// Re-entered after a restart rather than started.
    reentered: bool,
}

/// What beginning a pending step led to.
enum Begun {
    Attempt(Attempt),
    /// It ended without an attempt (skipped, failed evaluating its inputs, outside its window).
    Ended(StepEnd),
}

/// Whether an attempt's error ended the step's run here.
enum Stopped {
    Yes(StepEnd),
    No(StepError),
}

/// Why an attempt failed.
pub(super) enum StepError {
    Activity(ActivityError),
    Timeout(Millis),
}

impl StepError {
    /// (retry class, code, message, server-requested delay, partial output)
    fn describe(
        self,
    ) -> (
        Option<ErrorClass>,
        String,
        String,
        Option<Duration>,
        Option<serde_json::Value>,
    ) {
        match self {
            Self::Timeout(at) => (
                Some(ErrorClass::Timeout),
                "Timeout".to_owned(),
                format!("the step's timeout expired at {}", to_datetime(at)),
                None,
                None,
            ),
            Self::Activity(e) => {
                let code = e.code().to_owned();
                let retry_after = e.retry_after();
                match e {
                    ActivityError::Transient { message, .. } => {
                        (Some(ErrorClass::Transient), code, message, retry_after, None)
                    }
                    ActivityError::Failed { message, output, .. } => {
                        (Some(ErrorClass::Failed), code, message, None, output)
                    }
                    // Invalid inputs and ambiguous interruptions are never retried: the first
                    // cannot get better, the second needs a human.
                    other => (None, code, other.to_string(), None, None),
                }
            }
        }
    }
}

/// Whose databases a window concerns: the instance the opening step acts on (`instance`,
/// else `primary`), which for a group's deletion is the primary of that moment.
pub(super) fn window_subject(input: &serde_json::Value) -> Option<String> {
    ["instance", "primary"]
        .iter()
        .find_map(|k| input.get(k).and_then(|i| i.get("name")).and_then(|n| n.as_str()))
        .map(str::to_owned)
}

pub(super) fn edges(step: &Step, edge: WindowEdge) -> Vec<WindowKind> {
    let mut out = Vec::new();
    if step.unprotected == Some(edge) {
        out.push(WindowKind::Unprotected);
    }
    if step.listener == Some(edge) {
        out.push(WindowKind::ListenerUnavailable);
    }
    out
}

pub(super) fn scope_completed(output: serde_json::Value) -> StepScope {
    StepScope {
        status: "completed".to_owned(),
        outputs: output,
    }
}

pub(super) fn scope_skipped() -> StepScope {
    StepScope {
        status: "skipped".to_owned(),
        outputs: serde_json::Value::Null,
    }
}

pub(super) fn scope_failed(error: &Option<serde_json::Value>) -> StepScope {
    let outputs = error
        .as_ref()
        .and_then(|e| e.get("output"))
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    StepScope {
        status: "failed".to_owned(),
        outputs,
    }
}
