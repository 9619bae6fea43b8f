#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 13: a store error an activity meets (saving its progress) reaches the engine's caller
//! with its type: a lost lease is a lease error (busy), a failed write a store error, never a
//! message re-wrapped as "bad input".

use std::sync::Arc;
use std::time::Duration;

use fogbook_engine::{CreateRun, Engine, EngineConfig, EngineError, ErrorKind, Observer, runbook};
use fogbook_state::{StateError, Store, StoreFault};
use tokio_util::sync::CancellationToken;

const THIEF: &str = "another-process";

/// Takes the run's lease over for [`THIEF`] right after a step's start is committed, before
/// its activity runs (as a process that found this one frozen would).
struct StealOnStart {
    store: Store,
    run: std::sync::Mutex<String>,
}

impl Observer for StealOnStart {
    fn step_started(&self, _step: &str, _uses: &str, _attempt: u32, _reentered: bool) {
        let store = self.store.clone();
        let run = self.run.lock().unwrap().clone();
        // Observers are synchronous; the takeover runs to its end on a thread of its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let holder = store.lease_owner(&run).await.unwrap();
                let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
                store
                    .acquire_lease(&run, THIEF, Duration::from_secs(60), holder, now)
                    .await
                    .unwrap();
            });
        })
        .join()
        .unwrap();
    }
}

async fn create(engine: &Engine, text: &str) -> String {
    let rb = runbook::parse(text, "typed.yaml").unwrap();
    engine.create_run(CreateRun::new(&rb, text)).await.unwrap()
}

#[tokio::test]
async fn a_lease_lost_while_saving_progress_is_a_lease_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let observer = Arc::new(StealOnStart {
        store: store.clone(),
        run: std::sync::Mutex::default(),
    });
    let engine = Engine::new(store.clone(), EngineConfig::default()).with_observer(observer.clone());
    let text = "runbook: typed\nversion: 1\nsteps:\n  - id: pause\n    uses: wait\n    with: { duration: 1s }\n";
    let run = create(&engine, text).await;
    *observer.run.lock().unwrap() = run.clone();

    let err = engine.drive(&run, CancellationToken::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err:?}");
    match err.state() {
        Some(StateError::LeaseLost { owner, .. }) => assert_eq!(owner, THIEF),
        other => panic!("expected the store's lost lease, got {other:?} ({err:?})"),
    }
    assert!(!matches!(err, EngineError::Internal { .. }));
    // Nothing of the wait was saved: its progress write was refused.
    let snap = store.load_run(&run).await.unwrap();
    assert_eq!(snap.steps[0].progress, None);
    assert_eq!(store.lease_owner(&run).await.unwrap().as_deref(), Some(THIEF));
}

#[tokio::test]
async fn a_store_failure_while_saving_progress_is_a_store_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let text =
        "runbook: typed\nversion: 1\nsteps:\n  - id: effect\n    uses: command\n    with: { program: \"true\" }\n";
    let run = create(&engine, text).await;
    // The writes of a drive: 0 takes the lease, 1 commits the step's start, 2 the intent the
    // command saves as its progress.
    store.inject_fault(2, StoreFault::DiskFull);

    let err = engine.drive(&run, CancellationToken::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err:?}");
    assert!(err.state().is_some(), "the store's own error: {err:?}");
}
