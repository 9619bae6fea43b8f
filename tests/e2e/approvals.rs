//! Approvals: listing them, approving and rejecting them with who and why, who may approve,
//! and what each command says happens next. Effects are counted from an append-only file the
//! runbook's command step writes.

use std::time::Duration;

use serde_json::Value;

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr, stdout};

fn start_gated(sb: &Sandbox, extra: &[&str]) -> String {
    let out_file = sb.path("out.txt").display().to_string();
    let gated = fixture("gated.yaml").display().to_string();
    let mut args = vec!["run", gated.as_str(), "--set"];
    let set = format!("out={out_file}");
    args.push(&set);
    args.extend_from_slice(extra);
    let out = sb.run(&args);
    assert_eq!(code(&out), 3, "waits for approval: {}", stderr(&out));
    sb.last_run_id()
}

fn events(sb: &Sandbox, run: &str) -> Vec<Value> {
    let out = sb.run(&["history", run, "--format", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["events"].as_array().unwrap().clone()
}

fn event<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event: {events:?}"))
}

#[test]
fn approvals_lists_approve_says_what_next_and_status_stops_asking() {
    let sb = Sandbox::new();
    let run = start_gated(&sb, &["--by", "carol"]);
    let created = events(&sb, &run);
    let created = event(&created, "run.created");
    assert_eq!(created["data"]["by"]["user"], "carol");
    assert_eq!(created["data"]["by"]["user_source"], "--by");

    let list = sb.run(&["approvals"]);
    assert_eq!(code(&list), 0, "{}", stderr(&list));
    assert!(stdout(&list).contains(&run), "{}", stdout(&list));
    assert!(stdout(&list).contains("confirm"), "{}", stdout(&list));
    assert!(stdout(&list).contains("Go ahead?"), "{}", stdout(&list));
    let json = sb.run(&["approvals", "--format", "json"]);
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["approvals"][0]["run_id"], run.as_str());
    assert_eq!(doc["approvals"][0]["may_approve"], "anyone");

    let approve = sb.run_env(
        &["approve", &run, "confirm", "--reason", "change ticket 42"],
        &[("FOGBOOK_USER", "ann")],
    );
    assert_eq!(code(&approve), 0, "{}", stderr(&approve));
    assert!(stdout(&approve).contains("as ann"), "{}", stdout(&approve));
    assert!(
        stderr(&approve).contains(&format!("fogbook resume {run}")),
        "nobody drives the run: the command to continue it: {}",
        stderr(&approve)
    );
    let status = sb.run(&["status", &run]);
    assert!(
        !stdout(&status).contains("waiting for approval"),
        "approved: no longer asks for it: {}",
        stdout(&status)
    );
    assert!(
        stdout(&status).contains("approved: step confirm by ann"),
        "{}",
        stdout(&status)
    );
    let list = sb.run(&["approvals"]);
    assert!(!stdout(&list).contains(&run), "{}", stdout(&list));

    let resume = sb.run(&["resume", &run]);
    assert_eq!(code(&resume), 0, "{}", stderr(&resume));
    assert!(
        !stderr(&resume).contains("re-entered"),
        "a resume after an approval is no restart: {}",
        stderr(&resume)
    );
    assert_eq!(sb.lines_of("out.txt"), vec!["version-one"]);
    let evs = events(&sb, &run);
    let approved = event(&evs, "step.approved");
    assert_eq!(approved["data"]["by"], "ann");
    assert_eq!(approved["data"]["by_source"], "FOGBOOK_USER");
    assert_eq!(approved["data"]["reason"], "change ticket 42");
    let report = sb.run(&["report", &run]);
    assert!(stdout(&report).contains("operator actions:"), "{}", stdout(&report));
    assert!(stdout(&report).contains("approved"), "{}", stdout(&report));
    assert_audit_ok(&sb);
}

#[test]
fn reject_ends_the_run_and_its_later_steps_never_run() {
    let sb = Sandbox::new();
    let run = start_gated(&sb, &[]);
    let no_reason = sb.run(&["reject", &run, "confirm", "--by", "bob"]);
    assert_eq!(code(&no_reason), 2, "{}", stderr(&no_reason));
    assert!(stderr(&no_reason).contains("needs a reason"), "{}", stderr(&no_reason));
    assert_eq!(sb.run_status(&run), "waiting");

    let reject = sb.run(&[
        "reject",
        &run,
        "confirm",
        "--by",
        "bob",
        "--reason",
        "not during the sale",
    ]);
    assert_eq!(code(&reject), 0, "{}", stderr(&reject));
    assert_eq!(sb.run_status(&run), "cancelled");
    let status = sb.run(&["status", &run]);
    let text = stdout(&status);
    assert!(
        text.contains("rejected: approval step confirm rejected by bob (--by)") && text.contains("not during the sale"),
        "{text}"
    );
    assert!(!text.contains("{\""), "no raw JSON: {text}");

    let approve = sb.run(&["approve", &run, "confirm", "--by", "ann"]);
    assert_eq!(code(&approve), 2, "{}", stderr(&approve));
    let resume = sb.run(&["resume", &run]);
    assert_ne!(code(&resume), 0, "{}", stderr(&resume));
    assert!(
        sb.lines_of("out.txt").is_empty(),
        "the step after the approval never ran"
    );
    let evs = events(&sb, &run);
    assert_eq!(event(&evs, "step.rejected")["data"]["reason"], "not during the sale");
    assert_eq!(event(&evs, "run.cancelled")["data"]["rejected_step"], "confirm");
    assert_audit_ok(&sb);
}

#[test]
fn an_approval_may_need_someone_other_than_the_starter_from_a_list() {
    let sb = Sandbox::new();
    let out_file = sb.path("out.txt").display().to_string();
    let rb = fixture("two-person.yaml").display().to_string();
    let out = sb.run_env(
        &["run", &rb, "--set", &format!("out={out_file}")],
        &[("FOGBOOK_USER", "ann")],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let run = sb.last_run_id();
    let list = sb.run(&["approvals"]);
    assert!(
        stdout(&list).contains("ann, bob except the starter (ann)"),
        "{}",
        stdout(&list)
    );

    let around = sb.run(&["skip", &run, "confirm", "--by", "ann"]);
    assert_eq!(code(&around), 2, "an approval is not skipped: {}", stderr(&around));
    assert!(stderr(&around).contains("is an approval"), "{}", stderr(&around));
    let stranger = sb.run(&["approve", &run, "confirm", "--by", "mallory"]);
    assert_eq!(code(&stranger), 2, "{}", stderr(&stranger));
    assert!(stderr(&stranger).contains("may not approve"), "{}", stderr(&stranger));
    let own = sb.run(&["approve", &run, "confirm", "--by", "ann"]);
    assert_eq!(code(&own), 2, "{}", stderr(&own));
    assert!(stderr(&own).contains("other than the starter"), "{}", stderr(&own));
    assert_eq!(sb.run_status(&run), "waiting");

    let bob = sb.run(&["approve", &run, "confirm", "--by", "bob"]);
    assert_eq!(code(&bob), 0, "{}", stderr(&bob));
    let resume = sb.run(&["resume", &run]);
    assert_eq!(code(&resume), 0, "{}", stderr(&resume));
    assert_eq!(sb.lines_of("out.txt"), vec!["switched"]);
    assert_audit_ok(&sb);
}

#[test]
fn approve_under_wait_says_the_driver_continues() {
    let sb = Sandbox::new();
    let out_file = sb.path("out.txt").display().to_string();
    let gated = fixture("gated.yaml").display().to_string();
    let child = sb.spawn(&["run", &gated, "--set", &format!("out={out_file}"), "--wait"], &[]);
    sb.wait_for("the approval step to start", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row(
                "SELECT count(*) FROM steps WHERE step_id = 'confirm' AND status = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
    });
    let run = sb.last_run_id();
    let status = sb.run(&["status", &run]);
    assert!(stdout(&status).contains("waiting for approval"), "{}", stdout(&status));
    let approve = sb.run(&["approve", &run, "confirm", "--by", "ann"]);
    assert_eq!(code(&approve), 0, "{}", stderr(&approve));
    assert!(
        stderr(&approve).contains("it continues by itself"),
        "a process drives the run: {}",
        stderr(&approve)
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "waiting here for a decision: fogbook approve {run} confirm --by NAME"
        )),
        "the driver says how to decide: {}",
        stderr(&out)
    );
    assert_eq!(sb.lines_of("out.txt"), vec!["version-one"]);
    assert_audit_ok(&sb);
}

/// A foreground `run --wait` at the approval step, and its run id.
fn driven_at_approval(sb: &Sandbox) -> (std::process::Child, String) {
    let out_file = sb.path("out.txt").display().to_string();
    let gated = fixture("gated.yaml").display().to_string();
    let child = sb.spawn(&["run", &gated, "--set", &format!("out={out_file}"), "--wait"], &[]);
    sb.wait_for("the approval step to start", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row(
                "SELECT count(*) FROM steps WHERE step_id = 'confirm' AND status = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
    });
    let run = sb.last_run_id();
    (child, run)
}

#[test]
fn reject_and_cancel_of_a_driven_run_end_it_with_who_and_why() {
    let sb = Sandbox::new();
    let (child, run) = driven_at_approval(&sb);
    let reject = sb.run(&["reject", &run, "confirm", "--by", "bob", "--reason", "freeze"]);
    assert_eq!(code(&reject), 0, "{}", stderr(&reject));
    assert!(stdout(&reject).contains("its driver stops it"), "{}", stdout(&reject));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let status = stdout(&sb.run(&["status", &run]));
    assert!(
        status.contains("rejected: approval step confirm rejected by bob (--by)"),
        "{status}"
    );
    assert!(status.contains("freeze"), "{status}");
    assert!(sb.lines_of("out.txt").is_empty());

    let sb = Sandbox::new();
    let (child, run) = driven_at_approval(&sb);
    let cancel = sb.run(&["cancel", &run, "--by", "dave", "--reason", "wrong night"]);
    assert_eq!(code(&cancel), 0, "{}", stderr(&cancel));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let status = stdout(&sb.run(&["status", &run]));
    assert!(status.contains("cancelled: by dave (--by)"), "{status}");
    assert!(status.contains("wrong night"), "{status}");
    assert!(!status.contains("operator request"), "{status}");
    assert!(sb.lines_of("out.txt").is_empty());
    assert_audit_ok(&sb);
}
