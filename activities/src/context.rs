//! What an activity sees while it runs: [`ActivityCtx`] (run, step, attempt, saved progress,
//! cancellation), [`Env`] (the process's shared clients, such as the ARM client), and the
//! [`StepHost`] trait through which the engine gives durable progress and approvals without
//! the activity touching the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::ActivityError;

/// A boxed `Send` future, the return type of the object-safe [`StepHost`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the engine offers an activity while it runs: durable progress, approvals, time.
///
/// Implemented by the engine over its state store. Every method that writes returns only
/// after the write is durable.
pub trait StepHost: Send + Sync {
    /// Commits `progress` as the step's saved progress (replacing the previous one).
    fn save_progress(&self, progress: serde_json::Value) -> BoxFuture<'_, Result<(), ActivityError>>;
    /// The approval recorded for this step, if any.
    fn approval(&self) -> BoxFuture<'_, Result<Option<ApprovalRecord>, ActivityError>>;
    /// Records an approval given by `--auto-approve` (audited as such).
    fn auto_approve(&self) -> BoxFuture<'_, Result<ApprovalRecord, ActivityError>>;
    /// The current wall-clock time (injectable in tests).
    fn now(&self) -> OffsetDateTime;
    /// Succeeds only while this driver holds the run's lease: called immediately before
    /// every cloud request, so that a driver that was frozen or starved past its lease
    /// sends nothing ([`ActivityError::LeaseExpired`]). Hosts that drive no lease (plans,
    /// tests) allow every request.
    fn fence(&self) -> BoxFuture<'_, Result<(), ActivityError>> {
        Box::pin(async { Ok(()) })
    }
}

/// An approval given to a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalRecord {
    /// Who approved (`--by`), or `auto-approve`.
    pub by: String,
    /// Optional comment.
    pub comment: Option<String>,
    /// When, RFC 3339.
    pub at: String,
    /// Whether the approval came from `--auto-approve`.
    pub auto: bool,
}

/// Shared clients and settings for all activities of a process. Webhooks use the process's
/// one webhook client (built at the first webhook sent).
#[derive(Clone, Debug)]
pub struct Env {
    /// The ARM client of the Azure activities; `None` when the process was started without
    /// one (the Azure activities then fail with `ArmNotConfigured`).
    pub arm: Option<crate::arm::ArmClient>,
}

impl Env {
    /// An environment with default clients.
    pub fn new() -> Self {
        Self { arm: None }
    }

    /// An environment with default clients and `arm` for the Azure activities.
    pub fn with_arm(arm: crate::arm::ArmClient) -> Self {
        Self { arm: Some(arm) }
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

/// How long [`ActivityCtx::save_before_effect`] keeps trying to record that an announced
/// effect was not started: a store that lost its connection reconnects within it, and it is
/// well under the default lease (30 s), past which the store refuses the driver's writes.
const UNSENT_SAVE_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// What one attempt of one step sees.
pub struct ActivityCtx {
    run_id: String,
    step_id: String,
    attempt: u32,
    progress: Mutex<Option<serde_json::Value>>,
    host: Arc<dyn StepHost>,
    cancel: CancellationToken,
    auto_approve: bool,
    wait_for_approval: bool,
    priority: crate::arm::Priority,
}

impl std::fmt::Debug for ActivityCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityCtx")
            .field("run_id", &self.run_id)
            .field("step_id", &self.step_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl ActivityCtx {
    /// A context for `attempt` of `step_id` in `run_id`, re-entered with `progress`.
    pub fn new(
        run_id: impl Into<String>,
        step_id: impl Into<String>,
        attempt: u32,
        progress: Option<serde_json::Value>,
        host: Arc<dyn StepHost>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            run_id: run_id.into(),
            step_id: step_id.into(),
            attempt,
            progress: Mutex::new(progress),
            host,
            cancel,
            auto_approve: false,
            wait_for_approval: false,
            priority: crate::arm::Priority::default(),
        }
    }

    /// Sets the class of this attempt's ARM requests in the subscription's budget.
    pub fn with_priority(mut self, priority: crate::arm::Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The class of this attempt's ARM requests in the subscription's budget.
    pub fn priority(&self) -> crate::arm::Priority {
        self.priority
    }

    /// Sets the approval behaviour.
    pub fn with_approval_mode(mut self, auto_approve: bool, wait_for_approval: bool) -> Self {
        self.auto_approve = auto_approve;
        self.wait_for_approval = wait_for_approval;
        self
    }

    /// The run this step belongs to.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The step id.
    pub fn step_id(&self) -> &str {
        &self.step_id
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The progress saved by this or an earlier attempt of the step, if any.
    pub fn progress(&self) -> Option<serde_json::Value> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Commits `progress` durably; returns once it would survive a crash.
    pub async fn save_progress(&self, progress: serde_json::Value) -> Result<(), ActivityError> {
        self.host.save_progress(progress.clone()).await?;
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner) = Some(progress);
        Ok(())
    }

    /// Commits `progress`, which announces an effect this attempt is about to start (an
    /// intent, a phase), before the effect; the caller starts the effect only on `Ok`.
    ///
    /// A failed commit may have applied all the same (a connection lost during the COMMIT,
    /// an acknowledgement lost), and a later attempt that found the announcement could not
    /// tell that the effect never started. So when the commit fails, `unsent` (the same
    /// progress saying the effect was not started) is committed in its place, tried again
    /// with a short back-off for up to 10 s (`UNSENT_SAVE_FOR`) while the store reconnects, and
    /// stopped early by a shutdown. The first error is returned either way: the caller
    /// starts nothing in this attempt. Should `unsent` never be committed, a later attempt
    /// finds whichever of the two the store holds, and treats an announcement as ambiguous.
    pub async fn save_before_effect(
        &self,
        progress: serde_json::Value,
        unsent: serde_json::Value,
    ) -> Result<(), ActivityError> {
        let Err(first) = self.save_progress(progress).await else {
            return Ok(());
        };
        tracing::warn!(
            step_id = %self.step_id,
            error = %first,
            "the progress announcing an effect could not be confirmed saved; the effect is not started, and the progress is saved again saying so"
        );
        let until = tokio::time::Instant::now() + UNSENT_SAVE_FOR;
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match self.save_progress(unsent.clone()).await {
                Ok(()) => {
                    tracing::info!(step_id = %self.step_id, "saved that the effect was not started");
                    break;
                }
                Err(e) if tokio::time::Instant::now() + delay < until => {
                    tracing::debug!(error = %e, "saving that the effect was not started failed; trying again");
                    if self.sleep(delay).await.is_err() {
                        break;
                    }
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::warn!(
                        step_id = %self.step_id,
                        error = %e,
                        "could not save that the effect was not started; a later attempt will treat it as possibly started"
                    );
                    break;
                }
            }
        }
        Err(first)
    }

    /// Succeeds only while the driver holds the run's lease (see [`StepHost::fence`]).
    pub async fn fence(&self) -> Result<(), ActivityError> {
        self.host.fence().await
    }

    /// The current time.
    pub fn now(&self) -> OffsetDateTime {
        self.host.now()
    }

    /// The engine is shutting down.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the engine is asked to stop.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Sleeps until `at` (wall clock) or until shutdown, which yields
    /// [`ActivityError::Interrupted`].
    pub async fn sleep_until(&self, at: OffsetDateTime) -> Result<(), ActivityError> {
        let remaining = at - self.now();
        if remaining.is_positive() {
            let d = std::time::Duration::try_from(remaining).unwrap_or_default();
            self.sleep(d).await?;
        }
        Ok(())
    }

    /// Sleeps for `d` or until shutdown.
    pub async fn sleep(&self, d: std::time::Duration) -> Result<(), ActivityError> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.cancel.cancelled() => Err(ActivityError::Interrupted),
        }
    }

    pub(crate) fn host(&self) -> &dyn StepHost {
        self.host.as_ref()
    }

    pub(crate) fn auto_approve(&self) -> bool {
        self.auto_approve
    }

    pub(crate) fn wait_for_approval(&self) -> bool {
        self.wait_for_approval
    }
}
