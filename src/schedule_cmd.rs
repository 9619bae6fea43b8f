//! `fogbook schedule …` and `fogbook worker`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fogbook_engine::schedule::{CronSchedule, OutsideWindow, Window, format_in, outside_window};
use fogbook_engine::{Clock, Engine, EngineConfig, Owner, SystemClock, WorkerConfig, run_worker, sha256_hex};
use fogbook_state::{NewSchedule, Overlap, ScheduleFleet, ScheduleRow, Store, format_ms};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Format, ScheduleAddArgs, ScheduleCommand, ScheduleNextArgs, ScheduleUpdateArgs, WorkerArgs};
use crate::database::open_existing;
use crate::error::fail;
use crate::exit::Exit;
use crate::input::{read_params, read_runbook};
use crate::output;
use crate::progress::Progress;
use crate::signals::spawn_signal_handler_saying;

mod show;
use show::show;

fn now() -> i64 {
    clock().now_ms()
}

/// The clock of schedules, fleets and the worker: the system clock, shifted by the offset in
/// milliseconds written in the file `FOGBOOK_TEST_CLOCK_FILE` names (read at every call), so
/// an end-to-end test steps time (into or out of a maintenance window) without waiting.
pub(crate) fn clock() -> Arc<dyn Clock> {
    match std::env::var_os("FOGBOOK_TEST_CLOCK_FILE") {
        Some(path) => Arc::new(OffsetClock(path.into())),
        None => Arc::new(SystemClock),
    }
}

#[derive(Debug)]
struct OffsetClock(std::path::PathBuf);

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        let offset = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or(0);
        SystemClock.now_ms().saturating_add(offset)
    }

    fn monotonic(&self) -> std::time::Duration {
        SystemClock.monotonic()
    }
}

/// The hint for a schedule's cron or zone error: a bad zone is not a cron problem.
fn cron_hint(error: &str) -> &'static str {
    if error.starts_with("unknown time zone") {
        "--tz takes an IANA zone name, e.g. Europe/Amsterdam, America/New_York or UTC"
    } else {
        "five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * 6\" (or a schedule name, with --db)"
    }
}

fn by() -> String {
    crate::cli::default_user()
}

pub(crate) async fn dispatch(cli: &Cli, cmd: &ScheduleCommand) -> Exit {
    if let ScheduleCommand::Next(args) = cmd
        && !crate::database::exists(cli)
    {
        return next_of_expression(cli, args);
    }
    if let ScheduleCommand::Add(args) = cmd {
        return add(cli, args).await;
    }
    let store = match open_existing(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let exit = match cmd {
        ScheduleCommand::Add(_) => Exit::BadInput,
        ScheduleCommand::List => list(cli, &store).await,
        ScheduleCommand::Show(a) => show(cli, &store, &a.name, a.local).await,
        ScheduleCommand::Pause(a) => done(
            cli,
            store.set_schedule_paused(&a.name, true, by(), now()).await,
            "paused",
            &a.name,
        ),
        ScheduleCommand::Resume(a) => done(
            cli,
            store.set_schedule_paused(&a.name, false, by(), now()).await,
            "resumed",
            &a.name,
        ),
        ScheduleCommand::Remove(a) => done(
            cli,
            store.remove_schedule(&a.name, by(), now()).await,
            "removed",
            &a.name,
        ),
        ScheduleCommand::Update(a) => update(cli, &store, a).await,
        ScheduleCommand::Next(a) => next(cli, &store, a).await,
    };
    store.close().await;
    exit
}

fn done(cli: &Cli, result: Result<(), fogbook_state::StateError>, what: &str, name: &str) -> Exit {
    match result {
        Ok(()) => {
            if cli.format == Format::Json {
                output::json("schedule", &json!({ "name": name, "action": what }));
            } else {
                output::data(&format!("schedule `{name}` {what}"));
            }
            Exit::Success
        }
        Err(e) => fail(e),
    }
}

async fn add(cli: &Cli, args: &ScheduleAddArgs) -> Exit {
    // Everything is checked before the database is opened.
    let cron = match CronSchedule::parse(&args.cron, &args.tz) {
        Ok(c) => c,
        Err(e) => {
            output::error(&e, Some(cron_hint(&e)));
            return Exit::BadInput;
        }
    };
    let window = match args.window.as_deref().map(Window::parse).transpose() {
        Ok(w) => w,
        Err(e) => {
            output::error(&e, Some("write it as \"01:00-05:00 Europe/Amsterdam\""));
            return Exit::BadInput;
        }
    };
    if args.name.is_empty() || args.name.chars().any(|c| c.is_control() || c == '/') {
        output::error(
            "a schedule name must be non-empty, without `/` or control characters",
            None,
        );
        return Exit::BadInput;
    }
    // A fleet file fires a fleet: its runbook is pinned as the schedule's, its text beside it.
    let fleet = match std::fs::read_to_string(&args.runbook) {
        Ok(t) if fogbook_engine::fleet::is_fleet_file(&t) => match crate::fleet_cmd::load_scheduled(&args.runbook) {
            Ok(f) => Some(f),
            Err(code) => return code,
        },
        _ => None,
    };
    if fleet.is_some() && (args.params.is_some() || !args.set.is_empty()) {
        output::error(
            "a schedule that fires a fleet takes no --params or --set",
            Some("put the parameters in the fleet file (`params:` for every target, or each target's own)"),
        );
        return Exit::BadInput;
    }
    let (text, rb) = match &fleet {
        Some(f) => (f.runbook_text.clone(), f.runbook.clone()),
        None => match read_runbook(&args.runbook) {
            Ok(x) => x,
            Err(code) => return code,
        },
    };
    let params = match &fleet {
        Some(_) => json!({}),
        None => match read_params(&rb, args.params.as_deref(), &args.set) {
            Ok(p) => p,
            Err(code) => return code,
        },
    };
    let overlap: Overlap = match args.overlap.parse() {
        Ok(o) => o,
        Err(e) => {
            output::error(&e, None);
            return Exit::BadInput;
        }
    };
    let store = match crate::database::open_or_create(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = now();
    let source = match &fleet {
        Some(f) => f.runbook_path.clone(),
        None => std::fs::canonicalize(&args.runbook).unwrap_or_else(|_| args.runbook.clone()),
    };
    let result = store
        .add_schedule(NewSchedule {
            name: args.name.clone(),
            cron: args.cron.clone(),
            tz: args.tz.clone(),
            runbook_name: rb.name.clone(),
            runbook_sha256: sha256_hex(&text),
            runbook_text: text,
            source_path: Some(source.display().to_string()),
            params,
            overlap,
            catch_up_ms: i64::try_from(args.catch_up.as_millis()).unwrap_or(i64::MAX),
            window: window.as_ref().zip(args.window.as_deref()).map(|(w, t)| {
                let mut j = w.to_json(t);
                j["pause"] = json!(args.window_pause);
                j
            }),
            auto_approve: args.auto_approve,
            created_by: json!({ "user": by() }),
            now,
            fleet: fleet.map(|f| ScheduleFleet {
                text: f.text,
                source_path: Some(
                    std::fs::canonicalize(&args.runbook)
                        .unwrap_or_else(|_| args.runbook.clone())
                        .display()
                        .to_string(),
                ),
            }),
        })
        .await;
    store.close().await;
    match result {
        Ok(()) => {
            let next: Vec<String> = cron.next(now, 3).into_iter().map(format_ms).collect();
            if cli.format == Format::Json {
                output::json(
                    "schedule",
                    &json!({ "name": args.name, "action": "added", "next": next }),
                );
            } else {
                output::data(&format!(
                    "schedule `{}` added; next fire times: {}",
                    args.name,
                    next.join(", ")
                ));
                output::note(
                    cli.quiet,
                    &format!(
                        "schedules fire only while a `{fb} worker` runs on this database",
                        fb = crate::output::fogbook()
                    ),
                );
            }
            Exit::Success
        }
        Err(e) => fail(e),
    }
}

fn next_line(s: &ScheduleRow, now: i64) -> String {
    match CronSchedule::parse(&s.cron, &s.tz) {
        Ok(c) => c
            .next(now, 1)
            .first()
            .map(|t| format_ms(*t))
            .unwrap_or_else(|| "never".to_owned()),
        Err(e) => format!("invalid: {e}"),
    }
}

async fn list(cli: &Cli, store: &Store) -> Exit {
    let schedules = match store.schedules().await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let now = now();
    if cli.format == Format::Json {
        let rows: Vec<_> = schedules
            .iter()
            .map(|s| json!({ "schedule": s, "next": next_line(s, now) }))
            .collect();
        output::json("schedules", &json!({ "schedules": rows }));
        return Exit::Success;
    }
    let mut out = format!(
        "{:<20} {:<16} {:<18} {:<22} {:<8} {}\n",
        "NAME", "CRON", "TZ", "RUNBOOK", "STATE", "NEXT"
    );
    for s in &schedules {
        let state = if s.paused { "paused" } else { "active" };
        out.push_str(&format!(
            "{:<20} {:<16} {:<18} {:<22} {:<8} {}\n",
            s.name,
            s.cron,
            s.tz,
            s.runbook_name,
            state,
            next_line(s, now)
        ));
    }
    output::data(&out);
    Exit::Success
}

/// How a schedule's times are written: UTC (`…Z`), or with `--local` in the schedule's own
/// zone with its offset.
#[derive(Clone, Copy)]
struct TimeFmt(Option<fogbook_engine::schedule::Tz>);

impl TimeFmt {
    fn new(local: bool, tz: &str) -> Self {
        Self(local.then(|| fogbook_engine::schedule::parse_tz(tz).ok()).flatten())
    }

    fn at(self, ms: i64) -> String {
        match self.0 {
            Some(tz) => format_in(tz, ms),
            None => format_ms(ms),
        }
    }

    /// A stored UTC timestamp, rewritten in the zone.
    fn text(self, stored: &str) -> String {
        match (self.0, parse_rfc3339(stored)) {
            (Some(_), Some(ms)) => self.at(ms),
            _ => stored.to_owned(),
        }
    }
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// What the schedule's maintenance window does to `fire_at`: `None` inside it (or without
/// a window), else "outside window …: waits until …" or "… : will be skipped".
fn window_mark(s: &ScheduleRow, fire_at: i64, fmt: TimeFmt) -> Option<String> {
    let w = Window::from_json(s.window.as_ref()?)?;
    let catch_up = std::time::Duration::from_millis(s.catch_up_ms.max(0).unsigned_abs());
    Some(match outside_window(&w, catch_up, fire_at)? {
        OutsideWindow::Waits { until } => format!(
            "outside window {}: waits until it opens at {}",
            w.describe(),
            fmt.at(until)
        ),
        OutsideWindow::Skipped => format!(
            "outside window {}: will be skipped (the window does not open within the catch-up window of {})",
            w.describe(),
            fogbook_activities::duration::format(catch_up)
        ),
    })
}

async fn update(cli: &Cli, store: &Store, a: &ScheduleUpdateArgs) -> Exit {
    let s = match store.schedule(&a.name).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let path = match (&a.runbook, &s.source_path) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => std::path::PathBuf::from(p),
        (None, None) => {
            output::error(
                "the schedule does not know where its runbook came from",
                Some("pass --runbook FILE"),
            );
            return Exit::BadInput;
        }
    };
    let (text, rb) = match read_runbook(&path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let params = match &a.params {
        Some(p) => read_params(&rb, Some(p), &[]),
        None => {
            let given = s.params.as_object().cloned().unwrap_or_default();
            fogbook_engine::runbook::resolve_params(&rb, given, "pinned parameters").map_err(|d| {
                output::always(&d.to_string());
                Exit::BadInput
            })
        }
    };
    let params = match params {
        Ok(p) => p,
        Err(code) => return code,
    };
    let sha = sha256_hex(&text);
    let repin = fogbook_state::Repin {
        runbook_name: rb.name.clone(),
        runbook_text: text,
        runbook_sha256: sha,
        params,
        by: a.by.clone(),
        now: now(),
    };
    let result = store.repin_schedule(&a.name, repin).await;
    done(cli, result, "re-pinned", &a.name)
}

fn print_next(cli: &Cli, label: &str, times: &[i64], fmt: TimeFmt, schedule: Option<&ScheduleRow>) -> Exit {
    let marks: Vec<Option<String>> = times
        .iter()
        .map(|t| schedule.and_then(|s| window_mark(s, *t, fmt)))
        .collect();
    let times: Vec<String> = times.iter().map(|t| fmt.at(*t)).collect();
    if cli.format == Format::Json {
        output::json(
            "next_fire_times",
            &json!({ "of": label, "next": times, "outside_window": marks }),
        );
    } else {
        let lines: Vec<String> = times
            .iter()
            .zip(&marks)
            .map(|(t, m)| match m {
                Some(m) => format!("{t}  ({m})"),
                None => t.clone(),
            })
            .collect();
        output::data(&lines.join("\n"));
    }
    Exit::Success
}

fn next_of_expression(cli: &Cli, a: &ScheduleNextArgs) -> Exit {
    match CronSchedule::parse(&a.name_or_cron, &a.tz) {
        Ok(c) => print_next(
            cli,
            &a.name_or_cron,
            &c.next(now(), a.count),
            TimeFmt::new(a.local, &a.tz),
            None,
        ),
        Err(e) => {
            output::error(&e, Some(cron_hint(&e)));
            Exit::BadInput
        }
    }
}

async fn next(cli: &Cli, store: &Store, a: &ScheduleNextArgs) -> Exit {
    match store.schedule(&a.name_or_cron).await {
        Ok(s) => match CronSchedule::parse(&s.cron, &s.tz) {
            Ok(c) => print_next(
                cli,
                &s.name,
                &c.next(now(), a.count),
                TimeFmt::new(a.local, &s.tz),
                Some(&s),
            ),
            Err(e) => {
                output::error(&e, None);
                Exit::BadInput
            }
        },
        Err(_) => next_of_expression(cli, a),
    }
}

pub(crate) async fn worker(cli: &Cli, args: &WorkerArgs) -> Exit {
    // The signal handler comes first: a SIGTERM while the database is not reachable yet
    // ends the wait (exit 0), as it ends the worker.
    let stop = CancellationToken::new();
    let working = Arc::new(AtomicBool::new(false));
    let started = working.clone();
    spawn_signal_handler_saying(stop.clone(), cli.quiet, move || {
        if started.load(Ordering::SeqCst) {
            "stopping: the runs this worker drives stop at their next safe point and stay resumable…"
        } else {
            "stopping…"
        }
    });
    let store = match crate::db_wait::open_or_wait(cli, &stop).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    working.store(true, Ordering::SeqCst);
    let config = EngineConfig {
        lease_ttl: cli.lease_ttl,
        lease_margin: cli.lease_margin,
        ..EngineConfig::default()
    };
    let progress = Progress::new(cli.quiet);
    let env = match crate::arm::env(cli, None, false).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let engine = Engine::new(store.clone(), config)
        .with_env(env)
        .with_owner(Owner::this_process(args.name.as_deref()))
        .with_observer(progress as Arc<dyn fogbook_engine::Observer>)
        .with_clock(clock());
    output::note(
        cli.quiet,
        &format!("worker {} on {}", engine.owner(), crate::database::describe(cli)),
    );
    let cfg = WorkerConfig {
        concurrency: args.concurrency,
        poll: args.poll,
        exit_when_idle: args.exit_when_idle,
        // Rehearsals are driven on their restored emulators (src/rehearsal.rs).
        run_env: Some(fogbook_engine::RunEnvHook(std::sync::Arc::new(
            crate::rehearsal::WorkerRunEnv {
                store: store.clone(),
                arm_endpoint: cli.arm_endpoint.clone(),
                quiet: cli.quiet,
            },
        ))),
    };
    let result = run_worker(engine, cfg, stop).await;
    store.close().await;
    match result {
        Ok(report) => {
            if cli.format == Format::Json {
                output::json("worker", &json!({ "fired": report.fired, "driven": report.driven }));
            } else {
                output::note(
                    cli.quiet,
                    &format!(
                        "worker stopped: {}, {}",
                        output::plural(report.fired, "run fired", "runs fired"),
                        output::plural(report.driven, "drive", "drives")
                    ),
                );
            }
            // A stop signal is how a service ends (README "Exit codes"): its runs stopped at
            // safe points with their leases released, for another worker to take over.
            Exit::Success
        }
        Err(e) => fail(e),
    }
}
