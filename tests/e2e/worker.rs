//! Workers: detached runs, several workers sharing one database, takeover after a worker
//! is killed, and schedules fired by a worker. Each test runs on SQLite and on PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{code, fixture, stderr, stdout};
use crate::pg_worker_backends::{Backend, Db};

fn detach(sb: &Db, group: &str, pause: &str) -> String {
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

fn two_workers_share_twenty_runs_and_drive_each_exactly_once(backend: Backend) {
    let sb = Db::new(backend);
    let runs: Vec<String> = (0..20).map(|i| detach(&sb, &format!("g{i}"), "100ms")).collect();
    let args = ["worker", "--concurrency", "4", "--poll", "50ms", "--exit-when-idle"];
    let a = sb.spawn(&args, &[]);
    let b = sb.spawn(&args, &[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    for run in &runs {
        assert_eq!(sb.run_status(run), "succeeded", "{run}");
        let acquired = sb.count(&format!(
            "SELECT count(*) FROM events WHERE run_id = '{run}' AND kind IN ('lease.acquired', 'lease.taken_over')"
        ));
        let starts = sb.count(&format!(
            "SELECT count(*) FROM events WHERE run_id = '{run}' AND kind = 'step.started'"
        ));
        assert_eq!(acquired, 1, "{run} was driven by exactly one worker");
        assert_eq!(starts, 3, "{run}: each step started once");
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in sb.lines_of("effects.txt") {
        *seen.entry(line).or_default() += 1;
    }
    assert_eq!(seen.len(), 40);
    assert!(seen.values().all(|n| *n == 1), "an effect repeated: {seen:?}");
    sb.assert_audit_ok();
}

fn a_killed_worker_is_taken_over_and_no_effect_repeats(backend: Backend) {
    let sb = Db::new(backend);
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
    let data = sb
        .text(&format!(
            "SELECT data FROM events WHERE run_id = '{run}' AND kind = 'lease.taken_over'"
        ))
        .expect("the takeover is audited");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    let previous = data["previous_owner"].as_str().unwrap().to_owned();
    assert!(
        previous.contains(&format!(":{pid}:")) && previous.ends_with(":w1"),
        "{previous}"
    );
    assert_eq!(
        sb.lines_of("effects.txt"),
        [format!("{run} before"), format!("{run} after")]
    );
    sb.assert_audit_ok();
}

fn sigterm_releases_the_lease_for_the_next_worker(backend: Backend) {
    let sb = Db::new(backend);
    let run = detach(&sb, "g", "30s");
    let first = sb.spawn(&["worker", "--poll", "50ms"], &[]);
    sb.wait_for("the run to reach its wait", Duration::from_secs(10), |sb| {
        sb.step_status(&run, "pause") == "running"
    });
    kill(Pid::from_raw(first.id() as i32), Signal::SIGTERM).unwrap();
    let out = first.wait_with_output().unwrap();
    // A stop signal is how a service ends: exit 0, as `serve` and `sim serve` (README "Exit codes").
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Counts in words that fit them (not "1 drives"), and a stop note true of a worker.
    let err = stderr(&out);
    assert!(err.contains("worker stopped: 0 runs fired, 1 drive\n"), "{err}");
    assert!(
        err.contains("stopping: the runs this worker drives stop at their next safe point"),
        "{err}"
    );
    let owner = sb.text(&format!("SELECT lease_owner FROM runs WHERE id = '{run}'"));
    assert_eq!(owner, None, "released at once, no expiry to wait for");
    assert_eq!(sb.run_status(&run), "pending");
}

fn a_worker_fires_a_schedule_and_audits_it(backend: Backend) {
    let sb = Db::new(backend);
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
        sb.count("SELECT count(*) FROM runs WHERE schedule_name = 'every-second' AND status = 'succeeded'") >= 1
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
    sb.assert_audit_ok();
}

fn schedule_next_and_bad_schedules(backend: Backend) {
    let sb = Db::new(backend);
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
        match backend {
            // Nothing was checked against the database: the file was never created.
            Backend::Sqlite => assert!(!sb.exists(), "{bad:?} created the database"),
            // `schedule next` above opened the database (a PostgreSQL store's schema is
            // made when it is first opened): nothing was added to it.
            Backend::Postgres => assert_eq!(
                sb.count("SELECT count(*) FROM schedules") + sb.count("SELECT count(*) FROM events"),
                0,
                "{bad:?} changed the database"
            ),
        }
    }
}

/// Item 4 of the new user's report: a worker drives several runs at once, so its step and
/// window lines name their run, and a line says how each drive ended.
fn a_workers_lines_name_their_run_and_its_end(backend: Backend) {
    let sb = Db::new(backend);
    let first = detach(&sb, "g1", "10ms");
    let second = detach(&sb, "g2", "10ms");
    let out = sb.run(&["worker", "--poll", "50ms", "--exit-when-idle"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    for run in [&first, &second] {
        for line in [
            "✓ before completed",
            "▶ pause [wait]",
            "✓ after completed",
            "■ run succeeded",
        ] {
            assert!(err.contains(&format!("[{run}] {line}")), "{run} {line}:\n{err}");
        }
    }
    assert!(
        !err.lines().any(|l| l.starts_with('✓')),
        "a step line without its run:\n{err}"
    );
}

crate::on_both_backends_e2e!(
    a_workers_lines_name_their_run_and_its_end,
    two_workers_share_twenty_runs_and_drive_each_exactly_once,
    a_killed_worker_is_taken_over_and_no_effect_repeats,
    sigterm_releases_the_lease_for_the_next_worker,
    a_worker_fires_a_schedule_and_audits_it,
    schedule_next_and_bad_schedules,
);
