//! The runs and steps the state tests write. Each builder fills every field with a plain
//! default; a test names the fields it is about and takes the rest from the builder
//! (`NewRun { locks: …, ..run("r1") }`), so what a test depends on stands in the test.

use fogbook_state::{NewFleet, NewFleetTarget, NewRun, StepFinish, StepOutcome, StepStart, WindowKind};
use serde_json::json;

/// A run `id` of the runbook `rb` (version 1) with one step `a`, no parameters, no locks and
/// no lease, created by `"test"` at 1 000 ms.
pub(crate) fn run(id: &str) -> NewRun {
    NewRun {
        id: id.to_owned(),
        runbook_name: "rb".to_owned(),
        runbook_version: 1,
        runbook_text: "runbook: rb".to_owned(),
        runbook_sha256: "abc".to_owned(),
        source_path: None,
        params: json!({}),
        steps: vec!["a".to_owned()],
        locks: Vec::new(),
        auto_approve: false,
        lease: None,
        created_by: json!("test"),
        window: None,
        schedule: None,
        now: 1_000,
    }
}

/// A run `id` whose creator `owner`, on a host whose clock reads `now`, leases it for
/// `ttl_ms`.
pub(crate) fn leased(id: &str, owner: &str, now: i64, ttl_ms: i64) -> NewRun {
    NewRun {
        lease: Some((owner.to_owned(), now + ttl_ms)),
        now,
        ..run(id)
    }
}

/// The owned ids of `names` (steps, locks).
pub(crate) fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The first attempt of `step` starting at `now`, opening `opens`.
pub(crate) fn start(step: &str, opens: Vec<WindowKind>, now: i64) -> StepStart {
    StepStart {
        step_id: step.to_owned(),
        attempt: 1,
        input: json!({}),
        deadline_at: None,
        opens,
        subject: None,
        keep_progress: false,
        now,
    }
}

/// The first attempt of `step` completing at `now` with the output `{"ok": true}`, closing
/// `closes`.
pub(crate) fn complete(step: &str, closes: Vec<WindowKind>, now: i64) -> StepFinish {
    StepFinish {
        step_id: step.to_owned(),
        attempt: 1,
        outcome: StepOutcome::Completed {
            output: json!({ "ok": true }),
        },
        closes,
        run_status: None,
        now,
    }
}

/// A fleet `f1` moving the groups `targets` (in waves 0, 1, …, each target's parameter
/// `group` its name) with the runbook `rb`, one at a time, created by `"test"` at 1 000 ms and
/// leased by `owner` until `lease_until`.
pub(crate) fn fleet(targets: &[&str], owner: &str, lease_until: i64) -> NewFleet {
    NewFleet {
        id: "f1".to_owned(),
        name: "move".to_owned(),
        source_path: None,
        fleet_text: "fleet: move".to_owned(),
        spec: json!({ "rate": { "max_concurrency": 1 } }),
        runbook_name: "rb".to_owned(),
        runbook_text: "runbook: rb".to_owned(),
        runbook_source: None,
        targets: targets
            .iter()
            .zip(0..)
            .map(|(g, wave)| NewFleetTarget {
                name: (*g).to_owned(),
                wave,
                params: json!({ "group": g }),
            })
            .collect(),
        created_by: json!("test"),
        lease: Some((owner.to_owned(), lease_until)),
        now: 1_000,
    }
}
