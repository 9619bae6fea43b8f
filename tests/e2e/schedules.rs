//! Schedules at 03:00: skip reasons that name the real cause, `schedule next` marking fire
//! times outside the maintenance window, times in the schedule's own zone, and worker
//! progress lines that name the run, its runbook and its schedule.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{code, fixture, stderr, stdout};
use crate::pg_worker_backends::{Backend, Db};

fn add(sb: &Db, name: &str, cron: &str, extra: &[&str]) {
    let job = fixture("job.yaml").display().to_string();
    let out_file = sb.path("effects.txt").display().to_string();
    let set = format!("out={out_file}");
    let mut args = vec![
        "schedule",
        "add",
        "--name",
        name,
        "--cron",
        cron,
        &job,
        "--set",
        &set,
        "--set",
        "pause=10ms",
    ];
    args.extend_from_slice(extra);
    let out = sb.run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

fn count(sb: &Db, sql: &str) -> i64 {
    sb.count(sql)
}

/// A UTC window that is closed now: it starts two hours from now.
fn closed_window() -> String {
    let hour = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 3600 % 24;
    format!("{:02}:00-{:02}:00 UTC", (hour + 2) % 24, (hour + 3) % 24)
}

fn a_fire_skipped_for_a_closed_window_blames_the_window_not_the_worker(backend: Backend) {
    let sb = Db::new(backend);
    let window = closed_window();
    add(
        &sb,
        "nightly",
        "* * * * * *",
        &["--window", &window, "--catch-up", "1s"],
    );
    let worker = sb.spawn(&["worker", "--poll", "100ms"], &[]);
    sb.wait_for("a fire to be skipped", Duration::from_secs(15), |sb| {
        count(sb, "SELECT count(*) FROM events WHERE kind = 'schedule.skipped'") >= 1
    });
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    let out = worker.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("schedule nightly: skipped fire time") && err.contains("maintenance window"),
        "the worker says what it skipped and why: {err}"
    );
    assert_eq!(
        count(&sb, "SELECT count(*) FROM runs"),
        0,
        "nothing ran outside the window"
    );
    let show = sb.run(&["schedule", "show", "nightly"]);
    assert_eq!(code(&show), 0, "{}", stderr(&show));
    let text = stdout(&show);
    let skipped: Vec<&str> = text.lines().filter(|l| l.contains("skipped fire time")).collect();
    assert!(!skipped.is_empty(), "{text}");
    for line in &skipped {
        assert!(
            line.contains(&format!(
                "the maintenance window ({window}) was closed at the fire time"
            )),
            "{line}"
        );
        assert!(!line.contains("no worker"), "a worker ran all along: {line}");
    }
    sb.assert_audit_ok();
}

fn worker_lines_name_the_run_its_runbook_and_its_schedule(backend: Backend) {
    let sb = Db::new(backend);
    add(&sb, "every-second", "* * * * * *", &[]);
    let worker = sb.spawn(&["worker", "--poll", "100ms"], &[]);
    sb.wait_for("a scheduled run to succeed", Duration::from_secs(15), |sb| {
        count(sb, "SELECT count(*) FROM runs WHERE status = 'succeeded'") >= 1
    });
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    let out = worker.wait_with_output().unwrap();
    let err = stderr(&out);
    let run = sb
        .text("SELECT id FROM runs WHERE status = 'succeeded' ORDER BY created_at LIMIT 1")
        .unwrap();
    let fired = "schedule every-second: fired ";
    assert!(
        err.lines()
            .any(|l| l.contains(fired) && l.contains(&format!("as run {run} (runbook job)"))),
        "{err}"
    );
    assert!(
        err.contains(&format!("driving run {run} (runbook job, schedule every-second)")),
        "{err}"
    );
}

fn schedule_next_marks_fire_times_outside_the_window(backend: Backend) {
    let sb = Db::new(backend);
    add(
        &sb,
        "hourly",
        "0 * * * *",
        &["--window", "01:00-05:00 UTC", "--catch-up", "1h"],
    );
    let next = sb.run(&["schedule", "next", "hourly", "-n", "24"]);
    assert_eq!(code(&next), 0, "{}", stderr(&next));
    let text = stdout(&next);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 24, "{text}");
    for line in &lines {
        let hour = &line[11..13];
        match hour {
            "01" | "02" | "03" | "04" => assert!(line.ends_with(":00:00.000Z"), "inside: {line}"),
            "00" => assert!(
                line.contains("(outside window 01:00-05:00 UTC: waits until it opens at ")
                    && line.contains("T01:00:00.000Z"),
                "{line}"
            ),
            _ => assert!(
                line.contains("(outside window 01:00-05:00 UTC: will be skipped"),
                "{line}"
            ),
        }
    }
    let show = sb.run(&["schedule", "show", "hourly"]);
    let text = stdout(&show);
    assert!(text.contains("outside window 01:00-05:00 UTC"), "{text}");
    let json = sb.run(&["schedule", "next", "hourly", "-n", "24", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let marks = doc["outside_window"].as_array().unwrap();
    assert_eq!(marks.iter().filter(|m| m.is_null()).count(), 4, "{doc}");
}

fn show_and_next_can_use_the_schedules_own_zone(backend: Backend) {
    let sb = Db::new(backend);
    add(&sb, "amsterdam", "0 2 * * *", &["--tz", "Europe/Amsterdam"]);
    let utc = sb.run(&["schedule", "next", "amsterdam", "-n", "2"]);
    assert!(
        stdout(&utc).lines().all(|l| l.ends_with(":00:00.000Z")),
        "{}",
        stdout(&utc)
    );
    let local = sb.run(&["schedule", "next", "amsterdam", "-n", "2", "--local"]);
    assert_eq!(code(&local), 0, "{}", stderr(&local));
    let text = stdout(&local);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in &lines {
        // 02:00 local, with Amsterdam's offset (+01:00 in winter, +02:00 in summer).
        assert!(
            l.contains("T02:00:00.000+01:00") || l.contains("T02:00:00.000+02:00"),
            "{l}"
        );
    }
    let expr = sb.run(&[
        "schedule",
        "next",
        "30 4 * * *",
        "--tz",
        "America/New_York",
        "--local",
        "-n",
        "1",
    ]);
    let text = stdout(&expr);
    assert!(
        text.contains("T04:30:00.000-05:00") || text.contains("T04:30:00.000-04:00"),
        "{text}"
    );
    let show = sb.run(&["schedule", "show", "amsterdam", "--local"]);
    assert_eq!(code(&show), 0, "{}", stderr(&show));
    let text = stdout(&show);
    assert!(text.contains("T02:00:00.000+0"), "{text}");
    assert!(!text.contains(".000Z"), "every time in the schedule's zone: {text}");
}

crate::on_both_backends_e2e!(
    a_fire_skipped_for_a_closed_window_blames_the_window_not_the_worker,
    worker_lines_name_the_run_its_runbook_and_its_schedule,
    schedule_next_marks_fire_times_outside_the_window,
    show_and_next_can_use_the_schedules_own_zone,
);
