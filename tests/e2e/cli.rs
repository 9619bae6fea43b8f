//! The command line itself: schema, history formats, help with exit codes, JSON documents.

use crate::common::{Sandbox, code, fixture, stderr, stdout};

#[test]
fn schema_is_a_json_schema_that_knows_every_activity() {
    let sb = Sandbox::new();
    let out = sb.run(&["schema"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        schema["$schema"].as_str().unwrap().contains("json-schema.org"),
        "{schema}"
    );
    let text = schema.to_string();
    for activity in [
        "wait",
        "approval",
        "command",
        "fog.create",
        "fog.failover",
        "instance.scale",
    ] {
        assert!(
            text.contains(&format!("\"{activity}\"")),
            "{activity} missing from the schema"
        );
    }
}

#[test]
fn history_comes_as_a_table_as_json_and_as_csv() {
    let sb = Sandbox::new();
    let run = sb.run(&["run", &fixture("window.yaml").display().to_string()]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let id = sb.last_run_id();
    let events: i64 = sb
        .sql()
        .query_row("SELECT count(*) FROM events WHERE run_id = ?1", [&id], |r| r.get(0))
        .unwrap();

    let json = sb.run(&["history", &id, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["events"].as_array().unwrap().len() as i64, events);

    let csv = sb.run(&["history", &id, "--format", "csv"]);
    let text = stdout(&csv);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("seq,at,kind,step,attempt,data,hash"));
    assert_eq!(lines.count() as i64, events);

    let table = sb.run(&["history", &id, "--format", "table"]);
    assert!(stdout(&table).contains("run.created"), "{}", stdout(&table));
    assert!(stdout(&table).contains("window.opened"), "{}", stdout(&table));
}

#[test]
fn help_documents_the_exit_codes_and_stdout_carries_only_data() {
    let sb = Sandbox::new();
    let help = sb.run(&["--help"]);
    let text = stdout(&help);
    for line in [
        "0    success",
        "1    the run failed",
        "2    bad input",
        "3    the run is waiting",
        "4    busy",
        "130  interrupted",
    ] {
        assert!(text.contains(line), "--help lacks `{line}`:\n{text}");
    }
    let run = sb.run(&["--format", "json", "run", &fixture("window.yaml").display().to_string()]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["kind"], "report");
    assert_eq!(doc["status"], "succeeded");
    assert!(stderr(&run).starts_with("run "), "progress and the run id go to stderr");
}
