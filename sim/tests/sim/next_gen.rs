//! Next-gen General Purpose (`isGeneralPurposeV2`): refused inside a failover group with
//! Azure's documented limitation, accepted outside one.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn next_gen_is_refused_inside_a_group_and_applied_outside() {
    let sim = Sim::demo().await;
    let a = sql(&mi_id(EAST, "mi-fog-a"));
    let b = sql(&mi_id(WEST, "mi-fog-b"));
    assert_eq!(sim.get(&a).await.body["properties"]["isGeneralPurposeV2"], false);
    let to_next_gen = json!({ "properties": { "isGeneralPurposeV2": true } });
    // Either member of fog-demo: refused, nothing changes.
    for mi in [&a, &b] {
        let refused = sim.patch(mi, to_next_gen.clone()).await;
        refused.assert_error(400, "ManagedInstanceInFailoverGroupNextGenChangeNotSupported");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("Delete the failover group"), "{message}");
        assert_eq!(sim.get(mi).await.body["properties"]["isGeneralPurposeV2"], false);
    }
    let delete = sim.delete(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await;
    sim.finish(&delete).await;
    // Outside a group: a long-running update that takes effect.
    let accepted = sim.patch(&a, to_next_gen.clone()).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    sim.finish(&accepted).await;
    let after = sim.get(&a).await;
    assert_eq!(after.body["properties"]["isGeneralPurposeV2"], true, "{}", after.body);
    assert_eq!(after.body["properties"]["provisioningState"], "Succeeded");
    // Asking again for what it already is: nothing to do (200).
    assert_eq!(sim.patch(&a, to_next_gen).await.status, StatusCode::OK);
}

#[tokio::test]
async fn only_general_purpose_can_be_next_gen() {
    let sim = Sim::start(config(crate::rules::RULES_ESTATE)).await;
    let s_tier = sql(&mi_id("rg-w", "s-tier"));
    sim.patch(&s_tier, json!({ "properties": { "isGeneralPurposeV2": true } }))
        .await
        .assert_error(400, "InvalidParameterValue");
}
