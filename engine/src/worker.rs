//! The worker: fires due schedules and drives runs that nobody drives (pending, detached,
//! approved after waiting, or left by a process whose lease expired or who died), several
//! at a time, until asked to stop. Several workers may share one database: firing a
//! schedule is a compare-and-set on its cursor and driving a run needs its lease, so no
//! fire happens twice and no run is driven twice.
//!
//! On PostgreSQL (workers on several hosts) a worker first claims the runs it will drive
//! (`Store::claim_runs`: their leases in one transaction, rows locked `FOR UPDATE SKIP
//! LOCKED`), so workers looking at once get distinct runs, and it wakes as soon as another
//! process makes work (`Store::listen_for_work`: `LISTEN/NOTIFY`) instead of at its next
//! poll; the poll stays, for expired leases and notifications lost while disconnected.

mod health;
mod set_aside;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use fogbook_activities::{BoxFuture, Env};
use fogbook_state::{FireDecision, FireOutcome, RunFilter, RunRow, RunStatus, ScheduleRow, StateError};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::with_causes;
use crate::schedule::{CronSchedule, Plan, TickInput, Window};
use crate::{CreateRun, Engine, EngineError, RunOutcome, owner, runbook};
use health::Health;
use set_aside::SetAside;

/// Gives a run its own environment before a worker drives it (the CLI restores a rehearsal's
/// emulator), or refuses to drive it here (`Err`: why, logged; the run is left as it is).
pub trait RunEnv: Send + Sync + 'static {
    /// `Ok(None)`: the worker's own environment serves.
    fn prepare<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<PreparedEnv>, String>>;

    /// Whether the worker may take run `run_id` over from `owner`, the holder of its expired
    /// lease, asked before the lease is claimed: `Err(why)` leaves the run to that holder
    /// (logged once), e.g. a rehearsal whose frozen driver still holds its emulator's address.
    fn may_take_over<'a>(&'a self, run_id: &'a str, owner: &'a str) -> BoxFuture<'a, Result<(), String>> {
        let _ = (run_id, owner);
        Box::pin(async { Ok(()) })
    }
}

/// A run's own environment, and what to do once the worker stops driving it.
pub struct PreparedEnv {
    /// The activities' environment for this run.
    pub env: Env,
    /// Awaited after the drive ends (whatever its outcome): e.g. saves and stops an emulator.
    pub finish: BoxFuture<'static, ()>,
}

/// The hook of [`WorkerConfig::run_env`].
#[derive(Clone)]
pub struct RunEnvHook(pub Arc<dyn RunEnv>);

impl std::fmt::Debug for RunEnvHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunEnvHook")
    }
}

/// Settings of a worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Runs driven at once.
    pub concurrency: usize,
    /// How often to look for due schedules and runs to drive.
    pub poll: Duration,
    /// Stop once there is nothing to drive and nothing running (tests, batch jobs).
    pub exit_when_idle: bool,
    /// Per-run environments (rehearsals), when the worker's own does not serve every run.
    pub run_env: Option<RunEnvHook>,
}

/// What a worker did.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    /// Runs created by schedules.
    pub fired: usize,
    /// Runs driven (to an end or a stop).
    pub driven: usize,
}

/// Runs the worker until `stop` is cancelled (or, with `exit_when_idle`, until idle). On
/// stop, in-flight runs stop at safe points and release their leases, so another worker
/// can take them over at once.
pub async fn run_worker(
    engine: Engine,
    config: WorkerConfig,
    stop: CancellationToken,
) -> Result<WorkerReport, EngineError> {
    let mut report = WorkerReport::default();
    let mut tasks: JoinSet<(String, Drove)> = JoinSet::new();
    let mut active: BTreeSet<String> = BTreeSet::new();
    // Runs this worker could not drive (or whose drive failed), not looked at again until
    // their back-off ends: without it, a run the worker cannot drive here is picked up,
    // refused and picked up again at once, thousands of times a second.
    let mut set_aside = SetAside::new(config.poll);
    // A database outage is said once, not by every job at every poll.
    let mut health = Health::new(config.poll);
    // Runs left to the holder of their expired lease (`RunEnv::may_take_over`), with that
    // holder: logged when first left, not again at every poll.
    let mut left: BTreeMap<String, String> = BTreeMap::new();
    // The drives' stop: the worker's, or the store's being copied away.
    let drives = stop.child_token();
    let (mut copying, mut moved) = (false, None);
    let listener = engine.store().listen_for_work().unwrap_or_else(|e| {
        tracing::warn!(error = %with_causes(&e), "worker: cannot listen for work; polling only");
        None
    });
    loop {
        if stop.is_cancelled() {
            break;
        }
        // A store copied away after this worker opened it (`fogbook store copy`): while the
        // copy reads it, nothing new is taken on; once its runs live in the target, the
        // drives stop (their leases are not renewed there either) and the worker exits.
        let paused = match engine.store().moved_now().await {
            Ok(Some(mark)) if mark.done => {
                tracing::error!(target = %mark.target, "worker: {}; stopping: run the workers on {} from now on", StateError::StoreMoved { mark: mark.clone() }, mark.target);
                drives.cancel();
                moved = Some(mark);
                break;
            }
            Ok(Some(mark)) => {
                if !copying {
                    tracing::warn!(target = %mark.target, "worker: {}; taking on nothing until it ends", StateError::StoreMoved { mark: mark.clone() });
                }
                true
            }
            Ok(None) => false,
            // The writes that take on work read the mark themselves.
            Err(e) => {
                health.failed("read whether the store was moved", &e.into());
                false
            }
        };
        copying = paused;
        if !paused {
            // A database hiccup (SQLITE_BUSY past the timeout, one unreadable row) must not stop
            // the worker or abort the runs it drives: log it and look again at the next poll.
            match tick_schedules(&engine, &mut health).await {
                Ok(n) => report.fired += n,
                Err(e) => health.failed("fire schedules", &e),
            }
            let mut candidates = drivable(&engine, &active).await.unwrap_or_else(|e| {
                health.failed("list runs to drive", &e);
                Vec::new()
            });
            candidates.retain(|c| !set_aside.holds(&c.id));
            let candidates = leave_held(config.run_env.as_ref(), candidates, &mut left).await;
            let free = config.concurrency.max(1).saturating_sub(active.len());
            let candidates = claim(&engine, candidates, free, &mut health).await;
            for candidate in candidates {
                if active.len() >= config.concurrency.max(1) {
                    break;
                }
                let run = candidate.id.clone();
                let schedule = created_by_schedule(&engine, &run).await;
                engine
                    .observer()
                    .run_picked_up(&run, &candidate.runbook, schedule.as_deref());
                active.insert(run.clone());
                let (mut engine, token) = (engine.clone(), drives.child_token());
                let hook = config.run_env.clone();
                tasks.spawn(async move {
                    // Several runs are driven at once: each one's lines name it.
                    if let Some(observer) = engine.observer().for_run(&run) {
                        engine = engine.with_observer(observer);
                    }
                    let mut finish = None;
                    if let Some(hook) = hook {
                        match hook.0.prepare(&run).await {
                            Ok(Some(prepared)) => {
                                engine = engine.with_env(prepared.env);
                                finish = Some(prepared.finish);
                            }
                            Ok(None) => {}
                            Err(why) => {
                                // Its claim (PostgreSQL) goes back at once, so another worker
                                // can drive it and `status` does not show it driven here.
                                let given = engine
                                    .store()
                                    .give_back(&run, engine.owner().as_str(), candidate.status, why.clone(), engine.now_ms())
                                    .await;
                                if let Err(e) = given {
                                    tracing::error!(run_id = %run, error = %with_causes(&e), "worker: cannot give back a claimed lease");
                                }
                                return (run, Drove::NotHere(why));
                            }
                        }
                    }
                    let outcome = engine.drive(&run, token).await;
                    match &outcome {
                        Ok(o) => engine.observer().run_driven(&run, o),
                        Err(EngineError::State(StateError::LeaseHeld { owner, .. })) => {
                            engine.observer().run_left_to(&run, owner);
                        }
                        Err(_) => {}
                    }
                    if let Some(finish) = finish {
                        finish.await;
                    }
                    (run, Drove::Run(outcome))
                });
            }
            // Fleets nobody drives (fired by a schedule, or whose window opened) are driven
            // here too, each counting as one of the worker's `concurrency`.
            let fleets = crate::fleet::drivable_fleets(&engine, &active)
                .await
                .unwrap_or_else(|e| {
                    health.failed("list fleets to drive", &e);
                    Vec::new()
                });
            for id in fleets {
                if active.len() >= config.concurrency.max(1) {
                    break;
                }
                active.insert(id.clone());
                let (engine, token) = (engine.clone(), drives.child_token());
                tasks.spawn(async move {
                    crate::fleet::drive_for_worker(&engine, &id, token).await;
                    (id, Drove::Fleet)
                });
            }
        }
        health.poll_ended();
        if config.exit_when_idle && active.is_empty() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(config.poll) => {}
            () = work_made(listener.as_ref()) => {}
            () = stop.cancelled() => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => finished(done, &mut active, &mut report, &mut set_aside),
        }
    }
    while let Some(done) = tasks.join_next().await {
        finished(done, &mut active, &mut report, &mut set_aside);
    }
    if let Some(mark) = moved {
        return Err(EngineError::State(StateError::StoreMoved { mark }));
    }
    Ok(report)
}

/// How a worker's task ended.
enum Drove {
    /// A fleet's drive ended.
    Fleet,
    /// The run was not driven: the worker's environment does not fit it (why).
    NotHere(String),
    /// The run was driven, to this outcome.
    Run(Result<RunOutcome, EngineError>),
}

fn finished(
    done: Result<(String, Drove), tokio::task::JoinError>,
    active: &mut BTreeSet<String>,
    report: &mut WorkerReport,
    set_aside: &mut SetAside,
) {
    match done {
        Ok((run, Drove::Fleet)) => {
            active.remove(&run);
        }
        Ok((run, Drove::NotHere(why))) => {
            active.remove(&run);
            let again = set_aside.put(&run);
            tracing::error!(run_id = %run, why, again_in = ?again, "worker: not driving this run here; looking at it again later");
        }
        Ok((run, Drove::Run(outcome))) => {
            active.remove(&run);
            report.driven += 1;
            match outcome {
                Ok(o) => {
                    set_aside.clear(&run);
                    tracing::info!(run_id = %run, outcome = ?o, "worker: run stopped");
                }
                // Another worker won the lease: not an error.
                Err(EngineError::State(StateError::LeaseHeld { owner, .. })) => {
                    tracing::debug!(run_id = %run, %owner, "worker: run taken")
                }
                // Fenced: this process was frozen or starved past its lease and another took
                // the run over. The fencing worked; nothing of this worker failed, and it
                // does not drive the run while its new holder does.
                Err(
                    e @ (EngineError::Fenced { .. }
                    | EngineError::TakenOver { .. }
                    | EngineError::State(StateError::LeaseLost { .. })),
                ) => {
                    set_aside.clear(&run);
                    tracing::warn!(run_id = %run, detail = %with_causes(&e), "worker: run {run} was taken over by another process while this one was frozen or starved past its lease; this worker does not drive it (it sent nothing more)");
                }
                // The database did not answer long enough for the lease to expire (said once by
                // the worker): the run is free for whichever worker finds it first once it answers.
                Err(e @ EngineError::LeaseUnrenewed { .. }) => {
                    set_aside.clear(&run);
                    tracing::warn!(run_id = %run, detail = %with_causes(&e), "worker: stopped driving run {run}: its lease could not be renewed; a worker (this one or another) drives it again once the state database answers");
                }
                Err(e) => {
                    let again = set_aside.put(&run);
                    tracing::error!(run_id = %run, error = %with_causes(&e), again_in = ?again, "worker: driving failed; looking at the run again later");
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "worker: a drive task panicked"),
    }
}

/// Returns when another process may have made work (never, without a listener).
async fn work_made(listener: Option<&fogbook_state::pg::WorkListener>) {
    match listener {
        Some(l) => l.notified().await,
        None => std::future::pending().await,
    }
}

/// The candidates whose lease holder `hook` lets this worker take them over from (all of
/// them without a hook), before any lease is claimed. A run left to its holder is logged
/// once per holder (`left` remembers it), not at every poll.
async fn leave_held(
    hook: Option<&RunEnvHook>,
    candidates: Vec<Candidate>,
    left: &mut BTreeMap<String, String>,
) -> Vec<Candidate> {
    let Some(hook) = hook else {
        return candidates;
    };
    let mut keep = Vec::new();
    for c in candidates {
        let Some(owner) = c.owner.clone() else {
            keep.push(c);
            continue;
        };
        match hook.0.may_take_over(&c.id, &owner).await {
            Ok(()) => {
                left.remove(&c.id);
                keep.push(c);
            }
            Err(why) => {
                if left.get(&c.id) != Some(&owner) {
                    tracing::warn!(run_id = %c.id, %owner, "worker: not taking this run over: {why}");
                    left.insert(c.id, owner);
                }
            }
        }
    }
    keep
}

/// The candidates this worker may drive: on PostgreSQL, those it claimed (at most `free`:
/// their leases taken in one transaction, rows other workers are claiming skipped); on
/// SQLite all of them, each drive taking its lease as it starts.
async fn claim(engine: &Engine, candidates: Vec<Candidate>, free: usize, health: &mut Health) -> Vec<Candidate> {
    let ids = candidates.iter().map(|c| c.id.clone()).collect();
    let dead = candidates.iter().filter_map(|c| c.dead_owner.clone()).collect();
    let claimed = engine
        .store()
        .claim_runs(
            engine.owner().as_str(),
            ids,
            dead,
            free,
            engine.lease_ttl(),
            engine.now_ms(),
        )
        .await;
    let keep = match claimed {
        Ok(Some(claimed)) => claimed,
        Ok(None) => return candidates,
        Err(e) => {
            health.failed("claim runs to drive", &e.into());
            Vec::new()
        }
    };
    candidates.into_iter().filter(|c| keep.contains(&c.id)).collect()
}

/// A run the worker may drive.
struct Candidate {
    id: String,
    runbook: String,
    /// Its lease's holder (expired, or gone), if any.
    owner: Option<String>,
    /// Its lease's holder, when that process is provably gone.
    dead_owner: Option<String>,
    /// Its status when listed (restored if the worker gives its claim back).
    status: RunStatus,
}

/// The schedule that created run `run_id`, if one did (from its `run.created` event).
async fn created_by_schedule(engine: &Engine, run_id: &str) -> Option<String> {
    let events = engine.store().events(run_id).await.ok()?;
    let created = events.iter().find(|e| e.kind == "run.created")?;
    created.data.get("schedule")?.as_str().map(str::to_owned)
}

/// Runs that nobody live drives and that can make progress, with their runbook's name.
async fn drivable(engine: &Engine, active: &BTreeSet<String>) -> Result<Vec<Candidate>, EngineError> {
    let now = engine.now_ms();
    // Expiry by the clock leases are written by (the database's, on PostgreSQL): a host
    // whose clock runs ahead must not see other hosts' live leases as expired.
    let lease_now = engine.store().lease_now(now).await?;
    let filter = RunFilter {
        statuses: vec![RunStatus::Pending, RunStatus::Running, RunStatus::Waiting],
        limit: None,
    };
    let mut runs: Vec<RunRow> = engine.store().list_runs(filter).await?;
    // Oldest first, so runs are driven in the order they were created.
    runs.reverse();
    let mut out = Vec::new();
    for run in runs {
        if active.contains(&run.id) {
            continue;
        }
        let dead_owner = run.lease_owner.clone().filter(|o| owner::is_dead(o));
        let free = match (&run.lease_owner, run.lease_expires_at) {
            (None, _) | (_, None) => true,
            (Some(_), Some(exp)) => exp <= lease_now || dead_owner.is_some(),
        };
        if !free {
            continue;
        }
        if run.status == RunStatus::Waiting && !window_open(&run, now) && !approval_arrived(engine, &run.id).await? {
            continue;
        }
        out.push(Candidate {
            id: run.id,
            runbook: run.runbook_name,
            owner: run.lease_owner,
            dead_owner,
            status: run.status,
        });
    }
    Ok(out)
}

/// A run paused before a disruptive step is worth driving once its window is open.
fn window_open(run: &RunRow, now: fogbook_state::Millis) -> bool {
    let waiting_for_window = run
        .error
        .as_ref()
        .and_then(|e| e.get("waiting_for"))
        .and_then(|w| w.as_str())
        == Some("maintenance window");
    waiting_for_window
        && run
            .window
            .as_ref()
            .and_then(Window::from_json)
            .is_some_and(|w| w.contains(now))
}

/// A waiting run is worth driving once its pending approval step has been approved, or
/// once that approval's stored timeout has passed (driving it then fails the step with
/// `ApprovalTimedOut` and releases nothing the operator still needs).
async fn approval_arrived(engine: &Engine, run_id: &str) -> Result<bool, EngineError> {
    let snap = engine.store().load_run(run_id).await?;
    let Some(step) = snap.steps.iter().find(|s| !s.status.is_done()) else {
        return Ok(true);
    };
    let expired = step
        .progress
        .as_ref()
        .and_then(|p| p.get("expires_at"))
        .and_then(|v| v.as_str())
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .is_some_and(|t| t.unix_timestamp_nanos() / 1_000_000 <= i128::from(engine.now_ms()));
    Ok(expired || snap.approvals.iter().any(|a| a.step_id == step.step_id))
}

/// Fires what is due for every schedule; returns how many runs were created.
async fn tick_schedules(engine: &Engine, health: &mut Health) -> Result<usize, EngineError> {
    let mut fired = 0;
    for schedule in engine.store().schedules().await? {
        match tick_one(engine, &schedule).await {
            Ok(n) => fired += n,
            Err(e) => health.failed(&format!("fire schedule {}", schedule.name), &e),
        }
    }
    Ok(fired)
}

async fn tick_one(engine: &Engine, s: &ScheduleRow) -> Result<usize, EngineError> {
    let cron = CronSchedule::parse(&s.cron, &s.tz).map_err(|m| invalid(&s.name, m))?;
    let now = engine.now_ms();
    let input = TickInput {
        cursor: s.cursor_at,
        now,
        catch_up: Duration::from_millis(u64::try_from(s.catch_up_ms).unwrap_or(0)),
        paused: s.paused,
        window: s.window.as_ref().and_then(Window::from_json),
        active_run: s.active_run.is_some()
            || (s.fleet.is_some() && crate::fleet::active_fleet_of(engine, &s.name).await?.is_some()),
        overlap: s.overlap,
        queued: s.queued,
    };
    let (plans, cursor) = crate::schedule::plan_tick(&cron, &input);
    if plans.is_empty() && cursor == s.cursor_at {
        return Ok(0);
    }
    let origin = format!("runbook pinned to schedule {}", s.name);
    let rb = runbook::parse(&s.runbook_text, &origin).map_err(EngineError::Invalid)?;
    let params = match &s.params {
        serde_json::Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    // A schedule that fires a fleet has no parameters of its own: its targets have theirs.
    let params = if s.fleet.is_some() {
        serde_json::Value::Object(params)
    } else {
        runbook::resolve_params(&rb, params, &origin).map_err(EngineError::Invalid)?
    };
    let mut decisions = Vec::new();
    let fire_times: Vec<fogbook_state::Millis> = plans
        .iter()
        .map(|p| match p {
            Plan::Skip { fire_at, .. } | Plan::Queue { fire_at } | Plan::Fire { fire_at, .. } => *fire_at,
        })
        .collect();
    for plan in plans {
        decisions.push(match plan {
            Plan::Skip { fire_at, reason } => FireDecision::Skip { fire_at, reason },
            Plan::Queue { fire_at } => FireDecision::Queue { fire_at },
            Plan::Fire { fire_at, from_queue } if s.fleet.is_some() => {
                crate::fleet::fire_decision(engine, s, &rb, fire_at, from_queue)?
            }
            Plan::Fire { fire_at, from_queue } => FireDecision::Fire {
                fire_at,
                from_queue,
                run: Box::new(engine.prepare_run(CreateRun {
                    source_path: s.source_path.clone(),
                    params: params.clone(),
                    auto_approve: s.auto_approve,
                    created_by: json!({ "schedule": s.name, "fire_at": fogbook_state::format_ms(fire_at), "worker": engine.owner().as_str() }),
                    schedule: Some(s.name.clone()),
                    window: s.window.clone().filter(|w| w.get("pause") == Some(&serde_json::Value::Bool(true))),
                    ..CreateRun::new(&rb, &s.runbook_text)
                })?),
            },
        });
    }
    let outcomes = engine
        .store()
        .apply_schedule_tick(&s.name, s.version, cursor, decisions, now)
        .await?;
    let outcomes = outcomes.unwrap_or_default();
    let observer = engine.observer();
    for (outcome, fire_at) in outcomes.iter().zip(fire_times) {
        match outcome {
            FireOutcome::Fired { run_id } => observer.schedule_fired(&s.name, fire_at, run_id, &rb.name),
            FireOutcome::FiredFleet { fleet_id } => {
                observer.schedule_fired(&s.name, fire_at, &format!("of fleet {fleet_id}"), &rb.name);
            }
            FireOutcome::Skipped { reason } => observer.schedule_skipped(&s.name, fire_at, reason),
            FireOutcome::Queued => observer.schedule_queued(&s.name, fire_at),
        }
    }
    let fired = outcomes
        .iter()
        .filter(|o| matches!(o, FireOutcome::Fired { .. } | FireOutcome::FiredFleet { .. }))
        .count();
    Ok(fired)
}

fn invalid(name: &str, message: String) -> EngineError {
    EngineError::Invalid(runbook::Diagnostics(vec![runbook::Diagnostic {
        origin: format!("schedule {name}"),
        line: None,
        column: None,
        path: "cron".to_owned(),
        message,
    }]))
}
