#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The moved mark (`fogbook store copy`) as a process sees it that opened the store before
//! the copy: the mark is read in its writes, not only when it opened the store. While the
//! copy reads the store, no new lease, claim or run (a fleet target's too) is taken on (the
//! live leases go on being renewed: a copy that finds a run's live is refused); once the
//! store is moved, the renewals (of a run's lease and of a fleet's) and the driver's next
//! step are refused. `store unmark` is an event of the store's own audit stream, with who
//! and why, and the chain verifies.

mod backends;
use backends::{Backend, fleet, leased, open_store, run, start};

use std::time::Duration;

use fogbook_state::{STORE_STREAM, StateError};

const TTL: Duration = Duration::from_secs(30);
const TARGET: &str = "postgres://fogbook@db.example/fogbook";

/// Whether `e` is the store's refusal for a mark in state `copying` (`done` false) or
/// `moved` (`done` true), naming the target.
fn refused(e: &StateError, done: bool) -> bool {
    matches!(e, StateError::StoreMoved { mark } if mark.done == done && mark.target == TARGET)
}

async fn a_store_opened_before_a_copy_takes_on_nothing_and_stops_driving(backend: Backend) {
    // `before` is the process that had the store open before the copy (a worker).
    let (guard, before) = open_store(backend);
    assert!(before.moved().is_none());
    before.create_run(leased("r1", "driver", 1_000, 30_000)).await.unwrap();
    before.create_run(run("r2")).await.unwrap();
    before
        .create_fleet(fleet(&["g1"], "fleet-driver", 60_000))
        .await
        .unwrap();

    let copier = guard.reopen();
    let mark = copier
        .mark_copying(TARGET.to_owned(), "copier:1:1".to_owned(), 2_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        before.moved().is_none(),
        "the mark read at open is stale: the writes read it"
    );

    // While the copy reads the store: no new lease, claim or run.
    let e = before
        .acquire_lease("r2", "worker", TTL, None, 3_000)
        .await
        .unwrap_err();
    assert!(refused(&e, false), "{e:?}");
    let claimed = before
        .claim_runs("worker", vec!["r2".to_owned()], Vec::new(), 1, TTL, 3_000)
        .await;
    match backend {
        Backend::Postgres => assert!(refused(&claimed.unwrap_err(), false)),
        // SQLite's workers claim nothing ahead: each drive takes its lease (refused above).
        Backend::Sqlite => assert_eq!(claimed.unwrap(), None),
    }
    let e = before.create_run(run("r3")).await.unwrap_err();
    assert!(refused(&e, false), "{e:?}");
    let e = before
        .start_fleet_target("f1", 0, "fleet-driver", run("t0"), 1)
        .await
        .unwrap_err();
    assert!(refused(&e, false), "a fleet's target run is a new run too: {e:?}");
    // The live drivers go on (the copy sees a run's lease and is refused).
    before.renew_lease("r1", "driver", TTL, 3_000).await.unwrap();
    before
        .renew_fleet_lease("f1", "fleet-driver", 63_000, 3_000)
        .await
        .unwrap();
    assert_eq!(guard.count("SELECT count(*) FROM runs WHERE id IN ('r3', 't0')"), 0);

    // The copy committed: the driver's renewal and its next step are refused.
    copier.end_copy(mark.id, true, None, 4_000).await.unwrap();
    let outcomes = before
        .renew_leases("driver", &["r1".to_owned()], TTL, 5_000)
        .await
        .unwrap();
    assert!(matches!(&outcomes[0], Err(e) if refused(e, true)), "{outcomes:?}");
    let e = before.renew_lease("r1", "driver", TTL, 5_000).await.unwrap_err();
    assert!(refused(&e, true), "{e:?}");
    // A fleet's driver too: its lease is not renewed on a store whose fleets live elsewhere.
    let e = before
        .renew_fleet_lease("f1", "fleet-driver", 65_000, 5_000)
        .await
        .unwrap_err();
    assert!(refused(&e, true), "{e:?}");
    let e = before
        .start_step("r1", "driver", start("a", Vec::new(), 5_000))
        .await
        .unwrap_err();
    assert!(refused(&e, true), "{e:?}");
    assert_eq!(
        guard.count("SELECT count(*) FROM steps WHERE run_id = 'r1' AND status <> 'pending'"),
        0,
        "no step started"
    );

    // The copy abandoned: unmarked, audited in the store's stream, and the store drives again.
    let taken = copier
        .unmark("tester".to_owned(), "copy abandoned".to_owned(), 6_000)
        .await
        .unwrap();
    assert_eq!(taken.map(|m| m.id), Some(mark.id));
    before.acquire_lease("r2", "worker", TTL, None, 7_000).await.unwrap();
    let events = before.events(STORE_STREAM).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!((e.kind.as_str(), e.seq, e.at), ("store.unmarked", 1, 6_000));
    assert_eq!(e.data["by"], "tester");
    assert_eq!(e.data["reason"], "copy abandoned");
    assert_eq!(e.data["target"], TARGET);
    assert_eq!(e.data["state"], "moved");
    let report = before.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);

    // A second copy and unmark extend the same stream.
    let again = copier
        .mark_copying(TARGET.to_owned(), "copier:1:1".to_owned(), 8_000)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(again.id, mark.id);
    copier
        .unmark("tester".to_owned(), "second try abandoned".to_owned(), 9_000)
        .await
        .unwrap()
        .unwrap();
    let events = before.events(STORE_STREAM).await.unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(events[1].data["state"], "copying");
    assert!(before.verify_audit(None).await.unwrap().failure.is_none());
}

on_both_backends!(a_store_opened_before_a_copy_takes_on_nothing_and_stops_driving);
