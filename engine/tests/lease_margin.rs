#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 20, item 1: another process takes an expired lease over only a safety margin after
//! its expiry, when the previous driver's own deadline (the lease minus that margin, on its
//! monotonic clock) has certainly passed.

use std::time::Duration;

use fogbook_engine::{CreateRun, Engine, EngineConfig, EngineError, Owner, RunOutcome, runbook};
use fogbook_state::pg::StoreUrl;
use fogbook_state::{StateError, Store};
use tokio_util::sync::CancellationToken;

const RUNBOOK: &str = r#"
runbook: one-step
version: 1
steps:
  - id: only
    uses: assert
    with: { that: true, message: never }
"#;

/// The body runs on both backends: `sqlite::…` and `postgres::…` (a throwaway server).
async fn an_expired_lease_is_taken_over_only_after_the_margin(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = postgres.then(fogbook_testpg::TestPostgres::start);
    let url: StoreUrl = match &server {
        Some(server) => server.url().parse().unwrap(),
        None => StoreUrl::Sqlite(dir.path().join("s.db")),
    };
    let store = Store::open_url(&url).unwrap();
    let config = EngineConfig {
        lease_ttl: Duration::from_secs(1),
        lease_margin: Some(Duration::from_millis(400)),
        ..EngineConfig::default()
    };
    // A creates the run with its lease and then goes silent (as if frozen): it lives (the
    // same process), so only expiry lets another driver in.
    let a = Engine::new(store.clone(), config.clone()).with_owner(Owner::this_process(Some("a")));
    let b = Engine::new(store.clone(), config).with_owner(Owner::this_process(Some("b")));
    let rb = runbook::parse(RUNBOOK, "one-step.yaml").unwrap();
    let run = a
        .create_run(CreateRun {
            take_lease: true,
            ..CreateRun::new(&rb, RUNBOOK)
        })
        .await
        .unwrap();
    let expires_at = store.load_run(&run).await.unwrap().run.lease_expires_at.unwrap();

    // B tries until the store lets it in (refused while A's lease is valid).
    let outcome = loop {
        match b.drive(&run, CancellationToken::new()).await {
            Err(EngineError::State(StateError::LeaseHeld { .. })) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(outcome, RunOutcome::Succeeded);
    let events = store.events(&run).await.unwrap();
    let taken = events
        .iter()
        .find(|e| e.kind == "lease.taken_over")
        .expect("B took the lease over");
    assert!(
        taken.at >= expires_at + 400,
        "taken over {} ms after the expiry; the margin is 400 ms",
        taken.at - expires_at
    );
}

mod sqlite {
    #[tokio::test]
    async fn an_expired_lease_is_taken_over_only_after_the_margin() {
        super::an_expired_lease_is_taken_over_only_after_the_margin(false).await;
    }
}

mod postgres {
    #[tokio::test]
    async fn an_expired_lease_is_taken_over_only_after_the_margin() {
        super::an_expired_lease_is_taken_over_only_after_the_margin(true).await;
    }
}
