//! Client behaviour: throttling storms, 5xx bursts, dropped connections, ARM errors kept
//! unchanged, the limiter, name validation, and a token that never leaks.

use std::sync::Arc;
use std::time::Duration;

use fogbook_activities::ActivityError;
use fogbook_activities::arm::PauseReason;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_429_storm_is_survived_with_back_off_that_honours_retry_after() {
    let sim = Sim::start(DEMO).await;
    sim.faults(
        json!([{ "operation": "ManagedInstances_Update", "error_rate": 1.0, "error_status": 429, "max_hits": 4 }]),
    )
    .await;
    let start = sim.sim_seconds().await;
    let out = run(
        &sim,
        "instance.scale",
        json!({ "instance": mi(WEST, "mi-fog-b"), "storage_gb": 1024 }),
    )
    .await
    .expect("scaled");
    assert_eq!(out["after"]["storage_gb"], 1024);
    let retries = sim.pauses(PauseReason::Retry);
    assert_eq!(retries.len(), 4, "{retries:?}");
    // The emulator says Retry-After: 1; every back-off waits at least that long.
    assert!(retries.iter().all(|d| *d >= Duration::from_secs(1)), "{retries:?}");
    let patches = sim.journal("PATCH", "mi-fog-b").await;
    assert_eq!(
        patches.len(),
        1,
        "the throttled requests were not processed, the last one was: {patches:?}"
    );
    // The accepted PATCH came after at least 4 × Retry-After of simulated waiting.
    let after = sim.sim_seconds().await;
    assert!(after - start >= 4.0 * SIM_SECONDS_PER_SECOND, "{start} → {after}");
}

#[tokio::test]
async fn a_burst_of_5xx_and_dropped_connections_on_reads_is_retried() {
    let sim = Sim::start(DEMO).await;
    sim.faults(json!([
        { "operation": "ManagedInstances_Get", "error_rate": 1.0, "error_status": 503, "max_hits": 2 },
        { "operation": "ManagedInstances_Get", "error_rate": 1.0, "error_status": 500, "max_hits": 1 },
        { "operation": "ManagedInstances_Get", "drop_rate": 1.0, "max_hits": 1 },
    ]))
    .await;
    let out = run(&sim, "instance.get", json!({ "instance": mi(EAST, "mi-fog-a") }))
        .await
        .expect("read");
    assert_eq!(out["name"], "mi-fog-a");
    assert_eq!(sim.pauses(PauseReason::Retry).len(), 4);
}

#[tokio::test]
async fn a_fault_that_outlasts_the_retries_is_a_retryable_step_error() {
    let sim = Sim::start(DEMO).await;
    sim.faults(json!([{ "operation": "ManagedInstances_Get", "error_rate": 1.0, "error_status": 502 }]))
        .await;
    let err = run(&sim, "instance.get", json!({ "instance": mi(EAST, "mi-fog-a") }))
        .await
        .expect_err("fails");
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.code(), "BadGateway");
    assert_eq!(sim.pauses(PauseReason::Retry).len(), 8, "bounded by max_retries");
}

#[tokio::test]
async fn other_4xx_fail_with_the_arm_code_and_message_unchanged() {
    let sim = Sim::start(DEMO).await;
    let err = run(&sim, "instance.get", json!({ "instance": mi(EAST, "mi-nope") }))
        .await
        .expect_err("missing");
    match &err {
        ActivityError::Failed { code, message, output } => {
            assert_eq!(code, "ResourceNotFound");
            assert!(!message.is_empty());
            let o = output.as_ref().expect("output");
            assert_eq!(o["http_status"], 404);
            assert!(
                o["arm_request"]["request_id"].as_str().is_some_and(|s| !s.is_empty()),
                "{o}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    let out = run(
        &sim,
        "instance.get",
        json!({ "instance": mi(EAST, "mi-nope"), "must_exist": false }),
    )
    .await
    .unwrap();
    assert_eq!(out["exists"], false);
}

#[tokio::test]
async fn names_with_slashes_dots_or_control_characters_are_refused_before_any_request() {
    let sim = Sim::start(DEMO).await;
    for bad in ["a/b", "..", "x\u{1}y", ""] {
        let err = run(&sim, "instance.delete", json!({ "instance": mi(EAST, bad) }))
            .await
            .expect_err(bad);
        assert!(matches!(err, ActivityError::InvalidInput { .. }), "{bad:?}: {err:?}");
    }
    let bad_subnet =
        json!({ "subscription": SUB, "resource_group": NORTH, "name": "c", "subnet_id": "/subscriptions/x/../y" });
    let err = run(
        &sim,
        "network.peer",
        json!({ "primary": mi(EAST, "mi-fog-a"), "secondary": bad_subnet }),
    )
    .await
    .expect_err("bad id");
    assert!(matches!(err, ActivityError::InvalidInput { .. }), "{err:?}");
    assert!(sim.journal("DELETE", "").await.is_empty());
    // A name with URL metacharacters is encoded as one segment, not interpreted.
    let err = run(&sim, "instance.get", json!({ "instance": mi(EAST, "a?b#c d") }))
        .await
        .expect_err("missing");
    assert_eq!(err.code(), "ResourceNotFound");
}

#[tokio::test]
async fn the_limiter_slows_down_before_arm_throttles() {
    let sim = Sim::start(DEMO).await;
    sim.admin_put(
        "/_sim/throttling",
        json!({ "reads": { "burst": 30.0, "per_second": 0.001 }, "writes": { "burst": 200.0, "per_second": 10.0 }, "deletes": { "burst": 200.0, "per_second": 10.0 } }),
    )
    .await;
    for _ in 0..14 {
        run(&sim, "instance.get", json!({ "instance": mi(EAST, "mi-fog-a") }))
            .await
            .expect("read");
    }
    let limiter = sim.pauses(PauseReason::Limiter);
    assert!(!limiter.is_empty(), "the limiter paused once few reads remained");
    assert!(
        limiter.windows(2).all(|w| w[1] >= w[0]),
        "pauses grow as the bucket empties: {limiter:?}"
    );
    assert!(sim.pauses(PauseReason::Retry).is_empty(), "no 429 was needed");
}

#[tokio::test]
async fn without_an_arm_client_azure_activities_fail_clearly() {
    let host = Arc::new(TestHost::default());
    let err = fogbook_activities::execute(
        "fog.get",
        json!({ "name": "f", "instance": mi(EAST, "a") }),
        &ctx(host, None),
        &fogbook_activities::Env::new(),
    )
    .await
    .expect_err("no client");
    assert_eq!(err.code(), "ArmNotConfigured");
}
