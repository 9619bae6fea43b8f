#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The rows agree with the trail: `verify_audit` compares runs, steps and windows with what
//! the events record, and a step the trail records as done never starts again.

mod backends;
use backends::{complete, names, run, start};

use fogbook_state::{NewRun, RunStatus, StateError, Store, WindowKind};
use serde_json::json;

fn new_run(id: &str) -> NewRun {
    NewRun {
        steps: names(&["a", "b"]),
        lease: Some(("me".to_owned(), 100_000)),
        ..run(id)
    }
}

/// A run whose step `a` opened a window and completed; `b` is next. Verifies clean.
async fn half_run() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store.create_run(new_run("r1")).await.unwrap();
    store
        .start_step("r1", "me", start("a", vec![WindowKind::Unprotected], 2_000))
        .await
        .unwrap();
    store
        .finish_step("r1", "me", complete("a", vec![], 3_000))
        .await
        .unwrap();
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    (dir, store)
}

/// Changes the database behind fogbook's back, as an attacker or a stray tool would.
fn edit(dir: &tempfile::TempDir, sql: &str) {
    rusqlite::Connection::open(dir.path().join("s.db"))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

async fn failure(store: &Store) -> String {
    let report = store.verify_audit(Some("r1")).await.unwrap();
    let f = report.failure.expect("the disagreement is found");
    assert_eq!(f.run_id, "r1");
    f.reason
}

#[tokio::test]
async fn a_step_row_edited_back_to_pending_is_named_and_never_starts_again() {
    let (d, store) = half_run().await;
    edit(
        &d,
        "UPDATE steps SET status = 'pending' WHERE run_id = 'r1' AND step_id = 'a'",
    );
    let reason = failure(&store).await;
    assert!(
        reason.contains("step `a`") && reason.contains("`pending`") && reason.contains("`completed`"),
        "{reason}"
    );
    let again = store
        .start_step("r1", "me", start("a", vec![], 4_000))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, StateError::TrailDisagrees { run_id, step_id, .. } if run_id == "r1" && step_id == "a"),
        "{again:?}"
    );
    assert!(again.to_string().contains("audit verify"), "{again}");
    // Nothing was written: the trail still holds one start of `a`.
    let starts = store
        .events("r1")
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "step.started" && e.step_id.as_deref() == Some("a"))
        .count();
    assert_eq!(starts, 1);
}

#[tokio::test]
async fn a_step_row_edited_back_to_running_is_not_reentered() {
    let (d, store) = half_run().await;
    edit(
        &d,
        "UPDATE steps SET status = 'running' WHERE run_id = 'r1' AND step_id = 'a'",
    );
    let again = store
        .record_event("r1", "step.reentered", Some("a".to_owned()), json!({}), 4_000)
        .await
        .unwrap_err();
    assert!(matches!(again, StateError::TrailDisagrees { .. }), "{again:?}");
}

#[tokio::test]
async fn an_edited_run_status_is_named() {
    let (d, store) = half_run().await;
    edit(&d, "UPDATE runs SET status = 'succeeded' WHERE id = 'r1'");
    let reason = failure(&store).await;
    assert!(
        reason.contains("`succeeded`") && reason.contains("`running`"),
        "{reason}"
    );
}

#[tokio::test]
async fn an_edited_or_deleted_window_row_is_named() {
    let (d, store) = half_run().await;
    edit(&d, "UPDATE windows SET opened_at = 2500 WHERE run_id = 'r1'");
    let reason = failure(&store).await;
    assert!(
        reason.contains("window 1 (unprotected)") && reason.contains("2500"),
        "{reason}"
    );
    edit(&d, "DELETE FROM windows WHERE run_id = 'r1'");
    let reason = failure(&store).await;
    assert!(reason.contains("window 1") && reason.contains("no row"), "{reason}");
}

/// A clock stepped back between a window's open and its close: the close is stored at the
/// open (duration 0), never before it, and the rows still agree with the trail.
#[tokio::test]
async fn a_window_never_closes_before_it_opened() {
    let (_d, store) = half_run().await;
    store.start_step("r1", "me", start("b", vec![], 3_000)).await.unwrap();
    store
        .finish_step("r1", "me", complete("b", vec![WindowKind::Unprotected], 1_500))
        .await
        .unwrap();
    let snap = store.load_run("r1").await.unwrap();
    assert_eq!(snap.windows[0].opened_at, 2_000);
    assert_eq!(snap.windows[0].closed_at, Some(2_000), "clamped to the open");
    let closed = store
        .events("r1")
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "window.closed")
        .unwrap();
    assert_eq!(closed.data["duration_ms"], 0);
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    store
        .set_run_status("r1", "me", RunStatus::Succeeded, None, 4_000)
        .await
        .unwrap();
}

/// Text that is not valid UTF-8 (written outside fogbook) is named: which event, run or
/// step, which column; `verify_audit` reports the event as altered.
#[tokio::test]
async fn an_unreadable_event_or_row_is_named() {
    let (d, store) = half_run().await;
    edit(
        &d,
        "DROP TRIGGER events_no_update;
         UPDATE events SET data = CAST(X'7B22FF227D' AS TEXT) WHERE run_id = 'r1' AND seq = 3;",
    );
    let err = store.events("r1").await.unwrap_err();
    assert!(matches!(err, StateError::Unreadable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("event #3 (step.started) of run r1, column data") && text.contains("audit verify"),
        "{text}"
    );
    let reason = failure(&store).await;
    assert!(
        reason.contains("event #3 (step.started)") && reason.contains("`data` is not valid UTF-8"),
        "{reason}"
    );

    edit(
        &d,
        "UPDATE steps SET output = CAST(X'FF' AS TEXT) WHERE run_id = 'r1' AND step_id = 'a'",
    );
    let err = store.load_run("r1").await.unwrap_err().to_string();
    assert!(err.contains("step `a`, column output"), "{err}");
    edit(&d, "UPDATE runs SET params = CAST(X'FF' AS TEXT) WHERE id = 'r1'");
    let err = store.list_runs(Default::default()).await.unwrap_err().to_string();
    assert!(err.contains("run r1, column params"), "{err}");
}
