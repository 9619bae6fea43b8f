#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A run with a pausing maintenance window waits before its disruptive steps while the
//! window is closed, and goes on once it opens (time comes from a test clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use fogbook_engine::schedule::Window;
use fogbook_engine::{Clock, CreateRun, Engine, EngineConfig, RunOutcome, runbook};
use fogbook_state::{RunStatus, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn at(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

const RUNBOOK: &str = r#"
runbook: paused
version: 1
steps:
  - id: prepare
    uses: assert
    with: { that: true, message: never }
  - id: failover
    uses: assert
    disruptive: true
    with: { that: true, message: never }
"#;

#[tokio::test]
async fn a_disruptive_step_waits_for_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(at("2026-11-26T03:00:00Z"))));
    let engine = Engine::new(store.clone(), EngineConfig::default()).with_clock(clock.clone());
    let rb = runbook::parse(RUNBOOK, "paused.yaml").unwrap();
    let mut window = Window::parse("01:00-02:00 UTC").unwrap().to_json("01:00-02:00 UTC");
    window["pause"] = json!(true);
    let id = engine
        .create_run(CreateRun {
            window: Some(window),
            ..CreateRun::new(&rb, RUNBOOK)
        })
        .await
        .unwrap();

    // 03:00: the window is closed; the first step runs, the disruptive one waits.
    let outcome = engine.drive(&id, CancellationToken::new()).await.unwrap();
    assert_eq!(
        outcome,
        RunOutcome::OutsideWindow {
            step: "failover".into(),
            window: "01:00-02:00 UTC".into()
        }
    );
    let snap = store.load_run(&id).await.unwrap();
    assert_eq!(snap.run.status, RunStatus::Waiting);
    assert_eq!(snap.steps[0].status.as_str(), "completed");
    assert_eq!(
        snap.steps[1].status.as_str(),
        "pending",
        "the disruptive step did not start"
    );
    assert_eq!(snap.run.lease_owner, None, "the lease is released while it waits");

    // The next night at 01:30 the window is open and the run finishes.
    clock.0.store(at("2026-11-27T01:30:00Z"), Ordering::SeqCst);
    let outcome = engine.drive(&id, CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, RunOutcome::Succeeded);
    assert!(store.verify_audit(Some(&id)).await.unwrap().failure.is_none());
}
