//! The operations Azure's own clients (`azure-mgmt-sql`, `azure-mgmt-network`, `az sql mi`,
//! `az network vnet`, `az network nsg`) call besides the ones the engine uses: lists, the
//! capabilities lookup, subnet and NSG writes, VNet delete, managed database create and delete.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

fn names(reply: &Reply) -> Vec<String> {
    let mut names: Vec<String> = reply.body["value"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", reply.body))
        .iter()
        .map(|v| v["name"].as_str().expect("a name").to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn vnets_and_nsgs_list_by_subscription_and_resource_group() {
    let sim = Sim::demo().await;
    let all = sim
        .get(&net(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks"
        )))
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(
        names(&all),
        ["vnet-sql-eastus", "vnet-sql-northeurope", "vnet-sql-westus"]
    );
    assert_eq!(all.body["value"][0]["type"], "Microsoft.Network/virtualNetworks");
    let east = sim
        .get(&net(&format!(
            "{}/providers/Microsoft.Network/virtualNetworks",
            rg_path(EAST)
        )))
        .await;
    assert_eq!(names(&east), ["vnet-sql-eastus"]);
    let nsgs = sim
        .get(&net(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Network/networkSecurityGroups"
        )))
        .await;
    assert_eq!(names(&nsgs), ["nsg-mi-eastus", "nsg-mi-northeurope", "nsg-mi-westus"]);
    let west = sim
        .get(&net(&format!(
            "{}/providers/Microsoft.Network/networkSecurityGroups",
            rg_path(WEST)
        )))
        .await;
    assert_eq!(names(&west), ["nsg-mi-westus"]);
    sim.get(&net(&format!(
        "{}/providers/Microsoft.Network/virtualNetworks",
        rg_path("rg-nope")
    )))
    .await
    .assert_error(404, "ResourceGroupNotFound");
    let subnets = sim
        .get(&net(&format!("{}/subnets", vnet_id(EAST, "vnet-sql-eastus"))))
        .await;
    assert_eq!(names(&subnets), ["snet-app", "snet-mi"]);
}

#[tokio::test]
async fn capabilities_name_every_sku_the_emulator_accepts() {
    let sim = Sim::demo().await;
    let caps = sim
        .get(&sql(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Sql/locations/eastus/capabilities"
        )))
        .await;
    assert_eq!(caps.status, StatusCode::OK, "{}", caps.body);
    assert_eq!(caps.body["name"], "East US");
    assert_eq!(caps.body["status"], "Available");
    let editions = caps.body["supportedManagedInstanceVersions"][0]["supportedEditions"]
        .as_array()
        .unwrap();
    let mut skus = Vec::new();
    for edition in editions {
        for family in edition["supportedFamilies"].as_array().unwrap() {
            skus.push(family["sku"].as_str().unwrap().to_owned());
            let vcores: Vec<u64> = family["supportedVcoresValues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["value"].as_u64().unwrap())
                .collect();
            assert!(vcores.contains(&8) && !vcores.contains(&7), "{vcores:?}");
        }
    }
    skus.sort();
    assert_eq!(skus, ["BC_G8IH", "BC_G8IM", "BC_Gen5", "GP_G8IH", "GP_G8IM", "GP_Gen5"]);
    // Every sku the capabilities name is one a create accepts.
    let mut body = instance_c_body(None);
    body["sku"] = json!({"name": "BC_G8IM", "capacity": 8});
    let create = sim.put(&sql(&mi_id(NORTH, "mi-c")), body).await;
    assert_eq!(create.status, StatusCode::ACCEPTED, "{}", create.body);
}

#[tokio::test]
async fn subnets_are_written_by_their_own_path() {
    let sim = Sim::demo().await;
    let vnet = vnet_id(EAST, "vnet-sql-eastus");
    let nsg = nsg_id(EAST, "nsg-mi-eastus");
    let put = sim
        .put(
            &net(&format!("{vnet}/subnets/snet-new")),
            json!({"properties": {"addressPrefix": "10.10.2.0/24", "networkSecurityGroup": {"id": nsg},
                "delegations": [{"name": "mi", "properties": {"serviceName": "Microsoft.Sql/managedInstances"}}]}}),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    assert!(put.header("azure-asyncoperation").is_some());
    assert_eq!(put.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(put.body["properties"]["networkSecurityGroup"]["id"], nsg);
    let got = sim.get(&net(&format!("{vnet}/subnets/snet-new"))).await;
    assert_eq!(got.body["properties"]["addressPrefix"], "10.10.2.0/24");
    let again = sim
        .put(
            &net(&format!("{vnet}/subnets/snet-new")),
            json!({"properties": {"addressPrefix": "10.10.2.0/24"}}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);

    sim.put(
        &net(&format!("{vnet}/subnets/snet-clash")),
        json!({"properties": {"addressPrefix": "10.10.1.128/25"}}),
    )
    .await
    .assert_error(400, "NetcfgSubnetRangesOverlap");
    sim.put(
        &net(&format!("{vnet}/subnets/snet-out")),
        json!({"properties": {"addressPrefix": "10.99.0.0/24"}}),
    )
    .await
    .assert_error(400, "NetcfgSubnetRangeOutsideVnet");
    sim.put(
        &net(&format!("{vnet}/subnets/snet-mi")),
        json!({"properties": {"addressPrefix": "10.10.3.0/24"}}),
    )
    .await
    .assert_error(400, "InUsePrefixCannotBeDeleted");
    sim.delete(&net(&format!("{vnet}/subnets/snet-mi")))
        .await
        .assert_error(400, "InUseSubnetCannotBeDeleted");
    assert_eq!(
        sim.delete(&net(&format!("{vnet}/subnets/snet-new"))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        sim.delete(&net(&format!("{vnet}/subnets/snet-new"))).await.status,
        StatusCode::NO_CONTENT
    );
    sim.get(&net(&format!("{vnet}/subnets/snet-new")))
        .await
        .assert_error(404, "ResourceNotFound");
}

#[tokio::test]
async fn nsgs_are_created_updated_and_deleted() {
    let sim = Sim::demo().await;
    let nsg = nsg_id(NORTH, "nsg-extra");
    let body = json!({"location": "northeurope", "tags": {"team": "db"}, "properties": {"securityRules": [
        {"name": "geo-in", "properties": {"protocol": "Tcp", "access": "Allow", "priority": 1100,
            "direction": "Inbound", "sourcePortRange": "*", "destinationPortRanges": ["5022", "11000-11999"],
            "sourceAddressPrefix": "VirtualNetwork", "destinationAddressPrefix": "VirtualNetwork"}}
    ]}});
    let created = sim.put(&net(&nsg), body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert!(created.header("azure-asyncoperation").is_some());
    assert_eq!(created.body["properties"]["securityRules"][0]["name"], "geo-in");
    assert_eq!(
        created.body["properties"]["defaultSecurityRules"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let rule = sim.get(&net(&format!("{nsg}/securityRules/geo-in"))).await;
    assert_eq!(rule.body["properties"]["priority"], 1100);
    assert_eq!(sim.put(&net(&nsg), body).await.status, StatusCode::OK);
    let clash = json!({"location": "northeurope", "properties": {"securityRules": [
        {"name": "a", "properties": {"protocol": "Tcp", "access": "Allow", "priority": 200, "direction": "Inbound", "destinationPortRange": "1"}},
        {"name": "b", "properties": {"protocol": "Tcp", "access": "Allow", "priority": 200, "direction": "Inbound", "destinationPortRange": "2"}}
    ]}});
    sim.put(&net(&nsg), clash)
        .await
        .assert_error(400, "SecurityRuleConflict");
    sim.put(&net(&nsg_id(NORTH, "nsg-nowhere")), json!({}))
        .await
        .assert_error(400, "InvalidParameterValue");

    // An NSG that a subnet uses stays; a free one goes.
    sim.delete(&net(&nsg_id(NORTH, "nsg-mi-northeurope")))
        .await
        .assert_error(400, "InUseNetworkSecurityGroupCannotBeDeleted");
    assert_eq!(sim.delete(&net(&nsg)).await.status, StatusCode::OK);
    assert_eq!(sim.delete(&net(&nsg)).await.status, StatusCode::NO_CONTENT);
    sim.get(&net(&nsg)).await.assert_error(404, "ResourceNotFound");
}

#[tokio::test]
async fn vnets_in_use_are_not_deleted() {
    let sim = Sim::demo().await;
    sim.delete(&net(&vnet_id(EAST, "vnet-sql-eastus")))
        .await
        .assert_error(400, "InUseSubnetCannotBeDeleted");
    let spare = vnet_id(NORTH, "vnet-spare");
    let created = sim
        .put(
            &net(&spare),
            json!({"location": "northeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.40.0.0/16"]}}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(sim.delete(&net(&spare)).await.status, StatusCode::OK);
    assert_eq!(sim.delete(&net(&spare)).await.status, StatusCode::NO_CONTENT);
    sim.get(&net(&spare)).await.assert_error(404, "ResourceNotFound");
    let journal = sim.journal().await;
    let deletes: Vec<_> = journal
        .iter()
        .filter(|e| e["method"] == "DELETE" && e["path"].as_str().unwrap().contains("/virtualNetworks/"))
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(deletes, [400, 200, 204]);
}

#[tokio::test]
async fn managed_databases_are_created_and_dropped_on_the_primary_with_their_replicas() {
    let sim = Sim::demo().await;
    let a = mi_id(EAST, "mi-fog-a");
    let b = mi_id(WEST, "mi-fog-b");
    let body = json!({"location": "eastus", "properties": {"collation": "Latin1_General_100_CI_AS"}});
    sim.put(&sql(&format!("{b}/databases/orders")), json!({"location": "westus"}))
        .await
        .assert_error(400, "OperationNotAllowedInCurrentGeodrConfiguration");
    let create = sim.put(&sql(&format!("{a}/databases/orders")), body.clone()).await;
    assert_eq!(create.status, StatusCode::ACCEPTED, "{}", create.body);
    assert!(create.header("location").is_some());
    // The same request while it runs re-attaches to the same operation.
    let again = sim.put(&sql(&format!("{a}/databases/orders")), body.clone()).await;
    assert_eq!(
        again.header("azure-asyncoperation"),
        create.header("azure-asyncoperation")
    );
    sim.finish(&create).await;
    let done = sim.get(&create.header("location").unwrap()).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["properties"]["collation"], "Latin1_General_100_CI_AS");
    let on_a = sim.get(&sql(&format!("{a}/databases/orders"))).await;
    assert_eq!(on_a.status, StatusCode::OK);
    assert!(on_a.body["properties"]["failoverGroupId"].is_string(), "{}", on_a.body);
    let on_b = sim.get(&sql(&format!("{b}/databases/orders"))).await;
    assert_eq!(on_b.status, StatusCode::OK, "the replica follows: {}", on_b.body);
    // An existing database: 200 with the resource.
    assert_eq!(
        sim.put(&sql(&format!("{a}/databases/orders")), body).await.status,
        StatusCode::OK
    );

    sim.delete(&sql(&format!("{b}/databases/orders")))
        .await
        .assert_error(400, "OperationNotAllowedInCurrentGeodrConfiguration");
    let drop = sim.delete(&sql(&format!("{a}/databases/orders"))).await;
    assert_eq!(drop.status, StatusCode::ACCEPTED);
    sim.finish(&drop).await;
    for inst in [&a, &b] {
        sim.get(&sql(&format!("{inst}/databases/orders")))
            .await
            .assert_error(404, "ResourceNotFound");
    }
    assert_eq!(
        sim.delete(&sql(&format!("{a}/databases/orders"))).await.status,
        StatusCode::NO_CONTENT
    );
    // Counted from outside: one accepted create and one accepted drop started an operation.
    let started: Vec<_> = sim
        .journal()
        .await
        .iter()
        .filter(|e| e["status"] == 202 && e["path"].as_str().unwrap().contains("/databases/orders"))
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_owned(),
                e["operation_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(started.len(), 3, "create, its re-attach, drop: {started:?}");
    assert_eq!(started[0].1, started[1].1, "the re-attach is the same operation");
    assert_eq!(started[2].0, "DELETE");
}

/// The demo estate with role assignments: `ops` may do everything in the subscription except
/// fail over in the west resource group; `reader` may only read.
fn estate_with_principals() -> String {
    let principals = format!(
        "principals:
  - token: ops
    name: ops-runner
    assignments:
      - scope: /subscriptions/{SUB}
        actions: ['*']
      - scope: /subscriptions/{SUB}/resourceGroups/{WEST}
        actions: ['*/read']
        not_actions: ['Microsoft.Sql/locations/instanceFailoverGroups/failover/action']
  - token: reader
    assignments:
      - scope: /subscriptions/{SUB}
        actions: ['*/read']
"
    );
    format!("{principals}{DEMO}")
}

async fn as_caller(sim: &Sim, token: &str, method: reqwest::Method, path: &str) -> (StatusCode, serde_json::Value) {
    let r = sim
        .client
        .request(method, sim.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("the emulator answers");
    let status = r.status();
    let text = r.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn role_assignments_are_enforced_with_authorization_failed() {
    let sim = Sim::start(config(&estate_with_principals())).await;
    let failover = sql(&format!("{}/failover", fog_path(WEST, "westus", "fog-demo")));
    let (status, body) = as_caller(&sim, "ops", reqwest::Method::GET, &sql(&mi_id(WEST, "mi-fog-b"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The deny of the narrower assignment does not take away what the wider one grants...
    // ...in Azure either: assignments add up. So `ops` may fail over; `reader` may not.
    let (status, body) = as_caller(&sim, "reader", reqwest::Method::POST, &failover).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "AuthorizationFailed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'Microsoft.Sql/locations/instanceFailoverGroups/failover/action'")
            && message.contains(&format!(
                "resourceGroups/{WEST}/providers/Microsoft.Sql/locations/westus"
            )),
        "{message}"
    );
    let (status, _) = as_caller(&sim, "reader", reqwest::Method::GET, &sql(&mi_id(WEST, "mi-fog-b"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = as_caller(&sim, "stranger", reqwest::Method::GET, &sql(&mi_id(WEST, "mi-fog-b"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Refused calls reach no resource: nothing in the journal, the roles unchanged.
    assert!(sim.journal().await.is_empty());

    // What the caller holds at a scope, as Microsoft.Authorization/permissions lists it.
    let perms = format!(
        "{}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01",
        rg_path(WEST)
    );
    let (status, body) = as_caller(&sim, "ops", reqwest::Method::GET, &perms).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["value"],
        json!([
            {"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []},
            {"actions": ["*/read"], "notActions": ["Microsoft.Sql/locations/instanceFailoverGroups/failover/action"], "dataActions": [], "notDataActions": []}
        ])
    );
    let (_, body) = as_caller(&sim, "reader", reqwest::Method::GET, &perms).await;
    assert_eq!(body["value"][0]["actions"], json!(["*/read"]));
    // Without principals in the estate, everyone holds everything.
    let open = Sim::demo().await;
    let (_, body) = as_caller(&open, "anyone", reqwest::Method::GET, &perms).await;
    assert_eq!(
        body["value"],
        json!([{"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}])
    );
    let (status, _) = as_caller(&sim, "ops", reqwest::Method::POST, &failover).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}
