//! Every rule the emulator enforces answers with Azure's status and error code.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

/// Instances that are not in any group, each breaking one requirement against `p1`.
pub(crate) const RULES_ESTATE: &str = r#"
epoch: 2026-01-01T00:00:00Z
subscriptions:
  - id: 6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7
    resource_groups:
      - name: rg-e
        location: eastus
        network_security_groups:
          - name: nsg-e
            rules:
              - {name: geo-in, priority: 1100, direction: Inbound, destination_port_ranges: ["5022", "11000-11999"]}
              - {name: geo-out, priority: 1100, direction: Outbound, destination_port_ranges: ["5022", "11000-11999"]}
        virtual_networks:
          - name: vnet-e
            address_prefixes: [10.1.0.0/16]
            subnets:
              - {name: mi, address_prefix: 10.1.0.0/24, network_security_group: nsg-e}
            peerings:
              - {name: e-w, remote_virtual_network: rg-w/vnet-w}
              - {name: e-c, remote_virtual_network: rg-c/vnet-c}
        managed_instances:
          - name: p1
            storage_gb: 512
            dns_zone: zone000000001
            subnet: vnet-e/mi
            databases: [{name: db1, size_gb: 10}]
          - name: p-new
            storage_gb: 512
            dns_zone: zone000000001
            database_format: AlwaysUpToDate
            subnet: vnet-e/mi
          - name: s-east
            storage_gb: 512
            dns_zone: zone000000001
            subnet: vnet-e/mi
      - name: rg-w
        location: westus
        network_security_groups:
          - name: nsg-w
            rules:
              - {name: geo-in, priority: 1100, direction: Inbound, destination_port_ranges: ["5022", "11000-11999"]}
              - {name: geo-out, priority: 1100, direction: Outbound, destination_port_ranges: ["5022", "11000-11999"]}
        virtual_networks:
          - name: vnet-w
            address_prefixes: [10.2.0.0/16]
            subnets:
              - {name: mi, address_prefix: 10.2.0.0/24, network_security_group: nsg-w}
            peerings:
              - {name: w-e, remote_virtual_network: rg-e/vnet-e}
        managed_instances:
          - {name: s-ok, storage_gb: 512, dns_zone: zone000000001, subnet: vnet-w/mi}
          - name: s-full
            storage_gb: 512
            dns_zone: zone000000001
            subnet: vnet-w/mi
            databases: [{name: leftover, size_gb: 1}]
          - {name: s-size, storage_gb: 256, dns_zone: zone000000001, subnet: vnet-w/mi}
          - {name: s-tier, sku: BC_Gen5, storage_gb: 512, dns_zone: zone000000001, subnet: vnet-w/mi}
          - {name: s-zone, storage_gb: 512, dns_zone: otherzone0001, subnet: vnet-w/mi}
          - {name: s-pool, storage_gb: 512, dns_zone: zone000000001, subnet: vnet-w/mi, instance_pool: /subscriptions/6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7/resourceGroups/rg-w/providers/Microsoft.Sql/instancePools/pool1}
          - {name: s-new, storage_gb: 512, dns_zone: zone000000001, subnet: vnet-w/mi, database_format: AlwaysUpToDate}
      - name: rg-n
        location: northeurope
        network_security_groups:
          - name: nsg-n
            rules:
              - {name: geo-in, priority: 1100, direction: Inbound, destination_port_ranges: ["5022", "11000-11999"]}
              - {name: geo-out, priority: 1100, direction: Outbound, destination_port_ranges: ["5022", "11000-11999"]}
        virtual_networks:
          - name: vnet-n
            address_prefixes: [10.3.0.0/16]
            subnets:
              - {name: mi, address_prefix: 10.3.0.0/24, network_security_group: nsg-n}
        managed_instances:
          - {name: s-unpeered, storage_gb: 512, dns_zone: zone000000001, subnet: vnet-n/mi}
      - name: rg-o
        location: westeurope
        network_security_groups:
          - name: nsg-o
            rules:
              - {name: geo-in, priority: 1100, direction: Inbound, destination_port_ranges: ["5022", "11000-11999"]}
              - {name: geo-out, priority: 1100, direction: Outbound, destination_port_ranges: ["5022", "11000-11999"]}
        virtual_networks:
          - name: vnet-o
            address_prefixes: [10.1.128.0/17]
            subnets:
              - {name: mi, address_prefix: 10.1.128.0/24, network_security_group: nsg-o}
        managed_instances:
          - {name: s-overlap, storage_gb: 512, dns_zone: zone000000001, subnet: vnet-o/mi}
      - name: rg-c
        location: centralus
        network_security_groups:
          - name: nsg-c
            rules:
              - {name: geo-in-only, priority: 1100, direction: Inbound, destination_port_ranges: ["5022", "11000-11999"]}
              - {name: deny-out, priority: 1000, direction: Outbound, access: Deny, destination_port_ranges: ["11500"]}
              - {name: geo-out, priority: 1100, direction: Outbound, destination_port_ranges: ["5022", "11000-11999"]}
        virtual_networks:
          - name: vnet-c
            address_prefixes: [10.4.0.0/16]
            subnets:
              - {name: mi, address_prefix: 10.4.0.0/24, network_security_group: nsg-c}
            peerings:
              - {name: c-e, remote_virtual_network: rg-e/vnet-e}
        managed_instances:
          - {name: s-closed, storage_gb: 512, dns_zone: zone000000001, subnet: vnet-c/mi}
"#;

fn id(rg: &str, name: &str) -> String {
    mi_id(rg, name)
}

async fn create_group(
    sim: &Sim,
    primary_rg: &str,
    primary: &str,
    location: &str,
    partner_rg: &str,
    partner: &str,
    partner_region: &str,
) -> Reply {
    sim.put(
        &sql(&fog_path(primary_rg, location, "fog-rules")),
        group_body(&id(primary_rg, primary), &id(partner_rg, partner), partner_region),
    )
    .await
}

#[tokio::test]
async fn group_creation_requirements_have_their_codes() {
    let sim = Sim::start(config(RULES_ESTATE)).await;
    let cases = [
        ("rg-w", "s-full", "westus", 400, "GeoDrSecondaryInstanceNotEmpty"),
        ("rg-w", "s-size", "westus", 400, "GeoDrInstanceSizeMismatch"),
        ("rg-w", "s-tier", "westus", 400, "ServerEditionMismatch"),
        ("rg-w", "s-zone", "westus", 400, "DnsZoneMismatch"),
        ("rg-e", "s-east", "eastus", 400, "InvalidFailoverGroupRegion"),
        ("rg-w", "s-ok", "northeurope", 400, "FailoverGroupRegionMismatch"),
        (
            "rg-w",
            "s-pool",
            "westus",
            400,
            "ManagedInstanceGeoDRNotAllowedForInstancePool",
        ),
        (
            "rg-n",
            "s-unpeered",
            "northeurope",
            400,
            "InstanceFailoverGroupIncorrectNetworkingConfiguration",
        ),
        (
            "rg-o",
            "s-overlap",
            "westeurope",
            400,
            "InstanceFailoverGroupIncorrectNetworkingConfiguration",
        ),
        (
            "rg-c",
            "s-closed",
            "centralus",
            400,
            "InstanceFailoverGroupIncorrectNetworkingConfiguration",
        ),
    ];
    for (rg, partner, region, status, code) in cases {
        let r = create_group(&sim, "rg-e", "p1", "eastus", rg, partner, region).await;
        assert_eq!(r.status.as_u16(), status, "{partner}: {}", r.body);
        assert_eq!(r.code(), code, "{partner}: {}", r.body);
    }
    let overlap = create_group(&sim, "rg-e", "p1", "eastus", "rg-o", "s-overlap", "westeurope").await;
    assert!(overlap.body["error"]["message"].as_str().unwrap().contains("overlap"));
    let closed = create_group(&sim, "rg-e", "p1", "eastus", "rg-c", "s-closed", "centralus").await;
    assert!(
        closed.body["error"]["message"].as_str().unwrap().contains("Outbound"),
        "{}",
        closed.body
    );

    create_group(&sim, "rg-e", "p-new", "eastus", "rg-w", "s-ok", "westus")
        .await
        .assert_error(
            400,
            "ManagedInstanceEstablishingFailoverGroupGeoPrimaryWithNewerVersionEditionThanSecondary",
        );
    // Sent to the partner's location, or to a location with neither instance.
    let valid = group_body(&id("rg-e", "p1"), &id("rg-w", "s-ok"), "westus");
    sim.put(&sql(&fog_path("rg-w", "westus", "fog-rules")), valid)
        .await
        .assert_error(400, "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary");
    create_group(&sim, "rg-e", "p1", "westus", "rg-w", "s-ok", "westus")
        .await
        .assert_error(400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary");
    create_group(&sim, "rg-e", "nope", "eastus", "rg-w", "s-ok", "westus")
        .await
        .assert_error(400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary");
    create_group(&sim, "rg-e", "p1", "eastus", "rg-w", "nope", "westus")
        .await
        .assert_error(400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner");
    // None of the refused requests changed anything.
    assert_eq!(sim.state().await["world"]["failover_groups"], json!({}));

    // The valid pair is accepted, and then neither instance can join another group.
    let ok = create_group(&sim, "rg-e", "p1", "eastus", "rg-w", "s-ok", "westus").await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let second = sim
        .put(
            &sql(&fog_path("rg-e", "eastus", "fog-other")),
            group_body(&id("rg-e", "p1"), &id("rg-w", "s-size"), "westus"),
        )
        .await;
    second.assert_error(409, "InstanceFailoverGroupAlreadyExists");
    // The name is global: another pair under the same name elsewhere conflicts.
    let same_name = sim
        .put(
            &sql(&fog_path("rg-n", "northeurope", "fog-rules")),
            group_body(&id("rg-n", "s-unpeered"), &id("rg-w", "s-size"), "westus"),
        )
        .await;
    same_name.assert_error(409, "InstanceFailoverGroupDnsRecordInUse");
    // A second, different request while the group is seeding.
    let mut body = group_body(&id("rg-e", "p1"), &id("rg-w", "s-ok"), "westus");
    body["properties"]["readOnlyEndpoint"]["failoverPolicy"] = json!("Enabled");
    sim.put(&sql(&fog_path("rg-e", "eastus", "fog-rules")), body)
        .await
        .assert_error(409, "InstanceFailoverGroupBusy");
    sim.post(&sql(&format!("{}/failover", fog_path("rg-w", "westus", "fog-rules"))))
        .await
        .assert_error(409, "InstanceFailoverGroupBusy");
}

#[tokio::test]
async fn group_request_bodies_are_validated() {
    let sim = Sim::demo().await;
    let path = sql(&fog_path(EAST, "eastus", "fog-new"));
    let base = group_body(&mi_id(EAST, "mi-fog-a"), &mi_id(WEST, "mi-fog-b"), "westus");
    let cases = [
        (
            json!({"failoverPolicy": "Sometimes"}),
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteFailoverPolicy",
        ),
        (
            json!({"failoverPolicy": "Automatic"}),
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteEndpointFields",
        ),
        (
            json!({"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 30}),
            "InstanceFailoverGroupCreateOrUpdateRequestLessThanMinimumGracePeriodValues",
        ),
        (
            json!({"failoverPolicy": "Manual", "failoverWithDataLossGracePeriodMinutes": 60}),
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteEndpointFieldsForManualPolicy",
        ),
    ];
    for (endpoint, code) in cases {
        let mut body = base.clone();
        body["properties"]["readWriteEndpoint"] = endpoint;
        sim.put(&path, body).await.assert_error(400, code);
    }
    let mut two = base.clone();
    two["properties"]["partnerRegions"] = json!([{"location": "westus"}, {"location": "northeurope"}]);
    sim.put(&path, two)
        .await
        .assert_error(400, "InstanceFailoverGroupCreateOrUpdateRequestUnsupportedPartnerCount");
    let mut none = base.clone();
    none["properties"]["managedInstancePairs"] = json!([]);
    sim.put(&path, none)
        .await
        .assert_error(400, "InstanceFailoverGroupCreateOrUpdateRequestUnsupportedPairCount");
    let raw = sim
        .client
        .put(sim.url(&path))
        .bearer_auth("t")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidRequestContent");
}

#[tokio::test]
async fn existing_group_writes_go_to_the_primary_and_failover_to_the_secondary() {
    let sim = Sim::demo().await;
    let body = group_body(&mi_id(EAST, "mi-fog-a"), &mi_id(WEST, "mi-fog-b"), "westus");
    // The same body again at the primary is a no-op 200.
    let same = sim.put(&sql(&fog_path(EAST, "eastus", "fog-demo")), body.clone()).await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.body["properties"]["replicationRole"], "Primary");
    sim.put(&sql(&fog_path(WEST, "westus", "fog-demo")), body.clone())
        .await
        .assert_error(400, "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary");
    sim.delete(&sql(&fog_path(WEST, "westus", "fog-demo")))
        .await
        .assert_error(400, "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary");
    sim.post(&sql(&format!("{}/failover", fog_path(EAST, "eastus", "fog-demo"))))
        .await
        .assert_error(400, "InstanceFailoverGroupFailoverRequestOnPrimary");
    sim.post(&sql(&format!(
        "{}/forceFailoverAllowDataLoss",
        fog_path(EAST, "eastus", "fog-demo")
    )))
    .await
    .assert_error(400, "InstanceFailoverGroupFailoverRequestOnPrimary");
    let mut moved = body.clone();
    moved["properties"]["partnerRegions"] = json!([{"location": "northeurope"}]);
    sim.put(&sql(&fog_path(EAST, "eastus", "fog-demo")), moved)
        .await
        .assert_error(
            400,
            "InstanceFailoverGroupCreateOrUpdateRequestReadOnlyPropertyModified",
        );
    // An endpoint change is an operation of its own.
    let mut automatic = body.clone();
    automatic["properties"]["readWriteEndpoint"] =
        json!({"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 60});
    let update = sim.put(&sql(&fog_path(EAST, "eastus", "fog-demo")), automatic).await;
    sim.finish(&update).await;
    let view = sim.get(&sql(&fog_path(WEST, "westus", "fog-demo"))).await;
    assert_eq!(
        view.body["properties"]["readWriteEndpoint"]["failoverWithDataLossGracePeriodMinutes"],
        60
    );
    // Instances in a group cannot be deleted.
    sim.delete(&sql(&mi_id(WEST, "mi-fog-b")))
        .await
        .assert_error(400, "OperationNotAllowedInCurrentGeodrConfiguration");
}

#[tokio::test]
async fn update_policy_changes_are_one_way_and_secondary_first() {
    let sim = Sim::demo().await;
    let a = sql(&mi_id(EAST, "mi-fog-a"));
    let b = sql(&mi_id(WEST, "mi-fog-b"));
    let to = |format: &str| json!({"properties": {"databaseFormat": format}});
    sim.patch(&a, to("SQLServer2025")).await.assert_error(
        400,
        "ManagedInstanceUpdateSloGeoPrimaryWithNewerVersionEditionThanSecondary",
    );
    let upgrade_b = sim.patch(&b, to("SqlServer2025")).await;
    assert_eq!(upgrade_b.status, StatusCode::ACCEPTED);
    // One operation at a time per instance.
    sim.patch(&b, json!({"properties": {"vCores": 16}}))
        .await
        .assert_error(409, "ConflictingManagedInstanceOperation");
    sim.advance("46m").await;
    assert_eq!(sim.get(&b).await.body["properties"]["databaseFormat"], "SQLServer2025");
    // While only the secondary is upgraded, a failover is refused.
    sim.post(&sql(&format!("{}/failover", fog_path(WEST, "westus", "fog-demo"))))
        .await
        .assert_error(
            400,
            "ManagedInstanceFailoverInFailoverGroupInstancesWithDifferentVersionEditions",
        );
    sim.patch(&b, to("SQLServer2022"))
        .await
        .assert_error(400, "ManagedInstanceUpdateSloFromNewerToOlderVersionEditionNotAllowed");
    sim.finish(&sim.patch(&a, to("SQLServer2025")).await).await;
    sim.finish(&sim.patch(&b, to("AlwaysUpToDate")).await).await;
    sim.patch(&b, to("SQLServer2025"))
        .await
        .assert_error(400, "ManagedInstanceUpdateSloFromVersionlessToVersionedNotAllowed");
    sim.patch(&b, to("SQLServer2019"))
        .await
        .assert_error(400, "InvalidParameterValue");
}

#[tokio::test]
async fn instance_rules_have_their_codes() {
    let sim = Sim::demo().await;
    let a = sql(&mi_id(EAST, "mi-fog-a"));
    sim.patch(&a, json!({"properties": {"storageSizeInGB": 160}}))
        .await
        .assert_error(400, "ManagedInstanceInvalidStorageSizeLessThenCurrentSizeUsed");
    sim.patch(
        &a,
        json!({"properties": {"subnetId": format!("{}/subnets/snet-app", vnet_id(EAST, "vnet-sql-eastus"))}}),
    )
    .await
    .assert_error(400, "SubnetIdCantBeUpdated");
    // The spec lists these two with status 405.
    sim.patch(&a, json!({"properties": {"vCores": 7}}))
        .await
        .assert_error(405, "InvalidVcoreValue");
    sim.patch(&a, json!({"properties": {"storageSizeInGB": 1000}}))
        .await
        .assert_error(405, "InvalidStorageSizeValue");
    sim.patch(&sql(&mi_id(EAST, "nope")), json!({}))
        .await
        .assert_error(404, "ResourceNotFound");

    let mut body = instance_c_body(None);
    body["properties"]["subnetId"] = json!(format!("{}/subnets/snet-app", vnet_id(EAST, "vnet-sql-eastus")));
    body["location"] = json!("eastus");
    sim.put(&sql(&mi_id(EAST, "mi-x")), body)
        .await
        .assert_error(400, "SubnetMissingRequiredDelegation");
    sim.put(&sql(&mi_id(NORTH, "mi-c")), instance_c_body(Some(&mi_id(WEST, "nope"))))
        .await
        .assert_error(400, "InvalidManagedServerDnsZonePartner");
    sim.put(&sql(&mi_id(NORTH, "mi-fog-a")), instance_c_body(None))
        .await
        .assert_error(400, "NameAlreadyExists");
    sim.put(&sql(&mi_id("rg-nope", "mi-c")), instance_c_body(None))
        .await
        .assert_error(404, "ResourceGroupNotFound");
    let mut elsewhere = instance_c_body(None);
    elsewhere["location"] = json!("westus");
    sim.put(&sql(&mi_id(WEST, "mi-c")), elsewhere)
        .await
        .assert_error(400, "VnetInWrongRegion");
    let mut tiny = instance_c_body(None);
    tiny["properties"]["vCores"] = json!(3);
    tiny["sku"]["capacity"] = json!(3);
    sim.put(&sql(&mi_id(NORTH, "mi-c")), tiny)
        .await
        .assert_error(405, "InvalidVcoreValue");
    let mut odd = instance_c_body(None);
    odd["properties"]["storageSizeInGB"] = json!(100);
    sim.put(&sql(&mi_id(NORTH, "mi-c")), odd)
        .await
        .assert_error(405, "InvalidStorageSizeValue");

    // A scale in progress blocks a second change and a failover involving the instance.
    let scale = sim.patch(&a, json!({"properties": {"vCores": 16}})).await;
    assert_eq!(scale.status, StatusCode::ACCEPTED);
    sim.patch(&a, json!({"properties": {"vCores": 24}}))
        .await
        .assert_error(409, "ConflictingManagedInstanceOperation");
    sim.delete(&sql(&mi_id(EAST, "mi-fog-a")))
        .await
        .assert_error(400, "OperationNotAllowedInCurrentGeodrConfiguration");
    sim.post(&sql(&format!("{}/failover", fog_path(WEST, "westus", "fog-demo"))))
        .await
        .assert_error(400, "ManagedInstanceUpdateSloOngoing");
}

#[tokio::test]
async fn deleting_a_group_leaves_the_secondary_read_write_and_detached() {
    let sim = Sim::demo().await;
    let del = sim.delete(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    assert_eq!(
        sim.get(&sql(&fog_path(WEST, "westus", "fog-demo"))).await.status,
        StatusCode::OK,
        "still there while deleting"
    );
    sim.finish(&del).await;
    sim.get(&sql(&fog_path(WEST, "westus", "fog-demo")))
        .await
        .assert_error(404, "ResourceNotFound");
    sim.get(&sql(&fog_path(EAST, "eastus", "fog-demo")))
        .await
        .assert_error(404, "ResourceNotFound");
    assert_eq!(
        sim.delete(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await.status,
        StatusCode::NO_CONTENT
    );
    let b = sim.get(&sql(&format!("{}/databases", mi_id(WEST, "mi-fog-b")))).await;
    let dbs = b.body["value"].as_array().unwrap();
    assert_eq!(dbs.len(), 4);
    assert!(dbs.iter().all(|d| d["properties"].get("failoverGroupId").is_none()));
    let state = sim.state().await;
    let b_state = &state["world"]["instances"][mi_id(WEST, "mi-fog-b").to_lowercase()];
    assert!(
        b_state["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["read_only"] == false && d["failover_group"].is_null())
    );
    // The secondary now holds databases, so it cannot become a new group's secondary.
    let again = sim
        .put(
            &sql(&fog_path(EAST, "eastus", "fog-demo")),
            group_body(&mi_id(EAST, "mi-fog-a"), &mi_id(WEST, "mi-fog-b"), "westus"),
        )
        .await;
    again.assert_error(400, "GeoDrSecondaryInstanceNotEmpty");
    // And the instance may be deleted now.
    assert_eq!(
        sim.delete(&sql(&mi_id(WEST, "mi-fog-b"))).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn network_rules_have_their_codes() {
    let sim = Sim::demo().await;
    let east = vnet_id(EAST, "vnet-sql-eastus");
    let overlapping = vnet_id(NORTH, "vnet-overlap");
    let r = sim
        .put(
            &net(&overlapping),
            json!({"location": "northeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.10.0.0/20"]}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    sim.put(
        &net(&format!("{east}/virtualNetworkPeerings/bad")),
        json!({"properties": {"remoteVirtualNetwork": {"id": overlapping}}}),
    )
    .await
    .assert_error(400, "VnetAddressSpacesOverlap");
    sim.put(
        &net(&overlapping),
        json!({"location": "northeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.10.0.0/20"]},
            "subnets": [{"name": "s", "properties": {"addressPrefix": "10.99.0.0/24"}}]}}),
    )
    .await
    .assert_error(400, "NetcfgSubnetRangeOutsideVnet");
    sim.put(
        &net(&overlapping),
        json!({"location": "northeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.10.0.0/20"]},
            "subnets": [{"name": "a", "properties": {"addressPrefix": "10.10.0.0/24"}},
                        {"name": "b", "properties": {"addressPrefix": "10.10.1.0/24"}},
                        {"name": "c", "properties": {"addressPrefix": "10.10.0.128/25"}}]}}),
    )
    .await
    .assert_error(400, "NetcfgSubnetRangesOverlap");
    sim.put(
        &net(&overlapping),
        json!({"location": "northeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.10.0.0/33"]}}}),
    )
    .await
    .assert_error(400, "InvalidAddressPrefixFormat");
    sim.put(&net(&east), json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.10.0.0/16"]}, "subnets": []}}))
        .await
        .assert_error(400, "InUseSubnetCannotBeDeleted");
    let nsg = nsg_id(EAST, "nsg-mi-eastus");
    let rule = |priority: i64| json!({"properties": {"protocol": "Tcp", "access": "Allow", "priority": priority, "direction": "Inbound", "destinationPortRange": "1433"}});
    sim.put(&net(&format!("{nsg}/securityRules/r1")), rule(5000))
        .await
        .assert_error(400, "SecurityRuleInvalidPriority");
    sim.put(&net(&format!("{nsg}/securityRules/r1")), rule(1100))
        .await
        .assert_error(400, "SecurityRuleConflict");
    let mut odd = rule(300);
    odd["properties"]["protocol"] = json!("Carrier-Pigeon");
    sim.put(&net(&format!("{nsg}/securityRules/r1")), odd)
        .await
        .assert_error(400, "SecurityRuleParameterContainsUnsupportedValue");
}

#[tokio::test]
async fn a_group_needs_a_ready_secondary() {
    let sim = Sim::start(config(RULES_ESTATE)).await;
    let late = mi_id("rg-w", "s-late");
    let body = json!({
        "location": "westus",
        "sku": {"name": "GP_Gen5", "capacity": 8},
        "properties": {
            "subnetId": format!("{}/subnets/mi", vnet_id("rg-w", "vnet-w")),
            "vCores": 8, "storageSizeInGB": 512, "dnsZonePartner": id("rg-e", "p1")
        }
    });
    let create = sim.put(&sql(&late), body).await;
    assert_eq!(create.status, StatusCode::ACCEPTED, "{}", create.body);
    create_group(&sim, "rg-e", "p1", "eastus", "rg-w", "s-late", "westus")
        .await
        .assert_error(409, "ConflictingManagedInstanceOperation");
    sim.advance("4h").await;
    let ok = create_group(&sim, "rg-e", "p1", "eastus", "rg-w", "s-late", "westus").await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
}

#[tokio::test]
async fn a_primary_older_than_its_secondary_forms_a_group_that_cannot_fail_over() {
    let sim = Sim::start(config(RULES_ESTATE)).await;
    // p1 keeps SQLServer2022, s-new is AlwaysUpToDate: the group is created ...
    let create = create_group(&sim, "rg-e", "p1", "eastus", "rg-w", "s-new", "westus").await;
    assert_eq!(create.status, StatusCode::ACCEPTED, "{}", create.body);
    sim.finish(&create).await;
    let view = sim.get(&sql(&fog_path("rg-w", "westus", "fog-rules"))).await;
    assert_eq!(view.body["properties"]["replicationState"], "CATCH_UP", "{}", view.body);
    // ... but a failover needs equal update policies.
    sim.post(&sql(&format!("{}/failover", fog_path("rg-w", "westus", "fog-rules"))))
        .await
        .assert_error(
            400,
            "ManagedInstanceFailoverInFailoverGroupInstancesWithDifferentVersionEditions",
        );
}
