#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 17: workers on several hosts claim runs (`Store::claim_runs`) with `FOR UPDATE
//! SKIP LOCKED`: two hosts' claims are disjoint, a row another transaction holds is skipped
//! rather than waited for, each claim is one audited acquisition, and the driver's own
//! `acquire_lease` that follows adds no second one.

mod backends;
use backends::{host, pg_url, real_now, run};

use std::sync::mpsc;
use std::time::Duration;

use fogbook_state::{NewRun, Store};
use fogbook_testpg::TestPostgres;

const TTL: Duration = Duration::from_secs(30);

fn new_run(id: &str, now: i64) -> NewRun {
    NewRun { now, ..run(id) }
}

#[tokio::test]
async fn claims_of_two_hosts_are_disjoint_and_skip_a_locked_row() {
    let server = TestPostgres::start();
    let (a, b) = (host(&server), host(&server));
    let now = real_now();
    let ids: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    for id in &ids {
        a.create_run(new_run(id, now)).await.unwrap();
    }
    // Another transaction (another host's, mid-claim) holds r0's row.
    let (locked_tx, locked) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let pg = pg_url(&server.url());
    let holder = std::thread::spawn(move || {
        let mut client = fogbook_state::pg::connect(&pg).unwrap();
        let mut tx = client.transaction().unwrap();
        tx.query("SELECT id FROM runs WHERE id = 'r0' FOR UPDATE", &[]).unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        tx.rollback().unwrap();
    });
    locked.recv().unwrap();

    let claim = |store: &Store, owner: &str, limit: usize| {
        let (store, owner, ids) = (store.clone(), owner.to_owned(), ids.clone());
        async move {
            tokio::time::timeout(
                Duration::from_secs(20),
                store.claim_runs(&owner, ids, Vec::new(), limit, TTL, real_now()),
            )
            .await
            .expect("a locked row is skipped, not waited for")
            .unwrap()
            .expect("PostgreSQL claims")
        }
    };
    assert_eq!(claim(&a, "a", 3).await, ["r1", "r2", "r3"]);
    assert_eq!(
        claim(&b, "b", 10).await,
        ["r4", "r5"],
        "the other host's claims are skipped"
    );
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(
        claim(&b, "b", 10).await,
        ["r0"],
        "free again once the other transaction ended"
    );
    assert!(claim(&a, "a", 10).await.is_empty(), "nothing left to claim");

    // The driver takes the lease it claimed: no second acquisition in the trail.
    a.acquire_lease("r1", "a", TTL, None, real_now()).await.unwrap();
    for id in &ids {
        let acquired = a
            .events(id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "lease.acquired")
            .count();
        assert_eq!(acquired, 1, "{id}");
    }
    assert_eq!(a.lease_owner("r1").await.unwrap().as_deref(), Some("a"));
    assert_eq!(a.lease_owner("r0").await.unwrap().as_deref(), Some("b"));
    assert!(a.verify_audit(None).await.unwrap().failure.is_none());
}

/// SQLite keeps its path: no claim (each drive takes its lease as it starts).
#[tokio::test]
async fn sqlite_does_not_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store.create_run(new_run("r0", real_now())).await.unwrap();
    let claimed = store
        .claim_runs("a", vec!["r0".to_owned()], Vec::new(), 4, TTL, real_now())
        .await
        .unwrap();
    assert_eq!(claimed, None);
    assert_eq!(store.lease_owner("r0").await.unwrap(), None);
}
