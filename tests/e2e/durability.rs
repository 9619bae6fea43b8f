//! Durable time, windows over a crash, and pinning of the runbook text.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr, stdout};

fn step_times(sb: &Sandbox, run: &str, step: &str) -> (i64, i64, serde_json::Value) {
    sb.sql()
        .query_row(
            "SELECT first_started_at, finished_at, output FROM steps WHERE run_id = ?1 AND step_id = ?2",
            [run, step],
            |r| {
                let out: String = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&out).unwrap()))
            },
        )
        .unwrap()
}

fn ms_of(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[test]
fn a_wait_killed_half_way_finishes_on_its_original_schedule() {
    let sb = Sandbox::new();
    let mut child = sb.spawn(&["run", &fixture("long-wait.yaml").display().to_string()], &[]);
    sb.wait_for("the wait to save its wake-up time", Duration::from_secs(10), |sb| {
        sb.sql()
            .query_row("SELECT progress FROM steps WHERE step_id = 'nap'", [], |r| {
                r.get::<_, Option<String>>(0)
            })
            .ok()
            .flatten()
            .is_some()
    });
    // Let it sleep for half of its 4 s, then kill it and resume at once.
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    let run = sb.last_run_id();
    let out = sb.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (started, finished, output) = step_times(&sb, &run, "nap");
    let wake_at = ms_of(output["wake_at"].as_str().unwrap());
    assert!(
        (wake_at - started - 4000).abs() < 200,
        "the wake-up time was computed once, at the start: started {started}, wake_at {wake_at}"
    );
    let took = finished - started;
    assert!(
        (4000..5500).contains(&took),
        "took {took} ms: a restarted wait would take 6000 or more"
    );
    assert_audit_ok(&sb);
}

#[test]
fn a_retry_back_off_continues_after_a_restart() {
    let sb = Sandbox::new();
    let marker = sb.path("marker");
    let mut child = sb.spawn(
        &[
            "run",
            &fixture("flaky.yaml").display().to_string(),
            "--set",
            &format!("marker={}", marker.display()),
        ],
        &[],
    );
    sb.wait_for("the retry to be scheduled", Duration::from_secs(10), |sb| {
        sb.sql()
            .query_row("SELECT status FROM steps WHERE step_id = 'flaky'", [], |r| {
                r.get::<_, String>(0)
            })
            .is_ok_and(|s| s == "retry_wait")
    });
    std::thread::sleep(Duration::from_secs(1));
    child.kill().unwrap();
    child.wait().unwrap();
    let run = sb.last_run_id();
    let next_attempt_at: i64 = sb
        .sql()
        .query_row(
            "SELECT CAST(json_extract(data, '$.next_attempt_at') AS TEXT) FROM events WHERE run_id = ?1 AND kind = 'step.retry_scheduled'",
            [&run],
            |r| r.get::<_, String>(0),
        )
        .map(|s| ms_of(&s))
        .unwrap();
    let out = sb.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let second_start: i64 = sb
        .sql()
        .query_row(
            "SELECT at FROM events WHERE run_id = ?1 AND kind = 'step.started' AND attempt = 2",
            [&run],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        second_start >= next_attempt_at,
        "attempt 2 started before its back-off ended"
    );
    assert!(
        second_start - next_attempt_at < 1000,
        "attempt 2 started {} ms after the stored deadline: the back-off was restarted",
        second_start - next_attempt_at
    );
    assert_audit_ok(&sb);
}

#[test]
fn a_window_stays_open_over_a_crash_and_counts_the_downtime() {
    let sb = Sandbox::new();
    let first = sb.run_env(
        &["run", &fixture("window.yaml").display().to_string()],
        &[("FOGBOOK_FAILPOINTS", "after-finish:delete-group")],
    );
    assert_eq!(first.status.signal(), Some(9));
    let run = sb.last_run_id();
    let status = sb.run(&["status", &run]);
    assert!(
        stdout(&status).contains("OPEN unprotected window"),
        "{}",
        stdout(&status)
    );

    // The engine is down for 3 s; the databases are unprotected all that time.
    std::thread::sleep(Duration::from_secs(3));
    let out = sb.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (opened, closed): (i64, i64) = sb
        .sql()
        .query_row(
            "SELECT opened_at, closed_at FROM windows WHERE run_id = ?1",
            [&run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        closed - opened >= 3000,
        "window lasted {} ms, downtime not counted",
        closed - opened
    );

    let report = sb.run(&["report", &run]);
    let text = stdout(&report);
    assert!(
        text.contains("unprotected") && text.contains("opened by delete-group"),
        "{text}"
    );
    assert!(text.contains("closed by create-group"), "{text}");
    let json = sb.run(&["report", &run, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert!(doc["windows"][0]["duration_ms"].as_i64().unwrap() >= 3000);
    assert_audit_ok(&sb);
}

#[test]
fn resume_uses_the_pinned_runbook_text_and_says_the_file_changed() {
    let sb = Sandbox::new();
    let text = std::fs::read_to_string(fixture("gated.yaml")).unwrap();
    let file = sb.write("gated.yaml", &text);
    let out_file = sb.path("out.txt");
    let first = sb.run(&[
        "run",
        &file.display().to_string(),
        "--set",
        &format!("out={}", out_file.display()),
    ]);
    assert_eq!(code(&first), 3, "waits for approval: {}", stderr(&first));
    let run = sb.last_run_id();
    assert!(
        stderr(&first).starts_with(&format!("run {run}")),
        "run id on the first line: {}",
        stderr(&first)
    );

    sb.write("gated.yaml", &text.replace("version-one", "version-two"));
    let approve = sb.run(&[
        "approve",
        &run,
        "confirm",
        "--by",
        "alice",
        "--comment",
        "change ticket 42",
    ]);
    assert_eq!(code(&approve), 0, "{}", stderr(&approve));
    let out = sb.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed since this run started"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.lines_of("out.txt"), vec!["version-one"]);

    let history = sb.run(&["history", &run, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let kinds: Vec<&str> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"runbook.file_changed"), "{kinds:?}");
    let approved = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "step.approved")
        .unwrap();
    assert_eq!(approved["data"]["by"], "alice");
    assert_eq!(approved["data"]["comment"], "change ticket 42");
    assert_audit_ok(&sb);
}
