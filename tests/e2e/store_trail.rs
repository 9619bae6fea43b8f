//! The state agrees with the trail: a `steps` row edited in place is found by `audit verify`
//! and the step is never run again.

use crate::common::{Sandbox, code, stderr, stdout};

const RUNBOOK: &str = r#"runbook: once-then-gate
version: 1
description: Appends one line (not idempotent), then waits for an approval.
params:
  out: { type: string }
steps:
  - id: once
    uses: command
    with:
      program: sh
      args: ["-c", "echo once >> \"$OUT\""]
      env: { OUT: "${{ params.out }}" }
      on_ambiguous: rerun
  - id: confirm
    uses: approval
    with: { message: "Go on?" }
"#;

#[test]
fn a_step_row_edited_back_to_pending_is_found_by_audit_verify_and_never_runs_again() {
    let sb = Sandbox::new();
    let file = sb.write("rb.yaml", RUNBOOK);
    let out = sb.path("invocations.txt").display().to_string();
    let first = sb.run(&["run", &file.display().to_string(), "--set", &format!("out={out}")]);
    assert_eq!(code(&first), 3, "the run waits for its approval: {}", stderr(&first));
    assert_eq!(sb.lines_of("invocations.txt"), ["once"]);
    let run = sb.last_run_id();

    // Edited in place, as with sqlite3: the chain is untouched.
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    conn.execute(
        "UPDATE steps SET status = 'pending' WHERE run_id = ?1 AND step_id = 'once'",
        [&run],
    )
    .unwrap();
    drop(conn);

    let verify = sb.run(&["audit", "verify"]);
    assert_eq!(code(&verify), 1, "{}", stdout(&verify));
    let text = stdout(&verify);
    assert!(
        text.contains(&run)
            && text.contains("step `once`")
            && text.contains("`pending`")
            && text.contains("`completed`"),
        "names the run, the step, what the row says and what the chain says: {text}"
    );

    let resume = sb.run(&["resume", &run]);
    assert_ne!(code(&resume), 0, "{}", stderr(&resume));
    let why = stderr(&resume);
    assert!(
        why.contains(&run) && why.contains("step `once`") && why.contains("audit verify"),
        "says why: {why}"
    );
    // Counted from outside: the command ran once, not again.
    assert_eq!(sb.lines_of("invocations.txt"), ["once"]);
    let completions: i64 = sb
        .sql()
        .query_row(
            "SELECT count(*) FROM events WHERE run_id = ?1 AND step_id = 'once' AND kind = 'step.completed'",
            [&run],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(completions, 1);
}
