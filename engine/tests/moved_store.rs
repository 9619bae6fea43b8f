#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A driver in a long wait (no step reads the store, only the heartbeat renews the lease)
//! whose store changes under it:
//!
//! - marked as moved (`fogbook store copy`) by a process other than its own: its
//!   heartbeat's renewal is refused, and it stops as a driver whose lease was lost, starting
//!   no further step, with the store's refusal (naming the target) as its error;
//! - gone (its PostgreSQL server stopped): it stops once its lease could not be renewed
//!   before it expires, and says the database failed: `EngineError::LeaseUnrenewed` with the
//!   store's failure as its cause (at the CLI, exit 4 with the PostgreSQL hint), not "its
//!   lease expired while this process was stopped or stalled", which sent the operator
//!   looking for a frozen process.

use std::str::FromStr;
use std::time::Duration;

use fogbook_engine::{CreateRun, Engine, EngineConfig, EngineError, runbook};
use fogbook_state::pg::StoreUrl;
use fogbook_state::{StateError, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const RUNBOOK: &str = r#"
runbook: long-wait
version: 1
steps:
  - id: pause
    uses: wait
    with: { duration: 10m }
  - id: after
    uses: assert
    with: { that: true, message: never reached }
"#;

/// A run of [`RUNBOOK`] on `store`, driven (900 ms leases) into its wait: its wake-up time
/// is saved when this returns.
async fn driving_into_its_wait(store: &Store) -> (String, JoinHandle<Result<fogbook_engine::RunOutcome, EngineError>>) {
    let config = EngineConfig {
        lease_ttl: Duration::from_millis(900),
        ..EngineConfig::default()
    };
    let engine = Engine::new(store.clone(), config);
    let rb = runbook::parse(RUNBOOK, "long-wait.yaml").unwrap();
    let run = engine.create_run(CreateRun::new(&rb, RUNBOOK)).await.unwrap();
    let (e, r) = (engine.clone(), run.clone());
    let driver = tokio::spawn(async move { e.drive(&r, CancellationToken::new()).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.load_run(&run).await.unwrap().steps[0].progress.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the run never started its wait");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (run, driver)
}

const TARGET: &str = "postgres://fogbook@db.example/fogbook";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_stops_when_its_store_is_moved_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let (run, driver) = driving_into_its_wait(&store).await;

    // Another process marks the store as moved (as a copy that judged the lease gone would).
    let copier = Store::open(&path).unwrap();
    let mark = copier
        .mark_copying(TARGET.to_owned(), "copier:1:1".to_owned(), 0)
        .await
        .unwrap()
        .unwrap();
    copier.end_copy(mark.id, true, None, 0).await.unwrap();

    // The next heartbeat (a third of the lease) is refused: the driver stops.
    let outcome = tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .expect("the driver went on driving on the moved store")
        .unwrap();
    match outcome {
        Err(EngineError::State(StateError::StoreMoved { mark })) => {
            assert!(mark.done);
            assert_eq!(mark.target, TARGET);
        }
        other => panic!("expected the store's refusal, got {other:?}"),
    }
    let snap = store.load_run(&run).await.unwrap();
    assert_eq!(
        snap.steps[1].status.as_str(),
        "pending",
        "no step started after the move"
    );
    copier.close().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_whose_database_went_away_reports_the_database_not_a_stall() {
    let server = fogbook_testpg::TestPostgres::start();
    let url = StoreUrl::from_str(&server.url()).unwrap();
    let store = Store::open_url(&url).unwrap();
    // From here only the heartbeat uses the store.
    let (_run, driver) = driving_into_its_wait(&store).await;

    drop(server);
    let outcome = tokio::time::timeout(Duration::from_secs(60), driver)
        .await
        .expect("the driver went on without its database")
        .unwrap();
    match outcome {
        Err(EngineError::LeaseUnrenewed { cause, .. }) => {
            assert!(cause.contains("PostgreSQL"), "names the database: {cause}");
        }
        other => panic!("expected the store's failure, got {other:?}"),
    }
}
