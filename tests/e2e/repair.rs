//! Repair of a run in trouble: skip a step, or mark it done with an output the operator
//! supplies; each is audited and shown in the report, and no completed step runs again.

use serde_json::Value;

use crate::cancel::failed_inside_window;
use crate::common::{Sandbox, assert_audit_ok, code, stderr, stdout};

#[test]
fn skip_a_failed_step_and_the_run_goes_on_without_repeating_anything() {
    let sb = Sandbox::new();
    let run = failed_inside_window(&sb);
    let skip = sb.run(&["skip", &run, "reseed", "--by", "erin", "--reason", "reseeded by hand"]);
    assert_eq!(code(&skip), 0, "{}", stderr(&skip));
    assert_eq!(sb.step_status(&run, "reseed"), "skipped");
    assert_eq!(sb.run_status(&run), "pending");
    let resume = sb.run(&["resume", &run]);
    assert_eq!(code(&resume), 0, "{}", stderr(&resume));
    assert_eq!(
        sb.lines_of("effects.txt"),
        vec!["delete-group", "reseed", "create-group"],
        "each step ran once; the skipped one not again"
    );
    let again = sb.run(&["skip", &run, "delete-group", "--by", "erin"]);
    assert_eq!(code(&again), 2, "{}", stderr(&again));
    let report = stdout(&sb.run(&["report", &run]));
    assert!(
        report.contains("skipped") && report.contains("reseeded by hand"),
        "{report}"
    );
    assert_audit_ok(&sb);
}

#[test]
fn complete_a_failed_step_with_an_output_checked_against_its_fields() {
    let sb = Sandbox::new();
    let run = failed_inside_window(&sb);
    let partial = sb.write("partial.json", r#"{ "exit_code": 0 }"#);
    let refused = sb.run(&[
        "complete",
        &run,
        "reseed",
        "--output",
        &partial.display().to_string(),
        "--by",
        "erin",
    ]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("stdout, stderr"), "{}", stderr(&refused));
    assert_eq!(sb.step_status(&run, "reseed"), "failed");

    let full = sb.write("full.yaml", "exit_code: 0\nstdout: reseeded\nstderr: ''\n");
    let done = sb.run(&[
        "complete",
        &run,
        "reseed",
        "--output",
        &full.display().to_string(),
        "--by",
        "erin",
    ]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    let resume = sb.run(&["resume", &run]);
    assert_eq!(code(&resume), 0, "{}", stderr(&resume));
    assert_eq!(
        sb.lines_of("effects.txt"),
        vec!["delete-group", "reseed", "create-group"]
    );
    let output: String = sb
        .sql()
        .query_row(
            "SELECT output FROM steps WHERE run_id = ?1 AND step_id = 'reseed'",
            [&run],
            |r| r.get(0),
        )
        .unwrap();
    let output: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output["stdout"], "reseeded");
    let report = stdout(&sb.run(&["report", &run]));
    assert!(report.contains("completed by hand"), "{report}");
    assert_audit_ok(&sb);
}
