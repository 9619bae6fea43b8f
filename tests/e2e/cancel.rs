//! Cancel, safely: refused inside an unprotected window or with a cloud operation in flight;
//! `--force` records what it abandons and leaves the window `abandoned open` until an
//! operator closes it. Effects are counted from an append-only log the steps write, and
//! from the emulator's journal.

use serde_json::Value;

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr, stdout};
use crate::seed_runbooks::{journal, start_sim};

/// Runs `window-effects.yaml`: its middle step fails, so the run fails inside its window.
pub(crate) fn failed_inside_window(sb: &Sandbox) -> String {
    let out_file = sb.path("effects.txt").display().to_string();
    let rb = fixture("window-effects.yaml").display().to_string();
    let out = sb.run(&["run", &rb, "--set", &format!("out={out_file}"), "--by", "carol"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let run = sb.last_run_id();
    assert_eq!(sb.lines_of("effects.txt"), vec!["delete-group", "reseed"]);
    run
}

#[test]
fn cancel_inside_an_unprotected_window_is_refused_and_forced_leaves_it_abandoned_open() {
    let sb = Sandbox::new();
    let run = failed_inside_window(&sb);
    let refused = sb.run(&["cancel", &run, "--by", "dave"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("unprotected window"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert_eq!(sb.run_status(&run), "failed");

    let forced = sb.run(&[
        "cancel",
        &run,
        "--by",
        "dave",
        "--reason",
        "restored by hand",
        "--force",
    ]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert!(stderr(&forced).contains("ABANDONED OPEN"), "{}", stderr(&forced));
    assert_eq!(sb.run_status(&run), "cancelled");

    let status = stdout(&sb.run(&["status", &run]));
    assert!(status.contains("cancelled: by dave (--by)"), "{status}");
    assert!(status.contains("restored by hand"), "{status}");
    assert!(status.contains("ABANDONED OPEN unprotected window"), "{status}");
    assert!(
        !status.contains("OPEN unprotected window since"),
        "never OPEN on a finished run: {status}"
    );
    assert!(!status.contains("{\""), "no raw JSON: {status}");
    let report = stdout(&sb.run(&["report", &run]));
    assert!(report.contains("ABANDONED OPEN"), "{report}");
    assert!(!report.contains("STILL OPEN"), "{report}");
    assert!(report.contains("cancelled"), "{report}");
    let json: Value = serde_json::from_slice(&sb.run(&["report", &run, "--format", "json"]).stdout).unwrap();
    assert_eq!(json["windows"][0]["state"], "abandoned open");
    assert!(json["windows"][0]["abandoned_at"].is_string(), "{json}");

    // The operator knows the window closed: they say so, and the run shows no open window.
    let no_reason = sb.run(&["window", "close", &run, "unprotected", "--by", "dave"]);
    assert_eq!(code(&no_reason), 2, "{}", stderr(&no_reason));
    let close = sb.run(&[
        "window",
        "close",
        &run,
        "unprotected",
        "--by",
        "dave",
        "--reason",
        "group re-created by hand",
    ]);
    assert_eq!(code(&close), 0, "{}", stderr(&close));
    let status = stdout(&sb.run(&["status", &run]));
    assert!(!status.contains("OPEN"), "{status}");
    let again = sb.run(&["window", "close", &run, "unprotected", "--reason", "twice"]);
    assert_eq!(code(&again), 2, "{}", stderr(&again));
    let report = stdout(&sb.run(&["report", &run]));
    assert!(report.contains("closed window"), "{report}");
    assert!(report.contains("group re-created by hand"), "{report}");
    assert_eq!(
        sb.lines_of("effects.txt"),
        vec!["delete-group", "reseed"],
        "nothing ran again"
    );
    assert_audit_ok(&sb);
}

#[test]
fn a_cancel_outside_any_window_records_who_and_why() {
    let sb = Sandbox::new();
    let gated = fixture("gated.yaml").display().to_string();
    let out_file = sb.path("out.txt").display().to_string();
    let out = sb.run(&["run", &gated, "--set", &format!("out={out_file}")]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let run = sb.last_run_id();
    // No --by: the OS user, recorded as such (the hermetic environment has no FOGBOOK_USER).
    let cancel = sb.run(&["cancel", &run, "--reason", "wrong window"]);
    assert_eq!(code(&cancel), 0, "{}", stderr(&cancel));
    let status = stdout(&sb.run(&["status", &run]));
    assert!(status.contains("(os user)"), "{status}");
    assert!(status.contains("wrong window"), "{status}");
    assert!(!status.contains("unknown"), "{status}");
    assert!(sb.lines_of("out.txt").is_empty());
    assert_audit_ok(&sb);
}

#[test]
fn cancel_with_a_cloud_operation_in_flight_is_refused_and_sends_nothing() {
    let sb = Sandbox::new();
    let estate = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/estate-unpaired.yaml");
    let sim = start_sim(&estate, None);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rb = root
        .join("runbooks/configure-failover-group.yaml")
        .display()
        .to_string();
    let params = root
        .join("examples/configure-failover-group.yaml")
        .display()
        .to_string();
    let env = [
        ("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()),
        ("FOGBOOK_ARM_TOKEN", "anything"),
        ("FOGBOOK_FAILPOINTS", "after-start:create-group"),
    ];
    let out = sb.run_env(&["run", &rb, "--params", &params, "--auto-approve"], &env);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{}",
        stderr(&out)
    );
    let run = sb.last_run_id();
    let before = journal(&sim.url).len();

    let refused = sb.run(&["cancel", &run, "--by", "dave"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("cloud operation in flight"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("create-group"), "{}", stderr(&refused));
    let forced = sb.run(&["cancel", &run, "--by", "dave", "--force", "--reason", "drill"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert!(
        stderr(&forced).contains("abandoned the cloud operation of step `create-group`"),
        "{}",
        stderr(&forced)
    );
    let status = stdout(&sb.run(&["status", &run]));
    assert!(status.contains("abandoned operation: step create-group"), "{status}");
    assert!(!status.contains("current step"), "{status}");
    assert_eq!(journal(&sim.url).len(), before, "cancel sends nothing to Azure");
    assert_audit_ok(&sb);
}

#[test]
fn help_of_each_operator_command_names_its_refusals() {
    let sb = Sandbox::new();
    for (cmd, words) in [
        (vec!["approve"], vec!["refused", "distinct_from_starter"]),
        (vec!["reject"], vec!["refused", "already approved"]),
        (vec!["cancel"], vec!["refused", "--force", "abandoned open"]),
        (vec!["skip"], vec!["Refused", "in flight"]),
        (vec!["complete"], vec!["Refused", "lacks a field"]),
        (vec!["retry-from"], vec!["Refused", "--force"]),
        (vec!["repin"], vec!["Refused", "inputs"]),
        (vec!["window", "close"], vec!["Refused", "already closed"]),
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let out = sb.run(&args);
        assert_eq!(code(&out), 0, "{cmd:?}");
        let text = stdout(&out).replace('\n', " ").replace("  ", " ");
        for w in words {
            assert!(text.contains(w), "`{}` --help lacks `{w}`: {text}", cmd.join(" "));
        }
    }
}
