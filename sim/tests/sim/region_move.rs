//! The documented "change primary region" procedure, driven by raw HTTP from start to end.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn change_primary_region_ends_with_c_primary_b_secondary_and_a_gone() {
    let sim = Sim::demo().await;
    let (a, b, c) = (
        mi_id(EAST, "mi-fog-a"),
        mi_id(WEST, "mi-fog-b"),
        mi_id(NORTH, "mi-fog-c"),
    );

    // 0. Networking for the new region: peering westus <-> northeurope and NSG rules.
    connect_north_to_west(&sim).await;

    // 1. Create C like B, in B's DNS zone.
    let create = sim.put(&sql(&c), instance_c_body(Some(&b))).await;
    assert_eq!(create.status, StatusCode::ACCEPTED, "{}", create.body);
    sim.advance("4h").await;
    assert_eq!(
        sim.get(&create.header("azure-asyncoperation").unwrap()).await.body["status"],
        "Succeeded"
    );
    assert_eq!(sim.get(&sql(&c)).await.body["properties"]["dnsZone"], "9f4e1c2b7a3d5");

    // 2. Fail over to B (POST at the secondary's location).
    let failover = sim
        .post(&sql(&format!("{}/failover", fog_path(WEST, "westus", "fog-demo"))))
        .await;
    assert_eq!(failover.status, StatusCode::ACCEPTED, "{}", failover.body);
    sim.advance("61s").await;
    let result = sim.get(&failover.header("location").unwrap()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(
        result.body["properties"]["replicationRole"], "Primary",
        "the Location result is the view at B"
    );
    assert_eq!(
        result.body["properties"]["managedInstancePairs"][0]["primaryManagedInstanceId"],
        b
    );
    let east_view = sim.get(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await;
    assert_eq!(east_view.body["properties"]["replicationRole"], "Secondary");

    // 3. Delete the group, now at B's location (B is primary).
    let delete = sim.delete(&sql(&fog_path(WEST, "westus", "fog-demo"))).await;
    assert_eq!(delete.status, StatusCode::ACCEPTED, "{}", delete.body);
    sim.advance("3m").await;
    sim.get(&sql(&fog_path(WEST, "westus", "fog-demo")))
        .await
        .assert_error(404, "ResourceNotFound");

    // 4. Create the group with the same name, B primary and C secondary.
    let create_group = sim
        .put(
            &sql(&fog_path(WEST, "westus", "fog-demo")),
            group_body(&b, &c, "northeurope"),
        )
        .await;
    assert_eq!(create_group.status, StatusCode::ACCEPTED, "{}", create_group.body);
    let seeding = sim.get(&sql(&fog_path(NORTH, "northeurope", "fog-demo"))).await;
    assert_eq!(seeding.body["properties"]["replicationRole"], "Secondary");
    assert_eq!(seeding.body["properties"]["replicationState"], "SEEDING");
    // 203.5 GB between unpaired regions at 100 GB/h, plus 10 minutes: about 2h12m.
    sim.advance("2h").await;
    assert_eq!(
        sim.get(&sql(&fog_path(NORTH, "northeurope", "fog-demo"))).await.body["properties"]["replicationState"],
        "SEEDING"
    );
    sim.advance("15m").await;
    assert_eq!(
        sim.get(&sql(&fog_path(NORTH, "northeurope", "fog-demo"))).await.body["properties"]["replicationState"],
        "CATCH_UP"
    );
    assert_eq!(
        sim.get(&create_group.header("azure-asyncoperation").unwrap())
            .await
            .body["status"],
        "Succeeded"
    );

    // 5. Fail over to C.
    let failover_c = sim
        .post(&sql(&format!(
            "{}/failover",
            fog_path(NORTH, "northeurope", "fog-demo")
        )))
        .await;
    assert_eq!(failover_c.status, StatusCode::ACCEPTED, "{}", failover_c.body);
    sim.advance("2m").await;

    // 6. Delete A.
    let delete_a = sim.delete(&sql(&a)).await;
    assert_eq!(delete_a.status, StatusCode::ACCEPTED, "{}", delete_a.body);
    sim.advance("1h").await;

    // The end state.
    sim.get(&sql(&a)).await.assert_error(404, "ResourceNotFound");
    let north = sim.get(&sql(&fog_path(NORTH, "northeurope", "fog-demo"))).await;
    assert_eq!(north.body["properties"]["replicationRole"], "Primary");
    assert_eq!(
        north.body["properties"]["partnerRegions"],
        json!([{"location": "West US", "replicationRole": "Secondary"}])
    );
    assert_eq!(
        north.body["properties"]["managedInstancePairs"],
        json!([{"primaryManagedInstanceId": c, "partnerManagedInstanceId": b}])
    );
    let west = sim.get(&sql(&fog_path(WEST, "westus", "fog-demo"))).await;
    assert_eq!(west.body["properties"]["replicationRole"], "Secondary");
    let c_dbs = sim.get(&sql(&format!("{c}/databases"))).await;
    let names: Vec<_> = c_dbs.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("sales"), json!("inventory"), json!("hr"), json!("audit")]
    );
    let state = sim.state().await;
    let mut instances: Vec<_> = state["world"]["instances"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    instances.sort();
    assert_eq!(instances, ["mi-fog-b", "mi-fog-c"]);
    let c_state = &state["world"]["instances"][c.to_lowercase()];
    assert!(
        c_state["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["read_only"] == false)
    );
    let b_state = &state["world"]["instances"][b.to_lowercase()];
    assert!(
        b_state["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["read_only"] == true)
    );

    // The journal lists each mutating call exactly once, in order, all applied.
    let journal = sim.journal().await;
    let calls: Vec<(String, String)> = journal
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().split('?').next().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = vec![
        (
            "PUT".to_owned(),
            format!(
                "{}/virtualNetworkPeerings/westus-to-northeurope",
                vnet_id(WEST, "vnet-sql-westus")
            ),
        ),
        (
            "PUT".to_owned(),
            format!(
                "{}/virtualNetworkPeerings/northeurope-to-westus",
                vnet_id(NORTH, "vnet-sql-northeurope")
            ),
        ),
        (
            "PUT".to_owned(),
            format!(
                "{}/securityRules/allow_geodr_inbound",
                nsg_id(NORTH, "nsg-mi-northeurope")
            ),
        ),
        (
            "PUT".to_owned(),
            format!(
                "{}/securityRules/allow_geodr_outbound",
                nsg_id(NORTH, "nsg-mi-northeurope")
            ),
        ),
        ("PUT".to_owned(), c.clone()),
        (
            "POST".to_owned(),
            format!("{}/failover", fog_path(WEST, "westus", "fog-demo")),
        ),
        ("DELETE".to_owned(), fog_path(WEST, "westus", "fog-demo")),
        ("PUT".to_owned(), fog_path(WEST, "westus", "fog-demo")),
        (
            "POST".to_owned(),
            format!("{}/failover", fog_path(NORTH, "northeurope", "fog-demo")),
        ),
        ("DELETE".to_owned(), a.clone()),
    ];
    assert_eq!(calls, expected);
    assert!(
        journal
            .iter()
            .all(|e| e["applied"] == true && e["connection_dropped"] == false)
    );
    let seqs: Vec<_> = journal.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let mut op_ids: Vec<_> = journal.iter().filter_map(|e| e["operation_id"].as_str()).collect();
    assert_eq!(op_ids.len(), 6, "six long-running operations");
    op_ids.dedup();
    assert_eq!(op_ids.len(), 6);
    assert!(journal.iter().all(|e| e["body_sha256"].as_str().unwrap().len() == 64));
}
