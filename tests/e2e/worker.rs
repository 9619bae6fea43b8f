//! Workers: detached runs, several workers sharing one database, takeover after a worker
//! is killed, and schedules fired by a worker.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr, stdout};

fn detach(sb: &Sandbox, group: &str, pause: &str) -> String {
    let out = sb.run(&[
        "run",
        &fixture("job.yaml").display().to_string(),
        "--detach",
        "--set",
        &format!("out={}", sb.path("effects.txt").display()),
        "--set",
        &format!("group={group}"),
        "--set",
        &format!("pause={pause}"),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn two_workers_share_twenty_runs_and_drive_each_exactly_once() {
    let sb = Sandbox::new();
    let runs: Vec<String> = (0..20).map(|i| detach(&sb, &format!("g{i}"), "100ms")).collect();
    let args = ["worker", "--concurrency", "4", "--poll", "50ms", "--exit-when-idle"];
    let a = sb.spawn(&args, &[]);
    let b = sb.spawn(&args, &[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    let conn = sb.sql();
    for run in &runs {
        assert_eq!(sb.run_status(run), "succeeded", "{run}");
        let (acquired, starts): (i64, i64) = conn
            .query_row(
                "SELECT sum(kind IN ('lease.acquired', 'lease.taken_over')), sum(kind = 'step.started') FROM events WHERE run_id = ?1",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(acquired, 1, "{run} was driven by exactly one worker");
        assert_eq!(starts, 3, "{run}: each step started once");
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in sb.lines_of("effects.txt") {
        *seen.entry(line).or_default() += 1;
    }
    assert_eq!(seen.len(), 40);
    assert!(seen.values().all(|n| *n == 1), "an effect repeated: {seen:?}");
    assert_audit_ok(&sb);
}

#[test]
fn a_killed_worker_is_taken_over_and_no_effect_repeats() {
    let sb = Sandbox::new();
    let run = detach(&sb, "g", "2s");
    let first = sb.spawn(&["worker", "--poll", "50ms", "--exit-when-idle", "--name", "w1"], &[]);
    sb.wait_for("the run to reach its wait", Duration::from_secs(10), |sb| {
        sb.step_status(&run, "pause") == "running"
    });
    let pid = first.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    first.wait_with_output().unwrap();
    let second = sb.run(&["worker", "--poll", "50ms", "--exit-when-idle", "--name", "w2"]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert_eq!(sb.run_status(&run), "succeeded");
    let previous: String = sb
        .sql()
        .query_row(
            "SELECT json_extract(data, '$.previous_owner') FROM events WHERE run_id = ?1 AND kind = 'lease.taken_over'",
            [&run],
            |r| r.get(0),
        )
        .expect("the takeover is audited");
    assert!(
        previous.contains(&format!(":{pid}:")) && previous.ends_with(":w1"),
        "{previous}"
    );
    assert_eq!(
        sb.lines_of("effects.txt"),
        [format!("{run} before"), format!("{run} after")]
    );
    assert_audit_ok(&sb);
}

#[test]
fn sigterm_releases_the_lease_for_the_next_worker() {
    let sb = Sandbox::new();
    let run = detach(&sb, "g", "30s");
    let first = sb.spawn(&["worker", "--poll", "50ms"], &[]);
    sb.wait_for("the run to reach its wait", Duration::from_secs(10), |sb| {
        sb.step_status(&run, "pause") == "running"
    });
    kill(Pid::from_raw(first.id() as i32), Signal::SIGTERM).unwrap();
    let out = first.wait_with_output().unwrap();
    // A stop signal is how a service ends: exit 0, as `serve` and `sim serve` (README "Exit codes").
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let owner: Option<String> = sb
        .sql()
        .query_row("SELECT lease_owner FROM runs WHERE id = ?1", [&run], |r| r.get(0))
        .unwrap();
    assert_eq!(owner, None, "released at once, no expiry to wait for");
    assert_eq!(sb.run_status(&run), "pending");
}

#[test]
fn a_worker_fires_a_schedule_and_audits_it() {
    let sb = Sandbox::new();
    let out_file = sb.path("effects.txt").display().to_string();
    let add = sb.run(&[
        "schedule",
        "add",
        "--name",
        "every-second",
        "--cron",
        "* * * * * *",
        &fixture("job.yaml").display().to_string(),
        "--set",
        &format!("out={out_file}"),
        "--set",
        "pause=10ms",
    ]);
    assert_eq!(code(&add), 0, "{}", stderr(&add));
    let worker = sb.spawn(&["worker", "--poll", "100ms"], &[]);
    sb.wait_for("a scheduled run to succeed", Duration::from_secs(15), |sb| {
        sb.sql()
            .query_row(
                "SELECT count(*) FROM runs WHERE schedule_name = 'every-second' AND status = 'succeeded'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            >= 1
    });
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    worker.wait_with_output().unwrap();
    let show = sb.run(&["schedule", "show", "every-second", "--format", "json"]);
    assert_eq!(code(&show), 0, "{}", stderr(&show));
    let doc: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let kinds: Vec<&str> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "schedule.created");
    assert!(kinds.contains(&"schedule.fired"), "{kinds:?}");
    let pause = sb.run(&["schedule", "pause", "every-second"]);
    assert_eq!(code(&pause), 0);
    let list = sb.run(&["schedule", "list"]);
    assert!(stdout(&list).contains("paused"), "{}", stdout(&list));
    assert_audit_ok(&sb);
}

#[test]
fn schedule_next_and_bad_schedules() {
    let sb = Sandbox::new();
    let next = sb.run(&["schedule", "next", "0 2 * * 6", "--tz", "Europe/Amsterdam", "-n", "3"]);
    assert_eq!(code(&next), 0, "{}", stderr(&next));
    let text = stdout(&next);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.ends_with(":00:00.000Z")), "{lines:?}");
    let job = fixture("job.yaml").display().to_string();
    for bad in [
        vec![
            "schedule",
            "add",
            "--name",
            "x",
            "--cron",
            "61 * * * *",
            &job,
            "--set",
            "out=o",
        ],
        vec![
            "schedule",
            "add",
            "--name",
            "x",
            "--cron",
            "0 2 * * *",
            "--tz",
            "Mars/Base",
            &job,
            "--set",
            "out=o",
        ],
        vec![
            "schedule",
            "add",
            "--name",
            "x",
            "--cron",
            "0 2 * * *",
            "--window",
            "25:00-01:00",
            &job,
            "--set",
            "out=o",
        ],
        vec!["schedule", "add", "--name", "x", "--cron", "0 2 * * *", &job],
    ] {
        let out = sb.run(&bad);
        assert_eq!(code(&out), 2, "{bad:?}: {}", stderr(&out));
        assert!(!sb.db().exists(), "{bad:?} created the database");
    }
}
