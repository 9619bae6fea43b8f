//! A trial on PostgreSQL (`--db postgres`): the run lives in its own database on the runner's
//! throwaway server and is driven by 2–3 `fogbook worker` processes ("hosts", each talking
//! to the database through a proxy the runner owns) besides the `run`/`resume` processes.
//! Faults: SIGKILL of workers (started again), `pg_ctl restart -m immediate`, a worker cut off
//! from the database (its proxy stops forwarding) past its lease and then let back (it must
//! write nothing: fenced), plus the emulator's faults and restarts and competing processes of
//! the SQLite trials. The invariants are checked from outside as there (`verify`), plus the
//! fencing of the cut-off worker and the one fire of a schedule.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::pgcheck::{fenced, schedule_fired_once};
use crate::pghosts::{PgServer, Worker, spawn_worker, wait_for_server};
use crate::plan::Start;
use crate::proc::{self, Env, Sim, query, query_json, spawn_engine};
use crate::proxy::Proxy;
use crate::runbooks::Runbook;
use crate::stage::{judged, must_stop, restart_sim, scaled, start_sim, wait_within};
use crate::trial::{
    End, Outcome, Record, Trial, compete, lease_pid, now_ms, operator_retry, run_ids, stop, unplanned_death,
};
use crate::verify::{failed_failover_post_applied, verify};

/// The lease owner's pid and the run's status, from `fogbook status` (None while the server
/// restarts, or before the run exists).
fn poll_status(env: &Env, db: &Path, run: &str) -> Option<(Option<u32>, String)> {
    let st = query_json(env, db, &["status", run]).ok()?;
    Some((
        lease_pid(&st),
        st["run"]["status"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Executes a PostgreSQL trial, then checks the invariants.
pub(crate) fn execute(t: Trial<'_>, pg: &PgServer) -> Outcome {
    let out = judged(t.plan, t.rb, |out| drive(t, pg, out));
    if out.violations.is_empty() {
        pg.drop_database(&format!("chaos_trial_{}", t.plan.index));
    }
    out
}

/// The cut-off worker: its pid, and when it was let back.
struct Cut {
    pid: u32,
    worker: usize,
    heal_at: Instant,
    healed: bool,
}

#[allow(clippy::too_many_lines)]
fn drive(t: Trial<'_>, pg: &PgServer, out: &mut Outcome) -> Result<(), String> {
    let Trial {
        env,
        plan,
        rb,
        base,
        dir,
        ..
    } = t;
    let Some(pgp) = plan.pg.clone() else {
        return Err("a PostgreSQL trial without its plan".to_owned());
    };
    let trial_from = now_ms();
    let name = format!("chaos_trial_{}", plan.index);
    let url = pg.database(&name)?;
    let db = PathBuf::from(&url);
    let mut sim = start_sim(env, plan, rb, dir)?;
    let scale = scaled(base);
    let mut rec = Record::default();

    // The schedule is added before the workers start, to fire a few seconds later.
    let fire_at = if pgp.start == Start::Schedule {
        Some(add_schedule(env, pg, &db, rb)?)
    } else {
        None
    };

    let mut workers: Vec<Worker> = Vec::new();
    for i in 0..pgp.workers {
        let mut w = Worker {
            name: format!("host{}", i + 1),
            proxy: Proxy::start(pg.port())?,
            child: None,
            restart_at: None,
            sent: Vec::new(),
        };
        spawn_worker(env, dir, &url, pg, &sim, &mut w, &mut rec)?;
        workers.push(w);
    }
    let result = drive_with_workers(t, pg, out, &db, &url, &mut sim, &mut rec, &mut workers, fire_at, &scale);
    // Whatever happened: every cut worker is let back, every worker is asked to stop and must
    // stop by itself, without a crash.
    for w in &workers {
        w.proxy.resume();
    }
    for w in &mut workers {
        if let Some(c) = &w.child {
            proc::signal(c, Signal::SIGTERM, false);
            w.sent.push(Signal::SIGTERM);
        }
    }
    for w in &mut workers {
        let Some(mut c) = w.child.take() else { continue };
        let what = format!("worker {} ({}), sent SIGTERM,", w.name, c.id());
        must_stop(&mut c, Duration::from_secs(60), &w.sent, &what, out)?;
    }
    let (run, end, cut) = result?;
    let Some(run) = run else {
        return Err("the run was never created".to_owned());
    };
    let mut end = end;
    let _checks = pg.gate.read().unwrap_or_else(PoisonError::into_inner);
    if matches!(end, End::Exited(1)) && failed_failover_post_applied(env, &db, &run, rb, &sim)? {
        out.operator_retries += 1;
        end = operator_retry(env, dir, &db, &sim, &run, &mut rec)?;
    }
    // A restart of the server (this trial's or another's) cut every process's connections:
    // a moment an answer may have been lost, and a reason for a takeover from any of them.
    let restarts = pg.restarts_between(trial_from, now_ms());
    if !restarts.is_empty() {
        rec.disruptions.extend(restarts);
        let all: Vec<u32> = rec.drivers.iter().copied().collect();
        rec.killed_or_frozen.extend(all);
    }
    rec.add_requests(&sim);
    let history = query_json(env, &db, &["history", &run])?;
    if let Some(cut) = &cut {
        fenced(&history, cut.pid, &mut out.violations);
    }
    if pgp.start == Start::Schedule {
        schedule_fired_once(env, &db, &history, &mut out.violations)?;
    }
    verify(env, plan, rb, base, &db, &run, &sim, end, &rec, out)
}

/// Adds the trial's one-shot schedule (its cron names one second, a few seconds ahead, with
/// a catch-up) and returns when it is due, the time drawn once no restart of the server is
/// under way. A schedule added after that second (the command slowed down past it on a
/// loaded machine) would never fire, its cursor being its creation: it is removed and another is added, under a
/// new name (names are never reused), until one is added in time.
fn add_schedule(env: &Env, pg: &PgServer, db: &Path, rb: &Runbook) -> Result<Instant, String> {
    let run_args = rb.run_args();
    let mut previous: Option<String> = None;
    for attempt in 0..10 {
        // No restart meanwhile: a refused connection here would end the trial.
        let _up = pg.gate.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(name) = previous.take() {
            let o = query(env, db, &["schedule", "remove", &name])?;
            if !o.status.success() {
                return Err(format!(
                    "fogbook schedule remove {name} exited {:?}: {}",
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
        let name = if attempt == 0 {
            "chaos".to_owned()
        } else {
            format!("chaos-{attempt}")
        };
        let due = Instant::now() + Duration::from_secs(3);
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
        let cron = format!(
            "{} {} {} {} {} *",
            at.second(),
            at.minute(),
            at.hour(),
            at.day(),
            u8::from(at.month())
        );
        let args = [
            "schedule",
            "add",
            "--name",
            &name,
            "--cron",
            &cron,
            "--catch-up",
            "10m",
            "--auto-approve",
            &run_args[1],
            "--params",
            &run_args[3],
        ];
        let began = Instant::now();
        let added = query_json(env, db, &args)?;
        let first = first_fire(&added)?;
        if first.unix_timestamp() == at.unix_timestamp() {
            return Ok(due);
        }
        eprintln!(
            "chaos: schedule {name} was added after its second ({} ms, first fire {first}); adding another",
            began.elapsed().as_millis()
        );
        previous = Some(name);
    }
    Err("the schedule was added too late to fire, ten times".to_owned())
}

/// The first fire time `fogbook schedule add --format json` printed (the fire times after
/// the schedule's creation): the second its cron names, unless it was created past it.
fn first_fire(added: &serde_json::Value) -> Result<time::OffsetDateTime, String> {
    let first = added["next"][0].as_str().unwrap_or_default();
    time::OffsetDateTime::parse(first, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("fogbook schedule add: next fire time {first:?}: {e}"))
}

type Driven = (Option<String>, End, Option<Cut>);

#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
fn drive_with_workers(
    t: Trial<'_>,
    pg: &PgServer,
    out: &mut Outcome,
    db: &Path,
    url: &str,
    sim: &mut Sim,
    rec: &mut Record,
    workers: &mut [Worker],
    fire_at: Option<Instant>,
    scale: &dyn Fn(u64) -> Duration,
) -> Result<Driven, String> {
    let Trial {
        env,
        plan,
        rb,
        dir,
        limits,
        ..
    } = t;
    let pgp = plan.pg.clone().unwrap_or_else(|| unreachable!("checked by the caller"));
    let mut t0 = Instant::now();
    let mut run: Option<String> = None;
    let mut foreground: Option<(Child, Vec<Signal>)> = None;
    match pgp.start {
        Start::Run => {
            let child = spawn_engine(env, dir, db, &sim.url, &rb.run_args())?;
            rec.drivers.insert(child.id());
            out.processes += 1;
            foreground = Some((child, Vec::new()));
        }
        Start::Detach => {
            let mut args = rb.run_args();
            args.push("--detach".to_owned());
            // Started again when it could not reach the server (a parallel trial's restart)
            // and created nothing.
            loop {
                let mut child = spawn_engine(env, dir, db, &sim.url, &args)?;
                rec.drivers.insert(child.id());
                out.processes += 1;
                let st = child.wait().map_err(|e| e.to_string())?;
                if st.code() == Some(0) {
                    break;
                }
                if let Some(sig) = unplanned_death(st, &[]) {
                    return Err(format!("`fogbook run --detach` died of {sig}"));
                }
                // (An error while the server is up: no schema yet, so no run either.)
                if run_ids(env, db).is_ok_and(|ids| !ids.is_empty()) || out.processes >= limits.max_processes {
                    return Err(format!("`fogbook run --detach` exited {st}"));
                }
                wait_for_server(pg);
            }
        }
        Start::Schedule => {
            if let Some(at) = fire_at {
                t0 = at;
            }
        }
    }
    let mut needs_run = false;
    let mut kill_fg = plan.kills.first().map(|pm| scale(*pm));
    let mut kills = pgp.worker_kills.clone();
    kills.sort_by_key(|k| k.at_permille);
    let mut kills = kills.into_iter().peekable();
    let mut pg_restart = pgp.pg_restart;
    let mut black_hole = pgp.black_hole.clone();
    let mut restart = plan.sim_restart.clone();
    let mut competitor = plan.competitor.clone();
    let mut cut: Option<Cut> = None;
    let mut holder: Option<u32> = None;
    let mut last_poll = Instant::now() - Duration::from_secs(1);
    let started = Instant::now();
    let end = loop {
        if started.elapsed() > limits.trial_timeout + Duration::from_secs(if fire_at.is_some() { 3 } else { 0 }) {
            break End::Stuck(format!("no end after {:?}", limits.trial_timeout));
        }
        // The run's state, and who holds its lease.
        if last_poll.elapsed() >= Duration::from_millis(250) {
            last_poll = Instant::now();
            if run.is_none() {
                run = run_ids(env, db).ok().and_then(|ids| ids.into_iter().next());
            }
            if let Some(id) = &run
                && let Some((owner, status)) = poll_status(env, db, id)
            {
                holder = owner;
                match status.as_str() {
                    "succeeded" => break End::Exited(0),
                    "failed" => break End::Exited(1),
                    "cancelled" => break End::Exited(3),
                    _ => {}
                }
            }
        }
        let now = t0.elapsed();
        let running = Instant::now() >= t0;
        // The foreground `run`: killed at the plan's first kill moment; the workers take over.
        if let Some((c, sent)) = &mut foreground {
            if let Some(st) = c.try_wait().map_err(|e| e.to_string())? {
                if let Some(sig) = unplanned_death(st, sent) {
                    return Err(format!(
                        "the `fogbook run` process {} died of {sig}, which the runner did not send",
                        c.id()
                    ));
                }
                foreground = None;
                needs_run = pgp.start == Start::Run && run.is_none();
            } else if kill_fg.is_some_and(|k| now >= k) && !sent.contains(&Signal::SIGKILL) {
                let _ = c.kill();
                sent.push(Signal::SIGKILL);
                rec.killed_or_frozen.insert(c.id());
                rec.disrupted();
                out.engine_kills += 1;
                kill_fg = None; // once: a `run` started again is not killed again
            }
        }
        // The `run` ended (killed, or unable to reach the server during a restart) before
        // the run existed: run it again, as the SQLite trials do.
        if needs_run && foreground.is_none() {
            // An error while the server is up: the database has no schema yet (nobody
            // opened it), so no run either.
            let ids = run_ids(env, db).unwrap_or_else(|_| {
                wait_for_server(pg);
                run_ids(env, db).unwrap_or_default()
            });
            if ids.is_empty() && out.processes < limits.max_processes {
                wait_for_server(pg);
                let child = spawn_engine(env, dir, db, &sim.url, &rb.run_args())?;
                rec.drivers.insert(child.id());
                out.processes += 1;
                foreground = Some((child, Vec::new()));
            }
            needs_run = false;
        }
        // Workers that ended: killed (started again after their time down) or by themselves.
        for (i, w) in workers.iter_mut().enumerate() {
            if let Some(c) = &mut w.child
                && let Some(st) = c.try_wait().map_err(|e| e.to_string())?
            {
                if let Some(sig) = unplanned_death(st, &w.sent) {
                    return Err(format!(
                        "worker {} ({}) died of {sig}, which the runner did not send",
                        w.name,
                        c.id()
                    ));
                }
                if w.sent.is_empty() {
                    // A worker that gave up by itself (e.g. it could not open the database
                    // while the server restarted): counted, and started again.
                    // Started again half a second later (not in a tight loop while the server
                    // is down).
                    out.worker_exits += 1;
                    w.restart_at = Some(Instant::now() + Duration::from_millis(500));
                }
                w.child = None;
            }
            if w.child.is_none() && w.restart_at.is_some_and(|at| Instant::now() >= at) {
                spawn_worker(env, dir, url, pg, sim, w, rec)?;
                out.processes += 1;
                // Started again behind its black-holed proxy: cut off as its predecessor was
                // (its connections are held until the hole heals), so a takeover from it is
                // one the runner caused.
                if let Some(c) = &cut
                    && c.worker == i
                    && !c.healed
                    && let Some(pid) = w.pid()
                {
                    rec.killed_or_frozen.insert(pid);
                }
            }
        }
        if !running {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        // A worker SIGKILLed: the run's driver when it is a worker, else the planned one.
        if let Some(k) = kills.peek()
            && now >= scale(k.at_permille)
        {
            let by_lease = holder.and_then(|h| workers.iter().position(|w| w.pid() == Some(h)));
            let victim = if k.driver {
                by_lease.unwrap_or(k.victim)
            } else {
                k.victim
            };
            let w = &mut workers[victim.min(workers.len() - 1)];
            if let Some(c) = &mut w.child {
                let _ = c.kill();
                w.sent.push(Signal::SIGKILL);
                rec.killed_or_frozen.insert(c.id());
                rec.disrupted();
                out.worker_kills += 1;
                w.restart_at = Some(Instant::now() + Duration::from_millis(k.down_ms));
            }
            kills.next();
        }
        // The server restarted the hard way.
        if let Some(at) = pg_restart
            && now >= scale(at)
        {
            pg_restart = None;
            rec.disrupted();
            pg.restart()?;
            out.pg_restarts += 1;
        }
        // The worker driving the run cut off from the database (once one drives it).
        if let Some(b) = &black_hole
            && now >= scale(b.at_permille)
            && let Some(i) = holder.and_then(|h| workers.iter().position(|w| w.pid() == Some(h)))
            && let Some(pid) = workers[i].pid()
        {
            workers[i].proxy.black_hole();
            rec.killed_or_frozen.insert(pid);
            rec.disrupted();
            out.black_holes += 1;
            cut = Some(Cut {
                pid,
                worker: i,
                heal_at: Instant::now() + proc::LEASE_TTL + Duration::from_millis(b.extra_ms),
                healed: false,
            });
            black_hole = None;
        }
        if let Some(c) = &mut cut
            && !c.healed
            && Instant::now() >= c.heal_at
        {
            workers[c.worker].proxy.resume();
            c.healed = true;
        }
        // A competing `resume` or `run` while a process holds the lease: refused.
        if let Some(c) = competitor.as_ref().filter(|c| now >= scale(c.at_permille))
            && let Some(id) = run.clone()
            && let Some(h) = holder
            && cut.as_ref().is_none_or(|c| c.pid != h)
        {
            let kind = c.kind;
            let holder_child = if let Some((fc, _)) = foreground.as_mut().filter(|(fc, _)| fc.id() == h) {
                Some(fc)
            } else {
                workers
                    .iter_mut()
                    .filter_map(|w| w.child.as_mut())
                    .find(|wc| wc.id() == h)
            };
            if let Some(hc) = holder_child {
                competitor = None;
                out.competitors += 1;
                // Its queries need the server up: no restart meanwhile.
                let _up = pg.gate.read().unwrap_or_else(PoisonError::into_inner);
                compete(env, rb, dir, db, &sim.url, &id, kind, hc, rec, out)?;
            }
        }
        // The emulator restarted, as in the SQLite trials.
        if let Some(r) = restart.as_ref().filter(|r| now >= scale(r.at_permille)) {
            restart_sim(env, plan, r, sim, rec, out)?;
            restart = None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some((mut c, _)) = foreground.take() {
        // The run is over: the foreground process (if it still drove it) ends by itself.
        if wait_within(&mut c, Duration::from_secs(30))?.is_none() {
            stop(&mut c);
            out.violations.push(format!(
                "the `fogbook run` process {} did not end within 30 s of its run",
                c.id()
            ));
        }
    }
    Ok((run, end, cut))
}

#[cfg(test)]
mod tests {
    use super::first_fire;

    /// A schedule created in time fires at its second; one created past it next fires a year
    /// later, which `add_schedule` tells apart by the first fire time the command printed.
    #[test]
    fn the_first_fire_printed_tells_a_schedule_added_in_time_from_one_added_too_late() {
        let at = time::macros::datetime!(2026-12-02 13:12:28 UTC);
        let in_time =
            serde_json::json!({"kind": "schedule", "next": ["2026-12-02T13:12:28.000Z", "2027-12-02T13:12:28.000Z"]});
        assert_eq!(first_fire(&in_time).unwrap().unix_timestamp(), at.unix_timestamp());
        let late = serde_json::json!({"kind": "schedule", "next": ["2027-12-02T13:12:28.000Z"]});
        assert_ne!(first_fire(&late).unwrap().unix_timestamp(), at.unix_timestamp());
        assert!(
            first_fire(&serde_json::json!({"next": []})).is_err(),
            "no fire time is an error"
        );
    }
}
