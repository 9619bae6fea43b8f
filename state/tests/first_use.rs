#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Opening a database: many processes at once on a new file, and schema versions no fogbook
//! writes.

use std::sync::{Arc, Barrier};

use fogbook_state::{StateError, Store};

/// Ten connections (each its own SQLite connection, as ten processes would have) open one
/// new file at the same instant: every open succeeds and the schema is applied once.
#[test]
fn ten_concurrent_first_opens_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let barrier = Arc::new(Barrier::new(10));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Store::open(&path)
                    .map(|_| ())
                    .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))
            })
        })
        .collect();
    let failures: Vec<String> = handles.into_iter().filter_map(|h| h.join().unwrap().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of 10 opens failed: {failures:?}",
        failures.len()
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

/// A negative `user_version` is named as a version no fogbook writes, with what to do, and
/// no SQL reaches the message.
#[tokio::test]
async fn an_unknown_schema_version_is_named_without_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    Store::open(&path).unwrap().close().await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", -1)
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StateError::UnknownSchema { found: -1, .. }), "{err:?}");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!("\n{s}"));
        source = s.source();
    }
    assert!(!text.contains("CREATE"), "no SQL in the message: {text}");
    assert!(text.contains("schema version -1") && text.contains("backup"), "{text}");
}
