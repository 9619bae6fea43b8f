//! One function per command. Each returns the exit code; data goes through `output`.

use std::path::Path;
use std::sync::Arc;

use fogbook_activities::Env;
use fogbook_engine::runbook::{self, Diagnostics, Runbook};
use fogbook_engine::{CreateRun, Engine, EngineConfig, EngineError, RunOutcome};
use fogbook_state::{RunFilter, RunStatus, StateError, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, DriveArgs, Format, ResumeArgs, RunArgs, ValidateArgs};
use crate::output;
use crate::progress::Progress;
use crate::{Exit, operator_cmd, report};

pub(crate) async fn dispatch(cli: Cli) -> Exit {
    output::json_errors(cli.format == Format::Json);
    if cli.format == Format::Csv && !matches!(cli.command, Command::History(_)) {
        output::error(
            "--format csv is only available for `history`",
            Some("use --format text or --format json"),
        );
        return Exit::BadInput;
    }
    match &cli.command {
        Command::Validate(args) => validate(&cli, args),
        Command::Schema => {
            output::data(&serde_json::to_string_pretty(&runbook::json_schema()).unwrap_or_default());
            Exit::Success
        }
        Command::Run(args) => run(&cli, args).await,
        Command::Plan(args) => crate::plan_cmd::plan(&cli, args).await,
        Command::Bench(args) => crate::plan_cmd::bench(&cli, args).await,
        Command::Resume(args) => resume(&cli, args).await,
        Command::Status(a) => {
            with_read_store(&cli, |store| report::status(&cli, store, a.run_id.clone(), a.watch)).await
        }
        Command::Runs(a) => {
            let mut statuses = Vec::new();
            for s in &a.status {
                match s.parse::<RunStatus>() {
                    Ok(st) => statuses.push(st),
                    Err(e) => {
                        output::error(
                            &e,
                            Some("statuses: pending, running, waiting, succeeded, failed, cancelled"),
                        );
                        return Exit::BadInput;
                    }
                }
            }
            with_read_store(&cli, |store| report::runs(&cli, store, statuses, a.limit)).await
        }
        Command::History(a) => with_read_store(&cli, |store| report::history(&cli, store, a.run_id.clone())).await,
        Command::Report(a) => match &a.html {
            Some(path) => {
                with_read_store(&cli, |store| async move {
                    crate::html::write_report(&store, &a.run_id, path, cli.quiet).await
                })
                .await
            }
            None => with_read_store(&cli, |store| report::report(&cli, store, a.run_id.clone())).await,
        },
        Command::Serve(args) => crate::serve::serve(&cli, args).await,
        Command::Approvals => with_read_store(&cli, |store| operator_cmd::approvals(&cli, store)).await,
        Command::Approve(a) => with_store(&cli, |store| operator_cmd::approve(&cli, store, a)).await,
        Command::Reject(a) => with_store(&cli, |store| operator_cmd::reject(&cli, store, a)).await,
        Command::Cancel(a) => with_store(&cli, |store| operator_cmd::cancel(&cli, store, a)).await,
        Command::Skip(a) => with_store(&cli, |store| operator_cmd::skip(&cli, store, a)).await,
        Command::Complete(a) => with_store(&cli, |store| operator_cmd::complete(&cli, store, a)).await,
        Command::RetryFrom(a) => with_store(&cli, |store| operator_cmd::retry_from(&cli, store, a)).await,
        Command::Repin(a) => with_store(&cli, |store| operator_cmd::repin(&cli, store, a)).await,
        Command::Window(crate::cli::WindowCommand::Close(a)) => {
            with_store(&cli, |store| operator_cmd::window_close(&cli, store, a)).await
        }
        Command::Sim(crate::cli::SimCommand::Serve(args)) => crate::sim_cmd::serve(args).await,
        Command::Schedule(cmd) => crate::schedule_cmd::dispatch(&cli, cmd).await,
        Command::Worker(args) => crate::schedule_cmd::worker(&cli, args).await,
        Command::Fleet(cmd) => crate::fleet_cmd::dispatch(&cli, cmd).await,
        Command::Audit(crate::cli::AuditCommand::Verify { run_id, since_head }) => {
            let (run_id, since) = (run_id.clone(), since_head.clone());
            with_read_store(&cli, |store| report::verify(&cli, store, run_id, since)).await
        }
    }
}

/// Opens the store for a command that needs an existing database: a missing file is an
/// error (and is not created), so a typo in `--db` does not silently show nothing.
pub(crate) async fn with_store<F, Fut>(cli: &Cli, f: F) -> Exit
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Exit>,
{
    let Some(store) = open_existing(cli) else {
        return Exit::BadInput;
    };
    let exit = f(store.clone()).await;
    store.close().await;
    exit
}

/// As [`with_store`], for a command that only reads: the database is opened read-only, so
/// a read-only file or folder works.
pub(crate) async fn with_read_store<F, Fut>(cli: &Cli, f: F) -> Exit
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Exit>,
{
    let Some(store) = open_existing_with(cli, Store::open_read_only) else {
        return Exit::BadInput;
    };
    let exit = f(store.clone()).await;
    store.close().await;
    exit
}

pub(crate) fn read_runbook(path: &Path) -> Result<(String, Runbook), Exit> {
    let origin = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                output::error(&format!("{origin}: the runbook is not valid UTF-8"), None);
                return Err(Exit::BadInput);
            }
        },
        Err(e) => {
            output::error(&format!("cannot read runbook {origin}: {e}"), None);
            return Err(Exit::BadInput);
        }
    };
    match runbook::parse(&text, &origin) {
        Ok(rb) => {
            for w in &rb.warnings {
                output::always(&w.to_string());
            }
            Ok((text, rb))
        }
        Err(diags) => {
            print_diagnostics(&diags);
            Err(Exit::BadInput)
        }
    }
}

fn print_diagnostics(diags: &Diagnostics) {
    let n = diags.iter().filter(|d| !d.is_warning()).count();
    output::always(&diags.to_string());
    output::error(
        &format!("{n} error{} found; nothing was run", if n == 1 { "" } else { "s" }),
        None,
    );
}

/// Reads the parameter file and `--set` values and checks them against the runbook.
pub(crate) fn read_params(rb: &Runbook, file: Option<&Path>, sets: &[String]) -> Result<serde_json::Value, Exit> {
    let mut given = serde_json::Map::new();
    let mut origin = "command line".to_owned();
    let mut file_text = String::new();
    if let Some(path) = file {
        origin = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                output::error(&format!("cannot read parameter file {origin}: {e}"), None);
                return Err(Exit::BadInput);
            }
        };
        file_text.clone_from(&text);
        given = match runbook::parse_params(&text, &origin) {
            Ok(m) => m,
            Err(d) => {
                print_diagnostics(&d);
                return Err(Exit::BadInput);
            }
        };
    }
    for s in sets {
        match runbook::parse_set(s) {
            Ok((key, value)) => set_dotted(&mut given, &key, value),
            Err(e) => {
                output::error(
                    &format!("--set {s}: {e}"),
                    Some("write --set name=value, e.g. --set delete_old_secondary=true"),
                );
                return Err(Exit::BadInput);
            }
        }
    }
    runbook::resolve_params(rb, given, &origin).map_err(|d| {
        print_diagnostics(&runbook::place_params(blame_sets(d, sets), &file_text, &origin));
        Exit::BadInput
    })
}

/// A problem with a parameter that `--set` gave is the `--set`'s, not the parameter file's.
fn blame_sets(mut diags: Diagnostics, sets: &[String]) -> Diagnostics {
    for d in &mut diags.0 {
        let top = d.path.split(['.', '[', ':']).next().unwrap_or_default();
        // The value itself is not repeated: the message quotes it already (shortened).
        if sets.iter().any(|s| {
            let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k);
            !top.is_empty() && key.split('.').next() == Some(top)
        }) {
            "--set".clone_into(&mut d.origin);
        }
    }
    diags
}

fn set_dotted(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: serde_json::Value) {
    match key.split_once('.') {
        None => {
            map.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = map.entry(head.to_owned()).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            if let Some(inner) = entry.as_object_mut() {
                set_dotted(inner, rest, value);
            }
        }
    }
}

fn validate(cli: &Cli, args: &ValidateArgs) -> Exit {
    let mut results = Vec::new();
    let mut all_ok = true;
    for file in &args.files {
        let origin = file.display().to_string();
        let outcome = match std::fs::read_to_string(file) {
            Err(e) => Err(format!("{origin}: cannot read: {e}")),
            Ok(text) => match runbook::parse(&text, &origin) {
                Err(d) => Err(d.to_string()),
                Ok(rb) if args.params.is_some() || !args.set.is_empty() => {
                    match read_params_quiet(&rb, args.params.as_deref(), &args.set) {
                        Ok(()) => Ok(rb),
                        Err(e) => Err(e),
                    }
                }
                Ok(rb) => Ok(rb),
            },
        };
        match outcome {
            Ok(rb) => {
                for w in &rb.warnings {
                    output::always(&w.to_string());
                }
                if cli.format != Format::Json {
                    output::data(&format!(
                        "{origin}: ok ({} v{}, {} steps)",
                        rb.name,
                        rb.version,
                        rb.steps.len()
                    ));
                }
                let warnings: Vec<String> = rb.warnings.iter().map(ToString::to_string).collect();
                results.push(json!({ "file": origin, "ok": true, "runbook": rb.name, "steps": rb.steps.len(), "warnings": warnings }));
            }
            Err(errors) => {
                all_ok = false;
                output::always(&errors);
                results.push(json!({ "file": origin, "ok": false, "errors": errors.lines().collect::<Vec<_>>() }));
            }
        }
    }
    if cli.format == Format::Json {
        output::json("validation", &json!({ "ok": all_ok, "files": results }));
    }
    if all_ok { Exit::Success } else { Exit::BadInput }
}

fn read_params_quiet(rb: &Runbook, file: Option<&Path>, sets: &[String]) -> Result<(), String> {
    let mut given = serde_json::Map::new();
    let mut origin = "command line".to_owned();
    let mut file_text = String::new();
    if let Some(path) = file {
        origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
        given = runbook::parse_params(&text, &origin).map_err(|d| d.to_string())?;
        file_text = text;
    }
    for s in sets {
        let (k, v) = runbook::parse_set(s).map_err(|e| format!("--set {s}: {e}"))?;
        set_dotted(&mut given, &k, v);
    }
    runbook::resolve_params(rb, given, &origin)
        .map(|_| ())
        .map_err(|d| runbook::place_params(blame_sets(d, sets), &file_text, &origin).to_string())
}

fn engine(cli: &Cli, store: Store, drive: &DriveArgs, progress: Arc<Progress>, env: Env) -> Engine {
    let config = EngineConfig {
        lease_ttl: cli.lease_ttl,
        lease_margin: cli.lease_margin,
        wait_for_approval: drive.wait,
    };
    Engine::new(store, config).with_observer(progress).with_env(env)
}

/// Who created a run, and for a rehearsal on the emulator its time scale (the HTML views show
/// simulated time beside real time).
async fn run(cli: &Cli, args: &RunArgs) -> Exit {
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
        match crate::rehearsal::new_state_file(&cli.db) {
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
    let store = match Store::open(&cli.db) {
        Ok(s) => s,
        Err(e) => {
            output::error_chain(&e, None);
            return Exit::BadInput;
        }
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
            let exit = match &e {
                EngineError::State(StateError::LockHeld { key, holder, .. })
                    if lock_refusal(engine.store(), key, holder).await =>
                {
                    Exit::Busy
                }
                other => engine_error(other),
            };
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
        output::note(cli.quiet, "detached: `fogbook worker` will drive it");
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

async fn drive(cli: &Cli, engine: &Engine, run_id: &str, progress: Arc<Progress>, stop: CancellationToken) -> Exit {
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
                    release_locks_if_untouched(cli, engine, run_id).await;
                    Exit::RunFailed
                }
                RunOutcome::Waiting { step, message } => {
                    output::always(&format!(
                        "run {run_id} waits for approval of step `{step}`: {message}\n  approve: fogbook approve {run_id} {step} --by NAME\n  then:    fogbook resume {run_id}"
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
                        "run {run_id} stopped at a safe point; continue with: fogbook resume {run_id}"
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
        Err(e) => engine_error(&e),
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
            "continue it: `fogbook resume {holder} --retry-failed`; or give it up (its locks are released): `fogbook cancel {holder}`"
        ),
        _ => format!(
            "let it finish (`fogbook status {holder}`; `fogbook resume {holder}` if nobody drives it), or `fogbook cancel {holder}`"
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

/// Cancels `stop` on SIGTERM or SIGINT (Ctrl-C). The handlers are installed before this
/// returns, so a signal sent right after cannot kill the process half-way.
pub(crate) fn spawn_signal_handler(stop: CancellationToken, quiet: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(int) => {}
        }
        output::note(quiet, "stopping at the next safe point (the run stays resumable)…");
        stop.cancel();
    });
}

pub(crate) fn engine_error(e: &EngineError) -> Exit {
    match e {
        EngineError::Invalid(d) => {
            print_diagnostics(d);
            Exit::BadInput
        }
        EngineError::State(StateError::LockHeld {
            key,
            holder,
            holder_status,
        }) => {
            output::error(
                &format!("`{key}` is locked by run {holder} ({holder_status}); one run at a time may touch it"),
                Some(&format!(
                    "see `fogbook status {holder}`; a failed run keeps its locks until `fogbook resume {holder} --retry-failed` or `fogbook cancel {holder}`"
                )),
            );
            Exit::Busy
        }
        EngineError::State(StateError::LeaseHeld {
            run_id,
            owner,
            expires_at,
        }) => {
            output::error(
                &format!("run {run_id} is being driven by {owner} (lease valid until {expires_at})"),
                Some(
                    "only one process drives a run; another may take over once that lease expires or its process is gone",
                ),
            );
            Exit::Busy
        }
        EngineError::State(StateError::LeaseLost { run_id, owner }) => {
            output::error(
                &format!("stopped driving run {run_id}: its lease is now held by {owner}"),
                Some(
                    "another process took the run over (this one stalled past its lease); nothing more was written by this process",
                ),
            );
            Exit::Busy
        }
        EngineError::Fenced {
            run_id,
            step_id,
            message,
        } => {
            output::error(
                &format!("stopped driving run {run_id} at step `{step_id}`: {message}"),
                Some(&format!(
                    "nothing was sent to Azure by this process after its lease ran out; `fogbook status {run_id}` shows who drives the run, and `fogbook resume {run_id}` continues it if nobody does"
                )),
            );
            Exit::Busy
        }
        EngineError::State(StateError::UnknownRun { run_id }) => {
            output::error(
                &format!("no run `{run_id}` in this database"),
                Some("`fogbook runs` lists the runs"),
            );
            Exit::BadInput
        }
        EngineError::State(StateError::InvalidTransition { message }) => {
            output::error(message, None);
            Exit::BadInput
        }
        other => {
            output::error_chain(other, None);
            Exit::BadInput
        }
    }
}

async fn resume(cli: &Cli, args: &ResumeArgs) -> Exit {
    let Some(store) = open_existing(cli) else {
        return Exit::BadInput;
    };
    let exit = resume_runs(cli, args, store.clone()).await;
    store.close().await;
    exit
}

pub(crate) fn open_existing(cli: &Cli) -> Option<Store> {
    open_existing_with(cli, Store::open)
}

fn open_existing_with(cli: &Cli, open: fn(&Path) -> Result<Store, StateError>) -> Option<Store> {
    match std::fs::metadata(&cli.db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            output::error(
                &format!("no state database at {}", cli.db.display()),
                Some("pass --db (or set FOGBOOK_DB)"),
            );
            return None;
        }
        // A folder on the way that this user cannot enter: the file may well exist.
        Err(e) => {
            output::error(
                &format!("cannot reach the state database {}: {e}", cli.db.display()),
                Some(
                    "check the permissions of the file and of every folder above it (each folder must be searchable by this user)",
                ),
            );
            return None;
        }
    }
    match open(&cli.db) {
        Ok(s) => {
            tracing::debug!(db = %cli.db.display(), "store.opened");
            Some(s)
        }
        Err(e) => {
            output::error_chain(&e, None);
            None
        }
    }
}

async fn resume_runs(cli: &Cli, args: &ResumeArgs, store: Store) -> Exit {
    let progress = Progress::new(cli.quiet);
    let ids = if let Some(id) = &args.run_id {
        vec![id.clone()]
    } else {
        let filter = RunFilter {
            statuses: vec![RunStatus::Pending, RunStatus::Running, RunStatus::Waiting],
            limit: None,
        };
        match store.list_runs(filter).await {
            Ok(runs) => runs.into_iter().rev().map(|r| r.id).collect(),
            Err(e) => {
                output::error_chain(&e, None);
                return Exit::BadInput;
            }
        }
    };
    if ids.is_empty() {
        output::note(cli.quiet, "no unfinished runs to resume");
        return Exit::Success;
    }
    let mut worst = Exit::Success;
    for id in ids {
        // Where the run was created decides where it continues: a rehearsal on its restored
        // emulator, a real run against its endpoint (src/rehearsal.rs).
        let target = match crate::rehearsal::target_of(&store, &id).await {
            Ok(t) => t,
            Err(e) => return engine_error(&EngineError::from(e)),
        };
        if let Err(code) = crate::rehearsal::check_target(&id, &target, cli.arm_endpoint.as_deref(), args.sim) {
            return code;
        }
        let snap = match store.load_run(&id).await {
            Ok(s) => s,
            Err(e) => return engine_error(&EngineError::from(e)),
        };
        // A live driver keeps the run (and a rehearsal's emulator address): say so before
        // trying to restore anything.
        if let report::Drive::Running { owner, until } = report::drive_of(&snap.run, engine_now(), cli.lease_ttl) {
            return engine_error(&EngineError::State(StateError::LeaseHeld {
                run_id: id.clone(),
                owner,
                expires_at: fogbook_state::format_ms(until),
            }));
        }
        // A rehearsal's emulator listens on the run's recorded address, which only one
        // process can hold: the lease is taken first, so that of two resumes started at once
        // the loser is refused naming the driver (exit 4) instead of failing to bind, and
        // only the lease holder ever restores the emulator.
        let owner = fogbook_engine::Owner::this_process(None);
        let sim = match &target {
            crate::rehearsal::Target::Rehearsal(r) => {
                if let Err(code) = claim_lease(cli, &store, &id, &owner).await {
                    return code;
                }
                match crate::rehearsal::restore(&id, r, cli.quiet).await {
                    Ok(sim) => Some(sim),
                    Err(code) => {
                        release_claim(&store, &id, &owner).await;
                        return code;
                    }
                }
            }
            _ => None,
        };
        let env = match crate::arm::env(cli, sim.as_ref(), sim.is_some()).await {
            Ok(e) => e,
            Err(code) => {
                if let Some(sim) = sim {
                    sim.shutdown().await;
                    release_claim(&store, &id, &owner).await;
                }
                return code;
            }
        };
        // A real run with Azure steps continues only with a credential that gives a token, so
        // a bad login does not fail the run at its next Azure step.
        let needs_arm =
            runbook::parse(&snap.run.runbook_text, "pinned runbook").is_ok_and(|rb| crate::arm::uses_azure(&rb));
        if sim.is_none()
            && needs_arm
            && !matches!(snap.run.status, RunStatus::Succeeded | RunStatus::Cancelled)
            && let Err(code) = crate::arm::check_credential(cli, &env, &format!("run {id} was not continued")).await
        {
            return code;
        }
        let engine = engine(cli, store.clone(), &args.drive, progress.clone(), env).with_owner(owner.clone());
        tracing::debug!("engine.ready");
        let exit = resume_one(cli, args, &store, &engine, &id, progress.clone()).await;
        if let Some(sim) = sim {
            sim.shutdown().await;
            // Driving releases the lease; a refusal before driving (a failed run without
            // --retry-failed) leaves the claim, given back here.
            release_claim(&store, &id, &owner).await;
        }
        if exit != Exit::Success && worst == Exit::Success {
            worst = exit;
        }
        if exit == Exit::Interrupted {
            break;
        }
    }
    worst
}

/// Takes the lease of `run_id` for `owner` before anything of the run is restored, as
/// [`Engine::drive`] would: at once from a process proven gone, only a safety margin after
/// the expiry of one that may live, never from a live holder (refused naming it, exit 4).
async fn claim_lease(cli: &Cli, store: &Store, run_id: &str, owner: &fogbook_engine::Owner) -> Result<(), Exit> {
    let holder = store
        .lease_owner(run_id)
        .await
        .map_err(|e| engine_error(&EngineError::from(e)))?;
    let dead = holder.clone().filter(|o| fogbook_engine::owner::is_dead(o));
    if holder.as_deref().is_some_and(|h| h != owner.as_str())
        && dead.is_none()
        && let Ok(snap) = store.load_run(run_id).await
        && let Some(expires_at) = snap.run.lease_expires_at
    {
        let margin = fogbook_engine::lease_margin(cli.lease_ttl, cli.lease_margin);
        let until = expires_at.saturating_add(i64::try_from(margin.as_millis()).unwrap_or(i64::MAX));
        let now = engine_now();
        if now >= expires_at && now < until {
            let wait = std::time::Duration::from_millis((until - now).unsigned_abs());
            tracing::info!(
                wait_ms = wait.as_millis(),
                "the run's lease expired just now; waiting out the safety margin before taking it over"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = tokio::signal::ctrl_c() => return Err(Exit::Interrupted),
            }
        }
    }
    match store
        .acquire_lease(run_id, owner.as_str(), cli.lease_ttl, dead, engine_now())
        .await
    {
        Ok(grant) => {
            if let Some(from) = grant.taken_over_from {
                tracing::warn!(from = %from, "took over the run's lease");
            }
            Ok(())
        }
        Err(e) => Err(engine_error(&EngineError::from(e))),
    }
}

/// Gives back a lease [`claim_lease`] took, when this process does not drive the run (a
/// no-op when driving already released it or another process holds it).
async fn release_claim(store: &Store, run_id: &str, owner: &fogbook_engine::Owner) {
    if let Err(e) = store.release_lease(run_id, owner.as_str(), engine_now()).await {
        tracing::warn!(error = %e, "lease.release_failed");
    }
}

fn engine_now() -> fogbook_state::Millis {
    fogbook_engine::Clock::now_ms(&fogbook_engine::SystemClock)
}

/// Resumes one run (with `--retry-failed`, gives its failed step a fresh attempt first).
async fn resume_one(
    cli: &Cli,
    args: &ResumeArgs,
    store: &Store,
    engine: &Engine,
    id: &str,
    progress: Arc<Progress>,
) -> Exit {
    if args.retry_failed {
        if let Err(e) = retake_released_locks(store, id, engine.now_ms()).await {
            return engine_error(&e);
        }
        let actor = args.who.actor();
        match store.retry_failed(id, &actor, engine.now_ms()).await {
            Ok(step) => output::note(cli.quiet, &format!("step `{step}` of run {id} gets a fresh attempt")),
            Err(e) => {
                output::error_chain(&e, None);
                return Exit::BadInput;
            }
        }
    } else if let Ok(snap) = store.load_run(id).await
        && snap.run.status == RunStatus::Failed
    {
        output::error(
            &format!("run {id} has failed; resuming it would retry its failed step"),
            Some(&format!(
                "if that is what you want: fogbook resume {id} --retry-failed; otherwise fogbook cancel {id}"
            )),
        );
        return Exit::BadInput;
    }
    output::always(&format!("run {id}"));
    if args.drive.wait {
        progress.wait_at_approvals(id);
    }
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone(), cli.quiet);
    drive(cli, engine, id, progress, stop).await
}
