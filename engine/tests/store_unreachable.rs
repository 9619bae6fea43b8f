#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A driver whose PostgreSQL server goes away while it waits (no step reads the store, only
//! the heartbeat renews the lease) stops once its lease could not be renewed before it
//! expires, and says what stopped it: `EngineError::LeaseUnrenewed` with the store's failure
//! as its cause (at the CLI, exit 4 with the PostgreSQL hint), not "its lease expired while
//! this process was stopped or stalled", which sent the operator looking for a frozen
//! process. Nothing more is started.

use std::str::FromStr;
use std::time::Duration;

use fogbook_engine::{CreateRun, Engine, EngineConfig, EngineError, runbook};
use fogbook_state::Store;
use fogbook_state::pg::StoreUrl;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_whose_database_went_away_reports_the_database_not_a_stall() {
    let server = fogbook_testpg::TestPostgres::start();
    let url = StoreUrl::from_str(&server.url()).unwrap();
    let store = Store::open_url(&url).unwrap();
    let config = EngineConfig {
        lease_ttl: Duration::from_millis(900),
        ..EngineConfig::default()
    };
    let engine = Engine::new(store.clone(), config);
    let rb = runbook::parse(RUNBOOK, "long-wait.yaml").unwrap();
    let run = engine.create_run(CreateRun::new(&rb, RUNBOOK)).await.unwrap();
    let (e, r) = (engine.clone(), run.clone());
    let driver = tokio::spawn(async move { e.drive(&r, CancellationToken::new()).await });
    // Into its wait (its wake-up time saved): from here only the heartbeat uses the store.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.load_run(&run).await.unwrap().steps[0].progress.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the run never started its wait");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

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
