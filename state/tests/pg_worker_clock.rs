#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 17: workers on several hosts decide leases by one clock, the database server's.
//! Each "host" is a `Store` of its own whose callers pass their host's clock, skewed here by
//! ten minutes either way: a host whose clock runs ahead does not take a live lease over,
//! and a host whose clock runs behind does not keep (renew, write under) an expired one.

mod backends;
use backends::{host, leased, real_now, start};

use std::time::{Duration, Instant};

use fogbook_state::StateError;
use fogbook_testpg::TestPostgres;

/// How far the skewed hosts' clocks are off.
const SKEW: i64 = 10 * 60 * 1_000;

/// A host whose clock runs ten minutes ahead sees a 30 s lease as long expired by its own
/// clock; by the database's it is live, and the takeover is refused.
#[tokio::test]
async fn a_host_whose_clock_runs_ahead_does_not_take_a_live_lease() {
    let server = TestPostgres::start();
    let (host1, ahead) = (host(&server), host(&server));
    host1.create_run(leased("r1", "a", real_now(), 30_000)).await.unwrap();

    let refused = ahead
        .acquire_lease("r1", "b", Duration::from_secs(30), None, real_now() + SKEW)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StateError::LeaseHeld { ref owner, .. } if owner == "a"),
        "{refused:?}"
    );
    // The holder's writes go on, whatever the other host's clock said.
    host1
        .start_step("r1", "a", start("a", vec![], real_now()))
        .await
        .unwrap();
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
/// a right clock takes it over. A 30 s lease it writes is live by the database's clock,
/// though by its own clock it ended long ago: the other host cannot take it.
#[tokio::test]
async fn a_host_whose_clock_runs_behind_does_not_keep_an_expired_lease() {
    let server = TestPostgres::start();
    let (behind, host2) = (host(&server), host(&server));
    let before = real_now();
    behind
        .create_run(leased("r1", "a", real_now() - SKEW, 1_000))
        .await
        .unwrap();
    let expires = behind.load_run("r1").await.unwrap().run.lease_expires_at.unwrap();
    assert!(
        expires >= before + 1_000 && expires < real_now() + 1_000 + SKEW / 2,
        "the lease ends 1 s after creation by the server's clock: {} ms after `before`",
        expires - before
    );
    // Live by the database's clock: not taken over by the other host, though by the
    // behind host's clock it ended ten minutes ago. Shown on a run whose lease lasts 30 s,
    // so the takeover is refused whenever it reaches the server: `r1`'s 1 s lease may well
    // have expired before it does on a loaded machine (the check used to be skipped unless
    // 200 ms were left, and raced the clock when they were).
    behind
        .create_run(leased("r2", "a", real_now() - SKEW, 30_000))
        .await
        .unwrap();
    let held = host2
        .acquire_lease("r2", "b", Duration::from_secs(30), None, real_now())
        .await
        .unwrap_err();
    assert!(
        matches!(held, StateError::LeaseHeld { ref owner, .. } if owner == "a"),
        "{held:?}"
    );
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
        .start_step("r1", "a", start("a", vec![], real_now() - SKEW))
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
