//! `fogbook bench` with tiny sizes: resume latency (a run killed inside its seeding, resumed
//! three times) and memory per waiting run (twenty runs waiting on emulator operations) are
//! measured and reported in the JSON, and the scratch directory is left empty. Timing is only
//! reported, never asserted.

use serde_json::Value;

use crate::common::{Sandbox, code, stderr, stdout};

#[test]
fn bench_reports_resume_latency_and_memory_per_waiting_run() {
    let sb = Sandbox::new();
    let dir = sb.path("bench");
    std::fs::create_dir(&dir).unwrap();
    let out = sb.run(&[
        "bench",
        "--format",
        "json",
        "--dir",
        dir.to_str().unwrap(),
        "--floor-commits",
        "5",
        "--steps",
        "5",
        "--runs",
        "2",
        "--steps-per-run",
        "2",
        "--resume-trials",
        "3",
        "--waiting-runs",
        "20",
        "--waiting-secs",
        "0",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["kind"], "bench");
    assert!(doc["floor_commits_per_s"].as_f64().unwrap() > 0.0, "{doc}");

    let latency = &doc["resume_latency_ms"];
    assert_eq!(latency["trials"], 3, "{latency}");
    let figure = |k: &str| latency[k].as_f64().unwrap_or_else(|| panic!("{k} in {latency}"));
    for k in [
        "median",
        "p95",
        "max",
        "min",
        "first_request_median",
        "exec_floor_median",
    ] {
        assert!(figure(k) > 0.0, "{k} in {latency}");
    }
    assert!(figure("min") <= figure("median") && figure("median") <= figure("p95"));
    assert!(figure("p95") <= figure("max"));
    assert!(figure("first_request_median") <= figure("max"), "{latency}");
    let breakdown: Vec<&str> = latency["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["what"].as_str().unwrap())
        .collect();
    assert!(
        breakdown.contains(&"emulator received GET AzureAsyncOperation_Get"),
        "{breakdown:?}"
    );
    assert!(
        breakdown.iter().any(|w| w.starts_with("run loaded, lease taken over")),
        "{breakdown:?}"
    );

    let memory = &doc["memory"];
    assert_eq!(memory["runs"], 20, "{memory}");
    assert!(memory["rss_before_kib"].as_u64().unwrap() > 0, "{memory}");
    assert!(memory["rss_waiting_kib"].as_u64().unwrap() > 0, "{memory}");
    assert!(memory["kib_per_run"].as_f64().is_some(), "{memory}");
    assert_eq!(memory["runs_ended"], 0, "{memory}");
    assert_eq!(memory["polls_per_s"], Value::Null, "no polling window was asked for");

    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "scratch files left behind: {left:?}");
}
