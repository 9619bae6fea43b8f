//! Stopping: SIGTERM and Ctrl-C stop at a safe point, also when sent to the whole process
//! group during a `command` step or right after the run is created; `cancel` stops a driven
//! run; an approval timeout is durable; auto-approval is audited as such.

use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr, stdout};

fn wait_started(sb: &Sandbox) {
    sb.wait_for("the wait step to start", Duration::from_secs(10), |sb| {
        sb.sql()
            .query_row("SELECT progress FROM steps WHERE step_id = 'nap'", [], |r| {
                r.get::<_, Option<String>>(0)
            })
            .ok()
            .flatten()
            .is_some()
    });
}

#[test]
fn sigterm_and_ctrl_c_stop_at_a_safe_point_and_the_run_resumes() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let sb = Sandbox::new();
        let child = sb.spawn(
            &[
                "run",
                &fixture("long-wait.yaml").display().to_string(),
                "--set",
                "duration=3s",
            ],
            &[],
        );
        wait_started(&sb);
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 130, "{signal}: {}", stderr(&out));
        assert!(stderr(&out).contains("fogbook resume"), "{signal}: {}", stderr(&out));
        let run = sb.last_run_id();
        assert_eq!(
            sb.run_status(&run),
            "pending",
            "{signal}: lease released, resumable by anyone"
        );
        assert_eq!(sb.step_status(&run, "nap"), "running");
        let resumed = sb.run(&["resume", &run]);
        assert_eq!(code(&resumed), 0, "{signal}: {}", stderr(&resumed));
        assert_audit_ok(&sb);
    }
}

#[test]
fn cancel_stops_a_run_driven_by_another_process() {
    let sb = Sandbox::new();
    let child = sb.spawn(
        &[
            "--lease-ttl",
            "600ms",
            "run",
            &fixture("long-wait.yaml").display().to_string(),
            "--set",
            "duration=30s",
        ],
        &[],
    );
    wait_started(&sb);
    let run = sb.last_run_id();
    let cancel = sb.run(&["cancel", &run, "--by", "carol"]);
    assert_eq!(code(&cancel), 0, "{}", stderr(&cancel));
    assert!(stdout(&cancel).contains("next safe point"), "{}", stdout(&cancel));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert_eq!(sb.run_status(&run), "cancelled");
    let by: String = sb
        .sql()
        .query_row(
            "SELECT json_extract(data, '$.by') FROM events WHERE kind = 'run.cancel_requested'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by, "carol");
    assert_audit_ok(&sb);
}

#[test]
fn an_approval_timeout_is_durable() {
    let sb = Sandbox::new();
    let first = sb.run(&["run", &fixture("approval-timeout.yaml").display().to_string()]);
    assert_eq!(code(&first), 3, "{}", stderr(&first));
    assert!(stderr(&first).contains("fogbook approve"), "{}", stderr(&first));
    let run = sb.last_run_id();
    // Nobody approves; by the time someone resumes, the stored deadline has passed.
    sb.wait_for("the approval deadline", Duration::from_secs(10), |_| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let started: i64 = sb
            .sql()
            .query_row("SELECT started_at FROM steps WHERE step_id = 'confirm'", [], |r| {
                r.get(0)
            })
            .unwrap();
        t > started + 1100
    });
    let out = sb.run(&["resume", &run]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("ApprovalTimedOut"), "{}", stderr(&out));
    assert_audit_ok(&sb);
}

#[test]
fn auto_approval_is_recorded_as_such() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "run",
        &fixture("approval-timeout.yaml").display().to_string(),
        "--auto-approve",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (by, auto): (String, bool) = sb
        .sql()
        .query_row(
            "SELECT json_extract(data, '$.by'), json_extract(data, '$.auto') FROM events WHERE kind = 'step.approved'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((by.as_str(), auto), ("auto-approve", true));
    let created: bool = sb
        .sql()
        .query_row(
            "SELECT json_extract(data, '$.auto_approve') FROM events WHERE kind = 'run.created'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(created);
}

#[test]
fn a_failed_attempt_is_retried_in_the_same_process_with_its_input() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "run",
        &fixture("retry-then-step.yaml").display().to_string(),
        "--set",
        &format!("marker={}", sb.path("marker").display()),
        "--set",
        &format!("out={}", sb.path("out.txt").display()),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = sb.last_run_id();
    let inputs: Vec<String> = {
        let conn = sb.sql();
        let mut stmt = conn
            .prepare("SELECT data FROM events WHERE run_id = ?1 AND kind = 'step.started' AND step_id = 'flaky' ORDER BY seq")
            .unwrap();
        stmt.query_map([&run], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(inputs.len(), 2, "two attempts");
    assert_eq!(inputs[0], inputs[1], "the retry runs with the same resolved input");
    assert!(inputs[1].contains("\"program\":\"sh\""), "{}", inputs[1]);
    assert_eq!(sb.lines_of("out.txt"), ["written"]);
}

#[test]
fn a_cancel_request_stops_the_run_before_its_next_step() {
    let sb = Sandbox::new();
    // With a 30 s lease the heartbeat would notice late; the request must still stop the run
    // before `write` starts, when the store refuses to start it.
    let child = sb.spawn(
        &[
            "run",
            &fixture("retry-then-step.yaml").display().to_string(),
            "--set",
            &format!("marker={}", sb.path("marker").display()),
            "--set",
            &format!("out={}", sb.path("out.txt").display()),
            "--set",
            "pause=2s",
        ],
        &[],
    );
    sb.wait_for("the pause to start", Duration::from_secs(10), |sb| {
        sb.sql()
            .query_row("SELECT status FROM steps WHERE step_id = 'pause'", [], |r| {
                r.get::<_, String>(0)
            })
            .is_ok_and(|s| s == "running")
    });
    let run = sb.last_run_id();
    let cancel = sb.run(&["cancel", &run, "--by", "dave"]);
    assert_eq!(code(&cancel), 0, "{}", stderr(&cancel));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert_eq!(sb.run_status(&run), "cancelled");
    assert_eq!(
        sb.step_status(&run, "write"),
        "pending",
        "the step after the request never started"
    );
    assert!(sb.lines_of("out.txt").is_empty());
    assert_audit_ok(&sb);
}

/// Spawns fogbook as the leader of its own process group, as a shell does for a job, so
/// that `killpg` reaches it and everything in its group (as Ctrl-C or a service stop do).
fn spawn_group_leader(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut c = sb.cmd();
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("spawn fogbook")
}

fn current_step(sb: &Sandbox, run: &str) -> serde_json::Value {
    let out = sb.run(&["--format", "json", "status", run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["current_step"].clone()
}

#[test]
fn issue_20_a_signal_to_the_process_group_during_a_command_stops_safely() {
    for (signal, policy) in [
        (Signal::SIGINT, "rerun"),
        (Signal::SIGTERM, "fail"),
        (Signal::SIGINT, "fail"),
        (Signal::SIGTERM, "rerun"),
    ] {
        let what = format!("{signal} with on_ambiguous: {policy}");
        let sb = Sandbox::new();
        let dir = sb.dir.path().display().to_string();
        let child = spawn_group_leader(
            &sb,
            &[
                "run",
                &fixture("slow-command.yaml").display().to_string(),
                "--set",
                &format!("dir={dir}"),
                "--set",
                &format!("on_ambiguous={policy}"),
            ],
            &[],
        );
        sb.wait_for("the command to start", Duration::from_secs(10), |sb| {
            sb.lines_of("invocations") == ["started"]
        });
        let group = Pid::from_raw(i32::try_from(child.id()).unwrap());
        killpg(group, signal).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 130, "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains("fogbook resume"), "{what}: {}", stderr(&out));
        let run = sb.last_run_id();
        assert_eq!(sb.run_status(&run), "pending", "{what}: resumable by anyone");
        assert_eq!(sb.step_status(&run, "slow"), "running", "{what}");
        assert_eq!(current_step(&sb, &run), "slow", "{what}: status names the step");
        assert_eq!(
            sb.lines_of("invocations"),
            ["started"],
            "{what}: fogbook stopped the command, which did not finish"
        );
        assert_eq!(
            sb.lines_of("signals"),
            ["TERM"],
            "{what}: the group's signal did not reach the command; fogbook stopped it, once"
        );

        sb.write("release", "");
        let resumed = sb.run(&["resume", &run]);
        if policy == "fail" {
            // The command may or may not have done its work: an operator decides.
            assert_eq!(code(&resumed), 1, "{what}: {}", stderr(&resumed));
            assert!(
                stderr(&resumed).contains("on_ambiguous"),
                "{what}: {}",
                stderr(&resumed)
            );
            assert_eq!(sb.lines_of("invocations"), ["started"], "{what}: not run again");
            let retried = sb.run(&["resume", &run, "--retry-failed"]);
            assert_eq!(code(&retried), 0, "{what}: {}", stderr(&retried));
        } else {
            assert_eq!(code(&resumed), 0, "{what}: {}", stderr(&resumed));
        }
        assert_eq!(
            sb.lines_of("invocations"),
            ["started", "started", "finished", "after"],
            "{what}: run once more, to its end, then the next step"
        );
        assert_eq!(sb.run_status(&run), "succeeded", "{what}");
        assert_audit_ok(&sb);
    }
}

#[test]
fn issue_20_a_signal_right_after_creation_leaves_a_resumable_run_and_prints_its_id() {
    for signal in ["SIGINT", "SIGTERM"] {
        let sb = Sandbox::new();
        let dir = sb.dir.path().display().to_string();
        // Released from the start: whether the stop is seen before the first step starts or
        // while it runs, `resume` finishes the run.
        sb.write("release", "");
        let failpoint = format!("signal-after-create:{signal}");
        let child = spawn_group_leader(
            &sb,
            &[
                "run",
                &fixture("slow-command.yaml").display().to_string(),
                "--set",
                &format!("dir={dir}"),
                "--set",
                "on_ambiguous=rerun",
            ],
            &[("FOGBOOK_FAILPOINTS", &failpoint)],
        );
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 130, "{signal}: {}", stderr(&out));
        let run = sb.last_run_id();
        assert!(
            stderr(&out).contains(&format!("run {run}")),
            "{signal}: the id is printed: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("fogbook resume {run}")),
            "{signal}: {}",
            stderr(&out)
        );
        assert_eq!(sb.run_status(&run), "pending", "{signal}: lease released, resumable");
        let resumed = sb.run(&["resume", &run]);
        assert_eq!(code(&resumed), 0, "{signal}: {}", stderr(&resumed));
        assert_eq!(sb.run_status(&run), "succeeded");
        let log = sb.lines_of("invocations");
        assert_eq!(log.iter().filter(|l| *l == "after").count(), 1, "{signal}: {log:?}");
        assert_audit_ok(&sb);
    }
}
