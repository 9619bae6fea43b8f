//! Subscriptions and their Microsoft Entra tenants: `Subscriptions_Get`, and a failover group
//! across subscriptions refused when the tenants differ.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

const ESTATE: &str = include_str!("../../../tests/e2e/fixtures/procedures/estate-subscriptions.yaml");
const SUB_B: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b5f4e";
const SUB_X: &str = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d7a8b";
const API: &str = "api-version=2022-12-01";

#[tokio::test]
async fn subscriptions_report_their_tenant() {
    let sim = Sim::start(config(ESTATE)).await;
    let a = sim.get(&format!("/subscriptions/{SUB}?{API}")).await;
    let b = sim.get(&format!("/subscriptions/{SUB_B}?{API}")).await;
    let x = sim.get(&format!("/subscriptions/{SUB_X}?{API}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["subscriptionId"], SUB);
    assert_eq!(a.body["tenantId"], b.body["tenantId"], "A and B: one tenant");
    assert_ne!(a.body["tenantId"], x.body["tenantId"], "X: another tenant");
    sim.get(&format!("/subscriptions/00000000-0000-4000-8000-000000000000?{API}"))
        .await
        .assert_error(404, "SubscriptionNotFound");
}

#[tokio::test]
async fn a_group_across_tenants_is_refused() {
    let sim = Sim::start(config(ESTATE)).await;
    let x = format!(
        "/subscriptions/{SUB_X}/resourceGroups/rg-sql-centralus/providers/Microsoft.Sql/managedInstances/mi-fog-x"
    );
    let body = json!({ "properties": {
        "readWriteEndpoint": { "failoverPolicy": "Manual" },
        "partnerRegions": [{ "location": "centralus" }],
        "managedInstancePairs": [{
            "primaryManagedInstanceId": mi_id(EAST, "mi-fog-a"),
            "partnerManagedInstanceId": x,
        }],
    }});
    let refused = sim.put(&sql(&fog_path(EAST, "eastus", "fog-x")), body).await;
    refused.assert_error(400, "InstanceFailoverGroupCrossTenantNotSupported");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("different Microsoft Entra tenants"), "{message}");
    assert_eq!(
        sim.get(&sql(&fog_path(EAST, "eastus", "fog-x"))).await.status,
        StatusCode::NOT_FOUND
    );
}
