//! `status` and `runs` tell running (a live driver renewing its lease) from stalled (the
//! holder's process is gone or its lease expired), show what each run waits for, and say
//! when `runs` truncates.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Sandbox, code, fixture, stderr, stdout};

fn status_of(sb: &Sandbox, run: &str) -> String {
    let out = sb.run(&["status", run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(ok.success());
}

/// A driver that stops renewing (SIGSTOP) shows as stalled within one lease period; one
/// that is killed shows as stalled at once; before that, as running with its driver.
#[test]
fn a_driver_that_stops_shows_as_stalled_within_one_lease_period() {
    let sb = Sandbox::new();
    let ttl = Duration::from_secs(2);
    let long_wait = fixture("long-wait.yaml").display().to_string();
    let mut child = sb.spawn(
        &["run", &long_wait, "--set", "duration=120s"],
        &[("FOGBOOK_LEASE_TTL", "2s")],
    );
    sb.wait_for("the wait step to run", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row("SELECT status FROM steps WHERE step_id = 'nap'", [], |r| {
                r.get::<_, String>(0)
            })
            .is_ok_and(|s| s == "running")
    });
    let run = sb.last_run_id();
    let st = status_of(&sb, &run);
    assert!(st.contains("status: running\n"), "{st}");
    assert!(st.contains("driven by: "), "{st}");
    assert!(!st.contains("stalled"), "{st}");
    let runs = stdout(&sb.run(&["runs"]));
    assert!(
        runs.contains("running") && runs.contains("nap") && runs.contains("a timer"),
        "{runs}"
    );

    // Stopped: alive but not renewing. Stalled once the lease expires, within one period.
    signal(child.id(), "-STOP");
    let stopped = Instant::now();
    sb.wait_for("status to say stalled", Duration::from_secs(20), |sb| {
        status_of(sb, &run).contains("status: stalled\n")
    });
    let took = stopped.elapsed();
    assert!(
        took <= ttl + Duration::from_millis(1500),
        "stalled after {took:?}, lease {ttl:?}"
    );
    let st = status_of(&sb, &run);
    assert!(st.contains("nobody drives this run since"), "{st}");
    assert!(st.contains(&format!("`fogbook resume {run}`")), "{st}");
    assert!(st.contains("expired"), "{st}");
    assert!(stdout(&sb.run(&["runs"])).contains("stalled"));

    // Killed: its process is gone.
    child.kill().unwrap();
    child.wait().unwrap();
    let st = status_of(&sb, &run);
    assert!(st.contains("status: stalled\n") && st.contains("has exited"), "{st}");
}

/// A killed rehearsal with its unprotected window open is stalled loudly, first line first,
/// naming the databases' instance and the way out.
#[test]
fn a_stalled_run_with_an_open_unprotected_window_is_loud() {
    let sb = Sandbox::new();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = sb
        .cmd()
        .current_dir(&root)
        .env("FOGBOOK_FAILPOINTS", "after-progress:create-group")
        .args([
            "run",
            "runbooks/change-primary-region.yaml",
            "--params",
            "examples/change-primary-region.yaml",
            "--sim",
            "--auto-approve",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed: {}", stderr(&out));
    let run = sb.last_run_id();
    let st = status_of(&sb, &run);
    let first = st.lines().next().unwrap();
    assert!(first.contains("STALLED") && first.contains("UNPROTECTED"), "{st}");
    assert!(
        first.contains("mi-fog-b") && first.contains(&format!("fogbook resume {run}")),
        "{st}"
    );
    let runs = stdout(&sb.run(&["runs"]));
    let row = runs.lines().find(|l| l.starts_with(&run)).unwrap();
    assert!(
        row.contains("stalled") && row.contains("create-group") && row.contains("unprotected"),
        "{row}"
    );
}

/// `runs --status waiting` lists every run waiting for an approval, however it is driven
/// (exited with code 3, or held by a foreground `--wait`); `runs` says when it truncates.
#[test]
fn runs_lists_every_approval_wait_and_says_when_it_truncates() {
    let sb = Sandbox::new();
    let gated = fixture("gated.yaml").display().to_string();
    let out_file = sb.path("out.txt").display().to_string();
    let out = sb.run(&["run", &gated, "--set", &format!("out={out_file}"), "--set", "group=a"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let exited = sb.last_run_id();
    let mut fg = sb.spawn(
        &[
            "run",
            &gated,
            "--set",
            &format!("out={out_file}"),
            "--set",
            "group=b",
            "--wait",
        ],
        &[],
    );
    sb.wait_for("the second run", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row(
                "SELECT count(*) FROM steps WHERE step_id = 'confirm' AND status = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n == 2)
    });
    let foreground = sb.last_run_id();
    assert_ne!(exited, foreground);
    let out = sb.run(&["runs", "--status", "waiting"]);
    let text = stdout(&out);
    for run in [&exited, &foreground] {
        let row = text.lines().find(|l| l.starts_with(run.as_str()));
        assert!(row.is_some_and(|r| r.contains("approval")), "{run} in: {text}");
    }

    let out = sb.run(&["runs", "--limit", "1"]);
    assert_eq!(
        stdout(&out).lines().count(),
        2,
        "a header and one run: {}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("--limit"), "says it truncated: {}", stderr(&out));
    let out = sb.run(&["runs", "--limit", "2"]);
    assert!(!stderr(&out).contains("--limit"), "{}", stderr(&out));
    fg.kill().unwrap();
    fg.wait().unwrap();
}

/// `status --watch` follows a run until it is over: (not a terminal) a new document each
/// time it changes, the last one with the final status, then exit 0.
#[test]
fn status_watch_follows_a_run_to_its_end() {
    let sb = Sandbox::new();
    let long_wait = fixture("long-wait.yaml").display().to_string();
    let driver = sb.spawn(&["run", &long_wait, "--set", "duration=2s"], &[]);
    sb.wait_for("the wait step to run", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row("SELECT status FROM steps WHERE step_id = 'nap'", [], |r| {
                r.get::<_, String>(0)
            })
            .is_ok_and(|s| s == "running")
    });
    let run = sb.last_run_id();
    let watch = sb.spawn(&["status", "--watch", &run], &[]).wait_with_output().unwrap();
    assert_eq!(code(&watch), 0, "{}", stderr(&watch));
    let text = stdout(&watch);
    assert!(text.matches(&format!("run {run}")).count() >= 2, "refreshed: {text}");
    let last = text.rsplit(&format!("run {run}")).next().unwrap();
    assert!(last.contains("status: succeeded"), "{text}");
    assert!(text.contains("status: running"), "{text}");
    driver.wait_with_output().unwrap();
}

/// Every `--format json` document gives times as RFC 3339 (the milliseconds beside them),
/// and an error under `--format json` is a JSON document on stdout, exit code unchanged.
#[test]
fn json_output_uses_rfc3339_times_and_json_errors() {
    let sb = Sandbox::new();
    let long_wait = fixture("long-wait.yaml").display().to_string();
    let out = sb.run(&["run", &long_wait, "--set", "duration=10ms"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = sb.last_run_id();
    let rfc3339 = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok())
    };
    let doc = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = sb.run(&all);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let runs = doc(&["runs"]);
    let r = &runs["runs"][0];
    assert!(rfc3339(&r["created_at"]) && r["created_at_ms"].is_i64(), "{r}");
    assert!(rfc3339(&r["finished_at"]), "{r}");
    let status = doc(&["status", &run]);
    assert!(rfc3339(&status["run"]["updated_at"]), "{status}");
    assert!(rfc3339(&status["steps"][0]["started_at"]), "{status}");
    let history = doc(&["history", &run]);
    assert!(rfc3339(&history["events"][0]["at"]), "{history}");

    let out = sb.run(&["--format", "json", "status", "no-such-run"]);
    assert_eq!(code(&out), 2);
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert_eq!(err["kind"], "error", "{err}");
    assert!(err["error"].as_str().unwrap().contains("no-such-run"), "{err}");
}

/// A step id longer than the steps table's usual column does not push its status out of
/// line: in `status` and in the final report, every step's status starts in one column.
#[test]
fn long_step_ids_keep_the_steps_table_aligned() {
    let sb = Sandbox::new();
    let file = fixture("long-ids.yaml").display().to_string();
    let out = sb.run(&["run", &file]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = sb.last_run_id();
    let ids = ["a", "approve-failover-to-the-new-primary-region-now", "b"];
    for (what, text) in [
        ("status", status_of(&sb, &run)),
        ("report", stdout(&sb.run(&["report", &run]))),
    ] {
        let columns: Vec<usize> = ids
            .iter()
            .map(|id| {
                let line = text
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{id} ")))
                    .unwrap_or_else(|| panic!("{what}: no row for `{id}`:\n{text}"));
                line.find("completed").unwrap_or_else(|| panic!("{what}: `{line}`"))
            })
            .collect();
        assert!(
            columns.windows(2).all(|w| w[0] == w[1]),
            "{what}: the status column moves ({columns:?}):\n{text}"
        );
    }
}

/// A run nobody drives that is not stalled (created with `--detach`, or stopped at a safe
/// point by Ctrl-C) says so, and says how to continue it.
#[test]
fn a_run_nobody_drives_says_how_to_continue_it() {
    let sb = Sandbox::new();
    let file = fixture("long-ids.yaml").display().to_string();
    let out = sb.run(&["run", &file, "--detach"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let detached = sb.last_run_id();
    let st = status_of(&sb, &detached);
    assert!(
        st.contains(&format!(
            "not driven: it has not started; continue it: `fogbook resume {detached}`"
        )),
        "{st}"
    );

    let long_wait = fixture("long-wait.yaml").display().to_string();
    let child = sb.spawn(&["run", &long_wait, "--set", "duration=120s"], &[]);
    sb.wait_for("the wait step to run", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row("SELECT status FROM steps WHERE step_id = 'nap'", [], |r| {
                r.get::<_, String>(0)
            })
            .is_ok_and(|s| s == "running")
    });
    signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let interrupted = sb.last_run_id();
    let st = status_of(&sb, &interrupted);
    assert!(
        st.contains(&format!(
            "not driven: it stopped at a safe point; continue it: `fogbook resume {interrupted}`"
        )),
        "{st}"
    );
}
