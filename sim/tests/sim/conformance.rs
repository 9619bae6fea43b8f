//! Request and response shapes and status codes per operation, checked against the field names
//! of the spec examples.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn managed_instance_get_and_list_have_the_spec_fields() {
    let sim = Sim::demo().await;
    let r = sim.get(&sql(&mi_id(EAST, "mi-fog-a"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let b = &r.body;
    assert_eq!(b["id"], mi_id(EAST, "mi-fog-a"));
    assert_eq!(b["name"], "mi-fog-a");
    assert_eq!(b["type"], "Microsoft.Sql/managedInstances");
    assert_eq!(b["location"], "eastus");
    assert_eq!(
        b["sku"],
        json!({"name": "GP_Gen5", "tier": "GeneralPurpose", "family": "Gen5", "capacity": 8})
    );
    let p = &b["properties"];
    assert_eq!(p["provisioningState"], "Succeeded");
    assert_eq!(p["state"], "Ready");
    assert_eq!(p["vCores"], 8);
    assert_eq!(p["storageSizeInGB"], 512);
    assert_eq!(p["dnsZone"], "9f4e1c2b7a3d5");
    assert_eq!(
        p["fullyQualifiedDomainName"],
        "mi-fog-a.9f4e1c2b7a3d5.database.windows.net"
    );
    assert_eq!(p["databaseFormat"], "SQLServer2022");
    assert_eq!(
        p["subnetId"],
        format!("{}/subnets/snet-mi", vnet_id(EAST, "vnet-sql-eastus"))
    );
    assert!(p.get("administratorLoginPassword").is_none());

    // ARM ids are case-insensitive; the answer keeps Azure's casing.
    let r = sim
        .get(&sql(&mi_id(EAST, "mi-fog-a")
            .to_uppercase()
            .replace("SUBSCRIPTIONS", "subscriptions")))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["name"], "mi-fog-a");

    let list = sim
        .get(&sql(&format!(
            "{}/providers/Microsoft.Sql/managedInstances",
            rg_path(WEST)
        )))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<_> = list.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("mi-fog-b")]);

    let missing = sim.get(&sql(&mi_id(EAST, "nope"))).await;
    missing.assert_error(404, "ResourceNotFound");
    let no_rg = sim
        .get(&sql(&format!(
            "{}/providers/Microsoft.Sql/managedInstances",
            rg_path("rg-nope")
        )))
        .await;
    no_rg.assert_error(404, "ResourceGroupNotFound");
}

#[tokio::test]
async fn databases_list_shows_replicas_on_the_secondary() {
    let sim = Sim::demo().await;
    let a = sim.get(&sql(&format!("{}/databases", mi_id(EAST, "mi-fog-a")))).await;
    assert_eq!(a.status, StatusCode::OK);
    let dbs = a.body["value"].as_array().unwrap();
    let names: Vec<_> = dbs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sales", "inventory", "hr", "audit"]);
    assert_eq!(dbs[0]["type"], "Microsoft.Sql/managedInstances/databases");
    assert_eq!(dbs[0]["id"], format!("{}/databases/sales", mi_id(EAST, "mi-fog-a")));
    assert_eq!(dbs[0]["properties"]["status"], "Online");
    assert_eq!(
        dbs[0]["properties"]["failoverGroupId"],
        fog_path(EAST, "eastus", "fog-demo")
    );
    let b = sim.get(&sql(&format!("{}/databases", mi_id(WEST, "mi-fog-b")))).await;
    assert_eq!(b.body["value"].as_array().unwrap().len(), 4);
    let db = sim
        .get(&sql(&format!("{}/databases/hr", mi_id(WEST, "mi-fog-b"))))
        .await;
    assert_eq!(
        db.body["properties"]["failoverGroupId"],
        fog_path(WEST, "westus", "fog-demo")
    );
}

#[tokio::test]
async fn failover_group_has_two_views_with_local_roles() {
    let sim = Sim::demo().await;
    let east = sim.get(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await;
    assert_eq!(east.status, StatusCode::OK);
    assert_eq!(
        east.body,
        json!({
            // Azure answers with the display names of locations, whatever the request used.
            "id": fog_path(EAST, "East US", "fog-demo"),
            "name": "fog-demo",
            "type": "Microsoft.Sql/locations/instanceFailoverGroups",
            "properties": {
                "readWriteEndpoint": {"failoverPolicy": "Manual"},
                "readOnlyEndpoint": {"failoverPolicy": "Disabled"},
                "replicationRole": "Primary",
                "replicationState": "CATCH_UP",
                "partnerRegions": [{"location": "West US", "replicationRole": "Secondary"}],
                "managedInstancePairs": [{
                    "primaryManagedInstanceId": mi_id(EAST, "mi-fog-a"),
                    "partnerManagedInstanceId": mi_id(WEST, "mi-fog-b")
                }],
                "secondaryType": "Geo"
            }
        })
    );
    // The display name of a location is accepted too.
    let west = sim.get(&sql(&fog_path(WEST, "West%20US", "fog-demo"))).await;
    assert_eq!(west.body["properties"]["replicationRole"], "Secondary");
    assert_eq!(
        west.body["properties"]["partnerRegions"][0]["replicationRole"],
        "Primary"
    );
    assert_eq!(west.body["id"], fog_path(WEST, "West US", "fog-demo"));

    // The view exists only in each member's resource group and location.
    sim.get(&sql(&fog_path(EAST, "westus", "fog-demo")))
        .await
        .assert_error(404, "ResourceNotFound");

    let list = sim
        .get(&sql(&format!(
            "{}/providers/Microsoft.Sql/locations/westus/instanceFailoverGroups",
            rg_path(WEST)
        )))
        .await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 1);
    let none = sim
        .get(&sql(&format!(
            "{}/providers/Microsoft.Sql/locations/westus/instanceFailoverGroups",
            rg_path(EAST)
        )))
        .await;
    assert_eq!(none.body["value"], json!([]));
}

#[tokio::test]
async fn instance_create_is_a_long_running_operation_with_arm_headers() {
    let sim = Sim::demo().await;
    let c = mi_id(NORTH, "mi-fog-c");
    let r = sim.put(&sql(&c), instance_c_body(Some(&mi_id(WEST, "mi-fog-b")))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let async_url = r.header("azure-asyncoperation").unwrap();
    let location = r.header("location").unwrap();
    assert!(async_url.starts_with(&sim.base), "{async_url}");
    assert!(async_url.contains("/providers/Microsoft.Sql/locations/northeurope/managedInstanceAzureAsyncOperation/"));
    assert!(location.contains("/managedInstanceOperationResults/"));
    assert!(async_url.ends_with("?api-version=2025-01-01"));
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);

    let during = sim.get(&sql(&c)).await;
    assert_eq!(during.body["properties"]["provisioningState"], "InProgress");
    assert_eq!(
        during.body["properties"]["dnsZone"], "9f4e1c2b7a3d5",
        "dnsZonePartner shares the zone"
    );
    let status = sim.get(&async_url).await;
    assert_eq!(status.body["status"], "InProgress");
    assert!(status.body["startTime"].is_string());
    let result = sim.get(&location).await;
    assert_eq!(result.status, StatusCode::ACCEPTED);
    assert!(result.header("location").is_some());

    sim.advance("3h").await;
    assert_eq!(
        sim.get(&async_url).await.body["status"],
        "InProgress",
        "create takes hours"
    );
    sim.advance("1h").await;
    let status = sim.get(&async_url).await;
    assert_eq!(status.body["status"], "Succeeded");
    assert_eq!(status.body["percentComplete"], 100);
    assert!(status.body["endTime"].is_string());
    assert!(status.header("retry-after").is_none());
    let result = sim.get(&location).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(result.body["properties"]["state"], "Ready");
}

#[tokio::test]
async fn patch_scales_and_delete_frees_the_name() {
    let sim = Sim::demo().await;
    let c = mi_id(NORTH, "mi-fog-c");
    sim.finish(&sim.put(&sql(&c), instance_c_body(None)).await).await;

    // Tags alone change at once.
    let tags = sim.patch(&sql(&c), json!({"tags": {"env": "dr"}})).await;
    assert_eq!(tags.status, StatusCode::OK);
    assert_eq!(tags.body["tags"]["env"], "dr");

    let scale = sim
        .patch(
            &sql(&c),
            json!({"sku": {"name": "GP_Gen5", "capacity": 16}, "properties": {"vCores": 16, "storageSizeInGB": 1024}}),
        )
        .await;
    assert_eq!(scale.status, StatusCode::ACCEPTED);
    assert_eq!(
        sim.get(&sql(&c)).await.body["properties"]["vCores"],
        8,
        "not applied until done"
    );
    sim.advance("59m").await;
    assert_eq!(
        sim.get(&sql(&c)).await.body["properties"]["provisioningState"],
        "InProgress"
    );
    sim.advance("2m").await;
    let after = sim.get(&sql(&c)).await;
    assert_eq!(after.body["properties"]["vCores"], 16);
    assert_eq!(after.body["properties"]["storageSizeInGB"], 1024);
    assert_eq!(after.body["sku"]["capacity"], 16);
    assert_eq!(after.body["properties"]["provisioningState"], "Succeeded");

    let del = sim.delete(&sql(&c)).await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    assert_eq!(sim.get(&sql(&c)).await.body["properties"]["state"], "Deleting");
    let result_url = del.header("location").unwrap();
    sim.advance("1h").await;
    assert_eq!(sim.get(&result_url).await.status, StatusCode::OK);
    sim.get(&sql(&c)).await.assert_error(404, "ResourceNotFound");
    assert_eq!(sim.delete(&sql(&c)).await.status, StatusCode::NO_CONTENT);

    // The freed name can be used again.
    let again = sim.put(&sql(&c), instance_c_body(None)).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
}

#[tokio::test]
async fn networking_resources_round_trip() {
    let sim = Sim::demo().await;
    let east = vnet_id(EAST, "vnet-sql-eastus");
    let v = sim.get(&net(&east)).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.body["type"], "Microsoft.Network/virtualNetworks");
    assert_eq!(
        v.body["properties"]["addressSpace"]["addressPrefixes"],
        json!(["10.10.0.0/16"])
    );
    let subnet = &v.body["properties"]["subnets"][0];
    assert_eq!(subnet["name"], "snet-mi");
    assert_eq!(subnet["properties"]["addressPrefix"], "10.10.0.0/24");
    assert_eq!(
        subnet["properties"]["networkSecurityGroup"]["id"],
        nsg_id(EAST, "nsg-mi-eastus")
    );
    assert_eq!(
        subnet["properties"]["delegations"][0]["properties"]["serviceName"],
        "Microsoft.Sql/managedInstances"
    );
    let peering = &v.body["properties"]["virtualNetworkPeerings"][0];
    assert_eq!(peering["properties"]["peeringState"], "Connected");
    assert_eq!(
        peering["properties"]["remoteVirtualNetwork"]["id"],
        vnet_id(WEST, "vnet-sql-westus")
    );

    // A new VNet (PUT 201), then a peering that stays Initiated until the reverse exists.
    let dr = vnet_id(NORTH, "vnet-extra");
    let created = sim
        .put(
            &net(&dr),
            json!({"location": "northeurope", "properties": {
                "addressSpace": {"addressPrefixes": ["10.40.0.0/16"]},
                "subnets": [{"name": "s1", "properties": {"addressPrefix": "10.40.1.0/24"}}]
            }}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["properties"]["provisioningState"], "Succeeded");
    let op = sim.get(&created.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op.body["status"], "Succeeded");
    assert_eq!(
        sim.put(
            &net(&dr),
            json!({"location": "northeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.40.0.0/16"]}}})
        )
        .await
        .status,
        StatusCode::OK
    );

    let forward = sim
        .put(
            &net(&format!("{dr}/virtualNetworkPeerings/to-east")),
            json!({"properties": {"remoteVirtualNetwork": {"id": east}}}),
        )
        .await;
    assert_eq!(forward.status, StatusCode::CREATED);
    assert_eq!(forward.body["properties"]["peeringState"], "Initiated");
    assert_eq!(
        forward.body["properties"]["remoteAddressSpace"]["addressPrefixes"],
        json!(["10.10.0.0/16"])
    );
    let back = sim
        .put(
            &net(&format!("{east}/virtualNetworkPeerings/to-extra")),
            json!({"properties": {"remoteVirtualNetwork": {"id": dr}}}),
        )
        .await;
    assert_eq!(back.body["properties"]["peeringState"], "Connected");
    let forward = sim.get(&net(&format!("{dr}/virtualNetworkPeerings/to-east"))).await;
    assert_eq!(forward.body["properties"]["peeringState"], "Connected");
    let list = sim.get(&net(&format!("{east}/virtualNetworkPeerings"))).await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 2);
    assert_eq!(
        sim.delete(&net(&format!("{east}/virtualNetworkPeerings/to-extra")))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        sim.delete(&net(&format!("{east}/virtualNetworkPeerings/to-extra")))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let forward = sim.get(&net(&format!("{dr}/virtualNetworkPeerings/to-east"))).await;
    assert_eq!(forward.body["properties"]["peeringState"], "Initiated");

    // NSG and security rules.
    let nsg = nsg_id(NORTH, "nsg-mi-northeurope");
    let g = sim.get(&net(&nsg)).await;
    assert_eq!(g.body["type"], "Microsoft.Network/networkSecurityGroups");
    assert_eq!(g.body["properties"]["securityRules"], json!([]));
    // Azure's six platform rules, read-only, under `defaultSecurityRules`.
    let defaults = g.body["properties"]["defaultSecurityRules"].as_array().unwrap();
    let names: Vec<_> = defaults.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "AllowVnetInBound",
            "AllowAzureLoadBalancerInBound",
            "DenyAllInBound",
            "AllowVnetOutBound",
            "AllowInternetOutBound",
            "DenyAllOutBound"
        ]
    );
    assert_eq!(
        defaults[2],
        json!({
            "id": format!("{nsg}/defaultSecurityRules/DenyAllInBound"),
            "name": "DenyAllInBound",
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "etag": defaults[2]["etag"],
            "properties": {
                "description": "Deny all inbound traffic",
                "protocol": "*",
                "sourcePortRange": "*",
                "sourcePortRanges": [],
                "destinationPortRange": "*",
                "destinationPortRanges": [],
                "sourceAddressPrefix": "*",
                "sourceAddressPrefixes": [],
                "destinationAddressPrefix": "*",
                "destinationAddressPrefixes": [],
                "access": "Deny",
                "priority": 65500,
                "direction": "Inbound",
                "provisioningState": "Succeeded"
            }
        })
    );
    assert_eq!(
        g.body["properties"]["subnets"][0]["id"],
        format!("{}/subnets/snet-mi", vnet_id(NORTH, "vnet-sql-northeurope"))
    );
    let rule = sim
        .put(
            &net(&format!("{nsg}/securityRules/allow_geodr_inbound")),
            json!({"properties": {"protocol": "Tcp", "access": "Allow", "priority": 1200, "direction": "Inbound",
                "sourcePortRange": "*", "destinationPortRange": "5022", "sourceAddressPrefix": "VirtualNetwork",
                "destinationAddressPrefix": "*"}}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{}", rule.body);
    assert_eq!(rule.body["properties"]["destinationPortRange"], "5022");
    assert_eq!(rule.body["properties"]["provisioningState"], "Succeeded");
    let got = sim.get(&net(&format!("{nsg}/securityRules/allow_geodr_inbound"))).await;
    assert_eq!(got.body["properties"]["priority"], 1200);
    assert_eq!(
        sim.get(&net(&format!("{nsg}/securityRules"))).await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        sim.delete(&net(&format!("{nsg}/securityRules/allow_geodr_inbound")))
            .await
            .status,
        StatusCode::OK
    );
    sim.get(&net(&format!("{nsg}/securityRules/allow_geodr_inbound")))
        .await
        .assert_error(404, "ResourceNotFound");
}

#[tokio::test]
async fn every_response_carries_correlation_and_rate_limit_headers() {
    let sim = Sim::demo().await;
    let response = sim
        .client
        .get(sim.url(&sql(&mi_id(EAST, "mi-fog-a"))))
        .bearer_auth("t")
        .header("x-ms-client-request-id", "my-client-id")
        .header("x-ms-correlation-request-id", "my-correlation")
        .send()
        .await
        .unwrap();
    let h = response.headers();
    assert_eq!(h["x-ms-client-request-id"], "my-client-id");
    assert_eq!(h["x-ms-correlation-request-id"], "my-correlation");
    assert_eq!(h["x-ms-request-id"].to_str().unwrap().len(), 36);
    assert_eq!(h["x-ms-ratelimit-remaining-subscription-reads"], "249");
    let write = sim
        .put(
            &net(&format!("{}/securityRules/x", nsg_id(EAST, "nsg-mi-eastus"))),
            json!({"properties": {
        "protocol": "*", "access": "Deny", "priority": 4000, "direction": "Inbound", "destinationPortRange": "1433"}}),
        )
        .await;
    assert_eq!(
        write.header("x-ms-ratelimit-remaining-subscription-writes").as_deref(),
        Some("199")
    );
    let del = sim
        .delete(&net(&format!("{}/securityRules/x", nsg_id(EAST, "nsg-mi-eastus"))))
        .await;
    assert_eq!(
        del.header("x-ms-ratelimit-remaining-subscription-deletes").as_deref(),
        Some("199")
    );
    // Errors carry the ids too.
    let e = sim.get(&sql(&mi_id(EAST, "nope"))).await;
    assert!(e.header("x-ms-request-id").is_some());
    assert!(e.header("x-ms-correlation-request-id").is_some());
}

#[tokio::test]
async fn requests_need_a_bearer_token_and_an_api_version() {
    let sim = Sim::demo().await;
    let url = sim.url(&sql(&mi_id(EAST, "mi-fog-a")));
    let r = sim.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("www-authenticate").is_some());
    assert!(r.headers().get("x-ms-request-id").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    let r = sim
        .client
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    sim.get(&mi_id(EAST, "mi-fog-a"))
        .await
        .assert_error(400, "MissingApiVersionParameter");
    sim.get(&format!("{}?api-version=2019-06-01-preview", mi_id(EAST, "mi-fog-a")))
        .await
        .assert_error(400, "NoRegisteredProviderFound");
    for version in [
        "2021-11-01",
        "2023-08-01",
        "2025-01-01",
        "2022-05-01-preview",
        "2024-05-01-preview",
        "2025-08-01-preview",
    ] {
        assert_eq!(
            sim.get(&format!("{}?api-version={version}", mi_id(EAST, "mi-fog-a")))
                .await
                .status,
            StatusCode::OK
        );
    }
    sim.get(&sql(&format!("{}/providers/Microsoft.Web/sites/x", rg_path(EAST))))
        .await
        .assert_error(404, "InvalidResourceType");

    // With a fixed token only that token is accepted.
    let mut config = config(DEMO);
    config.token = Some("the-token".into());
    let fixed = Sim::start(config).await;
    let url = fixed.url(&sql(&mi_id(EAST, "mi-fog-a")));
    let wrong = fixed.client.get(&url).bearer_auth("other").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    let right = fixed.client.get(&url).bearer_auth("the-token").send().await.unwrap();
    assert_eq!(right.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_api_reports_clock_state_and_resets() {
    let sim = Sim::demo().await;
    let clock = sim.admin(reqwest::Method::GET, "/_sim/clock", None).await;
    assert_eq!(clock["time_scale"], 1.0);
    assert!(clock["now"].as_str().unwrap().starts_with("2026-11-26T08:00"));
    let advanced = sim.advance("2h").await;
    assert!(advanced["elapsed_seconds"].as_f64().unwrap() >= 7200.0);
    assert!(advanced["now"].as_str().unwrap().starts_with("2026-11-26T10:00"));
    let secs = sim.advance_secs(60.0).await;
    assert!(secs["elapsed_seconds"].as_f64().unwrap() >= 7260.0);
    let bad = sim
        .client
        .post(sim.url("/_sim/clock/advance"))
        .json(&json!({"duration": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    sim.put(&sql(&mi_id(NORTH, "mi-fog-c")), instance_c_body(None)).await;
    let state = sim.state().await;
    assert!(state["world"]["instances"].as_object().unwrap().len() == 3);
    assert_eq!(sim.journal().await.len(), 1);
    let reset = sim.client.post(sim.url("/_sim/reset")).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.state().await["world"]["instances"].as_object().unwrap().len(), 2);
    assert_eq!(sim.journal().await.len(), 0);
    sim.get(&sql(&mi_id(NORTH, "mi-fog-c")))
        .await
        .assert_error(404, "ResourceNotFound");
}

#[tokio::test]
async fn a_repeated_create_after_completion_is_an_idempotent_200() {
    let sim = Sim::demo().await;
    let c = sql(&mi_id(NORTH, "mi-fog-c"));
    sim.finish(&sim.put(&c, instance_c_body(Some(&mi_id(WEST, "mi-fog-b")))).await)
        .await;
    let again = sim.put(&c, instance_c_body(Some(&mi_id(WEST, "mi-fog-b")))).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["properties"]["provisioningState"], "Succeeded");
    let journal = sim.journal().await;
    assert_eq!(journal.len(), 2);
    assert!(journal[1]["operation_id"].is_null(), "no second operation");
}

#[tokio::test]
async fn start_rejects_bad_configuration() {
    let mut cfg = config(DEMO);
    cfg.time_scale = -1.0;
    assert!(matches!(
        fogbook_sim::start(cfg).await,
        Err(fogbook_sim::SimError::InvalidTimeScale(_))
    ));
    let mut cfg = config(DEMO);
    cfg.tls = Some(fogbook_sim::TlsFiles {
        cert_pem: "/nonexistent/cert.pem".into(),
        key_pem: "/nonexistent/key.pem".into(),
    });
    assert!(matches!(
        fogbook_sim::start(cfg).await,
        Err(fogbook_sim::SimError::Tls(_))
    ));
    let demo = fogbook_sim::Estate::demo().unwrap();
    let sim = Sim::start(fogbook_sim::SimConfig::new(demo)).await;
    assert_eq!(sim.get(&sql(&mi_id(EAST, "mi-fog-a"))).await.status, StatusCode::OK);
}

#[tokio::test]
async fn instances_list_by_subscription() {
    let sim = Sim::demo().await;
    let list = sim
        .get(&sql(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Sql/managedInstances"
        )))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let mut names: Vec<_> = list.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["mi-fog-a", "mi-fog-b"]);
    let other = sim
        .get(&sql(
            "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Sql/managedInstances",
        ))
        .await;
    assert_eq!(other.body["value"], json!([]));
}

#[tokio::test]
async fn concurrent_identical_creates_start_one_operation() {
    let sim = std::sync::Arc::new(Sim::demo().await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let sim = sim.clone();
        tasks.spawn(async move { sim.put(&sql(&mi_id(NORTH, "mi-fog-c")), instance_c_body(None)).await });
    }
    let mut urls = Vec::new();
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        urls.push(reply.header("azure-asyncoperation").unwrap());
    }
    urls.dedup();
    assert_eq!(urls.len(), 1, "every caller got the same operation");
    let journal = sim.journal().await;
    assert_eq!(journal.len(), 12);
    assert!(journal.iter().all(|e| e["operation_id"] == journal[0]["operation_id"]));
    assert_eq!(sim.state().await["world"]["operations"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn forced_failover_swaps_roles_and_moves_group_writes() {
    let sim = Sim::demo().await;
    let west = fog_path(WEST, "westus", "fog-demo");
    let forced = sim
        .post(&format!("{west}/forceFailoverAllowDataLoss?api-version=2023-08-01"))
        .await;
    assert_eq!(forced.status, StatusCode::ACCEPTED, "{}", forced.body);
    let location = forced.header("location").unwrap();
    assert!(
        location.contains("/instanceFailoverGroupOperationResults/"),
        "{location}"
    );
    assert!(location.ends_with("api-version=2023-08-01"), "{location}");
    assert_eq!(sim.get(&location).await.status, StatusCode::ACCEPTED);
    sim.advance("31s").await;
    let done = sim.get(&location).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["id"], fog_path(WEST, "West US", "fog-demo"));
    assert_eq!(done.body["properties"]["replicationRole"], "Primary");
    assert_eq!(
        done.body["properties"]["partnerRegions"],
        json!([{"location": "East US", "replicationRole": "Secondary"}])
    );
    // Writes now go to westus; eastus is the secondary view.
    let body = group_body(&mi_id(WEST, "mi-fog-b"), &mi_id(EAST, "mi-fog-a"), "eastus");
    sim.put(&sql(&fog_path(EAST, "eastus", "fog-demo")), body.clone())
        .await
        .assert_error(400, "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary");
    assert_eq!(sim.put(&sql(&west), body).await.status, StatusCode::OK);
    // The old primary's databases are now the read-only replicas.
    let state = sim.state().await;
    let a = &state["world"]["instances"][mi_id(EAST, "mi-fog-a").to_lowercase()];
    assert!(
        a["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["read_only"] == true)
    );
}

#[tokio::test]
async fn requests_are_counted_and_reported_to_the_observer() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = config(DEMO);
    cfg.observer = Some(tx);
    let sim = Sim::start(cfg).await;
    let before = std::time::Instant::now();
    let mi = sql(&mi_id(EAST, "mi-fog-a"));
    assert_eq!(sim.get(&mi).await.status, StatusCode::OK);
    sim.get(&sql(&mi_id(EAST, "nope")))
        .await
        .assert_error(404, "ResourceNotFound");
    let unauthenticated = sim.client.get(sim.url(&mi)).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    // The admin API is neither counted nor reported.
    sim.journal().await;

    let counts = sim.admin(reqwest::Method::GET, "/_sim/requests", None).await;
    assert_eq!(counts["total"], 3, "{counts}");
    assert_eq!(
        counts["counts"],
        json!([
            {"operation": "ManagedInstances_Get", "status": 200, "count": 1},
            {"operation": "ManagedInstances_Get", "status": 401, "count": 1},
            {"operation": "ManagedInstances_Get", "status": 404, "count": 1},
        ])
    );
    assert!(counts["elapsed_ms"].as_u64().is_some());

    let first = rx.recv().await.unwrap();
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, mi_id(EAST, "mi-fog-a"));
    assert_eq!(first.operation, Some("ManagedInstances_Get"));
    assert_eq!(first.status, 200);
    assert!(first.received >= before);
    let statuses = [rx.recv().await.unwrap().status, rx.recv().await.unwrap().status];
    assert_eq!(statuses, [404, 401]);
    assert!(rx.try_recv().is_err());

    let reset = sim.client.post(sim.url("/_sim/reset")).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let counts = sim.admin(reqwest::Method::GET, "/_sim/requests", None).await;
    assert_eq!(counts["total"], 0, "{counts}");
}
