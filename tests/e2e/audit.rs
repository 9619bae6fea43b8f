//! The audit trail is tamper-evident: edits and deletions are found and named.

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr, stdout};

fn finished_run(sb: &Sandbox) -> String {
    let out = sb.run(&["run", &fixture("window.yaml").display().to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_audit_ok(sb);
    sb.last_run_id()
}

fn tamper(sb: &Sandbox, sql: &str) {
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    // The triggers refuse changes to the trail; an attacker with the file drops them.
    let refused = conn.execute("UPDATE events SET kind = kind WHERE seq = 1", []);
    assert!(refused.is_err(), "events are append-only");
    conn.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
        .unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn an_edited_event_is_named() {
    let sb = Sandbox::new();
    let run = finished_run(&sb);
    tamper(
        &sb,
        "UPDATE events SET data = '{\"output\":{\"forged\":true}}' WHERE seq = 5",
    );
    let out = sb.run(&["audit", "verify"]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.contains(&run) && text.contains("event #5") && text.contains("altered"),
        "{text}"
    );
}

#[test]
fn a_deleted_event_is_named() {
    let sb = Sandbox::new();
    let run = finished_run(&sb);
    tamper(&sb, "DELETE FROM events WHERE seq = 4");
    let out = sb.run(&["audit", "verify", &run]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("event #4 is missing"), "{}", stdout(&out));
}

#[test]
fn deleting_the_newest_events_is_noticed() {
    let sb = Sandbox::new();
    let run = finished_run(&sb);
    tamper(&sb, &format!("DELETE FROM events WHERE run_id = '{run}' AND seq > 3"));
    let out = sb.run(&["audit", "verify", "--format", "json"]);
    assert_eq!(code(&out), 1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["report"]["failure"]["seq"], 4);
}

#[test]
fn deleting_a_whole_run_is_noticed() {
    let sb = Sandbox::new();
    let victim = finished_run(&sb);
    let _later = finished_run(&sb);
    tamper(
        &sb,
        &format!(
            "DELETE FROM events WHERE run_id = '{victim}'; DELETE FROM steps WHERE run_id = '{victim}';
             DELETE FROM windows WHERE run_id = '{victim}'; DELETE FROM locks WHERE run_id = '{victim}';
             DELETE FROM runs WHERE id = '{victim}';"
        ),
    );
    let out = sb.run(&["audit", "verify"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("deleted"), "{}", stdout(&out));
}

#[test]
fn a_cut_and_rewritten_tail_is_caught_by_the_kept_head() {
    let sb = Sandbox::new();
    let _kept = finished_run(&sb);
    let run = finished_run(&sb);
    let ok = sb.run(&["audit", "verify", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    let head = doc["report"]["head"].as_str().unwrap().to_owned();
    assert_eq!(head.len(), 64);
    // Cut the newest run (its events and its rows, which must agree with them) and rewrite
    // the chain's count and head so the rest looks whole.
    tamper(
        &sb,
        &format!(
            "DELETE FROM events WHERE run_id = '{run}'; DELETE FROM steps WHERE run_id = '{run}';
             DELETE FROM windows WHERE run_id = '{run}'; DELETE FROM locks WHERE run_id = '{run}';
             DELETE FROM runs WHERE id = '{run}';
             UPDATE chain SET count = (SELECT count(*) FROM events), head = (SELECT hash FROM events ORDER BY gseq DESC LIMIT 1);"
        ),
    );
    let fooled = sb.run(&["audit", "verify"]);
    assert_eq!(
        code(&fooled),
        0,
        "inside the file the rewrite is consistent: {}",
        stdout(&fooled)
    );
    let caught = sb.run(&["audit", "verify", "--since-head", &head]);
    assert_eq!(code(&caught), 1, "{}", stdout(&caught));
    assert!(stdout(&caught).contains("cut or rewritten"), "{}", stdout(&caught));
}

/// Item 10 of the new user's report: the summary counted streams and listed three kinds
/// after the count ("2 streams (runs, schedules, fleets)"), which read as a breakdown.
#[test]
fn the_summary_counts_streams_without_a_list_of_kinds() {
    let sb = Sandbox::new();
    finished_run(&sb);
    let out = sb.run(&["audit", "verify"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = stdout(&out).lines().next().unwrap_or_default().to_owned();
    assert!(first.starts_with("ok: ") && first.contains(" stream"), "{first}");
    assert!(!first.contains("(runs, schedules, fleets)"), "{first}");
}
