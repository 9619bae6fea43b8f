//! A new user's findings (session 6) about runs stopped with an unprotected window open:
//! a run stopped by SIGTERM looked harmless (`pending`, "waits for an ARM operation", not in
//! `runs --status stalled`, no `!!!` line), and `cancel --force` of a run a live process
//! drives said it had abandoned a window its driver was still going to close.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, code, stderr, stdout};

pub(crate) fn rehearsal() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("runbooks/demo-rehearsal.yaml")
        .display()
        .to_string()
}

/// Starts demo-rehearsal in the foreground and waits until it is in `seed`, its unprotected
/// window open (a long seeding: nothing closes the window during the test).
pub(crate) fn driver_in_seed(sb: &Sandbox) -> (Child, String) {
    let journal = sb.path("journal.txt").display().to_string();
    let child = sb.spawn(
        &[
            "run",
            &rehearsal(),
            "--auto-approve",
            "--set",
            &format!("journal={journal}"),
            "--set",
            "seeding=10m",
        ],
        &[],
    );
    sb.wait_for("the run in `seed`", Duration::from_secs(60), |sb| {
        sb.sql()
            .query_row(
                "SELECT count(*) FROM steps WHERE step_id = 'seed' AND status = 'running'",
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
fn a_run_stopped_by_sigterm_inside_its_unprotected_window_is_shown_stalled() {
    let sb = Sandbox::new();
    let (child, run) = driver_in_seed(&sb);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(sb.run_status(&run), "pending");

    let stalled = sb.run(&["runs", "--status", "stalled"]);
    assert_eq!(code(&stalled), 0, "{}", stderr(&stalled));
    let listed = stdout(&stalled);
    assert!(
        listed.contains(&run),
        "`runs --status stalled` lists the stopped run: {listed}"
    );
    assert!(listed.contains("stalled"), "{listed}");

    let status = stdout(&sb.run(&["status", &run]));
    assert!(
        status.contains("!!! STALLED WITH AN UNPROTECTED WINDOW OPEN"),
        "{status}"
    );
    assert!(status.contains(&format!("fogbook resume {run}")), "{status}");
    assert!(status.contains("status: stalled"), "{status}");
}

#[test]
fn a_forced_cancel_of_a_driven_run_abandons_nothing_yet() {
    let sb = Sandbox::new();
    let (child, run) = driver_in_seed(&sb);
    let forced = sb.run(&["cancel", &run, "--by", "nu", "--force", "--reason", "test force"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert!(stdout(&forced).contains("is being driven"), "{}", stdout(&forced));
    let err = stderr(&forced);
    assert!(
        !err.contains("ABANDONED OPEN"),
        "a live driver still decides what is left open: {err}"
    );
    assert!(!err.contains("window close"), "{err}");
    assert!(err.contains("nothing is abandoned yet"), "{err}");
    assert!(err.contains(&format!("fogbook status {run}")), "{err}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 5, "the driver stops and cancels the run: {}", stderr(&out));
    assert_eq!(sb.run_status(&run), "cancelled");
}

#[test]
fn the_report_of_an_unfinished_run_does_not_say_throughout() {
    let sb = Sandbox::new();
    let journal = sb.path("journal.txt").display().to_string();
    let out = sb.run(&["run", &rehearsal(), "--set", &format!("journal={journal}")]);
    assert_eq!(code(&out), 3, "the run stops at its approval: {}", stderr(&out));
    let run = sb.last_run_id();
    let report = stdout(&sb.run(&["report", &run]));
    assert!(!report.contains("throughout"), "{report}");
    assert!(report.contains("none so far (the run has not finished)"), "{report}");
}
