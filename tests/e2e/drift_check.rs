//! `runbooks/drift-check.yaml` rehearsed (`--sim`) against an estate whose secondary drifted:
//! every difference is reported with both values and the webhook is told; in sync, nothing is
//! sent.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{Sandbox, code, stderr};
use crate::notify::webhook;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo estate with B (the secondary of fog-demo) drifted: 16 vCores instead of 8, the
/// other license type, and another `environment` tag; A gets its tags.
fn drifted_estate(sb: &Sandbox) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples/estate.yaml")).unwrap();
    let a = "          - name: mi-fog-a\n            sku: GP_Gen5\n            v_cores: 8\n";
    let b = "          - name: mi-fog-b\n            sku: GP_Gen5\n            v_cores: 8\n";
    assert!(text.contains(a) && text.contains(b), "the demo estate changed shape");
    let text = text
        .replace(
            a,
            &format!("{a}            tags: {{environment: prod, cost-center: \"42\"}}\n"),
        )
        .replace(
            b,
            "          - name: mi-fog-b\n            sku: GP_Gen5\n            v_cores: 16\n            license_type: BasePrice\n            tags: {environment: test, cost-center: \"42\"}\n",
        );
    sb.write("drifted.yaml", &text)
}

fn rehearse(sb: &Sandbox, estate: &Path, extra: &[&str]) -> (i32, String, Value) {
    let runbook = root().join("runbooks/drift-check.yaml").display().to_string();
    let params = root().join("examples/drift-check.yaml").display().to_string();
    let estate = estate.display().to_string();
    let mut args = vec![
        "run",
        runbook.as_str(),
        "--params",
        params.as_str(),
        "--sim",
        "--sim-estate",
        estate.as_str(),
    ];
    args.extend_from_slice(extra);
    let out = sb.run(&args);
    let run = sb.last_run_id();
    let report = sb.run(&["report", &run, "--format", "json"]);
    assert_eq!(code(&report), 0, "{}", stderr(&report));
    (
        code(&out),
        stderr(&out),
        serde_json::from_slice(&report.stdout).unwrap(),
    )
}

#[test]
fn drift_is_reported_with_both_values_and_notified() {
    let sb = Sandbox::new();
    let (url, got) = webhook();
    let estate = drifted_estate(&sb);
    let set = format!("notify_url={url}");
    let (exit, err, report) = rehearse(&sb, &estate, &["--set", &set]);
    assert_eq!(exit, 0, "{err}");
    let results = &report["results"][0];
    assert_eq!(results["in_sync"], false, "{report:#}");
    let mut differences: Vec<(String, String, String)> = results["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["setting"].as_str().unwrap().to_owned(),
                d["primary"].as_str().unwrap_or("(unset)").to_owned(),
                d["secondary"].as_str().unwrap_or("(unset)").to_owned(),
            )
        })
        .collect();
    differences.sort();
    let own = |s: &str| s.to_owned();
    assert_eq!(
        differences,
        [
            (own("license_type"), own("LicenseIncluded"), own("BasePrice")),
            (own("tag:environment"), own("prod"), own("test")),
            (own("v_cores"), own("8"), own("16")),
        ]
    );
    let summary = results["summary"].as_str().unwrap();
    assert!(
        summary.contains("v_cores: mi-fog-a has 8, mi-fog-b has 16"),
        "{summary}"
    );

    // The webhook was told once, with the differences.
    let posted: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "drift")
        .cloned()
        .collect();
    assert_eq!(posted.len(), 1, "{posted:#?}");
    let data = &posted[0]["data"];
    assert_eq!(data["failover_group"], "fog-demo");
    assert_eq!(data["differences"].as_array().unwrap().len(), 3, "{data:#}");

    // With fail_on_drift the run fails, naming what drifted.
    let (exit, err, _) = rehearse(&sb, &estate, &["--set", "fail_on_drift=true"]);
    assert_ne!(exit, 0);
    assert!(err.contains("have drifted") && err.contains("license_type"), "{err}");
}

#[test]
fn an_estate_in_sync_reports_no_drift_and_notifies_nobody() {
    let sb = Sandbox::new();
    let (url, got) = webhook();
    let estate = root().join("examples/estate.yaml");
    let set = format!("notify_url={url}");
    let (exit, err, report) = rehearse(&sb, &estate, &["--set", &set, "--set", "fail_on_drift=true"]);
    assert_eq!(exit, 0, "{err}");
    assert_eq!(report["results"][0]["in_sync"], true, "{report:#}");
    assert_eq!(report["results"][0]["differences"], serde_json::json!([]));
    assert!(got.lock().unwrap().iter().all(|e| e["event"] != "drift"));
}
