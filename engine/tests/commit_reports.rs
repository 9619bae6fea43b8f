#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Nothing is reported as done before its commit, and a commit that fails names the run, the
//! transition and how to resume.

use std::sync::{Arc, Mutex};

use fogbook_engine::{CreateRun, Engine, EngineConfig, Observer, RunOutcome, runbook};
use fogbook_state::{Millis, Store, StoreFault};
use tokio_util::sync::CancellationToken;

const RUNBOOK: &str = r#"
runbook: commits
version: 1
steps:
  - id: s1
    uses: command
    unprotected: opens
    with: { program: "true", on_ambiguous: rerun }
  - id: s2
    uses: command
    unprotected: closes
    with: { program: "true", on_ambiguous: rerun }
"#;

/// Records what the engine reports, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Observer for Seen {
    fn step_completed(&self, step: &str, _elapsed_ms: Millis) {
        self.0.lock().unwrap().push(format!("completed {step}"));
    }

    fn window(&self, kind: &str, opened: bool, step: &str) {
        let edge = if opened { "opened" } else { "closed" };
        self.0.lock().unwrap().push(format!("{kind} {edge} by {step}"));
    }
}

/// The writes of one drive: 0 the lease, 1 the start of s1, 2 its intent, 3 the end of s1
/// with the start of s2, 4 the intent of s2, 5 the end of s2 with the run's success.
const END_OF_S2: u64 = 5;

#[tokio::test]
async fn a_disk_full_commit_reports_nothing_done_and_names_the_run_the_step_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let seen = Arc::new(Seen::default());
    let engine = Engine::new(store.clone(), EngineConfig::default()).with_observer(seen.clone());
    let rb = runbook::parse(RUNBOOK, "commits.yaml").unwrap();
    let run = engine.create_run(CreateRun::new(&rb, RUNBOOK)).await.unwrap();
    store.inject_fault(END_OF_S2, StoreFault::DiskFull);
    let err = engine.drive(&run, CancellationToken::new()).await.unwrap_err();
    assert_eq!(
        seen.lines(),
        ["unprotected opened by s1", "completed s1"],
        "s2's end and the window's close were not committed, so they are not reported"
    );
    let text = err.to_string();
    assert!(
        text.contains(&run) && text.contains("step `s2`") && text.contains(&format!("fogbook resume {run}")),
        "names the run, the step and how to resume: {text}"
    );
    assert!(text.contains("full"), "says what happened: {text}");

    assert_eq!(
        engine.drive(&run, CancellationToken::new()).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(
        seen.lines(),
        [
            "unprotected opened by s1",
            "completed s1",
            "completed s2",
            "unprotected closed by s2"
        ]
    );
}
