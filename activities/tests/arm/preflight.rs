//! `fog.preflight`: one estate per requirement, each breaking exactly that requirement.

use serde_json::json;

use crate::common::*;

/// Two empty-secondary instances ready for a group: paired regions, peered VNets, open NSG
/// ports, same DNS zone, tier, size and update policy.
pub(crate) fn clean_pair() -> String {
    r#"
epoch: 2026-11-26T08:00:00Z
subscriptions:
  - id: 6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7
    resource_groups:
      - name: rg-sql-eastus
        location: eastus
        network_security_groups:
          - name: nsg-a
            rules:
              - { name: in, priority: 1100, direction: Inbound, destination_port_ranges: ["5022", "11000-11999"] }
              - { name: out, priority: 1100, direction: Outbound, destination_port_ranges: ["5022", "11000-11999"] }
        virtual_networks:
          - name: vnet-a
            address_prefixes: [10.10.0.0/16]
            subnets: [{ name: snet-mi, address_prefix: 10.10.0.0/24, network_security_group: nsg-a }]
            peerings: [{ name: a-to-b, remote_virtual_network: rg-sql-westus/vnet-b }]
        managed_instances:
          - { name: mi-a, v_cores: 8, storage_gb: 256, dns_zone: 1b4e2caff2530, subnet: vnet-a/snet-mi, administrator_login: sqladmin }
      - name: rg-sql-westus
        location: westus
        network_security_groups:
          - name: nsg-b
            rules:
              - { name: in, priority: 1100, direction: Inbound, destination_port_ranges: ["5022", "11000-11999"] }
              - { name: out, priority: 1100, direction: Outbound, destination_port_ranges: ["5022", "11000-11999"] }
        virtual_networks:
          - name: vnet-b
            address_prefixes: [10.20.0.0/16]
            subnets: [{ name: snet-mi, address_prefix: 10.20.0.0/24, network_security_group: nsg-b }]
            peerings: [{ name: b-to-a, remote_virtual_network: rg-sql-eastus/vnet-a }]
        managed_instances:
          - { name: mi-b, v_cores: 8, storage_gb: 256, dns_zone: 1b4e2caff2530, subnet: vnet-b/snet-mi, administrator_login: sqladmin }
"#
    .to_owned()
}

async fn preflight(estate: &str, require_network: bool) -> (bool, serde_json::Value) {
    let sim = Sim::start(estate).await;
    let input = json!({ "primary": mi(EAST, "mi-a"), "secondary": mi(WEST, "mi-b"), "name": "fog-new", "require_network": require_network });
    match run(&sim, "fog.preflight", input).await {
        Ok(out) => (true, out),
        Err(fogbook_activities::ActivityError::Failed {
            code,
            output: Some(out),
            ..
        }) => {
            assert_eq!(code, "PreflightFailed");
            (false, out)
        }
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_ready_pair_passes_every_requirement() {
    let (ok, out) = preflight(&clean_pair(), true).await;
    assert!(ok, "{}", out["table"]);
    assert_eq!(out["failed"], json!([]));
    assert_eq!(out["warnings"], json!([]), "{}", out["table"]);
    assert!(out["checks"].as_array().unwrap().len() >= 14, "{}", out["table"]);
}

/// Each case: what to change in the clean estate, and the one requirement that must fail
/// (or warn).
#[tokio::test]
async fn each_broken_requirement_is_named() {
    let b_line = "- { name: mi-b, v_cores: 8, storage_gb: 256, dns_zone: 1b4e2caff2530, subnet: vnet-b/snet-mi, administrator_login: sqladmin }";
    let b_with =
        |extra: &'static str| move |e: String| e.replace(b_line, &b_line.replace(" }", &format!(", {extra} }}")));
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(&str, Edit, bool, &str, bool)> = vec![
        (
            "secondary has a database",
            Box::new(b_with("databases: [{ name: db1, size_gb: 1 }]")),
            true,
            "secondary_empty",
            true,
        ),
        (
            "different tier",
            Box::new(b_with("sku: BC_Gen5")),
            true,
            "same_tier",
            true,
        ),
        (
            "different storage",
            Box::new(|e: String| {
                e.replace(
                    "- { name: mi-b, v_cores: 8, storage_gb: 256",
                    "- { name: mi-b, v_cores: 8, storage_gb: 512",
                )
            }),
            true,
            "same_storage",
            true,
        ),
        (
            "different compute",
            Box::new(|e: String| e.replace("- { name: mi-b, v_cores: 8", "- { name: mi-b, v_cores: 16")),
            true,
            "same_compute",
            false,
        ),
        (
            "different dns zone",
            Box::new(|e: String| {
                e.replace(
                    "dns_zone: 1b4e2caff2530, subnet: vnet-b",
                    "dns_zone: 0000000000000, subnet: vnet-b",
                )
            }),
            true,
            "same_dns_zone",
            true,
        ),
        (
            "different update policy",
            Box::new(b_with("database_format: AlwaysUpToDate")),
            true,
            "same_update_policy",
            true,
        ),
        (
            "instance pool",
            Box::new(b_with(
                "instance_pool: /subscriptions/6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7/resourceGroups/rg-sql-westus/providers/Microsoft.Sql/instancePools/pool1",
            )),
            true,
            "no_instance_pool",
            true,
        ),
        (
            "same region",
            Box::new(|e: String| e.replace("location: westus", "location: eastus")),
            true,
            "different_regions",
            true,
        ),
        (
            "unpaired regions",
            Box::new(|e: String| e.replace("location: westus", "location: northeurope")),
            true,
            "paired_regions",
            false,
        ),
        (
            "no peering",
            Box::new(|e: String| {
                e.replace(
                    "            peerings: [{ name: b-to-a, remote_virtual_network: rg-sql-eastus/vnet-a }]\n",
                    "",
                )
            }),
            true,
            "vnet_peering",
            true,
        ),
        (
            "closed port",
            Box::new(|e: String| {
                e.replace("{ name: in, priority: 1100, direction: Inbound, destination_port_ranges: [\"5022\", \"11000-11999\"] }\n              - { name: out, priority: 1100, direction: Outbound, destination_port_ranges: [\"5022\", \"11000-11999\"] }\n        virtual_networks:\n          - name: vnet-b", "{ name: in, priority: 1100, direction: Inbound, destination_port_ranges: [\"11000-11999\"] }\n              - { name: out, priority: 1100, direction: Outbound, destination_port_ranges: [\"5022\", \"11000-11999\"] }\n        virtual_networks:\n          - name: vnet-b")
            }),
            true,
            "nsg_ports",
            true,
        ),
        (
            "overlapping address spaces",
            Box::new(|e: String| {
                e.replace("10.20.0.0/16", "10.10.0.0/16")
                    .replace("10.20.0.0/24", "10.10.0.0/24")
                    .replace(
                        "            peerings: [{ name: b-to-a, remote_virtual_network: rg-sql-eastus/vnet-a }]\n",
                        "",
                    )
                    .replace(
                        "            peerings: [{ name: a-to-b, remote_virtual_network: rg-sql-westus/vnet-b }]\n",
                        "",
                    )
            }),
            false,
            "address_spaces_disjoint",
            true,
        ),
        (
            "already in another group",
            Box::new(|e: String| {
                format!(
                    "{e}    failover_groups:\n      - {{ name: fog-old, primary: rg-sql-eastus/mi-a, secondary: rg-sql-westus/mi-b }}\n"
                )
            }),
            true,
            "one_group_per_instance",
            true,
        ),
    ];
    for (what, edit, require_network, requirement, fails) in cases {
        let estate = edit(clean_pair());
        assert_ne!(estate, clean_pair(), "{what}: the edit changed nothing");
        let (ok, out) = preflight(&estate, require_network).await;
        let list = if fails { &out["failed"] } else { &out["warnings"] };
        let names: Vec<&str> = list.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(names, vec![requirement], "{what}:\n{}", out["table"]);
        assert_eq!(
            ok, !fails,
            "{what}: the step fails exactly when a requirement fails\n{}",
            out["table"]
        );
        let row = out["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["requirement"] == requirement)
            .unwrap()
            .clone();
        assert!(row["reason"].as_str().is_some_and(|r| !r.is_empty()), "{what}: {row}");
    }
}

#[tokio::test]
async fn network_gaps_only_warn_unless_required() {
    let estate = clean_pair().replace(
        "            peerings: [{ name: b-to-a, remote_virtual_network: rg-sql-eastus/vnet-a }]\n",
        "",
    );
    let (ok, out) = preflight(&estate, false).await;
    assert!(ok, "{}", out["table"]);
    assert_eq!(out["warnings"], json!(["vnet_peering"]));
}
