//! A schedule fires a fleet, and the fleet keeps to the schedule's maintenance window
//! (issue 18): no target starts outside it, the running ones finish, the fleet waits and
//! says until when, and a worker resumes it once the window opens.
//!
//! Time is stepped, not waited for: every process of the test reads the system clock shifted
//! by the offset in the file `FOGBOOK_TEST_CLOCK_FILE` names. What ran, and in which order,
//! is judged from the targets' own effect lines.

use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, assert_audit_ok, code, stderr, stdout};

const DAY_MS: i64 = 86_400_000;

/// A target writes `NAME start`, waits for its gate file (the test opens it), then writes
/// `NAME end`.
const GATED_TARGET: &str = r#"runbook: gated-target
version: 1
params:
  name: { type: string }
  out: { type: string }
  gate: { type: string }
locks: ["fog/${{ params.name }}"]
steps:
  - id: start
    uses: command
    with:
      program: sh
      args: ["-c", "echo \"$NAME start\" >> \"$OUT\""]
      env: { OUT: "${{ params.out }}", NAME: "${{ params.name }}" }
      on_ambiguous: rerun
  - id: gate
    uses: command
    with:
      program: sh
      args: ["-c", "while [ ! -e \"$GATE\" ]; do sleep 0.02; done"]
      env: { GATE: "${{ params.gate }}" }
      on_ambiguous: rerun
  - id: end
    uses: command
    with:
      program: sh
      args: ["-c", "echo \"$NAME end\" >> \"$OUT\""]
      env: { OUT: "${{ params.out }}", NAME: "${{ params.name }}" }
      on_ambiguous: rerun
"#;

fn real_now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Steps every process's clock so that it reads `at` (ms since the epoch) now.
fn set_clock(sb: &Sandbox, at: i64) {
    let offset = at - real_now_ms();
    // Written whole, then renamed: a process never reads half an offset.
    std::fs::write(sb.path("clock.tmp"), offset.to_string()).unwrap();
    std::fs::rename(sb.path("clock.tmp"), sb.path("clock")).unwrap();
}

fn fleet_status(sb: &Sandbox) -> (String, Option<String>) {
    sb.sql()
        .query_row("SELECT status, reason FROM fleets", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap_or_else(|_| ("none".to_owned(), None))
}

fn lines(sb: &Sandbox) -> Vec<String> {
    sb.lines_of("effects.txt")
}

fn stop(worker: Child) -> String {
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    stderr(&worker.wait_with_output().unwrap())
}

#[test]
fn a_scheduled_fleet_starts_no_target_outside_the_window_and_resumes_when_it_opens() {
    let sb = Sandbox::new();
    let clock = sb.path("clock").display().to_string();
    // Long leases: the clock jumps by hours and a day here, and a lease judged on the
    // stepped wall clock must not run out under a live driver.
    let env = [
        ("FOGBOOK_TEST_CLOCK_FILE", clock.as_str()),
        ("FOGBOOK_LEASE_TTL", "96h"),
    ];
    sb.write("gated-target.yaml", GATED_TARGET);
    let out = sb.path("effects.txt").display().to_string();
    let gate = sb.path("gate-").display().to_string();
    sb.write(
        "fleet.yaml",
        &format!(
            "fleet: nightly-move
runbook: gated-target.yaml
params: {{ out: \"{out}\" }}
targets:
  over: [t0, t1, t2, t3]
  name: \"${{{{ item }}}}\"
  params: {{ name: \"${{{{ item }}}}\", gate: \"{gate}${{{{ item }}}}\" }}
rate:
  max_concurrency: 2
  max_errors: 1
"
        ),
    );
    // Tomorrow, 09:59:58 UTC: the schedule's first fire time is 10:00:00, inside its window.
    let day = (real_now_ms() / DAY_MS + 1) * DAY_MS;
    let at = |h: i64, m: i64, s: i64| day + ((h * 60 + m) * 60 + s) * 1000;
    set_clock(&sb, at(9, 59, 58));
    let add = sb.run_env(
        &[
            "schedule",
            "add",
            "--name",
            "nightly",
            "--cron",
            "0 0 10 * * *",
            "fleet.yaml",
            "--window",
            "10:00-11:00 UTC",
            "--catch-up",
            "1h",
        ],
        &env,
    );
    assert_eq!(code(&add), 0, "{}", stderr(&add));

    let worker = sb.spawn(&["worker", "--poll", "50ms", "--concurrency", "4"], &env);
    sb.wait_for(
        "the schedule to fire the fleet and two targets to start",
        Duration::from_secs(30),
        |sb| lines(sb).len() >= 2,
    );
    let started = lines(&sb);
    assert_eq!(
        started.iter().filter(|l| l.ends_with("start")).count(),
        2,
        "max_concurrency 2: {started:?}"
    );
    let by: String = sb
        .sql()
        .query_row("SELECT json_extract(created_by, '$.schedule') FROM fleets", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(by, "nightly", "the schedule created the fleet");

    // The window closes while both run: they finish, nothing else starts, the fleet waits
    // and says until when.
    set_clock(&sb, at(11, 0, 5));
    let running: Vec<String> = started
        .iter()
        .map(|l| l.trim_end_matches(" start").to_owned())
        .collect();
    for t in &running {
        std::fs::write(format!("{gate}{t}"), "").unwrap();
    }
    sb.wait_for("the fleet to wait for its window", Duration::from_secs(30), |sb| {
        fleet_status(sb).0 == "waiting"
    });
    let (_, reason) = fleet_status(&sb);
    let reason = reason.unwrap_or_default();
    let next_open = fogbook_state::format_ms(at(10, 0, 0) + DAY_MS);
    assert!(
        reason.contains("outside its maintenance window (10:00-11:00 UTC)") && reason.contains(&next_open),
        "the fleet says why it waits and until when ({next_open}): {reason}"
    );
    let after_close = lines(&sb);
    assert_eq!(
        after_close.len(),
        4,
        "the two running targets finished, no other started: {after_close:?}"
    );
    for t in &running {
        assert!(after_close.contains(&format!("{t} end")), "{after_close:?}");
    }
    let fleet_id: String = sb.sql().query_row("SELECT id FROM fleets", [], |r| r.get(0)).unwrap();
    let status = sb.run_env(&["fleet", "status", &fleet_id], &env);
    assert!(
        stdout(&status).contains("outside its maintenance window"),
        "{}{}",
        stdout(&status),
        stderr(&status)
    );

    // Later that day the window is still closed: the worker leaves the fleet alone.
    set_clock(&sb, at(23, 0, 0));
    let rest: Vec<&str> = ["t0", "t1", "t2", "t3"]
        .into_iter()
        .filter(|t| !running.iter().any(|r| r == t))
        .collect();
    for t in &rest {
        std::fs::write(format!("{gate}{t}"), "").unwrap();
    }
    let pickups_before: i64 = sb
        .sql()
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'fleet.lease_acquired'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // The next day's window opens: the worker resumes the fleet and the rest run.
    set_clock(&sb, at(10, 0, 5) + DAY_MS);
    sb.wait_for("the fleet to succeed", Duration::from_secs(30), |sb| {
        fleet_status(sb).0 == "succeeded"
    });
    let err = stop(worker);
    let all = lines(&sb);
    assert_eq!(all.len(), 8, "{all:?}");
    let first_rest = all.iter().position(|l| rest.iter().any(|t| l.starts_with(t))).unwrap();
    assert_eq!(
        first_rest, 4,
        "no target started before the window opened again: {all:?}"
    );
    let pickups_after: i64 = sb
        .sql()
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'fleet.lease_acquired'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        pickups_after,
        pickups_before + 1,
        "one pick-up, once the window was open: {err}"
    );
    // Every target's run was created inside a window (on the stepped clock).
    let outside: i64 = sb
        .sql()
        .query_row(
            "SELECT count(*) FROM runs WHERE ((created_at % 86400000) < 36000000 OR (created_at % 86400000) >= 39600000)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(outside, 0, "a target started outside 10:00-11:00 UTC");
    assert_audit_ok(&sb);
}
