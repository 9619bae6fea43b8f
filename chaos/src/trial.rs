//! One trial: a seeded plan (runbook, engine kill moments, an emulator restart, fault
//! rules), its execution against real processes, and the checks after it.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::check::{self, Baseline};
use crate::proc::{Env, Sim, query, query_json, spawn_engine};
use crate::runbooks::Runbook;

/// The kinds of emulator faults a trial may inject.
pub(crate) const FAULT_KINDS: &[&str] = &["429", "5xx", "latency", "drop", "apply_then_drop"];

/// Operations a fault rule may target (the emulator's operationIds; `*` matches all).
const OPERATIONS: &[&str] = &[
    "*",
    "ManagedInstances_Get",
    "ManagedInstances_CreateOrUpdate",
    "ManagedInstances_Update",
    "ManagedInstances_Delete",
    "ManagedDatabases_ListByInstance",
    "InstanceFailoverGroups_Get",
    "InstanceFailoverGroups_CreateOrUpdate",
    "InstanceFailoverGroups_Delete",
    "InstanceFailoverGroups_Failover",
    "InstanceFailoverGroups_Failover",
    "InstanceFailoverGroups_ForceFailoverAllowDataLoss",
    "VirtualNetworks_Get",
    "VirtualNetworkPeerings_CreateOrUpdate",
    "NetworkSecurityGroups_Get",
    "SecurityRules_CreateOrUpdate",
    "AzureAsyncOperation_Get",
    "AzureAsyncOperation_Get",
    "OperationResults_Get",
];

/// A fault rule the trial installs.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub(crate) kind: &'static str,
    pub(crate) operation: &'static str,
    rule: Value,
}

/// An emulator restart: when (per mille of the uninterrupted run's duration, from the start
/// of the trial), for how long, with which signal.
#[derive(Clone, Debug)]
pub(crate) struct SimRestart {
    at_permille: u64,
    down_ms: u64,
    signal: Signal,
}

/// What a trial will do, drawn from its seed.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) index: usize,
    pub(crate) seed: u64,
    pub(crate) runbook: usize,
    /// For the n-th engine process: SIGKILL it after this many per mille of the
    /// uninterrupted run's duration (if still running). Relative, so that a replay draws the
    /// same plan on a faster or slower machine.
    pub(crate) kills: Vec<u64>,
    pub(crate) sim_restart: Option<SimRestart>,
    pub(crate) faults: Vec<Fault>,
}

/// splitmix64: independent per-trial seeds from the run's seed.
pub(crate) fn trial_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed.wrapping_add((index as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Plan {
    /// Draws trial `index` (1-based) of a run seeded with `seed`.
    pub(crate) fn draw(seed: u64, index: usize, runbooks: &[Runbook]) -> Plan {
        let tseed = trial_seed(seed, index);
        let mut rng = StdRng::seed_from_u64(tseed);
        let runbook = rng.random_range(0..runbooks.len());
        let span = 1000;
        let n_kills = match rng.random_range(0..100) {
            0..15 => 0,
            15..50 => 1,
            50..80 => 2,
            _ => 3,
        };
        let kills = (0..n_kills).map(|_| rng.random_range(0..span)).collect();
        let sim_restart = rng.random_bool(0.25).then(|| SimRestart {
            at_permille: rng.random_range(0..span),
            down_ms: rng.random_range(0..800),
            signal: if rng.random_bool(0.7) {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            },
        });
        let mut faults = Vec::new();
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(1..=3) {
                let operation = OPERATIONS[rng.random_range(0..OPERATIONS.len())];
                let kind = FAULT_KINDS[rng.random_range(0..FAULT_KINDS.len())];
                let rate = f64::from(rng.random_range(5_u32..=25)) / 100.0;
                let max_hits = rng.random_range(1_u64..=3);
                let mut rule = json!({ "operation": operation, "max_hits": max_hits });
                match kind {
                    "429" => {
                        rule["error_rate"] = json!(rate);
                        rule["error_status"] = json!(429);
                    }
                    "5xx" => {
                        rule["error_rate"] = json!(rate);
                        rule["error_status"] = json!([500, 502, 503, 504][rng.random_range(0..4)]);
                    }
                    "latency" => {
                        rule["latency_ms"] = json!(rng.random_range(20_u64..=300));
                        rule["max_hits"] = json!(max_hits * 5);
                    }
                    "drop" => rule["drop_rate"] = json!(rate),
                    _ => rule["apply_then_drop_rate"] = json!(rate),
                }
                faults.push(Fault { kind, operation, rule });
            }
        }
        Plan {
            index,
            seed: tseed,
            runbook,
            kills,
            sim_restart,
            faults,
        }
    }

    fn fault_config(&self) -> Value {
        json!({ "seed": self.seed, "rules": self.faults.iter().map(|f| f.rule.clone()).collect::<Vec<_>>() })
    }

    /// Whether a rule may have lost the answer of a (forced) failover POST: an error answer,
    /// a dropped connection, or an applied-but-dropped request on that operation.
    fn may_lose_failover_answer(&self) -> bool {
        self.faults.iter().any(|f| {
            matches!(f.kind, "5xx" | "drop" | "apply_then_drop")
                && (f.operation == "*"
                    || f.operation == "InstanceFailoverGroups_Failover"
                    || f.operation == "InstanceFailoverGroups_ForceFailoverAllowDataLoss")
        })
    }

    /// One line describing the plan.
    pub(crate) fn describe(&self, runbooks: &[Runbook]) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|f| format!("{}@{}", f.kind, f.operation))
            .collect();
        let restart = self.sim_restart.as_ref().map_or("none".to_owned(), |r| {
            format!("{:?}@{}‰+{}ms", r.signal, r.at_permille, r.down_ms)
        });
        format!(
            "{} kills@{:?}‰ sim-restart={} faults=[{}]",
            runbooks[self.runbook].name,
            self.kills,
            restart,
            faults.join(",")
        )
    }
}

/// How a trial ended.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) index: usize,
    pub(crate) runbook: String,
    /// succeeded, an expected-failure class, or "violation".
    pub(crate) ending: String,
    pub(crate) engine_kills: u32,
    pub(crate) sim_restarts: u32,
    pub(crate) processes: u32,
    pub(crate) operator_retries: u32,
    pub(crate) faults: BTreeMap<String, u32>,
    pub(crate) applied_but_dropped: u32,
    pub(crate) violations: Vec<String>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) elapsed: Duration,
}

/// Per-trial limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) trial_timeout: Duration,
    pub(crate) max_processes: u32,
}

/// The run id in `db`, if the run was created.
fn run_ids(env: &Env, db: &Path) -> Result<Vec<String>, String> {
    if !db.exists() {
        return Ok(Vec::new());
    }
    let runs = query_json(env, db, &["runs"])?;
    Ok(runs["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect())
}

/// Executes `plan` in `dir`, then checks the invariants.
pub(crate) fn execute(env: &Env, plan: &Plan, rb: &Runbook, base: &Baseline, dir: &Path, limits: Limits) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        index: plan.index,
        runbook: rb.name.clone(),
        ..Outcome::default()
    };
    for f in &plan.faults {
        *out.faults.entry(f.kind.to_owned()).or_default() += 1;
    }
    if let Err(e) = drive(env, plan, rb, base, dir, limits, &mut out) {
        out.violations.push(e);
    }
    if !out.violations.is_empty() {
        out.ending = "violation".to_owned();
    }
    out.elapsed = started.elapsed();
    out
}

/// How the engine processes ended.
enum End {
    /// The last process exited with this code (0 succeeded, 1 failed, ...).
    Exited(i32),
    /// The run did not end within the trial's time or process budget.
    Stuck(String),
}

fn drive(
    env: &Env,
    plan: &Plan,
    rb: &Runbook,
    base: &Baseline,
    dir: &Path,
    limits: Limits,
    out: &mut Outcome,
) -> Result<(), String> {
    let db = dir.join("state.db");
    let mut sim = Sim::start(env, dir, &rb.estate)?;
    let faults = plan.fault_config();
    if !plan.faults.is_empty() {
        sim.set_faults(&faults)?;
    }
    // Per mille of the uninterrupted run (at least 200 ms) → a delay.
    let span = base.duration_ms.max(200);
    let scale = |permille: u64| Duration::from_millis(span * permille / 1000);
    let t0 = Instant::now();
    let mut restart = plan.sim_restart.clone();
    let mut run: Option<String> = None;
    let mut kills = plan.kills.iter();
    let mut killed_during: Vec<Instant> = Vec::new();
    let end = loop {
        if out.processes >= limits.max_processes {
            break End::Stuck(format!("{} engine processes and the run has not ended", out.processes));
        }
        if t0.elapsed() > limits.trial_timeout {
            break End::Stuck(format!("no end after {:?}", limits.trial_timeout));
        }
        let args = match &run {
            None => rb.run_args(),
            Some(id) => vec!["resume".to_owned(), id.clone()],
        };
        let mut child = spawn_engine(env, dir, &db, &sim.url, &args)?;
        out.processes += 1;
        let p0 = Instant::now();
        let kill_after = kills.next().map(|pm| scale(*pm));
        let mut killed = false;
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(st);
            }
            if kill_after.is_some_and(|k| p0.elapsed() >= k) && !killed {
                let _ = child.kill();
                killed = true;
                out.engine_kills += 1;
                killed_during.push(Instant::now());
            }
            if let Some(r) = restart.as_ref().filter(|r| t0.elapsed() >= scale(r.at_permille)) {
                sim.stop(r.signal);
                std::thread::sleep(Duration::from_millis(r.down_ms));
                sim.start_again(env)?;
                if !plan.faults.is_empty() {
                    sim.set_faults(&faults)?;
                }
                out.sim_restarts += 1;
                restart = None;
            }
            if t0.elapsed() > limits.trial_timeout {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if run.is_none() {
            let ids = run_ids(env, &db)?;
            if ids.len() > 1 {
                return Err(format!("{} runs created, expected one", ids.len()));
            }
            run = ids.into_iter().next();
        }
        let Some(status) = status else {
            stop(&mut child);
            continue; // the timeout check at the top ends the loop
        };
        if killed || status.signal().is_some() {
            // Killed before the run was created (run it again), inside it (resume), or after
            // its last commit on the way out (nothing to resume).
            if let Some(id) = &run {
                let st = query_json(env, &db, &["status", id])?;
                match st["run"]["status"].as_str() {
                    Some("succeeded") => break End::Exited(0),
                    Some("failed") => break End::Exited(1),
                    _ => {}
                }
            }
            continue;
        }
        match status.code() {
            Some(4) => std::thread::sleep(Duration::from_millis(300)), // busy: lease not yet free
            Some(130) => {}
            Some(c) => break End::Exited(c),
            None => {}
        }
    };
    let Some(run) = run else {
        return Err("the run was never created".to_owned());
    };
    let mut end = end;
    // An operator retry where the engine stopped because the answer of a failover POST was
    // lost while the emulator had applied it: a fresh attempt must read the roles back and
    // succeed without posting again.
    if matches!(end, End::Exited(1)) && failed_failover_post_applied(env, &db, &run, rb, &sim)? {
        out.operator_retries += 1;
        let args = vec!["resume".to_owned(), run.clone(), "--retry-failed".to_owned()];
        let mut child = spawn_engine(env, dir, &db, &sim.url, &args)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        end = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break End::Exited(st.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                stop(&mut child);
                break End::Stuck("the operator retry did not end in 60 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
    }
    verify(
        env,
        plan,
        rb,
        base,
        &db,
        &run,
        &sim,
        end,
        !killed_during.is_empty(),
        out,
    )
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The run failed in a failover step whose POST the emulator applied (its answer was lost).
fn failed_failover_post_applied(env: &Env, db: &Path, run: &str, rb: &Runbook, sim: &Sim) -> Result<bool, String> {
    let st = query_json(env, db, &["status", run])?;
    let failed: Vec<&Value> = st["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["status"] == "failed")
        .collect();
    let Some(step) = failed.first() else {
        return Ok(false);
    };
    if !rb.is_failover_step(step["step_id"].as_str().unwrap_or_default()) {
        return Ok(false);
    }
    if step["progress"]["intent"]["state"] != "sending" {
        return Ok(false);
    }
    let journal = sim.journal()?;
    let target = step["input"]["secondary"]["resource_group"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    Ok(journal.iter().any(|e| {
        check::is_failover_post(e) && e["applied"] == true && check::short_path(e).starts_with(&format!("{target}/"))
    }))
}

#[allow(clippy::too_many_arguments)]
fn verify(
    env: &Env,
    plan: &Plan,
    rb: &Runbook,
    base: &Baseline,
    db: &Path,
    run: &str,
    sim: &Sim,
    end: End,
    killed: bool,
    out: &mut Outcome,
) -> Result<(), String> {
    let journal = sim.journal()?;
    out.applied_but_dropped =
        u32::try_from(journal.iter().filter(|e| e["connection_dropped"] == true).count()).unwrap_or(u32::MAX);
    let status = query_json(env, db, &["status", run])?;
    let report = query_json(env, db, &["report", run])?;
    let run_status = status["run"]["status"].as_str().unwrap_or_default().to_owned();
    let v = &mut out.violations;

    // The outcome.
    let failed_step = status["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["status"] == "failed")
        .cloned();
    let succeeded = match (&end, run_status.as_str()) {
        (End::Exited(0), "succeeded") => {
            out.ending = "succeeded".to_owned();
            true
        }
        (End::Exited(1), "failed") => {
            let step = failed_step
                .as_ref()
                .map_or(String::new(), |s| s["step_id"].as_str().unwrap_or_default().to_owned());
            let error = failed_step.as_ref().map_or(String::new(), |s| s["error"].to_string());
            // Expected only when the answer of a failover POST was lost (no answer, a 5xx,
            // or the engine's own "answer was lost" after a crash): the engine then refuses
            // to guess and stops for an operator. A 4xx (a rule the engine broke) never is.
            let lost_answer = !error.contains("\"http_status\":4")
                && [
                    "ConnectionDropped",
                    "Timeout",
                    "ServiceUnavailable",
                    "InternalServerError",
                    "BadGateway",
                    "\"http_status\":5",
                    "answer was lost",
                ]
                .iter()
                .any(|m| error.contains(m));
            if rb.is_failover_step(&step) && lost_answer && plan.may_lose_failover_answer() {
                out.ending = "failed:failover-answer-lost-to-injected-fault".to_owned();
            } else if rb.is_failover_step(&step) && lost_answer && (killed || out.sim_restarts > 0) {
                out.ending = "failed:failover-answer-lost-to-crash".to_owned();
            } else {
                v.push(format!("the run failed unexpectedly at step `{step}`: {error}"));
            }
            false
        }
        (End::Stuck(why), _) => {
            // By design a failover re-entered with its intent saved and no POST in the
            // journal watches the roles for `reconcile_timeout` (15 min) before stopping as
            // ambiguous: the engine cannot know the POST was never sent.
            let current = status["current_step"].as_str().unwrap_or_default();
            let step = status["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["step_id"] == current);
            let intent_only = step.is_some_and(|s| {
                s["progress"]["intent"]["state"] == "sending" && s["progress"]["ops"]["failover"].is_null()
            });
            let target = step
                .and_then(|s| s["input"]["secondary"]["resource_group"].as_str())
                .unwrap_or("?");
            let posted = journal.iter().any(|e| {
                check::is_failover_post(e)
                    && e["applied"] == true
                    && check::short_path(e).starts_with(&format!("{target}/"))
            });
            if rb.is_failover_step(current) && intent_only && !posted && (killed || out.sim_restarts > 0) {
                out.ending = "stopped:failover-intent-without-post (reconciling, by design)".to_owned();
            } else {
                v.push(format!(
                    "the run did not end: {why} (status {run_status}, step `{current}`)"
                ));
            }
            false
        }
        (End::Exited(c), s) => {
            v.push(format!("the engine exited {c} with the run {s}"));
            false
        }
    };

    // Effects, counted by the emulator.
    check::journal_invariants(&journal, base, succeeded, v);

    // The final estate.
    if succeeded {
        let got = check::summary(&sim.get("/_sim/state")?);
        if got != base.summary {
            v.push(format!(
                "final estate differs from the uninterrupted run: {}",
                check::diff(&base.summary, &got)
            ));
        }
    }

    // Windows.
    check::window_invariants(&report, &status, &journal, base, succeeded, v);

    // One run, and the audit chain verifies.
    let ids = run_ids(env, db)?;
    if ids.len() != 1 {
        v.push(format!("{} runs in the database, expected 1", ids.len()));
    }
    let audit = query(env, db, &["audit", "verify"])?;
    let text = String::from_utf8_lossy(&audit.stdout).into_owned();
    if audit.status.code() != Some(0) || !text.starts_with("ok:") {
        v.push(format!(
            "audit verify exited {:?}: {}{}",
            audit.status.code(),
            text.trim(),
            String::from_utf8_lossy(&audit.stderr).trim()
        ));
    }
    Ok(())
}

/// An uninterrupted run of `rb` on a fresh emulator, without faults.
pub(crate) fn baseline(env: &Env, rb: &Runbook, dir: &Path) -> Result<Baseline, String> {
    let db = dir.join("state.db");
    let sim = Sim::start(env, dir, &rb.estate)?;
    let t0 = Instant::now();
    let mut child = spawn_engine(env, dir, &db, &sim.url, &rb.run_args())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    let duration_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    if status.code() != Some(0) {
        let log = std::fs::read_to_string(dir.join("engine.log")).unwrap_or_default();
        return Err(format!(
            "the uninterrupted run of {} exited {status}: {}",
            rb.name,
            log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
        ));
    }
    let journal = sim.journal()?;
    if let Some(e) = journal.iter().find(|e| e["applied"] != true) {
        return Err(format!(
            "{}: the uninterrupted run had a refused mutation: {e}",
            rb.name
        ));
    }
    let id = run_ids(env, &db)?
        .into_iter()
        .next()
        .ok_or("no run in the baseline database")?;
    let report = query_json(env, &db, &["report", &id])?;
    Ok(Baseline {
        summary: check::summary(&sim.get("/_sim/state")?),
        order: check::order(&journal),
        sql_ops: check::sql_ops(&journal),
        windows: check::window_keys(&report),
        duration_ms,
    })
}
