//! What the SQLite and the PostgreSQL trials do alike: the outcome of a trial and its
//! judging, the emulator with the plan's fault rules and its planned restart, the plan's
//! moments as delays, and a process that must stop by itself.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::check::Baseline;
use crate::plan::{Plan, SimRestart};
use crate::proc::{Env, Sim};
use crate::runbooks::Runbook;
use crate::trial::{Outcome, Record, stop, unplanned_death};

/// The outcome of a trial of `plan` that `drive` executes and checks (SQLite's or
/// PostgreSQL's): the faults planned, what `drive` counted, and its violations; an error of
/// `drive` is one.
pub(crate) fn judged(plan: &Plan, rb: &Runbook, drive: impl FnOnce(&mut Outcome) -> Result<(), String>) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        index: plan.index,
        runbook: rb.name.clone(),
        ..Outcome::default()
    };
    for f in &plan.faults {
        *out.faults.entry(f.kind.to_owned()).or_default() += 1;
    }
    if let Err(e) = drive(&mut out) {
        out.violations.push(e);
    }
    if !out.violations.is_empty() {
        out.ending = "violation".to_owned();
    }
    out.elapsed = started.elapsed();
    out
}

/// The trial's emulator, with the plan's fault rules set.
pub(crate) fn start_sim(env: &Env, plan: &Plan, rb: &Runbook, dir: &Path) -> Result<Sim, String> {
    let sim = Sim::start(env, dir, &rb.estate)?;
    set_faults(plan, &sim)?;
    Ok(sim)
}

fn set_faults(plan: &Plan, sim: &Sim) -> Result<(), String> {
    if plan.faults.is_empty() {
        return Ok(());
    }
    sim.set_faults(&plan.fault_config())
}

/// The plan's moments (per mille of the uninterrupted run, at least 200 ms) as delays.
pub(crate) fn scaled(base: &Baseline) -> impl Fn(u64) -> Duration {
    let span = base.duration_ms.max(200);
    move |permille| Duration::from_millis(span * permille / 1000)
}

/// The plan's emulator restart: stopped with its signal, down for its time, and started
/// again (same port, same state file) with the plan's fault rules.
pub(crate) fn restart_sim(
    env: &Env,
    plan: &Plan,
    r: &SimRestart,
    sim: &mut Sim,
    rec: &mut Record,
    out: &mut Outcome,
) -> Result<(), String> {
    rec.add_requests(sim);
    rec.disrupted();
    sim.stop(r.signal);
    // The time down places the fault; nothing waits on it.
    std::thread::sleep(Duration::from_millis(r.down_ms));
    sim.start_again(env)?;
    set_faults(plan, sim)?;
    out.sim_restarts += 1;
    Ok(())
}

/// Waits up to `within` for `child` to exit: its status, or None if it still runs.
pub(crate) fn wait_within(child: &mut Child, within: Duration) -> Result<Option<ExitStatus>, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Some(st));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `child` (`what`) must now stop by itself within `within`: one still running then is
/// killed, and one dead of a signal the runner did not send (`sent`) crashed; each is a
/// violation.
pub(crate) fn must_stop(
    child: &mut Child,
    within: Duration,
    sent: &[Signal],
    what: &str,
    out: &mut Outcome,
) -> Result<(), String> {
    match wait_within(child, within)? {
        None => {
            stop(child);
            out.violations
                .push(format!("{what} did not stop within {} s", within.as_secs()));
        }
        Some(st) => {
            if let Some(sig) = unplanned_death(st, sent) {
                out.violations
                    .push(format!("{what} died of {sig}, which the runner did not send"));
            }
        }
    }
    Ok(())
}
