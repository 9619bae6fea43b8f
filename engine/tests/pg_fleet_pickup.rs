#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 17: a worker picks up a fleet nobody drives by the database's clock. A worker on
//! a host whose clock runs ten minutes ahead does not see a fleet whose driver holds a live
//! lease (by the database's clock) as free, and sees it free once that lease has expired.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fogbook_engine::{Clock, Engine, EngineConfig};
use fogbook_state::pg::StoreUrl;
use fogbook_state::{NewFleet, NewFleetTarget, Store};
use serde_json::json;

/// How far the worker's clock is off.
const SKEW: i64 = 10 * 60 * 1_000;

fn real_now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// The host's clock, ten minutes ahead.
#[derive(Debug)]
struct Ahead;

impl Clock for Ahead {
    fn now_ms(&self) -> i64 {
        real_now() + SKEW
    }
}

#[tokio::test]
async fn a_worker_whose_clock_runs_ahead_leaves_a_driven_fleet_alone() {
    let server = fogbook_testpg::TestPostgres::start();
    let url: StoreUrl = server.url().parse().unwrap();
    let store = Store::open_url(&url).unwrap();
    // A driver on another host holds the fleet's lease for 4 s (by the database's clock).
    let now = real_now();
    store
        .create_fleet(NewFleet {
            id: "f1".to_owned(),
            name: "move".to_owned(),
            source_path: None,
            fleet_text: "fleet: move".to_owned(),
            spec: json!({ "rate": { "max_concurrency": 1 } }),
            runbook_name: "rb".to_owned(),
            runbook_text: "runbook: rb".to_owned(),
            runbook_source: None,
            targets: vec![NewFleetTarget {
                name: "g1".to_owned(),
                wave: 0,
                params: json!({}),
            }],
            created_by: json!("test"),
            lease: Some(("elsewhere:4242:1".to_owned(), now + 4_000)),
            now,
        })
        .await
        .unwrap();
    let expires = store.load_fleet("f1").await.unwrap().fleet.lease_expires_at.unwrap();
    let worker = Engine::new(store.clone(), EngineConfig::default()).with_clock(Arc::new(Ahead));

    let free = fogbook_engine::fleet::drivable_fleets(&worker, &BTreeSet::new())
        .await
        .unwrap();
    if store.lease_now(0).await.unwrap() < expires {
        assert!(free.is_empty(), "a fleet driven live is not free: {free:?}");
    }
    // Once the lease has expired by the database's clock, the fleet is free.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.lease_now(0).await.unwrap() <= expires {
        assert!(Instant::now() < deadline, "the server's clock did not pass the expiry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let free = fogbook_engine::fleet::drivable_fleets(&worker, &BTreeSet::new())
        .await
        .unwrap();
    assert_eq!(free, ["f1"]);
}
