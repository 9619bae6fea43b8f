//! `fogbook run`: creates a run and drives it; what a driven run ends with.

use std::sync::Arc;

use fogbook_activities::Env;
use fogbook_engine::runbook;
use fogbook_engine::{CreateRun, Engine, EngineConfig, EngineError, RunOutcome};
use fogbook_state::{RunStatus, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, DriveArgs, Format, RunArgs};
use crate::error::fail;
use crate::exit::Exit;
use crate::input::{read_params, read_runbook};
use crate::output;
use crate::progress::Progress;
use crate::signals::spawn_signal_handler;

pub(crate) fn engine(cli: &Cli, store: Store, drive: &DriveArgs, progress: Arc<Progress>, env: Env) -> Engine {
    let config = EngineConfig {
        lease_ttl: cli.lease_ttl,
        lease_margin: cli.lease_margin,
        wait_for_approval: drive.wait,
    };
    Engine::new(store, config).with_observer(progress).with_env(env)
}

/// Who created a run, and for a rehearsal on the emulator its time scale (the HTML views show
/// simulated time beside real time).
pub(crate) async fn run(cli: &Cli, args: &RunArgs) -> Exit {
    // Everything that can be wrong with the input is checked before the database is
    // opened, so bad input leaves it exactly as it was.
    let (text, rb) = match read_runbook(&args.file) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let params = match read_params(&rb, args.params.as_deref(), &args.set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let needs_arm = crate::arm::uses_azure(&rb);
    // A rehearsal's emulator saves its state beside the database, and the run records where,
    // so any later command can restore it (src/rehearsal.rs).
    let state_file = if args.sim.sim {
        match crate::rehearsal::new_state_file(&crate::database::local_base(cli)) {
            Ok(p) => Some(p),
            Err(code) => return code,
        }
    } else {
        None
    };
    let sim = match crate::arm::start_sim(&args.sim, state_file.clone(), cli.quiet).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let target = match (&sim, &state_file) {
        (Some(sim), Some(file)) => json!({ "rehearsal": crate::rehearsal::Rehearsal {
            state_file: file.clone(),
            addr: sim.addr(),
            time_scale: args.sim.sim_time_scale,
        }.record() }),
        _ => json!({ "arm_endpoint": crate::rehearsal::endpoint_record(cli.arm_endpoint.as_deref()) }),
    };
    let (user, user_source) = crate::cli::identity(args.by.as_deref());
    let mut created_by = json!({ "user": user, "user_source": user_source, "command": "run" });
    if let (Some(by), Some(extra)) = (created_by.as_object_mut(), target.as_object()) {
        by.extend(extra.clone());
    }
    let env = match crate::arm::env(cli, sim.as_ref(), needs_arm).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    // No run without a credential: a bad login must leave the database as it was.
    if needs_arm
        && sim.is_none()
        && let Err(code) = crate::arm::check_credential(cli, &env, "nothing was created").await
    {
        return code;
    }
    let store = match crate::database::open_or_create(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let progress = Progress::new(cli.quiet);
    let engine = engine(cli, store, &args.drive, progress.clone(), env);
    // Signals are caught from before the run exists: one that arrives while it is created,
    // or in the first moments after, stops it at its first safe point (its id printed, the
    // run resumable) instead of killing the process with the run half-held.
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone(), cli.quiet);
    let source_path = std::fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone());
    let created = engine
        .create_run(CreateRun {
            source_path: Some(source_path.display().to_string()),
            params,
            auto_approve: args.auto_approve,
            take_lease: !args.detach,
            created_by,
            ..CreateRun::new(&rb, &text)
        })
        .await;
    let run_id = match created {
        Ok(id) => id,
        Err(e) => {
            let refused = match crate::error::held_lock(&e) {
                Some((key, holder)) => lock_refusal(engine.store(), key, holder).await,
                None => false,
            };
            let exit = if refused { Exit::Busy } else { fail(e) };
            engine.store().close().await;
            if let Some(sim) = sim {
                sim.shutdown().await;
            }
            if let Some(file) = &state_file {
                // No run records it: nothing can restore it.
                let _ = std::fs::remove_file(file);
            }
            return exit;
        }
    };
    output::always(&format!("run {run_id}"));
    if args.detach {
        if cli.format == Format::Json {
            output::json("run", &json!({ "run_id": run_id, "status": "pending" }));
        } else {
            output::data(&run_id);
        }
        output::note(
            cli.quiet,
            &format!("detached: `{fb} worker` will drive it", fb = crate::output::fogbook()),
        );
        engine.store().close().await;
        if let Some(sim) = sim {
            sim.shutdown().await;
        }
        return Exit::Success;
    }
    if args.auto_approve {
        output::note(
            cli.quiet,
            "approval steps will be auto-approved (recorded as such in the audit trail)",
        );
    }
    if args.drive.wait {
        progress.wait_at_approvals(&run_id);
    }
    let exit = drive(cli, &engine, &run_id, progress, stop).await;
    engine.store().close().await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    exit
}

pub(crate) async fn drive(
    cli: &Cli,
    engine: &Engine,
    run_id: &str,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> Exit {
    let ticker = CancellationToken::new();
    progress.spawn_ticker(ticker.clone());
    let result = engine.drive(run_id, stop).await;
    ticker.cancel();
    match result {
        Ok(outcome) => {
            let exit = match &outcome {
                RunOutcome::Succeeded => Exit::Success,
                RunOutcome::Failed { step, code, message } => {
                    output::always(&format!(
                        "run {run_id} failed at step `{step}`: {code}: {}",
                        message.trim().replace('\n', "\n    ")
                    ));
                    if let Some(next) = crate::report::next_after_failure(code, run_id) {
                        output::always(&format!("  next: {next}"));
                    }
                    release_locks_if_untouched(cli, engine, run_id).await;
                    Exit::RunFailed
                }
                RunOutcome::Waiting { step, message } => {
                    output::always(&format!(
                        "run {run_id} waits for approval of step `{step}`: {message}\n  approve: {fb} approve {run_id} {step} --by NAME\n  then:    {fb} resume {run_id}",
                        fb = crate::output::fogbook()
                    ));
                    Exit::Waiting
                }
                RunOutcome::OutsideWindow { step, window } => {
                    output::always(&format!(
                        "run {run_id} waits before the disruptive step `{step}` for its maintenance window ({window}); a worker resumes it when the window opens"
                    ));
                    Exit::Waiting
                }
                RunOutcome::Interrupted => {
                    output::always(&format!(
                        "run {run_id} stopped at a safe point; continue with: {fb} resume {run_id}",
                        fb = crate::output::fogbook()
                    ));
                    Exit::Interrupted
                }
                RunOutcome::Cancelled => {
                    output::always(&format!("run {run_id} was cancelled"));
                    Exit::Cancelled
                }
            };
            let report_exit = crate::report::report(cli, engine.store().clone(), run_id.to_owned()).await;
            if report_exit != Exit::Success {
                report_exit
            } else {
                exit
            }
        }
        Err(e) => fail(e),
    }
}

/// The refusal of a run whose resource another run holds: the holder, its status and
/// where it stopped, its open windows and the ways out.
async fn lock_refusal(store: &Store, key: &str, holder: &str) -> bool {
    let Ok(snap) = store.load_run(holder).await else {
        return false;
    };
    let run = &snap.run;
    let mut text = format!(
        "`{key}` is locked by run {holder} (runbook `{}`, created {}, status {}); one run at a time may touch it",
        run.runbook_name,
        fogbook_state::format_ms(run.created_at),
        run.status.as_str()
    );
    if let Some(failed) = snap
        .steps
        .iter()
        .find(|s| s.status == fogbook_state::StepStatus::Failed)
    {
        let code = failed
            .error
            .as_ref()
            .and_then(|e| e["code"].as_str())
            .unwrap_or("failed");
        text.push_str(&format!("\n  it failed at step `{}`: {code}", failed.step_id));
    }
    let open: Vec<String> = snap
        .windows
        .iter()
        .filter(|w| w.closed_at.is_none())
        .map(|w| {
            let whose = w
                .subject
                .as_deref()
                .map(|s| format!(" (the databases of {s})"))
                .unwrap_or_default();
            format!(
                "{} window open since {}{whose}, opened by `{}`",
                w.kind.as_str(),
                fogbook_state::format_ms(w.opened_at),
                w.opened_step
            )
        })
        .collect();
    if open.is_empty() {
        text.push_str("\n  no window is open");
    }
    for w in &open {
        text.push_str(&format!("\n  OPEN {w}"));
    }
    let ways = match run.status {
        RunStatus::Failed => format!(
            "continue it: `{fb} resume {holder} --retry-failed`; or give it up (its locks are released): `{fb} cancel {holder}`",
            fb = crate::output::fogbook()
        ),
        _ => format!(
            "let it finish (`{fb} status {holder}`; `{fb} resume {holder}` if nobody drives it), or `{fb} cancel {holder}`",
            fb = crate::output::fogbook()
        ),
    };
    output::error(&text, Some(&ways));
    true
}

/// Whether a step of activity `uses` may change something outside fogbook.
fn mutates(uses: &str) -> bool {
    !(fogbook_activities::is_read_only(uses) || matches!(uses, "approval" | "wait" | "notify"))
}

/// A failed run that never started a step that changes something releases its locks: it left
/// the resources as they were, so it must not block the next run. A run that started one
/// keeps them (it may be half-way through a procedure) until `resume --retry-failed` or
/// `cancel`.
async fn release_locks_if_untouched(cli: &Cli, engine: &Engine, run_id: &str) {
    let store = engine.store();
    let Ok(snap) = store.load_run(run_id).await else {
        return;
    };
    let Ok(rb) = runbook::parse(&snap.run.runbook_text, "pinned runbook") else {
        return;
    };
    let touched: Vec<&str> = snap
        .steps
        .iter()
        .filter(|s| s.first_started_at.is_some())
        .filter(|s| rb.step(&s.step_id).is_some_and(|st| mutates(&st.uses)))
        .map(|s| s.step_id.as_str())
        .collect();
    if !touched.is_empty() {
        return;
    }
    let why = "failed before any step that changes something started".to_owned();
    match store.release_failed_run_locks(run_id, why, engine.now_ms()).await {
        Ok(keys) if !keys.is_empty() => output::note(
            cli.quiet,
            &format!(
                "run {run_id} failed before changing anything; its locks are released ({})",
                keys.join(", ")
            ),
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "locks.release_failed"),
    }
}

/// Before `--retry-failed`: a run whose locks were released when it failed takes them again,
/// or is refused when another run holds one now.
pub(crate) async fn retake_released_locks(
    store: &Store,
    run_id: &str,
    now: fogbook_state::Millis,
) -> Result<(), EngineError> {
    let events = store.events(run_id).await?;
    let last = events
        .iter()
        .rev()
        .find(|e| e.kind == "locks.released" || e.kind == "locks.retaken");
    let Some(released) = last.filter(|e| e.kind == "locks.released") else {
        return Ok(());
    };
    let keys: Vec<String> = released.data["keys"]
        .as_array()
        .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    store.retake_locks(run_id, keys, now).await?;
    Ok(())
}
