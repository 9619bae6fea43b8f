#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The store's side of fleets: a target starts once, under the fleet's lease, and every
//! decision is in the hash chain.

mod backends;
use backends::{Backend, fleet, open_store, run};
use fogbook_state::{NewFleet, NewRun, StateError};
use serde_json::json;

fn new_run(id: &str, group: &str, now: i64) -> NewRun {
    NewRun {
        params: json!({ "group": group }),
        locks: vec![format!("fog/{group}")],
        lease: Some(("driver-1".to_owned(), now + 30_000)),
        created_by: json!({ "fleet": "f1" }),
        now,
        ..run(id)
    }
}

fn new_fleet(owner: &str) -> NewFleet {
    fleet(&["g1", "g2"], owner, 10_000)
}

async fn a_target_starts_once_with_its_run_in_the_same_transaction(backend: Backend) {
    let (db, store) = open_store(backend);
    let runs = || db.count("SELECT count(*) FROM runs");
    store.create_fleet(new_fleet("driver-1")).await.unwrap();
    store
        .start_fleet_target("f1", 0, "driver-1", new_run("r1", "g1", 2_000), 1)
        .await
        .unwrap();
    let snap = store.load_fleet("f1").await.unwrap();
    assert_eq!(snap.targets[0].status, "running");
    assert_eq!(snap.targets[0].run_id.as_deref(), Some("r1"));
    // A second start of the same target (a driver that believed it pending) is refused and
    // creates no run.
    let again = store
        .start_fleet_target("f1", 0, "driver-1", new_run("r2", "g1-other", 2_100), 1)
        .await
        .unwrap_err();
    assert!(matches!(again, StateError::InvalidTransition { .. }), "{again}");
    assert!(again.to_string().contains("has already started"), "{again}");
    assert_eq!(runs(), 1);
    store
        .finish_fleet_target("f1", 0, "driver-1", "succeeded", json!({}), 3_000)
        .await
        .unwrap();
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    store.close().await;
}

async fn a_driver_that_lost_the_fleets_lease_starts_nothing(backend: Backend) {
    let (db, store) = open_store(backend);
    let runs = || db.count("SELECT count(*) FROM runs");
    store.create_fleet(new_fleet("driver-1")).await.unwrap();
    // driver-1's lease (until 10 000) is live: driver-2 is refused.
    let held = store
        .acquire_fleet_lease("f1", "driver-2", 40_000, None, 5_000)
        .await
        .unwrap_err();
    assert!(matches!(held, StateError::FleetLeaseHeld { .. }), "{held}");
    // Expired, it is taken over; driver-1, late, can start nothing.
    let previous = store
        .acquire_fleet_lease("f1", "driver-2", 40_000, None, 11_000)
        .await
        .unwrap();
    assert_eq!(previous.as_deref(), Some("driver-1"));
    let fenced = store
        .start_fleet_target("f1", 1, "driver-1", new_run("r9", "g2", 11_500), 1)
        .await
        .unwrap_err();
    assert!(matches!(fenced, StateError::LeaseLost { .. }), "{fenced}");
    assert_eq!(runs(), 0);
    store
        .start_fleet_target("f1", 1, "driver-2", new_run("r2", "g2", 12_000), 1)
        .await
        .unwrap();
    assert_eq!(runs(), 1);
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    store.close().await;
}

/// Fencing by lease epoch for a fleet: another host takes the expired lease over under the
/// same owner name; the first host's driver then starts nothing (the lease error), and the
/// new holder's start goes through.
async fn a_fleet_taken_over_under_the_same_name_fences_the_old_driver(backend: Backend) {
    let (db, host1) = open_store(backend);
    let host2 = db.reopen();
    let runs = || db.count("SELECT count(*) FROM runs");
    host1.create_fleet(new_fleet("driver-1")).await.unwrap();
    // The lease ended at 10 000; host2 takes it at 11 000 under the same name.
    host2
        .acquire_fleet_lease("f1", "driver-1", 40_000, None, 11_000)
        .await
        .unwrap();
    let fenced = host1
        .start_fleet_target("f1", 0, "driver-1", new_run("r1", "g1", 11_500), 1)
        .await
        .unwrap_err();
    assert!(matches!(fenced, StateError::LeaseLost { .. }), "{fenced}");
    assert!(fenced.to_string().contains("epoch"), "{fenced}");
    assert_eq!(runs(), 0);
    host2
        .start_fleet_target("f1", 0, "driver-1", new_run("r1", "g1", 12_000), 1)
        .await
        .unwrap();
    assert_eq!(runs(), 1);
    host1.close().await;
    host2.close().await;
}

on_both_backends!(
    a_fleet_taken_over_under_the_same_name_fences_the_old_driver,
    a_target_starts_once_with_its_run_in_the_same_transaction,
    a_driver_that_lost_the_fleets_lease_starts_nothing,
);
