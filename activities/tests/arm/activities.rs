//! Every Azure activity against the demo estate.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn fog_get_reports_roles_and_listeners() {
    let sim = Sim::start(DEMO).await;
    let out = run(
        &sim,
        "fog.get",
        json!({ "name": "fog-demo", "instance": mi(EAST, "mi-fog-a") }),
    )
    .await
    .unwrap();
    assert_eq!(out["role"], "Primary");
    assert_eq!(
        out["read_write_listener"],
        "fog-demo.9f4e1c2b7a3d5.database.windows.net"
    );
    assert_eq!(
        out["read_only_listener"],
        "fog-demo.secondary.9f4e1c2b7a3d5.database.windows.net"
    );
    let out = run(
        &sim,
        "fog.get",
        json!({ "name": "fog-demo", "instance": mi(WEST, "mi-fog-b") }),
    )
    .await
    .unwrap();
    assert_eq!(out["role"], "Secondary");
}

#[tokio::test]
async fn failover_is_a_no_op_on_the_primary_and_force_failover_swaps_roles() {
    let sim = Sim::start(DEMO).await;
    let out = run(
        &sim,
        "fog.failover",
        json!({ "name": "fog-demo", "secondary": mi(EAST, "mi-fog-a") }),
    )
    .await
    .unwrap();
    assert_eq!(out["changed"], false);
    assert_eq!(out["resolved_by"], "no-op");
    assert!(sim.journal("POST", "").await.is_empty());
    let out = run(
        &sim,
        "fog.force_failover",
        json!({ "name": "fog-demo", "secondary": mi(WEST, "mi-fog-b") }),
    )
    .await
    .unwrap();
    assert_eq!(out["changed"], true);
    assert_eq!(out["role"], "Primary");
    assert_eq!(out["forced"], true);
    assert!(out["arm_requests"][0]["request_id"].is_string(), "{out}");
    let posts = sim.journal("POST", "/forceFailoverAllowDataLoss").await;
    assert_eq!(posts.len(), 1);
    assert!(
        posts[0]["path"].as_str().unwrap().contains("rg-sql-westus"),
        "posted at the secondary"
    );
    // Fail back (planned) makes A primary again.
    let out = run(
        &sim,
        "fog.failover",
        json!({ "name": "fog-demo", "secondary": mi(EAST, "mi-fog-a") }),
    )
    .await
    .unwrap();
    assert_eq!(out["changed"], true);
}

#[tokio::test]
async fn scale_and_update_policy_converge_and_drift_reports_differences() {
    let sim = Sim::start(DEMO).await;
    let pair = json!({ "primary": mi(EAST, "mi-fog-a"), "secondary": mi(WEST, "mi-fog-b") });
    let out = run(&sim, "fog.drift", pair.clone()).await.unwrap();
    assert_eq!(out["in_sync"], true, "{out}");

    let out = run(
        &sim,
        "instance.scale",
        json!({ "instance": mi(WEST, "mi-fog-b"), "v_cores": 16 }),
    )
    .await
    .unwrap();
    assert_eq!(out["changed"], true);
    assert_eq!(out["after"]["v_cores"], 16);
    let out = run(
        &sim,
        "instance.scale",
        json!({ "instance": mi(WEST, "mi-fog-b"), "v_cores": 16 }),
    )
    .await
    .unwrap();
    assert_eq!(out["changed"], false, "already at the target");
    assert_eq!(sim.journal("PATCH", "mi-fog-b").await.len(), 1);

    let out = run(
        &sim,
        "instance.set_update_policy",
        json!({ "instance": mi(WEST, "mi-fog-b"), "policy": "SQLServer2025" }),
    )
    .await
    .unwrap();
    assert_eq!(out["changed"], true);
    assert_eq!(out["instance"]["database_format"], "SQLServer2025");

    let out = run(&sim, "fog.drift", pair.clone()).await.unwrap();
    let settings: Vec<&str> = out["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["setting"].as_str())
        .collect();
    assert_eq!(settings, vec!["update_policy", "v_cores"]);
    let mut strict = pair;
    strict["fail_on_drift"] = json!(true);
    let err = run(&sim, "fog.drift", strict).await.expect_err("drift");
    assert_eq!(err.code(), "DriftDetected");

    // Primary-first downgrade-style mistakes come back with Azure's code.
    let err = run(
        &sim,
        "instance.set_update_policy",
        json!({ "instance": mi(WEST, "mi-fog-b"), "policy": "SQLServer2022" }),
    )
    .await
    .expect_err("one way");
    assert!(err.code().starts_with("ManagedInstanceUpdateSlo"), "{err:?}");
}

#[tokio::test]
async fn databases_assert_empty_names_the_databases() {
    let sim = Sim::start(&crate::preflight::clean_pair()).await;
    assert_eq!(
        run(&sim, "databases.assert_empty", json!({ "instance": mi(WEST, "mi-b") }))
            .await
            .unwrap()["databases"],
        json!([])
    );
    let sim = Sim::start(DEMO).await;
    let err = run(
        &sim,
        "databases.assert_empty",
        json!({ "instance": mi(EAST, "mi-fog-a") }),
    )
    .await
    .expect_err("not empty");
    assert_eq!(err.code(), "InstanceNotEmpty");
    assert!(err.to_string().contains("sales"), "{err}");
}

/// `database.get` reads one database (looked up ignoring case, named as Azure spells it); a
/// missing one, with `must_exist: false`, is named with the databases that are there, and a
/// missing instance with the instances of its resource group.
#[tokio::test]
async fn database_get_names_what_is_there_when_the_database_is_missing() {
    let sim = Sim::start(DEMO).await;
    let get = |instance: serde_json::Value, name: &str, must_exist: bool| {
        let input = json!({ "instance": instance, "name": name, "must_exist": must_exist });
        run(&sim, "database.get", input)
    };
    let out = get(mi(EAST, "mi-fog-a"), "SALES", true).await.unwrap();
    assert_eq!(out["exists"], true);
    assert_eq!(out["name"], "sales");
    assert_eq!(out["status"], "Online");
    assert!(
        out["failover_group_id"].as_str().unwrap().ends_with("/fog-demo"),
        "{out}"
    );
    assert_eq!(
        out["found"],
        "managed database `sales` exists on managed instance `mi-fog-a` (resource group `rg-sql-eastus`)"
    );

    let out = get(mi(EAST, "mi-fog-a"), "salse", false).await.unwrap();
    assert_eq!(out["exists"], false);
    assert_eq!(
        out["found"],
        "managed database `salse` not found on managed instance `mi-fog-a` (resource group `rg-sql-eastus`); the databases there are: audit, hr, inventory, sales"
    );
    let err = get(mi(EAST, "mi-fog-a"), "salse", true).await.expect_err("must exist");
    assert_eq!(err.code(), "ResourceNotFound");

    let out = get(mi(EAST, "mi-typo"), "sales", false).await.unwrap();
    assert_eq!(out["exists"], false);
    let found = out["found"].as_str().unwrap();
    assert!(
        found.contains("managed instance `mi-typo` not found") && found.contains("the instances there are: mi-fog-a"),
        "{found}"
    );
    let journal = sim.admin_get("/_sim/journal").await;
    assert_eq!(journal["entries"], json!([]), "only reads");
}

#[tokio::test]
async fn network_peer_and_open_fog_ports_prepare_a_new_region_idempotently() {
    let sim = Sim::start(DEMO).await;
    let c = json!({ "subscription": SUB, "resource_group": NORTH, "name": "mi-fog-c", "location": "northeurope",
                    "subnet_id": subnet(NORTH, "vnet-sql-northeurope") });
    let pair = json!({ "primary": mi(EAST, "mi-fog-a"), "secondary": c });
    let out = run(&sim, "network.peer", pair.clone()).await.unwrap();
    let peerings = out["peerings"].as_array().unwrap();
    assert_eq!(peerings.len(), 2);
    assert!(peerings.iter().all(|p| p["state"] == "Connected"), "{out}");
    assert_eq!(sim.journal("PUT", "virtualNetworkPeerings").await.len(), 2);
    run(&sim, "network.peer", pair.clone()).await.unwrap();
    assert_eq!(
        sim.journal("PUT", "virtualNetworkPeerings").await.len(),
        2,
        "existing peerings are kept"
    );

    let out = run(&sim, "network.open_fog_ports", pair.clone()).await.unwrap();
    let nsgs = out["nsgs"].as_array().unwrap();
    let actions = |i: usize| {
        nsgs[i]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(actions(0), vec!["already-open"; 4], "A's NSG was already open");
    assert_eq!(actions(1), vec!["created"; 4]);
    assert_eq!(sim.journal("PUT", "securityRules").await.len(), 4);
    run(&sim, "network.open_fog_ports", pair.clone()).await.unwrap();
    assert_eq!(sim.journal("PUT", "securityRules").await.len(), 4, "idempotent");

    // Now the new region passes the network part of the preflight.
    let out = run(
        &sim,
        "fog.get",
        json!({ "name": "fog-demo", "instance": mi(EAST, "mi-fog-a") }),
    )
    .await
    .unwrap();
    assert_eq!(out["role"], "Primary");
}

#[tokio::test]
async fn fog_create_refused_by_azure_keeps_the_arm_code() {
    let sim = Sim::start(DEMO).await;
    let err = run(
        &sim,
        "fog.create",
        json!({ "name": "fog-2", "primary": mi(WEST, "mi-fog-b"), "secondary": mi(EAST, "mi-fog-a") }),
    )
    .await
    .expect_err("refused");
    assert!(!err.is_retryable());
    // Both instances are already in fog-demo: the spec's 409 for that.
    assert_eq!(err.code(), "InstanceFailoverGroupAlreadyExists", "{err:?}");
}

#[test]
fn every_azure_activity_has_a_strict_schema() {
    for kind in fogbook_activities::KINDS.iter().filter(|k| k.contains('.')) {
        let schema = fogbook_activities::input_schema(kind).expect("schema");
        assert_eq!(
            schema.as_value()["additionalProperties"],
            json!(false),
            "{kind} must deny unknown fields"
        );
    }
}
