//! Every fault kind, as a client sees it, and throttling.

use std::time::{Duration, Instant};

use fogbook_sim::FaultConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

async fn set_faults(sim: &Sim, config: Value) {
    sim.admin(Method::PUT, "/_sim/faults", Some(config)).await;
}

fn rule(operation: &str, extra: Value) -> Value {
    let mut rule = json!({"operation": operation});
    if let (Some(rule), Some(extra)) = (rule.as_object_mut(), extra.as_object()) {
        rule.extend(extra.clone());
    }
    rule
}

#[tokio::test]
async fn injected_errors_are_not_processed() {
    let sim = Sim::demo().await;
    set_faults(
        &sim,
        json!({"seed": 1, "rules": [
            rule("ManagedInstances_Get", json!({"error_rate": 1.0, "error_status": 503, "max_hits": 1})),
            rule("ManagedInstances_Update", json!({"error_rate": 1.0, "error_status": 500, "max_hits": 1})),
            rule("InstanceFailoverGroups_Get", json!({"error_rate": 1.0, "error_status": 429, "max_hits": 1}))
        ]}),
    )
    .await;
    let a = sql(&mi_id(EAST, "mi-fog-a"));
    let first = sim.get(&a).await;
    first.assert_error(503, "ServiceUnavailable");
    assert_eq!(first.header("retry-after").as_deref(), Some("1"));
    assert!(first.header("x-ms-request-id").is_some());
    assert_eq!(sim.get(&a).await.status, StatusCode::OK, "max_hits: 1");

    sim.patch(&a, json!({"properties": {"vCores": 16}}))
        .await
        .assert_error(500, "InternalServerError");
    assert!(
        sim.journal().await.is_empty(),
        "a request refused by a fault is not journaled"
    );
    assert_eq!(
        sim.get(&a).await.body["properties"]["provisioningState"],
        "Succeeded",
        "nothing started"
    );

    let throttled = sim.get(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await;
    throttled.assert_error(429, "SubscriptionRequestsThrottled");
    assert_eq!(throttled.header("retry-after").as_deref(), Some("1"));
    let faults = sim.admin(Method::GET, "/_sim/faults", None).await;
    assert_eq!(faults["rules"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn latency_is_added_before_the_answer() {
    let sim = Sim::demo().await;
    set_faults(
        &sim,
        json!({"rules": [rule("ManagedInstances_Get", json!({"latency_ms": 300}))]}),
    )
    .await;
    let started = Instant::now();
    let r = sim.get(&sql(&mi_id(EAST, "mi-fog-a"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_connection_dropped_before_processing_changes_nothing() {
    let sim = Sim::demo().await;
    set_faults(
        &sim,
        json!({"rules": [rule("ManagedInstances_Update", json!({"drop_rate": 1.0, "max_hits": 1}))]}),
    )
    .await;
    let a = sql(&mi_id(EAST, "mi-fog-a"));
    let error = sim
        .try_send(Method::PATCH, &a, Some(json!({"properties": {"vCores": 16}})))
        .await
        .unwrap_err();
    assert!(error.is_request() || error.is_connect() || error.is_body(), "{error:?}");
    assert!(sim.journal().await.is_empty());
    assert_eq!(sim.get(&a).await.body["properties"]["provisioningState"], "Succeeded");
    // The retry goes through.
    assert_eq!(
        sim.patch(&a, json!({"properties": {"vCores": 16}})).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn applied_but_dropped_is_visible_in_the_journal_and_the_state() {
    let sim = Sim::demo().await;
    set_faults(&sim, json!({"rules": [rule("InstanceFailoverGroups_Failover", json!({"apply_then_drop_rate": 1.0, "max_hits": 1}))]})).await;
    let failover = sql(&format!("{}/failover", fog_path(WEST, "westus", "fog-demo")));
    let error = sim.try_send(Method::POST, &failover, None).await.unwrap_err();
    assert!(error.is_request() || error.is_body(), "{error:?}");

    let journal = sim.journal().await;
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0]["method"], "POST");
    assert_eq!(journal[0]["status"], 202);
    assert_eq!(journal[0]["applied"], true);
    assert_eq!(journal[0]["connection_dropped"], true);
    let op_id = journal[0]["operation_id"].as_str().unwrap().to_owned();
    let state = sim.state().await;
    assert_eq!(state["world"]["operations"][&op_id]["status"], "InProgress");

    // The client retries the identical request: it re-attaches to the same operation.
    let retry = sim.post(&failover).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED);
    assert!(retry.header("azure-asyncoperation").unwrap().contains(&op_id));
    sim.advance("2m").await;
    let west = sim.get(&sql(&fog_path(WEST, "westus", "fog-demo"))).await;
    assert_eq!(west.body["properties"]["replicationRole"], "Primary");
    assert_eq!(
        sim.state().await["world"]["operations"].as_object().unwrap().len(),
        1,
        "one failover, not two"
    );
}

#[tokio::test]
async fn an_operation_can_be_made_to_end_failed() {
    let sim = Sim::demo().await;
    set_faults(
        &sim,
        json!({"rules": [
            rule("InstanceFailoverGroups_Failover", json!({"fail_rate": 1.0, "max_hits": 1})),
            rule("ManagedInstances_Update", json!({"fail_rate": 1.0, "max_hits": 1}))
        ]}),
    )
    .await;
    let failover = sim
        .post(&sql(&format!("{}/failover", fog_path(WEST, "westus", "fog-demo"))))
        .await;
    assert_eq!(failover.status, StatusCode::ACCEPTED);
    let status = sim.get(&failover.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "InProgress", "it fails only at its end");
    sim.advance("2m").await;
    let status = sim.get(&failover.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "Failed");
    assert_eq!(status.body["error"]["code"], "PlannedFailoverTimedOut");
    sim.get(&failover.header("location").unwrap())
        .await
        .assert_error(400, "PlannedFailoverTimedOut");
    let west = sim.get(&sql(&fog_path(WEST, "westus", "fog-demo"))).await;
    assert_eq!(
        west.body["properties"]["replicationRole"], "Secondary",
        "roles unchanged"
    );

    let a = sql(&mi_id(EAST, "mi-fog-a"));
    let scale = sim.patch(&a, json!({"properties": {"vCores": 16}})).await;
    sim.advance("2h").await;
    let status = sim.get(&scale.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "Failed");
    assert_eq!(status.body["error"]["code"], "OperationTimedOut");
    sim.get(&scale.header("location").unwrap())
        .await
        .assert_error(500, "OperationTimedOut");
    let after = sim.get(&a).await;
    assert_eq!(after.body["properties"]["vCores"], 8, "rolled back");
    assert_eq!(after.body["properties"]["provisioningState"], "Failed");
    // The next attempt (the rule is spent) succeeds.
    sim.finish(&sim.patch(&a, json!({"properties": {"vCores": 16}})).await)
        .await;
    assert_eq!(sim.get(&a).await.body["properties"]["vCores"], 16);
}

#[tokio::test]
async fn faults_are_deterministic_under_a_seed() {
    let sim = Sim::demo().await;
    let config =
        json!({"seed": 42, "rules": [rule("ManagedInstances_Get", json!({"error_rate": 0.5, "error_status": 500}))]});
    let a = sql(&mi_id(EAST, "mi-fog-a"));
    let mut runs = Vec::new();
    for _ in 0..2 {
        set_faults(&sim, config.clone()).await;
        let mut pattern = Vec::new();
        for _ in 0..24 {
            pattern.push(sim.get(&a).await.status.as_u16());
        }
        runs.push(pattern);
    }
    assert_eq!(runs[0], runs[1]);
    let errors = runs[0].iter().filter(|s| **s == 500).count();
    assert!((4..=20).contains(&errors), "{:?}", runs[0]);
}

#[tokio::test]
async fn faults_load_from_a_file_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir, "faults.yaml");
    std::fs::write(&path, "seed: 9\nrules:\n  - operation: ManagedInstances_ListByResourceGroup\n    error_rate: 1\n    error_status: 503\n").unwrap();
    let mut cfg = config(DEMO);
    cfg.faults = Some(FaultConfig::load(&path).unwrap());
    let sim = Sim::start(cfg).await;
    sim.get(&sql(&format!(
        "{}/providers/Microsoft.Sql/managedInstances",
        rg_path(EAST)
    )))
    .await
    .assert_error(503, "ServiceUnavailable");
    assert_eq!(sim.get(&sql(&mi_id(EAST, "mi-fog-a"))).await.status, StatusCode::OK);
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let sim = Sim::demo().await;
    sim.admin(
        Method::PUT,
        "/_sim/throttling",
        Some(
            json!({"reads": {"burst": 250.0, "per_second": 25.0}, "writes": {"burst": 2.0, "per_second": 0.01},
            "deletes": {"burst": 200.0, "per_second": 10.0}}),
        ),
    )
    .await;
    let nsg = nsg_id(EAST, "nsg-mi-eastus");
    let body = |p: i64| json!({"properties": {"protocol": "Tcp", "access": "Deny", "priority": p, "direction": "Inbound", "destinationPortRange": "1433"}});
    let first = sim.put(&net(&format!("{nsg}/securityRules/r1")), body(3000)).await;
    assert_eq!(
        first.header("x-ms-ratelimit-remaining-subscription-writes").as_deref(),
        Some("1")
    );
    let second = sim.put(&net(&format!("{nsg}/securityRules/r2")), body(3001)).await;
    assert_eq!(
        second.header("x-ms-ratelimit-remaining-subscription-writes").as_deref(),
        Some("0")
    );
    let third = sim.put(&net(&format!("{nsg}/securityRules/r3")), body(3002)).await;
    third.assert_error(429, "SubscriptionRequestsThrottled");
    let retry: u64 = third.header("retry-after").unwrap().parse().unwrap();
    assert!((90..=100).contains(&retry), "{retry}");
    assert_eq!(sim.journal().await.len(), 2, "the throttled write was not processed");
    sim.get(&net(&format!("{nsg}/securityRules/r3")))
        .await
        .assert_error(404, "ResourceNotFound");
    // Reads and deletes have their own buckets.
    assert_eq!(sim.get(&net(&nsg)).await.status, StatusCode::OK);
    assert_eq!(
        sim.delete(&net(&format!("{nsg}/securityRules/r1"))).await.status,
        StatusCode::OK
    );
}

/// Other clients of the subscription (issue 18) spend their share of a bucket: the remaining
/// header counts only what is left for this client, and it is throttled sooner.
#[tokio::test]
async fn other_clients_spend_half_of_the_read_budget() {
    let sim = Sim::demo().await;
    let limits = json!({"reads": {"burst": 20.0, "per_second": 0.01, "other_clients": 0.5},
        "writes": {"burst": 200.0, "per_second": 10.0}, "deletes": {"burst": 200.0, "per_second": 10.0}});
    let echoed = sim.admin(Method::PUT, "/_sim/throttling", Some(limits)).await;
    assert_eq!(echoed["reads"]["other_clients"], 0.5, "{echoed}");
    let nsg = nsg_id(EAST, "nsg-mi-eastus");
    let first = sim.get(&net(&nsg)).await;
    assert_eq!(
        first.header("x-ms-ratelimit-remaining-subscription-reads").as_deref(),
        Some("9"),
        "half of the 20 reads are the other clients'"
    );
    for _ in 0..9 {
        assert_eq!(sim.get(&net(&nsg)).await.status, StatusCode::OK);
    }
    sim.get(&net(&nsg))
        .await
        .assert_error(429, "SubscriptionRequestsThrottled");
}
