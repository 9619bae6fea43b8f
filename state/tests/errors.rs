#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Errors keep their type and their cause: a caller tells "busy", "not found", "refused" and
//! "the database failed" apart by [`StateError::kind`], never by reading the message.

mod backends;
use backends::{Backend, names, open_store, run, start};
use std::time::Duration;

use fogbook_state::{ErrorKind, NewRun, StateError, Store};

const TTL: Duration = Duration::from_secs(30);

fn new_run(id: &str, locks: &[&str], owner: Option<&str>) -> NewRun {
    NewRun {
        locks: names(locks),
        lease: owner.map(|o| (o.to_owned(), 1_000 + 30_000)),
        ..run(id)
    }
}

/// The whole chain of causes, as the CLI prints it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(" / {cause}"));
        source = cause.source();
    }
    text
}

async fn each_failure_says_its_kind(backend: Backend) {
    let (_db, store) = open_store(backend);
    store.create_run(new_run("r1", &["k"], Some("a"))).await.unwrap();

    let lock = store.create_run(new_run("r2", &["k"], None)).await.unwrap_err();
    assert!(matches!(lock, StateError::LockHeld { .. }), "{lock:?}");
    assert_eq!(lock.kind(), ErrorKind::Busy);

    store
        .acquire_lease("r1", "b", TTL, Some("a".to_owned()), 2_000)
        .await
        .unwrap();
    let lost = store
        .start_step("r1", "a", start("a", vec![], 2_100))
        .await
        .unwrap_err();
    assert!(matches!(lost, StateError::LeaseLost { .. }), "{lost:?}");
    assert_eq!(lost.kind(), ErrorKind::Busy);

    let missing = store.load_run("nope").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing:?}");

    let unknown_step = store
        .start_step("r1", "b", start("zz", vec![], 2_200))
        .await
        .unwrap_err();
    assert_eq!(unknown_step.kind(), ErrorKind::NotFound, "{unknown_step:?}");

    store.cancel("r1", "op", None, 2_300).await.unwrap();
    let cancelled = store
        .start_step("r1", "b", start("a", vec![], 2_400))
        .await
        .unwrap_err();
    assert!(matches!(cancelled, StateError::CancelRequested { .. }), "{cancelled:?}");
    assert_eq!(cancelled.kind(), ErrorKind::Refused);
    store.close().await;
}

#[tokio::test]
async fn a_status_fogbook_never_writes_is_a_corrupt_database_not_a_bad_transition() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    store.create_run(new_run("r1", &[], None)).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE runs SET status = 'bogus' WHERE id = 'r1'")
        .unwrap();
    let err = store.load_run("r1").await.unwrap_err();
    assert!(
        matches!(err, StateError::CorruptValue { what: "run status", .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Database);
    assert!(err.to_string().contains("bogus"), "{err}");
    store.close().await;
}

#[tokio::test]
async fn a_failed_statement_keeps_the_database_error_as_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    store.create_run(new_run("r1", &[], None)).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE approvals")
        .unwrap();
    let err = store.approval("r1", "a").await.unwrap_err();
    assert!(matches!(err, StateError::Database { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Database);
    let source = std::error::Error::source(&err).expect("the database error is kept");
    assert!(source.to_string().contains("no such table"), "{}", chain(&err));
    store.close().await;
}

on_both_backends!(each_failure_says_its_kind,);
