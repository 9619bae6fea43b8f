//! The checkpointed executor: creates runs and drives them step by step.
//!
//! Every transition is committed before the effect it announces: a step's start (attempt,
//! resolved input, deadline, the windows it opens) is durable before its activity runs,
//! and its outcome (output or error, the windows it closes, the run's next status) is one
//! transaction after it returns. Nothing is held open across an activity.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fogbook_activities::{ActivityCtx, ActivityError, Env};
use fogbook_state::{
    Millis, NewRun, RunSnapshot, RunStatus, StateError, StepFinish, StepOutcome, StepRow, StepStart, StepStatus, Store,
    WindowKind, format_ms,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock, ms, to_datetime};
use crate::expr::{Scope, StepScope};
use crate::failpoint::{self, Point};
use crate::host::Host;
use crate::lease::{self, LeaseClock};
use crate::observer::{Observer, Silent};
use crate::owner::{self, Owner};
use crate::runbook::{self, ErrorClass, NotifyEvent, OnFailure, Runbook, Step, WindowEdge};
use crate::{EngineError, retry};

/// Settings of an [`Engine`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long a lease lasts without renewal. Renewed every third of it.
    pub lease_ttl: Duration,
    /// The safety margin of the lease's fence: a driver sends no cloud request later than
    /// `lease_ttl - margin` after its last renewal was sent (judged on the monotonic clock),
    /// and another process takes an expired lease over only `margin` after its expiry.
    /// `None`: a quarter of the lease. At most half of the lease.
    pub lease_margin: Option<Duration>,
    /// Block in approval steps until approved instead of suspending the run.
    pub wait_for_approval: bool,
    /// How long in-flight activities may take to reach a safe point after a stop request.
    pub shutdown_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            lease_margin: None,
            wait_for_approval: false,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// How driving a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every step completed or was skipped.
    Succeeded,
    /// A step failed for good.
    Failed {
        /// The step.
        step: String,
        /// Its error code.
        code: String,
        /// Its error message.
        message: String,
    },
    /// Suspended at an approval step.
    Waiting {
        /// The approval step.
        step: String,
        /// What the operator is asked.
        message: String,
    },
    /// Paused before a disruptive step until its maintenance window opens.
    OutsideWindow {
        /// The disruptive step.
        step: String,
        /// The window, as written (`01:00-05:00 Europe/Amsterdam`).
        window: String,
    },
    /// Stopped at a safe point on request (Ctrl-C, SIGTERM); resumable.
    Interrupted,
    /// Cancelled by an operator.
    Cancelled,
}

/// A request to create a run.
#[derive(Debug)]
pub struct CreateRun<'a> {
    /// The validated runbook.
    pub runbook: &'a Runbook,
    /// Its exact text (pinned with the run).
    pub text: &'a str,
    /// Where it was read from.
    pub source_path: Option<String>,
    /// Resolved parameters.
    pub params: serde_json::Value,
    /// Approve approval steps automatically (recorded as such).
    pub auto_approve: bool,
    /// Take the lease at once (the creating process drives it) or leave it to a worker.
    pub take_lease: bool,
    /// Who asked (user, schedule), for the audit trail.
    pub created_by: serde_json::Value,
    /// The schedule that fires this run, if any.
    pub schedule: Option<String>,
    /// The maintenance window its disruptive steps wait for, if any.
    pub window: Option<serde_json::Value>,
}

/// The engine: creates runs and drives them. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    env: Env,
    clock: Arc<dyn Clock>,
    owner: Owner,
    config: EngineConfig,
    observer: Arc<dyn Observer>,
    parsed: Arc<ParsedRunbooks>,
}

/// Pinned runbooks already parsed, by their text: the runs of one runbook share one parsed
/// copy (parsed once, held once in memory, whatever the number of runs driven at once).
#[derive(Default)]
struct ParsedRunbooks(std::sync::Mutex<std::collections::HashMap<String, Arc<Runbook>>>);

impl ParsedRunbooks {
    /// At most this many distinct texts are kept; beyond, the cache starts over.
    const CAPACITY: usize = 64;

    fn get(&self, text: &str, origin: &str) -> Result<Arc<Runbook>, runbook::Diagnostics> {
        let lock = || self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rb) = lock().get(text) {
            return Ok(rb.clone());
        }
        let rb = Arc::new(runbook::parse(text, origin)?);
        let mut map = lock();
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(text.to_owned(), rb.clone());
        Ok(rb)
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `store`, owning leases as this process.
    pub fn new(store: Store, config: EngineConfig) -> Self {
        Self {
            store,
            env: Env::new(),
            clock: Arc::new(SystemClock),
            owner: Owner::this_process(None),
            config,
            observer: Arc::new(Silent),
            parsed: Arc::default(),
        }
    }

    /// Replaces the activities' environment (e.g. one with an ARM client).
    pub fn with_env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The observer that shows progress.
    pub(crate) fn observer(&self) -> &dyn Observer {
        self.observer.as_ref()
    }

    /// Replaces the observer that shows progress.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Replaces the lease owner id (several drivers in one process).
    pub fn with_owner(mut self, owner: Owner) -> Self {
        self.owner = owner;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The lease owner id of this engine.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// How long a lease of this engine lasts without renewal.
    pub(crate) fn lease_ttl(&self) -> Duration {
        self.config.lease_ttl
    }

    /// Now, from the engine's clock.
    pub fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Creates a run: pins the runbook text and parameters, locks the run's resource keys
    /// (refusing, with the holder's id, when another run has one), and returns its id.
    pub async fn create_run(&self, req: CreateRun<'_>) -> Result<String, EngineError> {
        let new = self.prepare_run(req)?;
        let id = new.id.clone();
        self.store.create_run(new).await?;
        failpoint::after_create();
        Ok(id)
    }

    /// The row [`Engine::create_run`] would insert: a fresh id, resolved locks, the lease.
    pub(crate) fn prepare_run(&self, req: CreateRun<'_>) -> Result<NewRun, EngineError> {
        let id = uuid::Uuid::now_v7().to_string();
        let locks = resolve_locks(req.runbook, &req.params, &id)?;
        let now = self.clock.now_ms();
        let new = NewRun {
            id: id.clone(),
            runbook_name: req.runbook.name.clone(),
            runbook_version: req.runbook.version,
            runbook_text: req.text.to_owned(),
            runbook_sha256: sha256_hex(req.text),
            source_path: req.source_path,
            params: req.params,
            steps: req.runbook.steps.iter().map(|s| s.id.0.clone()).collect(),
            locks,
            auto_approve: req.auto_approve,
            lease: req
                .take_lease
                .then(|| (self.owner.to_string(), now + ms(self.config.lease_ttl))),
            created_by: req.created_by,
            schedule: req.schedule,
            window: req.window,
            now,
        };
        Ok(new)
    }

    /// Drives a run until it ends, suspends at an approval, or `stop` is cancelled. Takes
    /// the run's lease first (refused with [`EngineError::Busy`] while a live process
    /// holds it) and keeps it renewed.
    #[tracing::instrument(name = "run", skip_all, fields(run_id = %run_id))]
    pub async fn drive(&self, run_id: &str, stop: CancellationToken) -> Result<RunOutcome, EngineError> {
        let holder = self.store.lease_owner(run_id).await?;
        let dead = holder.clone().filter(|o| owner::is_dead(o));
        if holder.as_deref().is_some_and(|h| h != self.owner.as_str()) && dead.is_none() {
            // An expired lease of a process that may live is taken over only a margin after
            // its expiry, when that process's own deadline has certainly passed.
            if !self.wait_out_lease_margin(run_id, &stop).await? {
                return Ok(RunOutcome::Interrupted);
            }
        }
        let margin = self.lease_margin();
        let sent = self.clock.monotonic();
        let grant = self
            .store
            .acquire_lease(
                run_id,
                self.owner.as_str(),
                self.config.lease_ttl,
                dead,
                self.clock.now_ms(),
            )
            .await?;
        if let Some(from) = &grant.taken_over_from {
            tracing::warn!(from = %from, "took over the run's lease");
            self.observer.took_over(from);
        }

        let lease = Arc::new(LeaseClock::new(
            self.clock.clone(),
            self.store.clone(),
            run_id,
            self.owner.as_str(),
            self.config.lease_ttl,
            margin,
            sent,
        ));
        let token = stop.child_token();
        let beat = Arc::new(Beat::default());
        // Aborted when this function returns by any path, so a lease is never renewed for
        // a run this process no longer drives.
        let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
            self.clone(),
            run_id.to_owned(),
            token.clone(),
            beat.clone(),
            lease.clone(),
        )));

        let result = self.drive_steps(run_id, &token, &lease).await;
        if let Some(step_id) = lease.refused_step() {
            // A cloud request was not sent for want of the lease: say so, whatever the
            // activity made of the refusal. If the store still names this process, give the
            // lease up so that the run can be resumed at once.
            let _ = self
                .store
                .release_lease(run_id, self.owner.as_str(), self.clock.now_ms())
                .await;
            let message = match result {
                Err(EngineError::Fenced { message, .. }) => message,
                _ => lease::FENCED.to_owned(),
            };
            return Err(EngineError::Fenced {
                run_id: run_id.to_owned(),
                step_id,
                message,
            });
        }
        if let Some(owner) = beat.lost_to() {
            return Err(EngineError::LeaseLost {
                run_id: run_id.to_owned(),
                owner,
            });
        }
        let outcome = match result {
            Err(EngineError::State(StateError::LeaseLost { run_id, owner })) => {
                return Err(EngineError::LeaseLost { run_id, owner });
            }
            // The store refused to start a step because an operator asked to cancel.
            Err(EngineError::State(StateError::CancelRequested { .. })) => RunOutcome::Interrupted,
            other => other?,
        };
        // An operator asked to cancel: whatever stopped the run at a safe point (the request
        // itself, an approval, a closed window), it ends cancelled and its locks are released.
        let stopped_early = matches!(
            outcome,
            RunOutcome::Interrupted | RunOutcome::Waiting { .. } | RunOutcome::OutsideWindow { .. }
        );
        let cancel = stopped_early
            && (beat.cancel_requested.load(Ordering::SeqCst)
                || self.store.load_run(run_id).await?.run.cancel_requested);
        let outcome = match outcome {
            RunOutcome::Interrupted | RunOutcome::Waiting { .. } | RunOutcome::OutsideWindow { .. } if cancel => {
                self.store
                    .finish_cancel(run_id, self.owner.as_str(), self.clock.now_ms())
                    .await?;
                RunOutcome::Cancelled
            }
            other => other,
        };
        if outcome != RunOutcome::Cancelled {
            self.store
                .release_lease(run_id, self.owner.as_str(), self.clock.now_ms())
                .await?;
        }
        Ok(outcome)
    }

    /// The safety margin of this engine's leases.
    fn lease_margin(&self) -> Duration {
        lease::lease_margin(self.config.lease_ttl, self.config.lease_margin)
    }

    /// When the run's lease has expired less than a margin ago, waits until the margin has
    /// passed. Returns `false` when `stop` was cancelled meanwhile.
    async fn wait_out_lease_margin(&self, run_id: &str, stop: &CancellationToken) -> Result<bool, EngineError> {
        let Some(expires_at) = self.store.load_run(run_id).await?.run.lease_expires_at else {
            return Ok(true);
        };
        let now = self.clock.now_ms();
        let until = expires_at.saturating_add(ms(self.lease_margin()));
        if now < expires_at || now >= until {
            // Not expired (the store refuses, naming the holder), or expired long enough.
            return Ok(true);
        }
        let wait = Duration::from_millis((until - now).unsigned_abs());
        tracing::info!(
            wait_ms = ms(wait),
            "the run's lease expired just now; waiting out the safety margin before taking it over"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(true),
            () = stop.cancelled() => Ok(false),
        }
    }

    async fn drive_steps(
        &self,
        run_id: &str,
        stop: &CancellationToken,
        lease: &Arc<LeaseClock>,
    ) -> Result<RunOutcome, EngineError> {
        let snap = self.store.load_run(run_id).await?;
        let origin = format!("runbook pinned to run {run_id}");
        let runbook =
            self.parsed
                .get(&snap.run.runbook_text, &origin)
                .map_err(|source| EngineError::StoredRunbook {
                    run_id: run_id.to_owned(),
                    source,
                })?;
        self.check_pinned_file(&snap).await?;
        if let Some(arm) = &self.env.arm
            && runbook.steps.iter().any(|s| s.uses.contains('.'))
        {
            // Which credential drove the cloud calls, never the token itself.
            self.store
                .record_event(
                    run_id,
                    "arm.credential",
                    None,
                    json!({ "kind": arm.credential_kind(), "endpoint": arm.endpoint().as_str() }),
                    self.clock.now_ms(),
                )
                .await?;
        }

        let params = snap.run.params.clone();
        let run_info = json!({ "id": run_id, "runbook": runbook.name });
        let driver = Driver {
            engine: self,
            run_id,
            runbook: &runbook,
            auto_approve: snap.run.auto_approve,
            window: snap.run.window.as_ref(),
            stop,
            lease: Some(lease.clone()),
            carry: std::sync::Mutex::default(),
            shown: std::sync::Mutex::default(),
        };
        let walked = self.walk(&driver, &runbook, &snap, &params, &run_info).await;
        if walked.is_err() {
            // Ends of steps whose effects happened are committed even when the walk stops
            // on an error (if the store still takes writes).
            if let Err(e) = driver.flush().await {
                tracing::warn!(error = %e, "could not commit the end of the last step");
            }
        }
        walked
    }

    /// Runs the remaining steps of a run in order.
    async fn walk(
        &self,
        driver: &Driver<'_>,
        runbook: &Runbook,
        snap: &RunSnapshot,
        params: &serde_json::Value,
        run_info: &serde_json::Value,
    ) -> Result<RunOutcome, EngineError> {
        let run_id = driver.run_id;
        let mut steps: BTreeMap<String, StepScope> = BTreeMap::new();

        for (position, step) in runbook.steps.iter().enumerate() {
            let row = snap
                .step_at(position, step.id.as_str())
                .cloned()
                .ok_or_else(|| StateError::UnknownStep {
                    run_id: run_id.to_owned(),
                    step_id: step.id.0.clone(),
                })?;
            match row.status {
                StepStatus::Completed => {
                    steps.insert(step.id.0.clone(), scope_completed(row.output.unwrap_or_default()));
                    continue;
                }
                StepStatus::Skipped => {
                    steps.insert(step.id.0.clone(), scope_skipped());
                    continue;
                }
                StepStatus::Failed => {
                    steps.insert(step.id.0.clone(), scope_failed(&row.error));
                    continue;
                }
                StepStatus::Pending | StepStatus::Running | StepStatus::RetryWait => {}
            }
            if driver.stop.is_cancelled() {
                driver.flush().await?;
                return Ok(RunOutcome::Interrupted);
            }
            let scope = Scope {
                params,
                steps: &steps,
                run: run_info,
            };
            match driver.run_step(step, row, &scope).await? {
                StepEnd::Completed(output) => {
                    steps.insert(step.id.0.clone(), scope_completed(output));
                }
                StepEnd::Skipped => {
                    steps.insert(step.id.0.clone(), scope_skipped());
                }
                StepEnd::FailedContinue(error) => {
                    steps.insert(step.id.0.clone(), scope_failed(&Some(error)));
                }
                StepEnd::Stop(outcome) => {
                    driver.flush().await?;
                    if let RunOutcome::Failed { .. } = &outcome {
                        driver
                            .notify(NotifyEvent::RunFailed, json!({ "outcome": format!("{outcome:?}") }))
                            .await;
                    }
                    return Ok(outcome);
                }
            }
        }
        // The run's success is committed with the end of its last step when that is pending.
        let mut last = driver.carried();
        match last.last_mut() {
            Some(finish) => {
                finish.run_status = Some(RunStatus::Succeeded);
                let tail = last.pop();
                for f in last {
                    driver.defer(f);
                }
                driver.advance(tail, None).await?;
            }
            None => {
                self.store
                    .set_run_status(
                        run_id,
                        self.owner.as_str(),
                        RunStatus::Succeeded,
                        None,
                        self.clock.now_ms(),
                    )
                    .await?;
            }
        }
        driver.notify(NotifyEvent::RunSucceeded, json!({})).await;
        Ok(RunOutcome::Succeeded)
    }

    /// Resume always uses the pinned text; when the file it came from has changed since,
    /// say so (once per resume) so nobody believes their edit is in effect.
    async fn check_pinned_file(&self, snap: &RunSnapshot) -> Result<(), EngineError> {
        let Some(path) = snap.run.source_path.as_deref() else {
            return Ok(());
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(());
        };
        let sha = sha256_hex(&text);
        if sha != snap.run.runbook_sha256 {
            self.observer.runbook_file_changed(path);
            tracing::warn!(
                path,
                "the runbook file changed since the run started; using the stored text"
            );
            self.store
                .record_event(
                    &snap.run.id,
                    "runbook.file_changed",
                    None,
                    json!({ "path": path, "pinned_sha256": snap.run.runbook_sha256, "file_sha256": sha }),
                    self.clock.now_ms(),
                )
                .await?;
        }
        Ok(())
    }
}

/// The hex sha256 of a text.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn resolve_locks(runbook: &Runbook, params: &serde_json::Value, run_id: &str) -> Result<Vec<String>, EngineError> {
    let steps = BTreeMap::new();
    let run = json!({ "id": run_id, "runbook": runbook.name });
    let scope = Scope {
        params,
        steps: &steps,
        run: &run,
    };
    let mut keys = Vec::new();
    for (i, t) in runbook.locks.iter().enumerate() {
        let v = t.eval(&scope).map_err(|e| {
            EngineError::Invalid(runbook::Diagnostics(vec![runbook::Diagnostic {
                origin: runbook.name.clone(),
                line: None,
                column: None,
                path: format!("locks[{i}]"),
                message: e.to_string(),
            }]))
        })?;
        let key = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// What the heartbeat learned while the run was driven.
#[derive(Default)]
struct Beat {
    /// An operator asked to cancel the run.
    cancel_requested: AtomicBool,
    /// The lease was lost (to whom), or could not be renewed in time.
    lost: std::sync::Mutex<Option<String>>,
}

impl Beat {
    fn lost_to(&self) -> Option<String> {
        self.lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn lose(&self, owner: String) {
        *self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(owner);
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease every third of its lifetime; cancels `token` when the lease is lost,
/// when it could not be renewed before it would expire (the driver fences itself: another
/// process may take the run over from then on), or when an operator asks to cancel. Also
/// reports windows open longer than the runbook's limit.
async fn heartbeat(engine: Engine, run_id: String, token: CancellationToken, beat: Arc<Beat>, lease: Arc<LeaseClock>) {
    let ttl = engine.config.lease_ttl;
    let every = (ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = token.cancelled() => return,
        }
        // The deadline counts from when the renewal was sent, on the monotonic clock.
        let sent = lease.now();
        let now = engine.clock.now_ms();
        match engine.store.renew_lease(&run_id, engine.owner.as_str(), ttl, now).await {
            Ok(cancel) => {
                lease.renewed(sent);
                if cancel {
                    tracing::info!("cancellation requested; stopping at the next safe point");
                    beat.cancel_requested.store(true, Ordering::SeqCst);
                    token.cancel();
                    return;
                }
            }
            Err(StateError::LeaseLost { owner, .. }) => {
                tracing::error!(%owner, "lost the lease; stopping");
                lease.lost();
                beat.lose(owner);
                token.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the lease");
                if lease.remaining() <= every {
                    tracing::error!("the lease could not be renewed before it expires; stopping");
                    lease.lost();
                    beat.lose("nobody (the lease expired before it could be renewed)".to_owned());
                    token.cancel();
                    return;
                }
            }
        }
        check_window_limits(&engine, &run_id).await;
    }
}

async fn check_window_limits(engine: &Engine, run_id: &str) {
    let Ok(snap) = engine.store.load_run(run_id).await else {
        return;
    };
    let Ok(rb) = engine.parsed.get(&snap.run.runbook_text, "pinned runbook") else {
        return;
    };
    let Some(limit) = rb.limits.max_unprotected else {
        return;
    };
    let now = engine.clock.now_ms();
    for w in snap
        .windows
        .iter()
        .filter(|w| w.closed_at.is_none() && !w.limit_notified)
    {
        let age = now - w.opened_at;
        if age > ms(limit) {
            let limit_text = fogbook_activities::duration::format(limit);
            if let Ok(true) = engine
                .store
                .mark_window_limit_exceeded(run_id, w.id, limit_text.clone(), now)
                .await
            {
                tracing::warn!(kind = %w.kind, age_ms = age, limit = %limit_text, "window open longer than the limit");
                engine.observer.window_limit_exceeded(w.kind.as_str(), age, &limit_text);
                let driver = Driver {
                    engine,
                    run_id,
                    runbook: &rb,
                    auto_approve: false,
                    window: None,
                    stop: &CancellationToken::new(),
                    lease: None,
                    carry: std::sync::Mutex::default(),
                    shown: std::sync::Mutex::default(),
                };
                driver
                    .notify(
                        NotifyEvent::MaxUnprotectedExceeded,
                        json!({ "kind": w.kind, "opened_at": format_ms(w.opened_at), "age_ms": age, "limit": limit_text }),
                    )
                    .await;
            }
        }
    }
}

enum StepEnd {
    Completed(serde_json::Value),
    Skipped,
    FailedContinue(serde_json::Value),
    Stop(RunOutcome),
}

struct Driver<'a> {
    engine: &'a Engine,
    run_id: &'a str,
    runbook: &'a Runbook,
    auto_approve: bool,
    /// The maintenance window disruptive steps wait for.
    window: Option<&'a serde_json::Value>,
    stop: &'a CancellationToken,
    /// The driver's lease deadline, the fence of its cloud calls.
    lease: Option<Arc<LeaseClock>>,
    /// Ends of attempts whose effects are over but which are not committed yet: they are
    /// committed with the next transition (the start of the next step, as one durable
    /// commit), and before anything else is written or sent. Between an end and its commit
    /// the driver only evaluates the next step's condition and inputs, in memory.
    carry: std::sync::Mutex<Vec<StepFinish>>,
    /// What the carried ends will show once committed: nothing is reported as done before
    /// its commit.
    shown: std::sync::Mutex<Vec<Shown>>,
}

/// A step end to show once it is committed.
enum Shown {
    Completed {
        step: String,
        elapsed: Millis,
        closes: Vec<WindowKind>,
    },
    Skipped(String),
}

impl Driver<'_> {
    fn carried(&self) -> Vec<StepFinish> {
        std::mem::take(&mut *self.carry.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn defer(&self, finish: StepFinish) {
        self.carry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(finish);
    }

    /// Shows `end` once the carried ends are committed.
    fn show_after_commit(&self, end: Shown) {
        self.shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(end);
    }

    /// Shows the ends that were just committed.
    fn show_committed(&self) {
        let shown = std::mem::take(&mut *self.shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for end in shown {
            match end {
                Shown::Completed { step, elapsed, closes } => {
                    self.engine.observer.step_completed(&step, elapsed);
                    for kind in closes {
                        self.engine.observer.window(kind.as_str(), false, &step);
                    }
                }
                Shown::Skipped(step) => self.engine.observer.step_skipped(&step),
            }
        }
    }

    /// Commits the carried ends together with `finish` (if any) and `start` (if any).
    async fn advance(&self, finish: Option<StepFinish>, start: Option<StepStart>) -> Result<(), EngineError> {
        let mut finished = self.carried();
        finished.extend(finish);
        if finished.is_empty() && start.is_none() {
            return Ok(());
        }
        let ended: Vec<String> = finished.iter().map(|f| f.step_id.clone()).collect();
        let result = self
            .engine
            .store
            .advance(self.run_id, self.owner(), finished, start)
            .await;
        if matches!(
            result,
            Ok(()) | Err(StateError::CancelRequested { .. } | StateError::TrailDisagrees { .. })
        ) {
            self.show_committed();
            for sid in &ended {
                failpoint::hit(Point::AfterFinish, sid);
            }
        }
        Ok(result?)
    }

    /// Commits the carried ends, if any, on their own.
    async fn flush(&self) -> Result<(), EngineError> {
        self.advance(None, None).await
    }

    fn owner(&self) -> &str {
        self.engine.owner.as_str()
    }

    fn now(&self) -> Millis {
        self.engine.clock.now_ms()
    }

    #[tracing::instrument(name = "step", skip_all, fields(step_id = %step.id, uses = %step.uses))]
    async fn run_step(&self, step: &Step, mut row: StepRow, scope: &Scope<'_>) -> Result<StepEnd, EngineError> {
        let store = &self.engine.store;
        let sid = step.id.as_str();
        let first_started = row.first_started_at.unwrap_or_else(|| self.now());
        loop {
            let (attempt, input, progress, deadline, reentered) = match row.status {
                StepStatus::Pending => {
                    if let Some(outside) = self.outside_window(step).await? {
                        return Ok(StepEnd::Stop(outside));
                    }
                    if let Some(when) = &step.when {
                        match when.eval_bool(scope) {
                            Ok(true) => {}
                            Ok(false) => {
                                // Committed with the next transition, like a completion.
                                self.defer(StepFinish {
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
                                return Ok(StepEnd::Skipped);
                            }
                            Err(e) => {
                                return self
                                    .fail_for_good(
                                        step,
                                        0,
                                        "ExpressionError",
                                        &format!("`when` could not be evaluated: {e}"),
                                        None,
                                    )
                                    .await;
                            }
                        }
                    }
                    let input = match crate::expr::resolve_with(&step.with, scope) {
                        Ok(v) => v,
                        Err(e) => {
                            return self
                                .fail_for_good(
                                    step,
                                    0,
                                    "ExpressionError",
                                    &format!("inputs could not be resolved: {e}"),
                                    None,
                                )
                                .await;
                        }
                    };
                    let attempt = row.attempt + 1;
                    // A step an operator re-opened (`resume --retry-failed`) keeps what its
                    // earlier attempts saved: an intent or a polling URL must not be forgotten.
                    let reopened = row.attempt > 0;
                    let deadline = self.start(step, attempt, &input, reopened).await?;
                    let progress = if reopened { row.progress.clone() } else { None };
                    (attempt, input, progress, deadline, false)
                }
                StepStatus::Running => {
                    // Re-entered after a restart: same attempt, its stored input, deadline and
                    // progress. The activity decides from its progress how to continue.
                    let input = row.input.clone().unwrap_or_default();
                    self.flush().await?;
                    store
                        .record_event(
                            self.run_id,
                            "step.reentered",
                            Some(sid.to_owned()),
                            json!({ "attempt": row.attempt, "progress": row.progress }),
                            self.now(),
                        )
                        .await?;
                    (row.attempt, input, row.progress.clone(), row.deadline_at, true)
                }
                StepStatus::RetryWait => {
                    let at = row.next_attempt_at.unwrap_or_else(|| self.now());
                    let remaining = at - self.now();
                    if remaining > 0 {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(remaining.unsigned_abs())) => {}
                            () = self.stop.cancelled() => return Ok(StepEnd::Stop(RunOutcome::Interrupted)),
                        }
                    }
                    let input = row.input.clone().unwrap_or_default();
                    let attempt = row.attempt + 1;
                    let deadline = self.start(step, attempt, &input, true).await?;
                    (attempt, input, row.progress.clone(), deadline, false)
                }
                StepStatus::Completed | StepStatus::Skipped | StepStatus::Failed => {
                    return Err(EngineError::State(StateError::InvalidTransition {
                        message: format!("step `{sid}` is already {}", row.status),
                    }));
                }
            };
            // An approval step re-entered after its run waited is not a restart: it goes on
            // with the approval (or asks again), and says nothing about re-entering.
            let shown_reentered = reentered && step.uses != "approval";
            self.engine
                .observer
                .step_started(sid, &step.uses, attempt, shown_reentered);
            tracing::info!(attempt, reentered, "step.started");
            failpoint::hit(Point::AfterStart, sid);

            let result = self.execute(step, attempt, input, progress, deadline).await;
            failpoint::hit(Point::BeforeFinish, sid);
            let error = match result {
                Ok(output) => {
                    let closes = edges(step, WindowEdge::Closes);
                    // Committed with the next transition (the next step's start, the run's
                    // end, or before anything else is written or sent).
                    self.defer(StepFinish {
                        step_id: sid.to_owned(),
                        attempt,
                        outcome: StepOutcome::Completed { output: output.clone() },
                        closes: closes.clone(),
                        run_status: None,
                        now: self.now(),
                    });
                    let elapsed = self.now() - first_started;
                    self.show_after_commit(Shown::Completed {
                        step: sid.to_owned(),
                        elapsed,
                        closes: closes.clone(),
                    });
                    for kind in closes {
                        self.notify(NotifyEvent::WindowClosed, json!({ "kind": kind, "step": sid }))
                            .await;
                    }
                    tracing::info!("step.completed");
                    return Ok(StepEnd::Completed(output));
                }
                Err(StepError::Activity(ActivityError::Interrupted)) => {
                    return Ok(StepEnd::Stop(RunOutcome::Interrupted));
                }
                Err(StepError::Activity(ActivityError::LeaseExpired { message })) => {
                    // Nothing was sent and nothing more is written: the run belongs to
                    // whoever holds the lease now.
                    return Err(EngineError::Fenced {
                        run_id: self.run_id.to_owned(),
                        step_id: sid.to_owned(),
                        message,
                    });
                }
                Err(StepError::Activity(ActivityError::AwaitingApproval { message })) => {
                    self.flush().await?;
                    store
                        .set_run_status(self.run_id, self.owner(), RunStatus::Waiting, None, self.now())
                        .await?;
                    return Ok(StepEnd::Stop(RunOutcome::Waiting {
                        step: sid.to_owned(),
                        message,
                    }));
                }
                Err(StepError::Activity(ActivityError::Store(message))) => {
                    // Progress could not be committed (lost lease, database error): stop
                    // without recording anything else; resume re-enters the step.
                    return Err(EngineError::State(StateError::InvalidTransition { message }));
                }
                Err(e) => e,
            };
            let (class, code, message, retry_after, output) = error.describe();
            let retryable = class.is_some_and(|c| step.retry.on.contains(&c));
            if retryable && attempt < step.retry.max_attempts {
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
                // Continue from the row as committed (input, attempt, deadline of the retry,
                // the progress the failed attempt saved), not from what this loop remembers.
                row = store
                    .load_run(self.run_id)
                    .await?
                    .step(sid)
                    .cloned()
                    .ok_or_else(|| StateError::UnknownStep {
                        run_id: self.run_id.to_owned(),
                        step_id: sid.to_owned(),
                    })?;
                continue;
            }
            return self.fail_for_good(step, attempt, &code, &message, output).await;
        }
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

    /// Posts an engine event to the runbook's webhook, if it asked for this event. Best
    /// effort: a failed delivery is logged and audited, never fails the run.
    async fn notify(&self, event: NotifyEvent, data: serde_json::Value) {
        let Some(cfg) = &self.runbook.notify else { return };
        if !cfg.on.contains(&event) {
            return;
        }
        // Nothing is sent about a state that is not committed.
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "not sending a notification: the state could not be committed");
            return;
        }
        let Ok(snap) = self.engine.store.load_run(self.run_id).await else {
            return;
        };
        let steps = BTreeMap::new();
        let run = json!({ "id": self.run_id, "runbook": self.runbook.name });
        let scope = Scope {
            params: &snap.run.params,
            steps: &steps,
            run: &run,
        };
        let Ok(serde_json::Value::String(url)) = cfg.url.eval(&scope) else {
            tracing::warn!("notify.url did not resolve to a string");
            return;
        };
        let event_name = serde_json::to_value(event).unwrap_or_default();
        let body = json!({
            "event": event_name,
            "run_id": self.run_id,
            "runbook": self.runbook.name,
            "at": format_ms(self.now()),
            "data": data,
        });
        let delivered = fogbook_activities::post_event(&self.engine.env, &url, &body).await;
        let (kind, detail) = match &delivered {
            Ok(status) => ("notify.sent", json!({ "event": event_name, "status": status })),
            Err(e) => {
                tracing::warn!(error = %e, "could not deliver a notification");
                ("notify.failed", json!({ "event": event_name, "error": e.to_string() }))
            }
        };
        let _ = self
            .engine
            .store
            .record_event(self.run_id, kind, None, detail, self.now())
            .await;
    }
}

enum StepError {
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
fn window_subject(input: &serde_json::Value) -> Option<String> {
    ["instance", "primary"]
        .iter()
        .find_map(|k| input.get(k).and_then(|i| i.get("name")).and_then(|n| n.as_str()))
        .map(str::to_owned)
}

fn edges(step: &Step, edge: WindowEdge) -> Vec<WindowKind> {
    let mut out = Vec::new();
    if step.unprotected == Some(edge) {
        out.push(WindowKind::Unprotected);
    }
    if step.listener == Some(edge) {
        out.push(WindowKind::ListenerUnavailable);
    }
    out
}

fn scope_completed(output: serde_json::Value) -> StepScope {
    StepScope {
        status: "completed".to_owned(),
        outputs: output,
    }
}

fn scope_skipped() -> StepScope {
    StepScope {
        status: "skipped".to_owned(),
        outputs: serde_json::Value::Null,
    }
}

fn scope_failed(error: &Option<serde_json::Value>) -> StepScope {
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
