//! One trial: a seeded plan (runbook, engine kill moments, an emulator restart, fault
//! rules), its execution against real processes, and the checks after it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::check::{self, Baseline};
use crate::proc::{self, Env, Sim, query, query_json, spawn_engine};
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

/// The operationId named `name`, if a fault rule may target it.
pub(crate) fn operation(name: &str) -> Option<&'static str> {
    OPERATIONS.iter().copied().find(|o| *o == name && *o != "*")
}

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

/// A pause: the driver is frozen (SIGSTOP, as a VM pause or a suspended laptop) for longer
/// than its lease, another process resumes the run, and the frozen one is thawed (SIGCONT)
/// while or after the other drives.
#[derive(Clone, Debug)]
pub(crate) struct Pause {
    /// When to freeze the driver (per mille of the uninterrupted run, from the trial's start).
    at_permille: u64,
    /// Freeze it instead as soon as the emulator has answered a mutation with an injected
    /// fault (429, 5xx or a dropped connection), so that the driver is frozen while it waits
    /// to retry that mutation (the moment of issue 20's repeated DELETE). `at_permille`
    /// still applies if no such answer comes.
    on_fault: bool,
    /// How long after the other driver starts to thaw the frozen one.
    thaw_permille: u64,
}

/// A signal to the engine's whole process group (Ctrl-C in a terminal, a systemd stop).
#[derive(Clone, Debug)]
pub(crate) struct GroupSignal {
    at_permille: u64,
    signal: Signal,
}

/// A competing process started while a driver drives: `resume` of the same run (promise 5:
/// one driver per run) or `run` of the same runbook on the same group (promise 6: one run per
/// group). Both must be refused (exit 4) and leave no trace in the emulator or the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompetitorKind {
    Resume,
    Run,
}

/// When to start a competitor, and which.
#[derive(Clone, Debug)]
pub(crate) struct Competitor {
    at_permille: u64,
    kind: CompetitorKind,
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
    pub(crate) pause: Option<Pause>,
    pub(crate) group_signal: Option<GroupSignal>,
    pub(crate) competitor: Option<Competitor>,
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
        // Drawn after the rest, so that the plans above stay what they were for a seed.
        let pause = rng.random_bool(0.15).then(|| Pause {
            at_permille: rng.random_range(0..span),
            on_fault: rng.random_bool(0.5),
            thaw_permille: rng.random_range(0..span),
        });
        let group_signal = rng.random_bool(0.15).then(|| GroupSignal {
            at_permille: rng.random_range(0..span),
            signal: if rng.random_bool(0.5) {
                Signal::SIGINT
            } else {
                Signal::SIGTERM
            },
        });
        let competitor = rng.random_bool(0.2).then(|| Competitor {
            at_permille: rng.random_range(0..span),
            kind: if rng.random_bool(0.5) {
                CompetitorKind::Resume
            } else {
                CompetitorKind::Run
            },
        });
        Plan {
            index,
            seed: tseed,
            runbook,
            kills,
            sim_restart,
            faults,
            pause,
            group_signal,
            competitor,
        }
    }

    /// Adds a 429 answered to the first request of `operation` and a pause of the driver
    /// while it waits to retry it (`--pause-on-fault`): the scenario of issue 20.
    pub(crate) fn focus_pause_on_fault(&mut self, operation: &'static str) {
        self.faults.push(Fault {
            kind: "429",
            operation,
            rule: json!({ "operation": operation, "max_hits": 1, "error_rate": 1.0, "error_status": 429 }),
        });
        let thaw = self.pause.as_ref().map_or(500, |p| p.thaw_permille);
        self.pause = Some(Pause {
            at_permille: 100_000,
            on_fault: true,
            thaw_permille: thaw,
        });
    }

    fn fault_config(&self) -> Value {
        json!({ "seed": self.seed, "rules": self.faults.iter().map(|f| f.rule.clone()).collect::<Vec<_>>() })
    }

    /// Whether a rule of one of `kinds` targets `operation` (or every operation).
    fn has_rule(&self, kinds: &[&str], operation: &str) -> bool {
        self.faults
            .iter()
            .any(|f| kinds.contains(&f.kind) && (f.operation == "*" || f.operation == operation))
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
        let mut text = format!(
            "{} kills@{:?}‰ sim-restart={} faults=[{}]",
            runbooks[self.runbook].name,
            self.kills,
            restart,
            faults.join(",")
        );
        if let Some(p) = &self.pause {
            let fault = if p.on_fault { "first-fault-or-" } else { "" };
            text.push_str(&format!(" pause@{fault}{}‰+thaw@{}‰", p.at_permille, p.thaw_permille));
        }
        if let Some(g) = &self.group_signal {
            text.push_str(&format!(" group-{:?}@{}‰", g.signal, g.at_permille));
        }
        if let Some(c) = &self.competitor {
            text.push_str(&format!(" competing-{:?}@{}‰", c.kind, c.at_permille));
        }
        text
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
    pub(crate) pauses: u32,
    /// Runs a competing `run` started after the trial's run had ended (allowed).
    pub(crate) competing_runs: usize,
    pub(crate) group_signals: u32,
    pub(crate) competitors: u32,
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

/// What the runner did to the processes during a trial, for the judge: which engine
/// processes it started, which it signalled and when (wall clock, ms since the epoch), and
/// the ARM requests each emulator process counted before it was stopped.
#[derive(Debug, Default)]
struct Record {
    /// Engine processes that may drive the run (not competitors), by pid.
    drivers: BTreeSet<u32>,
    /// Processes the runner SIGKILLed, froze or signalled (a lease may be taken over from
    /// them: a process that dies of the signal it was sent leaves its lease behind).
    killed_or_frozen: BTreeSet<u32>,
    /// Competing processes (must never hold the lease).
    competitors: BTreeSet<u32>,
    /// Moments an answer may have been lost: engine kills, pauses, group signals and
    /// emulator stops.
    disruptions: Vec<i128>,
    /// Requests counted by the emulator's earlier lives, per (operationId, status).
    requests: BTreeMap<(String, u16), u64>,
}

impl Record {
    fn disrupted(&mut self) {
        self.disruptions.push(now_ms());
    }

    fn add_requests(&mut self, sim: &Sim) {
        if let Ok(counts) = sim.requests() {
            for (op, status, n) in counts {
                *self.requests.entry((op, status)).or_default() += n;
            }
        }
    }

    /// How many requests of `operation` the emulator answered with a status in `statuses`.
    fn count(&self, operation: &str, statuses: impl Fn(u16) -> bool) -> u64 {
        self.requests
            .iter()
            .filter(|((op, st), _)| op == operation && statuses(*st))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Whether the engine process `pid` holds the lease of `run` now (`fogbook status`).
fn holds_lease(env: &Env, db: &Path, run: &str, pid: u32) -> bool {
    query_json(env, db, &["status", run]).is_ok_and(|st| {
        st["run"]["lease_owner"]
            .as_str()
            .is_some_and(|o| o.split(':').nth(1) == Some(pid.to_string().as_str()))
    })
}

/// Mutations the emulator answered with an injected fault so far: 429, 5xx, or a closed
/// connection (status 0), on an operation that changes something.
fn faults_answered(counts: &[(String, u16, u64)]) -> u64 {
    counts
        .iter()
        .filter(|(op, st, _)| {
            let mutation = ["CreateOrUpdate", "_Update", "_Delete", "Failover"]
                .iter()
                .any(|m| op.contains(m));
            mutation && (*st == 0 || *st == 429 || (500..600).contains(st))
        })
        .map(|(_, _, n)| n)
        .sum()
}

/// Wall-clock milliseconds since the epoch (the emulator's journal uses the same clock).
pub(crate) fn now_ms() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
}

/// Whether an engine process's end is one the runner caused or the engine chose; a death by
/// a signal the runner did not send (SIGABRT, SIGSEGV, ...) is a crash of the engine.
fn unplanned_death(status: ExitStatus, sent: &[Signal]) -> Option<String> {
    let sig = status.signal()?;
    if sent.iter().any(|s| *s as i32 == sig) {
        return None;
    }
    let name = Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| format!("{s:?}"));
    Some(name)
}

#[allow(clippy::too_many_lines)]
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
    let mut rec = Record::default();
    let mut restart = plan.sim_restart.clone();
    let mut pause = plan.pause.clone();
    let mut group_signal = plan.group_signal.clone();
    let mut competitor = plan.competitor.clone();
    // The frozen driver, and when to thaw it once another process drives.
    let mut frozen: Option<(Child, u64)> = None;
    let mut thaw_at: Option<Instant> = None;
    let mut thawed: Vec<Child> = Vec::new();
    let mut run: Option<String> = None;
    let mut kills = plan.kills.iter();
    let mut last_fault_poll = Instant::now();
    let mut last_lease_poll = Instant::now();
    let mut faults_before = 0;
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
        rec.drivers.insert(child.id());
        out.processes += 1;
        let p0 = Instant::now();
        if let Some((_, thaw)) = &frozen
            && thaw_at.is_none()
        {
            thaw_at = Some(p0 + scale(*thaw));
        }
        let kill_after = kills.next().map(|pm| scale(*pm));
        let mut sent: Vec<Signal> = Vec::new();
        let mut paused_now = false;
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(st);
            }
            if kill_after.is_some_and(|k| p0.elapsed() >= k) && !sent.contains(&Signal::SIGKILL) {
                let _ = child.kill();
                sent.push(Signal::SIGKILL);
                rec.killed_or_frozen.insert(child.id());
                rec.disrupted();
                out.engine_kills += 1;
            }
            if let Some(g) = group_signal.as_ref().filter(|g| t0.elapsed() >= scale(g.at_permille))
                && sent.is_empty()
            {
                proc::signal(&child, g.signal, true);
                sent.push(g.signal);
                rec.killed_or_frozen.insert(child.id());
                rec.disrupted();
                out.group_signals += 1;
                group_signal = None;
            }
            // A pause or a competitor needs the run's id. Looked up only when one is due, and
            // not in the engine's first 200 ms: a query racing the engine's first open of a
            // new database would test concurrent first use, not what the trial planned.
            let due = |at: u64| t0.elapsed() >= scale(at) && p0.elapsed() >= Duration::from_millis(200);
            if run.is_none()
                && (pause
                    .as_ref()
                    .is_some_and(|p| due(p.at_permille) || (p.on_fault && p0.elapsed() >= Duration::from_millis(200)))
                    || competitor.as_ref().is_some_and(|c| due(c.at_permille)))
            {
                run = run_ids(env, &db).ok().and_then(|ids| ids.into_iter().next());
            }
            if let Some(c) = competitor.as_ref().filter(|c| t0.elapsed() >= scale(c.at_permille))
                && sent.is_empty()
                && let Some(id) = &run
                && last_lease_poll.elapsed() >= Duration::from_millis(50)
                && {
                    last_lease_poll = Instant::now();
                    holds_lease(env, &db, id, child.id())
                }
            {
                let kind = c.kind;
                competitor = None;
                out.competitors += 1;
                compete(env, rb, dir, &db, &sim.url, id, kind, &mut child, &mut rec, out)?;
            }
            let fault_seen = pause.as_ref().is_some_and(|p| p.on_fault)
                && last_fault_poll.elapsed() >= Duration::from_millis(20)
                && {
                    last_fault_poll = Instant::now();
                    let counts = sim.requests().unwrap_or_default();
                    faults_answered(&counts) > faults_before
                };
            if pause
                .as_ref()
                .is_some_and(|p| fault_seen || t0.elapsed() >= scale(p.at_permille))
                && sent.is_empty()
                && run.is_some()
            {
                proc::signal(&child, Signal::SIGSTOP, false);
                rec.killed_or_frozen.insert(child.id());
                rec.disrupted();
                out.pauses += 1;
                pause = None;
                // Frozen for longer than the lease (`FOGBOOK_LEASE_TTL=2s`): this places the
                // fault; the takeover below waits on the engine (exit 4 while the lease holds).
                std::thread::sleep(proc::LEASE_TTL + Duration::from_millis(500));
                paused_now = true;
                break None;
            }
            if let Some(r) = restart.as_ref().filter(|r| t0.elapsed() >= scale(r.at_permille)) {
                rec.add_requests(&sim);
                rec.disrupted();
                sim.stop(r.signal);
                std::thread::sleep(Duration::from_millis(r.down_ms));
                sim.start_again(env)?;
                faults_before = 0;
                if !plan.faults.is_empty() {
                    sim.set_faults(&faults)?;
                }
                out.sim_restarts += 1;
                restart = None;
            }
            if let Some(at) = thaw_at
                && Instant::now() >= at
                && let Some((f, _)) = frozen.take()
            {
                proc::signal(&f, Signal::SIGCONT, false);
                thawed.push(f);
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
        if paused_now {
            frozen = Some((child, plan.pause.as_ref().map_or(0, |p| p.thaw_permille)));
            // Frozen after the run's last commit, on its way out: nothing to resume.
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
        let Some(status) = status else {
            stop(&mut child);
            continue; // the timeout check at the top ends the loop
        };
        if let Some(sig) = unplanned_death(status, &sent) {
            return Err(format!(
                "engine process {} (`fogbook {}`) died of {sig}, which the runner did not send",
                child.id(),
                args.join(" ")
            ));
        }
        let code = status.code();
        if !sent.is_empty() || code == Some(130) {
            // Killed or stopped before the run was created (run it again), inside it
            // (resume), or after its last commit on the way out (nothing to resume).
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
        // A thawed driver that was not taken over may have finished the run itself: a resume
        // then finds it busy (4) or over (2).
        if matches!(code, Some(2 | 4))
            && (frozen.is_some() || !thawed.is_empty())
            && let Some(id) = &run
        {
            let st = query_json(env, &db, &["status", id])?;
            match st["run"]["status"].as_str() {
                Some("succeeded") => break End::Exited(0),
                Some("failed") => break End::Exited(1),
                _ => {}
            }
        }
        match code {
            Some(4) => std::thread::sleep(Duration::from_millis(300)), // busy: lease not yet free
            Some(c) => break End::Exited(c),
            None => {}
        }
    };
    // A driver still frozen is thawed now; every thawed driver must then stop by itself
    // (its lease was taken over), without a crash.
    if let Some((f, _)) = frozen.take() {
        proc::signal(&f, Signal::SIGCONT, false);
        thawed.push(f);
    }
    for mut f in thawed {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = f.try_wait().map_err(|e| e.to_string())? {
                break Some(st);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match status {
            None => {
                stop(&mut f);
                out.violations
                    .push(format!("the thawed driver {} did not stop within 60 s", f.id()));
            }
            Some(st) => {
                if let Some(sig) = unplanned_death(st, &[]) {
                    out.violations.push(format!(
                        "the thawed driver {} died of {sig}, which the runner did not send",
                        f.id()
                    ));
                }
            }
        }
    }
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
        rec.drivers.insert(child.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        end = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                if let Some(sig) = unplanned_death(st, &[]) {
                    return Err(format!("the operator retry died of {sig}"));
                }
                break End::Exited(st.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                stop(&mut child);
                break End::Stuck("the operator retry did not end in 60 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
    }
    rec.add_requests(&sim);
    verify(env, plan, rb, base, &db, &run, &sim, end, &rec, out)
}

/// Starts a competing `resume` of `run` or `run` of the runbook while `driver` holds the
/// run's lease, waits for it, and checks that it was refused (exit 4) and created nothing.
/// The competing `run` talks to a closed port, so that even a wrongly accepted run cannot
/// reach the emulator; the competing `resume` to the emulator (a wrong takeover would show
/// in the journal and the lease events).
#[allow(clippy::too_many_arguments)]
fn compete(
    env: &Env,
    rb: &Runbook,
    dir: &Path,
    db: &Path,
    sim_url: &str,
    run: &str,
    kind: CompetitorKind,
    driver: &mut Child,
    rec: &mut Record,
    out: &mut Outcome,
) -> Result<(), String> {
    let (args, url) = match kind {
        CompetitorKind::Resume => (vec!["resume".to_owned(), run.to_owned()], sim_url.to_owned()),
        CompetitorKind::Run => (rb.run_args(), format!("http://127.0.0.1:{}", proc::free_port()?)),
    };
    let runs_before = run_ids(env, db)?.len();
    if driver.try_wait().map_err(|e| e.to_string())?.is_some() {
        return Ok(()); // the driver ended since its lease was read: nothing to compete with
    }
    let mut child = spawn_engine(env, dir, db, &url, &args)?;
    rec.competitors.insert(child.id());
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(st);
        }
        // A refusal takes milliseconds. A competitor still going after the driver ended
        // started after the run did (a legitimate run, at a closed port): not judged.
        let driver_gone = driver.try_wait().map_err(|e| e.to_string())?.is_some();
        if (driver_gone && started.elapsed() > Duration::from_secs(2)) || started.elapsed() > Duration::from_secs(30) {
            stop(&mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Refused while the driver lives: exit 4, no new run. Once the driver has ended, the run
    // is over (resume: exit 2) and the group is free (run: it may start and fail at the
    // closed port, which the count of runs then allows for).
    // A driver on its way out after the run's last commit counts as gone: the run is over.
    let over = query_json(env, db, &["status", run])
        .is_ok_and(|st| matches!(st["run"]["status"].as_str(), Some("succeeded" | "failed" | "cancelled")));
    let driver_alive = !over && driver.try_wait().map_err(|e| e.to_string())?.is_none();
    let runs_after = run_ids(env, db)?.len();
    let refused = status.is_some_and(|st| st.code() == Some(4)) && runs_after == runs_before;
    if !refused && driver_alive {
        out.violations.push(format!(
            "a competing `fogbook {}` was not refused while another process drove the run: {}, {runs_after} run(s)",
            args.join(" "),
            status.map_or_else(|| "still running after 30 s".to_owned(), |st| st.to_string())
        ));
    } else if !refused {
        out.competing_runs += runs_after.saturating_sub(runs_before);
    }
    Ok(())
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
    let target = target_group(step);
    Ok(journal.iter().any(|e| {
        check::is_failover_post(e) && e["applied"] == true && check::short_path(e).starts_with(&format!("{target}/"))
    }))
}

/// The resource group of the instance a failover step makes primary (its POST goes there).
fn target_group(step: &Value) -> String {
    step["input"]["secondary"]["resource_group"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

/// The journal entries of the failover POST a step sends (to its target's group).
fn failover_posts<'a>(journal: &'a [Value], step: &Value) -> Vec<&'a Value> {
    let target = format!("{}/", target_group(step));
    journal
        .iter()
        .filter(|e| check::is_failover_post(e) && check::short_path(e).starts_with(&target))
        .collect()
}

/// Why an accepted failure of a failover step is explained by a fault the trial placed on
/// that very POST, or `Err` with what is missing. The blamed request is the step's POST; the
/// evidence is the emulator's: an applied-but-dropped entry for it in the journal, or the
/// request log's count of that operation answered by an injected fault (a dropped
/// connection, status 0, or a 5xx) under a rule the plan installed; or, for a connection the
/// crash cut, an emulator stop or an engine kill between the step's start and its end.
fn failover_failure_evidence(
    plan: &Plan,
    rb: &Runbook,
    step: &Value,
    journal: &[Value],
    rec: &Record,
) -> Result<&'static str, String> {
    let id = step["step_id"].as_str().unwrap_or_default();
    let Some(op) = rb.failover_operation(id) else {
        return Err(format!("`{id}` is not a failover step"));
    };
    let error = step["error"].to_string();
    if error.contains("\"http_status\":4") {
        return Err("a 4xx answer (a rule the engine broke) is never a lost answer".to_owned());
    }
    let about_post = error.contains("POST ") || error.contains("answer was lost") || error.contains("/failover");
    let dropped = error.contains("ConnectionDropped");
    let server_error = [
        "\"http_status\":5",
        "ServiceUnavailable",
        "InternalServerError",
        "BadGateway",
        "GatewayTimeout",
    ]
    .iter()
    .any(|m| error.contains(m));
    let posts = failover_posts(journal, step);
    if dropped && about_post {
        if plan.has_rule(&["apply_then_drop"], op) && posts.iter().any(|e| e["connection_dropped"] == true) {
            return Ok("failed:failover-answer-lost-to-injected-fault");
        }
        if plan.has_rule(&["drop"], op) && rec.count(op, |s| s == 0) > 0 {
            return Ok("failed:failover-answer-lost-to-injected-fault");
        }
    }
    if server_error && plan.has_rule(&["5xx"], op) && rec.count(op, |s| (500..600).contains(&s)) > 0 {
        return Ok("failed:failover-answer-lost-to-injected-fault");
    }
    let (from, to) = (step["started_at"].as_i64(), step["finished_at"].as_i64());
    if let (Some(from), Some(to)) = (from, to)
        && (dropped || error.contains("answer was lost"))
        && rec
            .disruptions
            .iter()
            .any(|d| *d + 50 >= i128::from(from) && *d <= i128::from(to) + 50)
    {
        return Ok("failed:failover-answer-lost-to-crash");
    }
    Err(format!(
        "no fault on its POST explains it (journal entries for the POST: {}, injected-fault answers counted for {op}: drop {}, 5xx {})",
        posts.len(),
        rec.count(op, |s| s == 0),
        rec.count(op, |s| (500..600).contains(&s))
    ))
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
fn verify(
    env: &Env,
    plan: &Plan,
    rb: &Runbook,
    base: &Baseline,
    db: &Path,
    run: &str,
    sim: &Sim,
    end: End,
    rec: &Record,
    out: &mut Outcome,
) -> Result<(), String> {
    let journal = sim.journal()?;
    out.applied_but_dropped =
        u32::try_from(journal.iter().filter(|e| e["connection_dropped"] == true).count()).unwrap_or(u32::MAX);
    let status = query_json(env, db, &["status", run])?;
    let report = query_json(env, db, &["report", run])?;
    let history = query_json(env, db, &["history", run])?;
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
            // Expected only when the answer of the failover POST was lost to a fault the
            // trial placed on that very request: the engine then refuses to guess and stops
            // for an operator.
            match failed_step
                .as_ref()
                .filter(|_| rb.is_failover_step(&step))
                .map(|s| failover_failure_evidence(plan, rb, s, &journal, rec))
            {
                Some(Ok(ending)) => out.ending = ending.to_owned(),
                Some(Err(why)) => v.push(format!("the run failed at step `{step}`: {error}; {why}")),
                None => v.push(format!("the run failed unexpectedly at step `{step}`: {error}")),
            }
            false
        }
        (End::Stuck(why), _) => {
            // By design a failover re-entered with its intent saved and no POST in the
            // journal watches the roles until `reconcile_timeout` after the intent (3 min in
            // the shipped runbooks) before stopping as ambiguous: the engine cannot know the
            // POST was never processed. Accepted only with an empty journal for that POST and
            // either a crash after the step started or an injected fault counted on that POST.
            let current = status["current_step"].as_str().unwrap_or_default();
            let step = status["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["step_id"] == current);
            let intent_only = step.is_some_and(|s| {
                s["progress"]["intent"]["state"] == "sending" && s["progress"]["ops"]["failover"].is_null()
            });
            let no_post = step.is_some_and(|s| failover_posts(&journal, s).is_empty());
            let crash_after_intent = step
                .and_then(|s| s["started_at"].as_i64())
                .is_some_and(|from| rec.disruptions.iter().any(|d| *d + 50 >= i128::from(from)));
            // The other way to an intent without a POST in the journal: the POST was answered
            // by an injected fault that kept it from the resource logic (a dropped connection
            // or a 5xx, counted for that operation in the request log), and the step's
            // `retry:` re-entered it with the intent, so it reconciles from the roles.
            let fault_on_post = rb.failover_operation(current).is_some_and(|op| {
                (plan.has_rule(&["drop"], op) && rec.count(op, |s| s == 0) > 0)
                    || (plan.has_rule(&["5xx"], op) && rec.count(op, |s| (500..600).contains(&s)) > 0)
            });
            if rb.is_failover_step(current) && intent_only && no_post && (crash_after_intent || fault_on_post) {
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
    check::repeated_requests(&journal, &rec.disruptions, v);

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

    // One driver at a time: the lease went only to drivers the runner started, never to a
    // competitor, and was taken over only from a process the runner killed or froze.
    check::lease_invariants(&history, &rec.drivers, &rec.competitors, &rec.killed_or_frozen, v);

    // One run (plus any a competitor started legitimately after the run ended), and the
    // audit chain verifies.
    let ids = run_ids(env, db)?;
    if ids.len() != 1 + out.competing_runs {
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
