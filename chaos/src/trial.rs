//! One trial: a seeded plan (runbook, engine kill moments, an emulator restart, fault
//! rules), its execution against real processes, and the checks after it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::check::{self, Baseline};
use crate::plan::{CompetitorKind, Plan};
use crate::proc::{self, Env, Sim, query_json, spawn_engine};
use crate::runbooks::Runbook;
use crate::stage::{judged, must_stop, restart_sim, scaled, start_sim, wait_within};
use crate::verify::{failed_failover_post_applied, verify};

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
    /// PostgreSQL trials: workers SIGKILLed, server restarts, workers cut off from the
    /// database, and workers that exited by themselves (started again).
    pub(crate) worker_kills: u32,
    pub(crate) pg_restarts: u32,
    pub(crate) black_holes: u32,
    pub(crate) worker_exits: u32,
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
pub(crate) fn run_ids(env: &Env, db: &Path) -> Result<Vec<String>, String> {
    if !proc::is_url(db) && !db.exists() {
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

/// What a trial is given: the binary under test, its plan and runbook, the runbook's
/// uninterrupted run to compare with, its directory and its limits.
#[derive(Clone, Copy)]
pub(crate) struct Trial<'a> {
    pub(crate) env: &'a Env,
    pub(crate) plan: &'a Plan,
    pub(crate) rb: &'a Runbook,
    pub(crate) base: &'a Baseline,
    pub(crate) dir: &'a Path,
    pub(crate) limits: Limits,
}

/// Executes the trial's plan in its directory, then checks the invariants.
pub(crate) fn execute(t: Trial<'_>) -> Outcome {
    judged(t.plan, t.rb, |out| drive(t, out))
}

/// How the engine processes ended.
pub(crate) enum End {
    /// The last process exited with this code (0 succeeded, 1 failed, ...).
    Exited(i32),
    /// The run did not end within the trial's time or process budget.
    Stuck(String),
}

/// What the runner did to the processes during a trial, for the judge: which engine
/// processes it started, which it signalled and when (wall clock, ms since the epoch), and
/// the ARM requests each emulator process counted before it was stopped.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Engine processes that may drive the run (not competitors), by pid.
    pub(crate) drivers: BTreeSet<u32>,
    /// Processes the runner SIGKILLed, froze or signalled (a lease may be taken over from
    /// them: a process that dies of the signal it was sent leaves its lease behind).
    pub(crate) killed_or_frozen: BTreeSet<u32>,
    /// Competing processes (must never hold the lease).
    pub(crate) competitors: BTreeSet<u32>,
    /// Moments an answer may have been lost: engine kills, pauses, group signals and
    /// emulator stops.
    pub(crate) disruptions: Vec<i128>,
    /// Requests counted by the emulator's earlier lives, per (operationId, status).
    pub(crate) requests: BTreeMap<(String, u16), u64>,
}

impl Record {
    pub(crate) fn disrupted(&mut self) {
        self.disruptions.push(now_ms());
    }

    pub(crate) fn add_requests(&mut self, sim: &Sim) {
        if let Ok(counts) = sim.requests() {
            for (op, status, n) in counts {
                *self.requests.entry((op, status)).or_default() += n;
            }
        }
    }

    /// How many requests of `operation` the emulator answered with a status in `statuses`.
    pub(crate) fn count(&self, operation: &str, statuses: impl Fn(u16) -> bool) -> u64 {
        self.requests
            .iter()
            .filter(|((op, st), _)| op == operation && statuses(*st))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Whether the engine process `pid` holds the lease of `run` now (`fogbook status`).
pub(crate) fn holds_lease(env: &Env, db: &Path, run: &str, pid: u32) -> bool {
    query_json(env, db, &["status", run]).is_ok_and(|st| lease_pid(&st) == Some(pid))
}

/// The pid of the process holding the run's lease, from `fogbook status --format json`
/// (its owner is `HOST:PID:…`).
pub(crate) fn lease_pid(status: &Value) -> Option<u32> {
    status["run"]["lease_owner"]
        .as_str()
        .and_then(|o| o.split(':').nth(1))
        .and_then(|p| p.parse().ok())
}

/// How the run ended, if it did: `fogbook status` says succeeded or failed.
fn finished(env: &Env, db: &Path, run: &str) -> Result<Option<End>, String> {
    let st = query_json(env, db, &["status", run])?;
    Ok(match st["run"]["status"].as_str() {
        Some("succeeded") => Some(End::Exited(0)),
        Some("failed") => Some(End::Exited(1)),
        _ => None,
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
pub(crate) fn unplanned_death(status: ExitStatus, sent: &[Signal]) -> Option<String> {
    let sig = status.signal()?;
    if sent.iter().any(|s| *s as i32 == sig) {
        return None;
    }
    let name = Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| format!("{s:?}"));
    Some(name)
}

#[allow(clippy::too_many_lines)]
fn drive(t: Trial<'_>, out: &mut Outcome) -> Result<(), String> {
    let Trial {
        env,
        plan,
        rb,
        base,
        dir,
        limits,
    } = t;
    let db = dir.join("state.db");
    let mut sim = start_sim(env, plan, rb, dir)?;
    let scale = scaled(base);
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
                restart_sim(env, plan, r, &mut sim, &mut rec, out)?;
                faults_before = 0;
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
            if let Some(id) = &run
                && let Some(end) = finished(env, &db, id)?
            {
                break end;
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
            if let Some(id) = &run
                && let Some(end) = finished(env, &db, id)?
            {
                break end;
            }
            continue;
        }
        // A thawed driver that was not taken over may have finished the run itself: a resume
        // then finds it busy (4) or over (2).
        if matches!(code, Some(2 | 4))
            && (frozen.is_some() || !thawed.is_empty())
            && let Some(id) = &run
            && let Some(end) = finished(env, &db, id)?
        {
            break end;
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
        let what = format!("the thawed driver {}", f.id());
        must_stop(&mut f, Duration::from_secs(60), &[], &what, out)?;
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
        end = operator_retry(env, dir, &db, &sim, &run, &mut rec)?;
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
pub(crate) fn compete(
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

pub(crate) fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// An uninterrupted run of `rb` on a fresh emulator, without faults.
pub(crate) fn baseline(env: &Env, rb: &Runbook, dir: &Path, db: Option<&Path>) -> Result<Baseline, String> {
    let db = db.map_or_else(|| dir.join("state.db"), Path::to_path_buf);
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

/// The operator's `resume RUN --retry-failed`, as after a failover whose answer was lost
/// while the emulator applied it: a fresh attempt must read the roles back and succeed
/// without posting again. Returns how it ended.
pub(crate) fn operator_retry(
    env: &Env,
    dir: &Path,
    db: &Path,
    sim: &Sim,
    run: &str,
    rec: &mut Record,
) -> Result<End, String> {
    let args = vec!["resume".to_owned(), run.to_owned(), "--retry-failed".to_owned()];
    let mut child = spawn_engine(env, dir, db, &sim.url, &args)?;
    rec.drivers.insert(child.id());
    let Some(st) = wait_within(&mut child, Duration::from_secs(60))? else {
        stop(&mut child);
        return Ok(End::Stuck("the operator retry did not end in 60 s".to_owned()));
    };
    if let Some(sig) = unplanned_death(st, &[]) {
        return Err(format!("the operator retry died of {sig}"));
    }
    Ok(End::Exited(st.code().unwrap_or(-1)))
}
