#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 17: workers on several hosts decide leases by one clock, the database server's.
//! Each "host" is a `Store` of its own whose callers pass their host's clock, skewed here by
//! ten minutes either way: a host whose clock runs ahead does not take a live lease over,
//! and a host whose clock runs behind does not keep (renew, write under) an expired one.

use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fogbook_state::pg::StoreUrl;
use fogbook_state::{NewRun, StateError, StepStart, Store};
use fogbook_testpg::TestPostgres;
use serde_json::json;

/// How far the skewed hosts' clocks are off.
const SKEW: i64 = 10 * 60 * 1_000;

/// The test machine's clock (the database server runs on it too).
fn real_now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn open(server: &TestPostgres) -> Store {
    Store::open_url(&StoreUrl::from_str(&server.url()).unwrap()).unwrap()
}

/// A run whose creator `owner`, on a host whose clock reads `now`, leases it for `ttl_ms`.
fn new_run(id: &str, owner: &str, now: i64, ttl_ms: i64) -> NewRun {
    NewRun {
        id: id.to_owned(),
        runbook_name: "rb".to_owned(),
        runbook_version: 1,
        runbook_text: "runbook: rb".to_owned(),
        runbook_sha256: "abc".to_owned(),
        source_path: None,
        params: json!({}),
        steps: vec!["a".to_owned()],
        locks: Vec::new(),
        auto_approve: false,
        lease: Some((owner.to_owned(), now + ttl_ms)),
        created_by: json!("test"),
        window: None,
        schedule: None,
        now,
    }
}

fn start(now: i64) -> StepStart {
    StepStart {
        step_id: "a".to_owned(),
        attempt: 1,
        input: json!({}),
        deadline_at: None,
        opens: Vec::new(),
        subject: None,
        keep_progress: false,
        now,
    }
}

/// A host whose clock runs ten minutes ahead sees a 30 s lease as long expired by its own
/// clock; by the database's it is live, and the takeover is refused.
#[tokio::test]
async fn a_host_whose_clock_runs_ahead_does_not_take_a_live_lease() {
    let server = TestPostgres::start();
    let (host1, ahead) = (open(&server), open(&server));
    host1.create_run(new_run("r1", "a", real_now(), 30_000)).await.unwrap();

    let refused = ahead
        .acquire_lease("r1", "b", Duration::from_secs(30), None, real_now() + SKEW)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StateError::LeaseHeld { ref owner, .. } if owner == "a"),
        "{refused:?}"
    );
    // The holder's writes go on, whatever the other host's clock said.
    host1.start_step("r1", "a", start(real_now())).await.unwrap();
    // The worker's view of expiry is the database's too.
    let seen = ahead.lease_now(real_now() + SKEW).await.unwrap();
    assert!(
        (seen - real_now()).abs() < SKEW / 2,
        "lease time {seen} is the server's"
    );
}

/// A host whose clock runs ten minutes behind writes a 1 s lease: it lasts 1 s by the
/// database's clock (not 10 min less), and once that has passed the host can neither renew
/// it nor write under it, though its own clock says the lease has minutes left; a host with
/// a right clock takes it over.
#[tokio::test]
async fn a_host_whose_clock_runs_behind_does_not_keep_an_expired_lease() {
    let server = TestPostgres::start();
    let (behind, host2) = (open(&server), open(&server));
    let before = real_now();
    behind
        .create_run(new_run("r1", "a", real_now() - SKEW, 1_000))
        .await
        .unwrap();
    let expires = behind.load_run("r1").await.unwrap().run.lease_expires_at.unwrap();
    assert!(
        expires >= before + 1_000 && expires < real_now() + 1_000 + SKEW / 2,
        "the lease ends 1 s after creation by the server's clock: {} ms after `before`",
        expires - before
    );
    // Live by the database's clock: not taken over by the other host.
    if real_now() + 200 < expires {
        let held = host2
            .acquire_lease("r1", "b", Duration::from_secs(30), None, real_now())
            .await
            .unwrap_err();
        assert!(matches!(held, StateError::LeaseHeld { .. }), "{held:?}");
    }
    // Wait (on the server's clock, with a deadline) until the lease has expired there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while host2.lease_now(0).await.unwrap() <= expires {
        assert!(Instant::now() < deadline, "the server's clock did not pass the expiry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renew = behind
        .renew_lease("r1", "a", Duration::from_secs(30), real_now() - SKEW)
        .await
        .unwrap_err();
    assert!(matches!(renew, StateError::LeaseLost { .. }), "{renew:?}");
    let write = behind
        .start_step("r1", "a", start(real_now() - SKEW))
        .await
        .unwrap_err();
    assert!(matches!(write, StateError::LeaseLost { .. }), "{write:?}");
    let grant = host2
        .acquire_lease("r1", "b", Duration::from_secs(30), None, real_now())
        .await
        .unwrap();
    assert_eq!(grant.taken_over_from.as_deref(), Some("a"));
    assert!(host2.verify_audit(Some("r1")).await.unwrap().failure.is_none());
}
