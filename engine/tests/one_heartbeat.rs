#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 13: one heartbeat per engine. The leases of all the runs an engine drives are
//! renewed together, in one store commit per heartbeat, not one commit per run.

use std::time::Duration;

use fogbook_engine::{CreateRun, Engine, EngineConfig, RunOutcome, runbook};
use fogbook_state::Store;
use tokio_util::sync::CancellationToken;

const RUNBOOK: &str = r#"
runbook: long-wait
version: 1
steps:
  - id: pause
    uses: wait
    with: { duration: 10m }
"#;

const RUNS: usize = 6;
/// Heartbeats (renewals of the first run's lease) counted.
const BEATS: usize = 4;

async fn lease_expiry(store: &Store, run: &str) -> i64 {
    store.load_run(run).await.unwrap().run.lease_expires_at.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commit_renews_the_leases_of_all_the_runs_an_engine_drives() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let config = EngineConfig {
        lease_ttl: Duration::from_millis(900),
        ..EngineConfig::default()
    };
    let engine = Engine::new(store.clone(), config);
    let rb = runbook::parse(RUNBOOK, "long-wait.yaml").unwrap();
    let stop = CancellationToken::new();
    let mut runs = Vec::new();
    let mut drivers = Vec::new();
    for _ in 0..RUNS {
        let run = engine.create_run(CreateRun::new(&rb, RUNBOOK)).await.unwrap();
        let (e, r, s) = (engine.clone(), run.clone(), stop.clone());
        drivers.push(tokio::spawn(async move { e.drive(&r, s).await }));
        // One run at a time into its wait (its wake-up time saved), so that the runs'
        // own timers, if each had one, would not line up.
        loop {
            let snap = store.load_run(&run).await.unwrap();
            if snap.steps[0].progress.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        runs.push(run);
    }

    let before_expiry: Vec<i64> = expiries(&store, &runs).await;
    let commits_before = store.commit_count();
    let mut seen = before_expiry[0];
    let mut beats = 0;
    while beats < BEATS {
        let now = lease_expiry(&store, &runs[0]).await;
        if now != seen {
            seen = now;
            beats += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let commits = store.commit_count() - commits_before;
    let after_expiry = expiries(&store, &runs).await;

    // Every run's lease was renewed meanwhile...
    for (i, (b, a)) in before_expiry.iter().zip(&after_expiry).enumerate() {
        assert!(a > b, "run {i}'s lease was not renewed ({b} -> {a})");
    }
    // ...and each heartbeat was one commit for all of them (one more if a heartbeat fell
    // between the count and the first reading).
    assert!(
        commits as usize <= BEATS + 1,
        "{commits} commits for {BEATS} heartbeats of {RUNS} runs: one commit per heartbeat expected"
    );

    stop.cancel();
    for d in drivers {
        assert_eq!(d.await.unwrap().unwrap(), RunOutcome::Interrupted);
    }
}

async fn expiries(store: &Store, runs: &[String]) -> Vec<i64> {
    let mut out = Vec::new();
    for r in runs {
        out.push(lease_expiry(store, r).await);
    }
    out
}
