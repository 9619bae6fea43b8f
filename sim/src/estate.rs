//! The estate file: the starting state of the emulated subscriptions, in YAML.
//!
//! The format is ours (snake_case, documented in `sim/README.md`); [`Estate::build_world`] turns
//! it into the [`World`] the server mutates. References between resources are short where they
//! stay inside a subscription (`rg/name`) and may always be full ARM ids.

mod build;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::SimError;
use crate::ids;
use crate::rules;
use crate::world::{BucketLimit, ThrottleLimits, WORLD_VERSION, World};
use build::{add_group, add_instance, add_resource_group};
pub(crate) use build::{derived_dns_zone, derived_guid, tier_and_family};

/// The starting state of the emulator, as read from an estate file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estate {
    /// Simulated wall-clock time at start (RFC 3339); defaults to the real time at start.
    #[serde(default)]
    epoch: Option<String>,
    /// Token bucket limits; Azure's defaults when absent.
    #[serde(default)]
    throttling: Option<ThrottlingSpec>,
    /// Role assignments per principal; when absent every caller may do everything.
    #[serde(default)]
    principals: Option<Vec<PrincipalSpec>>,
    subscriptions: Vec<SubscriptionSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    /// The bearer token that identifies the caller; `*` for any other token.
    token: String,
    #[serde(default)]
    name: Option<String>,
    assignments: Vec<AssignmentSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentSpec {
    /// A resource id prefix: `/subscriptions/{s}`, `.../resourceGroups/{rg}` or a resource.
    scope: String,
    actions: Vec<String>,
    #[serde(default)]
    not_actions: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottlingSpec {
    #[serde(default)]
    reads: Option<BucketSpec>,
    #[serde(default)]
    writes: Option<BucketSpec>,
    #[serde(default)]
    deletes: Option<BucketSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketSpec {
    burst: f64,
    per_second: f64,
    /// The share of the bucket other clients spend (`0.5`: half of it).
    #[serde(default)]
    other_clients: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionSpec {
    id: String,
    /// Its Microsoft Entra tenant (default: one tenant for every subscription).
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    resource_groups: Vec<ResourceGroupSpec>,
    #[serde(default)]
    failover_groups: Vec<FailoverGroupSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceGroupSpec {
    name: String,
    location: String,
    #[serde(default)]
    network_security_groups: Vec<NsgSpec>,
    #[serde(default)]
    virtual_networks: Vec<VnetSpec>,
    #[serde(default)]
    managed_instances: Vec<InstanceSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NsgSpec {
    name: String,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    priority: i32,
    direction: String,
    #[serde(default = "default_allow")]
    access: String,
    #[serde(default = "default_tcp")]
    protocol: String,
    #[serde(default = "default_star")]
    source_address_prefix: String,
    #[serde(default = "default_star")]
    destination_address_prefix: String,
    #[serde(default = "default_star")]
    source_port_range: String,
    destination_port_ranges: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

fn default_allow() -> String {
    "Allow".into()
}
fn default_tcp() -> String {
    "Tcp".into()
}
fn default_star() -> String {
    "*".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VnetSpec {
    name: String,
    #[serde(default)]
    location: Option<String>,
    address_prefixes: Vec<String>,
    #[serde(default)]
    subnets: Vec<SubnetSpec>,
    #[serde(default)]
    peerings: Vec<PeeringSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubnetSpec {
    name: String,
    address_prefix: String,
    #[serde(default)]
    network_security_group: Option<String>,
    #[serde(default = "default_true")]
    delegated_to_managed_instances: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeeringSpec {
    name: String,
    remote_virtual_network: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceSpec {
    name: String,
    #[serde(default)]
    location: Option<String>,
    #[serde(default = "default_sku")]
    sku: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default = "default_vcores")]
    v_cores: u32,
    storage_gb: u32,
    #[serde(default = "default_format")]
    database_format: String,
    /// Next-gen General Purpose (`isGeneralPurposeV2`).
    #[serde(default)]
    next_gen: bool,
    #[serde(default)]
    dns_zone: Option<String>,
    subnet: String,
    #[serde(default)]
    instance_pool: Option<String>,
    #[serde(default)]
    administrator_login: Option<String>,
    /// Default `SQL_Latin1_General_CP1_CI_AS`.
    #[serde(default)]
    collation: Option<String>,
    /// `LicenseIncluded` (default) or `BasePrice`.
    #[serde(default)]
    license_type: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    databases: Vec<DatabaseSpec>,
}

fn default_sku() -> String {
    "GP_Gen5".into()
}
fn default_vcores() -> u32 {
    8
}
fn default_format() -> String {
    "SQLServer2022".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSpec {
    name: String,
    size_gb: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverGroupSpec {
    name: String,
    primary: String,
    secondary: String,
    #[serde(default = "default_manual")]
    read_write_policy: String,
    #[serde(default)]
    grace_minutes: Option<i32>,
    #[serde(default)]
    read_only_policy: Option<String>,
    #[serde(default)]
    secondary_type: Option<String>,
}

fn default_manual() -> String {
    "Manual".into()
}

/// `examples/estate.yaml`, embedded so that a first run needs no file.
const DEMO_YAML: &str = include_str!("../../examples/estate.yaml");

impl Estate {
    /// The demo estate (`examples/estate.yaml`): instances A (eastus, primary) and B (westus,
    /// secondary) in group `fog-demo`, and an empty network in northeurope for a new instance.
    pub fn demo() -> Result<Estate, SimError> {
        Estate::from_yaml_str(DEMO_YAML)
    }

    /// Parses an estate from YAML text.
    pub fn from_yaml_str(text: &str) -> Result<Estate, SimError> {
        let estate: Estate = serde_saphyr::from_str(text).map_err(SimError::ParseEstate)?;
        // Building the world checks every reference, so a bad estate fails at load time.
        estate.build_world(time::OffsetDateTime::UNIX_EPOCH)?;
        Ok(estate)
    }

    /// Reads and parses an estate file.
    pub fn load(path: &Path) -> Result<Estate, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Estate::from_yaml_str(&text)
    }

    /// The world this estate describes; `now` is the epoch when the file sets none.
    pub(crate) fn build_world(&self, now: time::OffsetDateTime) -> Result<World, SimError> {
        let epoch = match &self.epoch {
            Some(text) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|e| SimError::InvalidEstate(format!("epoch '{text}': {e}")))?,
            None => now,
        };
        let mut world = World {
            version: WORLD_VERSION,
            epoch,
            resource_groups: BTreeMap::new(),
            instances: BTreeMap::new(),
            failover_groups: BTreeMap::new(),
            virtual_networks: BTreeMap::new(),
            security_groups: BTreeMap::new(),
            operations: BTreeMap::new(),
            throttling: self.throttling.map(ThrottlingSpec::limits).unwrap_or_default(),
            tenants: self
                .subscriptions
                .iter()
                .map(|s| {
                    let tenant = s.tenant.as_deref().unwrap_or(crate::tenants::DEFAULT_TENANT);
                    (s.id.clone(), tenant.to_owned())
                })
                .collect(),
            principals: self.principals.as_ref().map(|list| {
                list.iter()
                    .map(|p| crate::world::Principal {
                        token: p.token.clone(),
                        name: p.name.clone().unwrap_or_else(|| p.token.clone()),
                        assignments: p
                            .assignments
                            .iter()
                            .map(|a| crate::world::Assignment {
                                scope: a.scope.trim_end_matches('/').to_owned(),
                                actions: a.actions.clone(),
                                not_actions: a.not_actions.clone(),
                            })
                            .collect(),
                    })
                    .collect()
            }),
        };
        for sub in &self.subscriptions {
            for rg in &sub.resource_groups {
                add_resource_group(&mut world, &sub.id, rg)?;
            }
        }
        // Instances come after all networks so that a subnet in another group resolves.
        for sub in &self.subscriptions {
            for rg in &sub.resource_groups {
                for spec in &rg.managed_instances {
                    add_instance(&mut world, &sub.id, rg, spec)?;
                }
            }
        }
        for vnet in world.virtual_networks.values() {
            for peering in &vnet.peerings {
                if let Some(remote) = world.virtual_networks.get(&ids::key(&peering.remote_id))
                    && let Some((a, b)) = rules::overlapping(&vnet.address_prefixes, &remote.address_prefixes)
                {
                    return Err(SimError::InvalidEstate(format!(
                        "peering '{}' joins overlapping address spaces {a} and {b}",
                        peering.name
                    )));
                }
            }
        }
        for sub in &self.subscriptions {
            for spec in &sub.failover_groups {
                add_group(&mut world, &sub.id, spec)?;
            }
        }
        Ok(world)
    }
}

impl ThrottlingSpec {
    fn limits(self) -> ThrottleLimits {
        let defaults = ThrottleLimits::default();
        let pick = |spec: Option<BucketSpec>, default: BucketLimit| {
            spec.map_or(default, |s| BucketLimit {
                burst: s.burst,
                per_second: s.per_second,
                other_clients: s.other_clients,
            })
        };
        ThrottleLimits {
            reads: pick(self.reads, defaults.reads),
            writes: pick(self.writes, defaults.writes),
            deletes: pick(self.deletes, defaults.deletes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
subscriptions:
  - id: sub1
    resource_groups:
      - name: rg-east
        location: East US
        network_security_groups:
          - name: nsg-east
        virtual_networks:
          - name: vnet-east
            address_prefixes: [10.1.0.0/16]
            subnets:
              - name: mi
                address_prefix: 10.1.0.0/24
                network_security_group: nsg-east
        managed_instances:
          - name: mi-a
            storage_gb: 256
            subnet: vnet-east/mi
            databases:
              - name: sales
                size_gb: 12.5
"#;

    #[test]
    fn a_minimal_estate_builds_a_world() {
        let estate = Estate::from_yaml_str(MINIMAL).expect("valid estate");
        let world = estate.build_world(time::OffsetDateTime::UNIX_EPOCH).expect("world");
        let inst = world
            .instance(&ids::instance("sub1", "rg-east", "mi-a"))
            .expect("instance");
        assert_eq!(inst.location, "eastus");
        assert_eq!(inst.tier, "GeneralPurpose");
        assert_eq!(inst.dns_zone.len(), 13);
        assert_eq!(inst.used_gb(), 12.5);
    }

    #[test]
    fn the_demo_estate_is_valid_and_seeded() {
        let world = Estate::demo()
            .expect("demo estate")
            .build_world(time::OffsetDateTime::UNIX_EPOCH)
            .expect("world");
        assert_eq!(world.instances.len(), 2);
        let group = world.failover_groups.get("fog-demo").expect("group");
        assert_eq!(group.replication_state, "CATCH_UP");
        let b = world.instance(&group.secondary.instance_id).expect("secondary");
        assert_eq!(b.databases.len(), 4);
        assert!(b.databases.iter().all(|d| d.read_only));
        let a = world.instance(&group.primary.instance_id).expect("primary");
        assert_eq!(a.used_gb(), 203.5);
        assert_eq!(world.throttling, ThrottleLimits::default());
        assert_eq!(world.epoch.year(), 2026);
    }

    #[test]
    fn throttling_limits_come_from_the_estate() {
        let text = format!("throttling:\n  writes: {{burst: 5, per_second: 1}}\n{MINIMAL}");
        let world = Estate::from_yaml_str(&text)
            .expect("estate")
            .build_world(time::OffsetDateTime::UNIX_EPOCH)
            .expect("world");
        assert_eq!(
            world.throttling.writes,
            BucketLimit {
                burst: 5.0,
                per_second: 1.0,
                other_clients: 0.0,
            }
        );
        assert_eq!(world.throttling.reads, ThrottleLimits::default().reads);
    }

    #[test]
    fn other_clients_come_from_the_estate() {
        let text = format!("throttling:\n  reads: {{burst: 250, per_second: 25, other_clients: 0.5}}\n{MINIMAL}");
        let world = Estate::from_yaml_str(&text)
            .expect("estate")
            .build_world(time::OffsetDateTime::UNIX_EPOCH)
            .expect("world");
        assert_eq!(world.throttling.reads.other_clients, 0.5);
        assert_eq!(world.throttling.writes.other_clients, 0.0);
    }

    #[test]
    fn unknown_fields_and_dangling_references_are_rejected() {
        let typo = MINIMAL.replace("storage_gb", "storage_gib");
        assert!(matches!(Estate::from_yaml_str(&typo), Err(SimError::ParseEstate(_))));
        let dangling = MINIMAL.replace("subnet: vnet-east/mi", "subnet: vnet-east/nope");
        assert!(matches!(
            Estate::from_yaml_str(&dangling),
            Err(SimError::InvalidEstate(_))
        ));
        let outside = MINIMAL.replace("address_prefix: 10.1.0.0/24", "address_prefix: 10.9.0.0/24");
        assert!(matches!(
            Estate::from_yaml_str(&outside),
            Err(SimError::InvalidEstate(_))
        ));
        let overlapping = MINIMAL.replace(
            "                network_security_group: nsg-east\n",
            "                network_security_group: nsg-east\n              - name: app\n                address_prefix: 10.1.0.128/25\n",
        );
        assert_ne!(overlapping, MINIMAL);
        assert!(matches!(
            Estate::from_yaml_str(&overlapping),
            Err(SimError::InvalidEstate(m)) if m.contains("overlap")
        ));
    }
}
