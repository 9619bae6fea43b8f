#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Store::copy_snapshot` and `Store::copy_restore` (`fogbook store copy`), each direction:
//! SQLite to PostgreSQL (`sqlite::…`) and PostgreSQL to SQLite (`postgres::…`). The copy
//! keeps the chain (same head, same count, verifies), the rows read the same, and the target
//! goes on working: a new window there gets a new id (PostgreSQL's identity sequence was
//! moved past the copied ones), and new events extend the copied chain.

mod backends;
use backends::{Backend, complete, names, open_store, run, start};

use std::sync::Arc;

use fogbook_state::{CopyOutcome, NewRun, WindowKind};
use serde_json::json;

fn new_run(id: &str, lock: &str) -> NewRun {
    NewRun {
        params: json!({ "x": 1 }),
        steps: names(&["a", "b"]),
        locks: vec![lock.to_owned()],
        lease: Some(("me".to_owned(), 1_000 + 30_000)),
        ..run(id)
    }
}

async fn a_copy_keeps_the_chain_and_the_target_goes_on(source_backend: Backend) {
    let target_backend = match source_backend {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Sqlite,
    };
    let (_s, source) = open_store(source_backend);
    source.create_run(new_run("r1", "fog/a")).await.unwrap();
    source
        .start_step("r1", "me", start("a", vec![WindowKind::Unprotected], 2_000))
        .await
        .unwrap();
    source
        .save_progress("r1", "me", "a", 1, json!({ "url": "x" }), 2_500)
        .await
        .unwrap();
    source
        .finish_step("r1", "me", complete("a", vec![WindowKind::Unprotected], 3_000))
        .await
        .unwrap();
    let before = source.verify_audit(None).await.unwrap();
    assert!(before.failure.is_none());
    let snap = source.copy_snapshot(4_000).await.unwrap();
    assert_eq!(snap.chain(), (before.head.as_str(), before.events as i64));
    assert_eq!(snap.live_leases().len(), 1, "r1's lease is live at 4,000");

    let (t, target) = open_store(target_backend);
    let outcome = target.copy_restore(snap, Arc::new(|_, _, _| {})).await.unwrap();
    let CopyOutcome::Copied {
        counts,
        chain_head,
        chain_count,
    } = outcome
    else {
        panic!("the target was empty: {outcome:?}")
    };
    assert_eq!(
        (chain_head.as_str(), chain_count),
        (before.head.as_str(), before.events as i64)
    );
    let rows = |table: &str| counts.iter().find(|(t, _)| *t == table).unwrap().1;
    assert_eq!(
        (rows("runs"), rows("steps"), rows("windows"), rows("locks")),
        (1, 2, 1, 1)
    );
    assert_eq!(rows("events"), before.events);
    assert_eq!(t.count("SELECT count(*) FROM events"), before.events as i64);

    let after = target.verify_audit(None).await.unwrap();
    assert!(after.failure.is_none(), "{:?}", after.failure);
    assert_eq!(after.head, before.head);
    assert_eq!(
        format!("{:?}", target.events("r1").await.unwrap()),
        format!("{:?}", source.events("r1").await.unwrap()),
        "the trail reads the same"
    );
    let (a, b) = (
        target.load_run("r1").await.unwrap(),
        source.load_run("r1").await.unwrap(),
    );
    assert_eq!(format!("{a:?}"), format!("{b:?}"), "the run reads the same");

    // The target goes on: a new run opens a window (a new id) and extends the chain.
    target.create_run(new_run("r2", "fog/b")).await.unwrap();
    target
        .start_step("r2", "me", start("a", vec![WindowKind::Unprotected], 5_000))
        .await
        .unwrap();
    let w2 = target.load_run("r2").await.unwrap().windows;
    let w1 = target.load_run("r1").await.unwrap().windows;
    assert_eq!((w1.len(), w2.len()), (1, 1));
    assert_ne!(w1[0].id, w2[0].id, "the new window has an id of its own");
    let extended = target.verify_audit(None).await.unwrap();
    assert!(extended.failure.is_none(), "{:?}", extended.failure);
    assert!(extended.events > before.events);

    // A second copy into the now non-empty target writes nothing.
    let again = source.copy_snapshot(4_000).await.unwrap();
    let refused = target.copy_restore(again, Arc::new(|_, _, _| {})).await.unwrap();
    let CopyOutcome::TargetNotEmpty(held) = refused else {
        panic!("the target holds data: {refused:?}")
    };
    assert!(held.contains(&("runs", 2)), "{held:?}");
    assert_eq!(target.verify_audit(None).await.unwrap().events, extended.events);
}

on_both_backends!(a_copy_keeps_the_chain_and_the_target_goes_on);
