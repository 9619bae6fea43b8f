#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 17: fleet leases, like run leases, are decided by the database server's clock.
//! Each "host" is a `Store` of its own whose callers pass their host's clock, skewed by ten
//! minutes either way: a host whose clock runs ahead does not take a live fleet lease over,
//! and a host whose clock runs behind does not keep (renew, write under) an expired one.
//! Operators' "is this run driven live?" checks go by the same clock: an operator on a host
//! whose clock runs ahead neither cancels a driven run outright nor edits its steps.

mod backends;
use backends::{fleet, host, leased, real_now};

use std::time::{Duration, Instant};

use fogbook_state::{Actor, NewFleet, StateError};
use fogbook_testpg::TestPostgres;

/// How far the skewed hosts' clocks are off.
const SKEW: i64 = 10 * 60 * 1_000;

/// A fleet whose creator `owner`, on a host whose clock reads `now`, leases it for `ttl_ms`.
fn new_fleet(owner: &str, now: i64, ttl_ms: i64) -> NewFleet {
    NewFleet {
        now,
        ..fleet(&["g1"], owner, now + ttl_ms)
    }
}

/// A host whose clock runs ten minutes ahead sees a 30 s fleet lease as long expired by its
/// own clock; by the database's it is live, and the takeover is refused.
#[tokio::test]
async fn a_host_whose_clock_runs_ahead_does_not_take_a_live_fleet_lease() {
    let server = TestPostgres::start();
    let (host1, ahead) = (host(&server), host(&server));
    host1.create_fleet(new_fleet("a", real_now(), 30_000)).await.unwrap();

    let now = real_now() + SKEW;
    let refused = ahead
        .acquire_fleet_lease("f1", "b", now + 30_000, None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StateError::FleetLeaseHeld { ref owner, .. } if owner == "a"),
        "{refused:?}"
    );
    // The holder keeps its lease and its writes, whatever the other host's clock said.
    let now = real_now();
    host1.renew_fleet_lease("f1", "a", now + 30_000, now).await.unwrap();
    let fleet = host1.load_fleet("f1").await.unwrap().fleet;
    assert_eq!(fleet.lease_owner.as_deref(), Some("a"));
}

/// A host whose clock runs ten minutes behind writes a 1 s fleet lease: it lasts 1 s by the
/// database's clock (not 10 min less), and once that has passed the host can neither renew
/// it nor decide under it, though its own clock says the lease has minutes left; a host
/// with a right clock takes it over, audited.
#[tokio::test]
async fn a_host_whose_clock_runs_behind_does_not_keep_an_expired_fleet_lease() {
    let server = TestPostgres::start();
    let (behind, host2) = (host(&server), host(&server));
    let before = real_now();
    behind
        .create_fleet(new_fleet("a", real_now() - SKEW, 1_000))
        .await
        .unwrap();
    let expires = behind.load_fleet("f1").await.unwrap().fleet.lease_expires_at.unwrap();
    assert!(
        expires >= before + 1_000 && expires < real_now() + 1_000 + SKEW / 2,
        "the lease ends 1 s after creation by the server's clock: {} ms after `before`",
        expires - before
    );
    // Wait (on the server's clock, with a deadline) until the lease has expired there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while host2.lease_now(0).await.unwrap() <= expires {
        assert!(Instant::now() < deadline, "the server's clock did not pass the expiry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = real_now() - SKEW;
    let renew = behind
        .renew_fleet_lease("f1", "a", now + 30_000, now)
        .await
        .unwrap_err();
    assert!(matches!(renew, StateError::LeaseLost { .. }), "{renew:?}");
    let decide = behind
        .fleet_decision(
            "f1",
            "a",
            "fleet.stopping",
            Some("waiting"),
            Some("test".to_owned()),
            now,
        )
        .await
        .unwrap_err();
    assert!(matches!(decide, StateError::LeaseLost { .. }), "{decide:?}");
    let now = real_now();
    let previous = host2
        .acquire_fleet_lease("f1", "b", now + 30_000, None, now)
        .await
        .unwrap();
    assert_eq!(previous.as_deref(), Some("a"));
    let fleet = host2.load_fleet("f1").await.unwrap().fleet;
    assert!(
        fleet.lease_expires_at.unwrap() >= now + 29_000,
        "the new lease lasts 30 s by the server's clock"
    );
}

/// An operator whose clock runs ten minutes ahead sees the driver's 30 s lease as long
/// expired; by the database's clock the run is driven live: `cancel` only asks its driver to
/// stop, and a step cannot be skipped under it.
#[tokio::test]
async fn an_operator_whose_clock_runs_ahead_sees_a_driven_run_as_driven() {
    let server = TestPostgres::start();
    let (driver, operator) = (host(&server), host(&server));
    driver.create_run(leased("r1", "a", real_now(), 30_000)).await.unwrap();
    let actor = Actor {
        name: "op".to_owned(),
        source: "--by".to_owned(),
        reason: None,
    };

    let skip = operator
        .operator_finish_step("r1", "a", None, &actor, real_now() + SKEW)
        .await
        .unwrap_err();
    assert!(skip.to_string().contains("being driven by a"), "{skip}");
    let over = operator.cancel("r1", "op", None, real_now() + SKEW).await.unwrap();
    assert!(!over, "a driven run is asked to stop, not cancelled under its driver");
    let run = operator.load_run("r1").await.unwrap().run;
    assert_eq!(run.lease_owner.as_deref(), Some("a"));
    assert_eq!(run.status.as_str(), "running");
}
