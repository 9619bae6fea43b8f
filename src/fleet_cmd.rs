//! `fogbook fleet run|plan|status|report|resume|cancel`: one runbook over many targets.

use std::path::{Path, PathBuf};

use fogbook_activities::Env;
use fogbook_engine::fleet::{self, CreateFleet, FleetFile, FleetOutcome};
use fogbook_engine::runbook::{self, Runbook};
use fogbook_engine::{Clock, Engine, EngineConfig, SystemClock};
use fogbook_state::{StateError, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, FleetCommand, Format};
use crate::database::with_read_store;
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::input::read_runbook;
use crate::output;
use crate::signals::spawn_signal_handler;

mod view;

pub(crate) use view::{count, describe_rate, load_report};
use view::{report, status};

pub(crate) async fn dispatch(cli: &Cli, cmd: &FleetCommand) -> Exit {
    match cmd {
        FleetCommand::Run(a) => run(cli, &a.file).await,
        FleetCommand::Plan(a) => plan(cli, &a.file).await,
        FleetCommand::Status(a) => {
            let fleet = a.fleet.clone();
            with_read_store(cli, |store| status(cli, store, fleet)).await
        }
        FleetCommand::Report(a) => {
            let fleet = a.fleet.clone();
            with_read_store(cli, |store| report(cli, store, fleet)).await
        }
        FleetCommand::Resume(a) => {
            resume(cli, &a.fleet, a.approve.then(|| a.by.clone().unwrap_or_default()), None).await
        }
        FleetCommand::Cancel(a) => resume(cli, &a.fleet, None, Some(a.by.clone())).await,
    }
}

struct Loaded {
    text: String,
    file: FleetFile,
    runbook_text: String,
    runbook: Runbook,
    runbook_path: PathBuf,
    params: Vec<serde_json::Value>,
    /// The groups the target query found (empty without a query).
    found: Vec<serde_json::Value>,
}

/// Reads and validates the fleet file and its runbook (the targets are resolved by
/// [`resolve_targets`]).
fn load_file(path: &Path) -> Result<Loaded, Exit> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(CliError::usage(format!("cannot read fleet file {origin}: {e}"), None)))?;
    let file = fleet::parse(&text, &origin).map_err(|d| {
        output::always(&d.to_string());
        fail(CliError::usage(
            format!("{} error(s) in the fleet file; nothing was started", d.len()),
            None,
        ))
    })?;
    let runbook_path = path.parent().unwrap_or(Path::new(".")).join(&file.runbook);
    let (runbook_text, runbook) = read_runbook(&runbook_path)?;
    Ok(Loaded {
        text,
        file,
        runbook_text,
        runbook,
        runbook_path,
        params: Vec::new(),
        found: Vec::new(),
    })
}

/// A fleet file for `schedule add`: validated with its runbook and its targets' parameters
/// (a schedule pins it and fires it later, so every problem is reported now).
pub(crate) struct Scheduled {
    /// The fleet file's text.
    pub(crate) text: String,
    /// Its runbook's text.
    pub(crate) runbook_text: String,
    /// Its runbook.
    pub(crate) runbook: Runbook,
    /// Where the runbook was read from (absolute where it can be).
    pub(crate) runbook_path: PathBuf,
}

/// Reads a fleet file for a schedule: its listed targets must suit its runbook (a target
/// query would need ARM at each fire; a schedule takes listed targets).
pub(crate) fn load_scheduled(path: &Path) -> Result<Scheduled, Exit> {
    let l = load_file(path)?;
    if let Some(q) = &l.file.query {
        return Err(fail(CliError::usage(
            format!(
                "a schedule fires fleets whose targets are listed; {} queries {}",
                path.display(),
                q.describe()
            ),
            Some("list the targets in the fleet file (`fogbook fleet plan` shows the ones the query finds)"),
        )));
    }
    if let Err(d) = l.file.resolve(&l.runbook) {
        output::always(&d.to_string());
        return Err(fail(CliError::usage(
            format!("{} error(s) in the targets' parameters; no schedule was added", d.len()),
            Some("each target's parameters (the fleet's `params` overlaid with its own) must suit the runbook"),
        )));
    }
    Ok(Scheduled {
        text: l.text,
        runbook_text: l.runbook_text,
        runbook: l.runbook,
        runbook_path: std::fs::canonicalize(&l.runbook_path).unwrap_or(l.runbook_path),
    })
}

/// Whether loading the fleet needs ARM: its runbook calls Azure, or its targets are a query.
fn needs_arm(l: &Loaded) -> bool {
    crate::arm::uses_azure(&l.runbook) || l.file.query.is_some()
}

/// Runs the fleet's target query, if any (once: what it finds is stored with the fleet),
/// then resolves every target's parameters: every problem is reported (file:line:column)
/// before anything is created.
async fn resolve_targets(l: &mut Loaded, env: &Env) -> Result<(), Exit> {
    l.found = fleet::resolve_query(&mut l.file, env).await.map_err(|e| {
        output::always(&e);
        fail(CliError::usage(
            "the fleet's targets could not be found; nothing was started",
            Some("check the query's region, subscriptions and resource groups (and the credential's access to them)"),
        ))
    })?;
    // Relative paths inside parameters (a password file) are meant from where the command
    // runs, as with `fogbook run`.
    l.params = l.file.resolve(&l.runbook).map_err(|d| {
        output::always(&d.to_string());
        fail(CliError::usage(
            format!("{} error(s) in the targets' parameters; nothing was started", d.len()),
            Some("each target's parameters (the fleet's `params` overlaid with its own) must suit the runbook"),
        ))
    })?;
    Ok(())
}

fn engine(cli: &Cli, store: Store, env: Env) -> Engine {
    let config = EngineConfig {
        lease_ttl: cli.lease_ttl,
        lease_margin: cli.lease_margin,
        ..EngineConfig::default()
    };
    Engine::new(store, config)
        .with_env(env)
        .with_clock(crate::schedule_cmd::clock())
}

async fn run(cli: &Cli, path: &Path) -> Exit {
    let mut l = match load_file(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let needs_arm = needs_arm(&l);
    let env = match crate::arm::env(cli, None, needs_arm).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    if needs_arm && let Err(code) = crate::arm::check_credential(cli, &env, "nothing was created").await {
        return code;
    }
    if let Err(code) = resolve_targets(&mut l, &env).await {
        return code;
    }
    let store = match crate::database::open_or_create(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let engine = engine(cli, store, env);
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone(), cli.quiet);
    let canon = |p: &Path| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.to_owned())
            .display()
            .to_string()
    };
    let created = fleet::create_fleet(
        &engine,
        CreateFleet {
            file: &l.file,
            fleet_text: &l.text,
            source_path: Some(canon(path)),
            runbook: &l.runbook,
            runbook_text: &l.runbook_text,
            runbook_source: Some(canon(&l.runbook_path)),
            params: l.params,
            created_by: json!({ "user": std::env::var("USER").ok(), "command": "fleet run" }),
            lease_ttl: cli.lease_ttl,
        },
    )
    .await;
    let id = match created {
        Ok(id) => id,
        Err(e) => {
            engine.store().close().await;
            return fail(e);
        }
    };
    output::always(&format!("fleet {id}"));
    let exit = drive(cli, &engine, &id, stop).await;
    engine.store().close().await;
    exit
}

async fn drive(cli: &Cli, engine: &Engine, id: &str, stop: CancellationToken) -> Exit {
    let result = fleet::drive_fleet(engine, id, cli.lease_ttl, stop).await;
    let exit = match result {
        Ok(FleetOutcome::Succeeded) => {
            output::always(&format!("fleet {id} succeeded: every target's run succeeded"));
            Exit::Success
        }
        Ok(FleetOutcome::Failed { reason }) => {
            output::always(&output::commands(&format!("fleet {id} failed: {reason}")));
            Exit::RunFailed
        }
        Ok(FleetOutcome::Waiting { reason }) => {
            output::always(&output::commands(&format!("fleet {id} waits: {reason}")));
            Exit::Waiting
        }
        Ok(FleetOutcome::Cancelled) => {
            output::always(&format!("fleet {id} was cancelled"));
            Exit::Cancelled
        }
        Ok(FleetOutcome::Interrupted { reason }) => {
            output::always(&format!(
                "fleet {id} stopped: {}; continue with: {fb} fleet resume {id}",
                output::commands(&reason),
                fb = crate::output::fogbook()
            ));
            Exit::Interrupted
        }
        Err(fogbook_engine::EngineError::State(StateError::FleetLeaseHeld { owner, expires_at, .. })) => {
            output::error(
                &format!("fleet {id} is driven by {owner} (lease valid until {expires_at})"),
                Some(&format!(
                    "let it finish (`{fb} fleet status {id}`), or resume it once that process is gone",
                    fb = crate::output::fogbook()
                )),
            );
            return Exit::Busy;
        }
        Err(e) => return fail(e),
    };
    let report_exit = report(cli, engine.store().clone(), id.to_owned()).await;
    if report_exit == Exit::Success {
        exit
    } else {
        report_exit
    }
}

/// The fleet's id from an id or a name (the newest fleet with that name).
async fn resolve(store: &Store, arg: &str) -> Result<String, Exit> {
    let fleets = store.list_fleets().await.map_err(fail)?;
    fleets
        .iter()
        .find(|f| f.id == arg)
        .or_else(|| fleets.iter().find(|f| f.name == arg))
        .map(|f| f.id.clone())
        .ok_or_else(|| {
            fail(CliError::usage(
                format!("no fleet `{arg}` in this database"),
                Some(format!("`{fb} fleet status` lists the fleets", fb = crate::output::fogbook()).as_str()),
            ))
        })
}

/// `fleet resume` (with an approval of the next wave when `approve_by` is given) and
/// `fleet cancel` (`cancel_by`): the request is recorded, then the fleet is driven until it
/// ends or waits.
async fn resume(cli: &Cli, arg: &str, approve_by: Option<String>, cancel_by: Option<String>) -> Exit {
    let store = match crate::database::open_existing(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let exit = resume_in(cli, &store, arg, approve_by, cancel_by).await;
    store.close().await;
    exit
}

async fn resume_in(cli: &Cli, store: &Store, arg: &str, approve_by: Option<String>, cancel_by: Option<String>) -> Exit {
    let id = match resolve(store, arg).await {
        Ok(id) => id,
        Err(code) => return code,
    };
    let snap = match store.load_fleet(&id).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let now = SystemClock.now_ms();
    if let Some(by) = &cancel_by {
        if let Err(e) = store.request_fleet_cancel(&id, by, now).await {
            return fail(e);
        }
        output::note(
            cli.quiet,
            &format!("fleet {id}: cancellation requested; no new target starts"),
        );
        // Whether its driver is live, by the clock leases are written by.
        let lease_now = match store.lease_now(now).await {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        if snap.fleet.lease_expires_at.is_some_and(|exp| {
            exp > lease_now
                && !snap
                    .fleet
                    .lease_owner
                    .as_deref()
                    .is_some_and(fogbook_engine::owner::is_dead)
        }) {
            // Its driver is alive: it stops starting targets and asks the running ones to stop.
            return Exit::Success;
        }
    }
    if let Some(by) = &approve_by {
        let next = snap
            .targets
            .iter()
            .filter(|t| t.status == "pending")
            .map(|t| t.wave)
            .min();
        match next {
            Some(wave) => {
                if let Err(e) = store.approve_fleet_wave(&id, wave, by, now).await {
                    return fail(e);
                }
                output::note(cli.quiet, &format!("fleet {id}: wave {wave} approved by {by}"));
            }
            None => {
                return fail(CliError::usage(format!("fleet {id} has no wave left to approve"), None));
            }
        }
    }
    let rb = match runbook::parse(&snap.fleet.runbook_text, "the fleet's pinned runbook") {
        Ok(rb) => rb,
        Err(d) => {
            output::always(&d.to_string());
            return Exit::BadInput;
        }
    };
    let env = match crate::arm::env(cli, None, crate::arm::uses_azure(&rb)).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let engine = engine(cli, store.clone(), env);
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone(), cli.quiet);
    drive(cli, &engine, &id, stop).await
}

/// `fleet plan`: per wave, the targets, each one's expected duration and unprotected
/// window (from `fogbook plan`'s estimates, read-only steps run against ARM), and the
/// fleet's total under its concurrency (a target starts when a slot frees, waves one after
/// the other).
async fn plan(cli: &Cli, path: &Path) -> Exit {
    let mut l = match load_file(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let env = match crate::arm::env_read_only(cli, None, needs_arm(&l)).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    if let Err(code) = resolve_targets(&mut l, &env).await {
        return code;
    }
    let waves = l.file.waves();
    let conc = l.file.rate.max_concurrency.max(1) as usize;
    let mut planned = Vec::new();
    // Targets whose run would stop before changing anything (a mistyped name, a group that
    // is not there): the fleet should not be started as it is.
    let mut stopping: Vec<String> = Vec::new();
    for (t, params) in l.file.targets.iter().zip(&l.params) {
        let p = fogbook_engine::plan::plan(&l.runbook, params, &env).await;
        let hours: f64 = p
            .steps
            .iter()
            .filter(|s| s.decision != "skip")
            .filter_map(|s| s.estimate.as_ref().map(|e| e.hours))
            .sum();
        let unprotected: f64 = p
            .windows
            .iter()
            .filter(|w| w.kind == "unprotected")
            .map(|w| w.estimated_hours)
            .sum();
        let errors: Vec<String> = p.steps.iter().filter_map(|s| s.error.clone()).collect();
        if crate::plan_cmd::first_failure(&p).is_some_and(|stop| stop.untouched) {
            stopping.push(t.name.clone());
        }
        planned.push((t.name.clone(), hours, unprotected, errors));
    }
    let mut doc_waves = Vec::new();
    let mut text = format!(
        "fleet {}: runbook `{}`, {} target(s); {}\n",
        l.file.name,
        l.runbook.name,
        l.file.targets.len(),
        describe_rate(&json!(l.file.rate), l.file.targets.len()),
    );
    let query = l.file.query.as_ref().map(|q| {
        let groups: Vec<String> = l
            .found
            .iter()
            .map(|g| {
                let t = |k: &str| g.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
                format!("{} ({}/{})", t("name"), t("subscription"), t("resource_group"))
            })
            .collect();
        text.push_str(&format!(
            "targets found by the query ({}), frozen into the fleet when it is created: {}\n",
            q.describe(),
            groups.join(", ")
        ));
        json!({ "description": q.describe(), "found": l.found })
    });
    let mut total = 0.0;
    let last_wave = waves.iter().copied().max().unwrap_or(0);
    for wave in 0..=last_wave {
        let members: Vec<usize> = (0..waves.len()).filter(|&i| waves[i] == wave).collect();
        if members.is_empty() {
            continue;
        }
        // List scheduling: each target takes the slot that frees first.
        let mut slots = vec![0.0_f64; conc.min(members.len())];
        for &i in &members {
            if let Some(slot) = slots.iter_mut().min_by(|a, b| a.total_cmp(b)) {
                *slot += planned[i].1;
            }
        }
        let span = slots.iter().copied().fold(0.0, f64::max);
        total += span;
        let label = if wave == 0 {
            "canary wave".to_owned()
        } else {
            format!("wave {wave}")
        };
        text.push_str(&format!(
            "\n{label}: {} target(s), about {span:.1}h{}\n",
            members.len(),
            if l.file.rate.approval && wave > waves.iter().copied().min().unwrap_or(0) {
                " (after an approval)"
            } else {
                ""
            }
        ));
        let mut targets = Vec::new();
        for &i in &members {
            let (name, hours, unprotected, errors) = &planned[i];
            text.push_str(&format!(
                "  {name}: about {hours:.1}h, unprotected about {unprotected:.1}h{}\n",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(" — WOULD FAIL: {}", errors.join("; "))
                }
            ));
            targets.push(json!({ "name": name, "hours": hours, "unprotected_hours": unprotected, "errors": errors }));
        }
        doc_waves.push(json!({ "wave": wave, "hours": span, "targets": targets }));
    }
    text.push_str(&format!("\ntotal: about {total:.1}h"));
    if !stopping.is_empty() {
        text.push_str(&format!(
            "\n\n{} TARGET(S) WOULD STOP BEFORE CHANGING ANYTHING: {}. Fix their parameters (or take them out of \
             the fleet file) before `fogbook fleet run {}`.",
            stopping.len(),
            stopping.join(", "),
            path.display()
        ));
    }
    if cli.format == Format::Json {
        output::json(
            "fleet_plan",
            &json!({ "fleet": l.file.name, "query": query, "waves": doc_waves, "total_hours": total,
                     "would_stop_before_any_change": stopping }),
        );
    } else {
        output::data(&text);
    }
    // As `fogbook plan`: `fogbook fleet plan F && fogbook fleet run F` starts no fleet whose
    // target would fail before its first change.
    if stopping.is_empty() {
        Exit::Success
    } else {
        Exit::RunFailed
    }
}
