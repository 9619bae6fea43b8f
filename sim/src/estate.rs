//! The estate file: the starting state of the emulated subscriptions, in YAML.
//!
//! The format is ours (snake_case, documented in `sim/README.md`); [`Estate::build_world`] turns
//! it into the [`World`] the server mutates. References between resources are short where they
//! stay inside a subscription (`rg/name`) and may always be full ARM ids.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::clock::SimTime;
use crate::error::SimError;
use crate::ids;
use crate::regions;
use crate::rules;
use crate::world::{
    BucketLimit, Database, Delegation, FailoverGroup, Instance, Member, Peering, ResourceGroup, SecurityGroup,
    SecurityRule, Subnet, ThrottleLimits, VirtualNetwork, WORLD_VERSION, World,
};

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

/// A stable, Azure-looking DNS zone (13 hex characters) for an instance that sets none.
pub(crate) fn derived_dns_zone(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    hex::encode(digest).chars().take(13).collect()
}

/// A stable GUID-looking string derived from `seed`.
pub(crate) fn derived_guid(seed: &str) -> String {
    let hex = hex::encode(Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Resolves `rg/name` within `sub`, or a full id, with `make` building the id.
fn reference(sub: &str, text: &str, make: impl Fn(&str, &str, &str) -> String) -> Result<String, SimError> {
    if text.starts_with('/') {
        return Ok(text.to_owned());
    }
    match text.split_once('/') {
        Some((rg, name)) if !rg.is_empty() && !name.is_empty() && !name.contains('/') => Ok(make(sub, rg, name)),
        _ => Err(SimError::InvalidEstate(format!(
            "reference '{text}' is neither 'resource-group/name' nor a full id"
        ))),
    }
}

fn check_cidr(cidr: &str, context: &str) -> Result<(), SimError> {
    if rules::cidr_range(cidr).is_none() {
        return Err(SimError::InvalidEstate(format!(
            "{context}: '{cidr}' is not an IPv4 CIDR"
        )));
    }
    Ok(())
}

fn add_resource_group(world: &mut World, sub: &str, rg: &ResourceGroupSpec) -> Result<(), SimError> {
    let location = regions::normalize(&rg.location);
    let key = crate::world::rg_key(sub, &rg.name);
    if world.resource_groups.contains_key(&key) {
        return Err(SimError::InvalidEstate(format!(
            "resource group '{}' appears twice",
            rg.name
        )));
    }
    world.resource_groups.insert(
        key,
        ResourceGroup {
            subscription: sub.to_owned(),
            name: rg.name.clone(),
            location: location.clone(),
        },
    );
    for spec in &rg.network_security_groups {
        let id = ids::nsg(sub, &rg.name, &spec.name);
        let rules = spec
            .rules
            .iter()
            .map(|r| SecurityRule {
                name: r.name.clone(),
                protocol: r.protocol.clone(),
                access: r.access.clone(),
                priority: r.priority,
                direction: r.direction.clone(),
                source_port_range: Some(r.source_port_range.clone()),
                destination_port_ranges: r.destination_port_ranges.clone(),
                source_address_prefix: Some(r.source_address_prefix.clone()),
                destination_address_prefix: Some(r.destination_address_prefix.clone()),
                description: r.description.clone(),
                ..SecurityRule::default()
            })
            .collect();
        world.security_groups.insert(
            ids::key(&id),
            SecurityGroup {
                id: id.clone(),
                subscription: sub.to_owned(),
                resource_group: rg.name.clone(),
                name: spec.name.clone(),
                location: spec
                    .location
                    .as_deref()
                    .map_or_else(|| location.clone(), regions::normalize),
                rules,
                tags: BTreeMap::new(),
                resource_guid: derived_guid(&id),
            },
        );
    }
    for spec in &rg.virtual_networks {
        let id = ids::vnet(sub, &rg.name, &spec.name);
        for prefix in &spec.address_prefixes {
            check_cidr(prefix, &format!("virtual network '{}'", spec.name))?;
        }
        let mut subnets = Vec::new();
        for s in &spec.subnets {
            check_cidr(&s.address_prefix, &format!("subnet '{}'", s.name))?;
            if !rules::within(&s.address_prefix, &spec.address_prefixes) {
                return Err(SimError::InvalidEstate(format!(
                    "subnet '{}' ({}) is outside the address space of '{}'",
                    s.name, s.address_prefix, spec.name
                )));
            }
            // Azure refuses overlapping subnets in one network (`NetcfgSubnetRangesOverlap`).
            if let Some(other) = spec.subnets.iter().take_while(|o| !std::ptr::eq(*o, s)).find(|o| {
                rules::overlapping(
                    std::slice::from_ref(&o.address_prefix),
                    std::slice::from_ref(&s.address_prefix),
                )
                .is_some()
            }) {
                return Err(SimError::InvalidEstate(format!(
                    "subnets '{}' ({}) and '{}' ({}) of '{}' overlap",
                    other.name, other.address_prefix, s.name, s.address_prefix, spec.name
                )));
            }
            let nsg_id = s.network_security_group.as_deref().map(|n| {
                if n.starts_with('/') {
                    n.to_owned()
                } else {
                    ids::nsg(sub, &rg.name, n)
                }
            });
            if let Some(nsg_id) = &nsg_id
                && !world.security_groups.contains_key(&ids::key(nsg_id))
            {
                return Err(SimError::InvalidEstate(format!(
                    "subnet '{}' refers to unknown network security group '{nsg_id}'",
                    s.name
                )));
            }
            let delegations = if s.delegated_to_managed_instances {
                vec![Delegation {
                    name: "managedInstanceDelegation".into(),
                    service_name: "Microsoft.Sql/managedInstances".into(),
                }]
            } else {
                Vec::new()
            };
            subnets.push(Subnet {
                name: s.name.clone(),
                address_prefix: s.address_prefix.clone(),
                security_group_id: nsg_id,
                route_table_id: None,
                delegations,
            });
        }
        let peerings = spec
            .peerings
            .iter()
            .map(|p| {
                Ok(Peering {
                    name: p.name.clone(),
                    remote_id: reference(sub, &p.remote_virtual_network, ids::vnet)?,
                    allow_virtual_network_access: true,
                    allow_forwarded_traffic: true,
                    allow_gateway_transit: false,
                    use_remote_gateways: false,
                })
            })
            .collect::<Result<Vec<_>, SimError>>()?;
        world.virtual_networks.insert(
            ids::key(&id),
            VirtualNetwork {
                id: id.clone(),
                subscription: sub.to_owned(),
                resource_group: rg.name.clone(),
                name: spec.name.clone(),
                location: spec
                    .location
                    .as_deref()
                    .map_or_else(|| location.clone(), regions::normalize),
                address_prefixes: spec.address_prefixes.clone(),
                subnets,
                peerings,
                tags: BTreeMap::new(),
                resource_guid: derived_guid(&id),
            },
        );
    }
    Ok(())
}

/// `GP_Gen5` → (`GeneralPurpose`, `Gen5`).
pub(crate) fn tier_and_family(sku: &str) -> (String, String) {
    let (prefix, family) = sku.split_once('_').unwrap_or((sku, "Gen5"));
    let tier = if prefix.eq_ignore_ascii_case("BC") {
        "BusinessCritical"
    } else {
        "GeneralPurpose"
    };
    (tier.to_owned(), family.to_owned())
}

fn add_instance(world: &mut World, sub: &str, rg: &ResourceGroupSpec, spec: &InstanceSpec) -> Result<(), SimError> {
    let id = ids::instance(sub, &rg.name, &spec.name);
    let subnet_id = if spec.subnet.starts_with('/') {
        spec.subnet.clone()
    } else {
        match spec.subnet.split_once('/') {
            Some((vnet, subnet)) => format!("{}/subnets/{subnet}", ids::vnet(sub, &rg.name, vnet)),
            None => {
                return Err(SimError::InvalidEstate(format!(
                    "instance '{}': subnet '{}' is neither 'vnet/subnet' nor a full id",
                    spec.name, spec.subnet
                )));
            }
        }
    };
    if world.subnet(&subnet_id).is_none() {
        return Err(SimError::InvalidEstate(format!(
            "instance '{}': unknown subnet '{subnet_id}'",
            spec.name
        )));
    }
    if world
        .instances
        .values()
        .any(|i| i.name.eq_ignore_ascii_case(&spec.name))
    {
        return Err(SimError::InvalidEstate(format!(
            "instance name '{}' is used twice",
            spec.name
        )));
    }
    let database_format = rules::canonical_format(&spec.database_format).ok_or_else(|| {
        SimError::InvalidEstate(format!(
            "instance '{}': unknown database_format '{}'",
            spec.name, spec.database_format
        ))
    })?;
    let (tier, family) = tier_and_family(&spec.sku);
    let instance = Instance {
        id: id.clone(),
        subscription: sub.to_owned(),
        resource_group: rg.name.clone(),
        name: spec.name.clone(),
        location: regions::normalize(spec.location.as_deref().unwrap_or(&rg.location)),
        sku_name: spec.sku.clone(),
        tier: spec.tier.clone().unwrap_or(tier),
        family,
        v_cores: spec.v_cores,
        storage_gb: spec.storage_gb,
        database_format: database_format.to_owned(),
        next_gen: spec.next_gen,
        dns_zone: spec.dns_zone.clone().unwrap_or_else(|| derived_dns_zone(&id)),
        subnet_id,
        instance_pool_id: spec.instance_pool.clone(),
        provisioning_state: "Succeeded".into(),
        state: "Ready".into(),
        administrator_login: spec.administrator_login.clone(),
        collation: spec
            .collation
            .clone()
            .unwrap_or_else(|| "SQL_Latin1_General_CP1_CI_AS".into()),
        license_type: Some(spec.license_type.clone().unwrap_or_else(|| "LicenseIncluded".into())),
        tags: spec.tags.clone(),
        created: SimTime(0),
        databases: spec
            .databases
            .iter()
            .map(|d| Database {
                name: d.name.clone(),
                size_gb: d.size_gb,
                collation: "SQL_Latin1_General_CP1_CI_AS".into(),
                created: SimTime(0),
                failover_group: None,
                read_only: false,
            })
            .collect(),
    };
    world.instances.insert(ids::key(&id), instance);
    Ok(())
}

fn add_group(world: &mut World, sub: &str, spec: &FailoverGroupSpec) -> Result<(), SimError> {
    let primary_id = reference(sub, &spec.primary, ids::instance)?;
    let secondary_id = reference(sub, &spec.secondary, ids::instance)?;
    let missing =
        |id: &str| SimError::InvalidEstate(format!("failover group '{}': unknown instance '{id}'", spec.name));
    let primary = world.instance(&primary_id).ok_or_else(|| missing(&primary_id))?.clone();
    let secondary = world
        .instance(&secondary_id)
        .ok_or_else(|| missing(&secondary_id))?
        .clone();
    if primary.location == secondary.location {
        return Err(SimError::InvalidEstate(format!(
            "failover group '{}': both instances are in {}",
            spec.name, primary.location
        )));
    }
    if !secondary.databases.is_empty() {
        return Err(SimError::InvalidEstate(format!(
            "failover group '{}': list databases on the primary only; the secondary's replicas are implied",
            spec.name
        )));
    }
    for inst in [&primary, &secondary] {
        if let Some(g) = world.group_of(&inst.id) {
            return Err(SimError::InvalidEstate(format!(
                "instance '{}' is in two groups ('{}', '{}')",
                inst.name, g.name, spec.name
            )));
        }
    }
    let key = spec.name.to_ascii_lowercase();
    if world.failover_groups.contains_key(&key) {
        return Err(SimError::InvalidEstate(format!(
            "failover group name '{}' is used twice",
            spec.name
        )));
    }
    world.failover_groups.insert(
        key.clone(),
        FailoverGroup {
            name: spec.name.clone(),
            primary: Member::of(&primary),
            secondary: Member::of(&secondary),
            read_write_policy: spec.read_write_policy.clone(),
            grace_minutes: spec.grace_minutes,
            read_only_policy: spec.read_only_policy.clone(),
            secondary_type: spec.secondary_type.clone(),
            replication_state: "SEEDING".into(),
        },
    );
    // An existing group is already seeded: apply the same effect a finished seeding has.
    let op = crate::lro::OpKind::GroupCreate { group: key };
    crate::lro::apply_success(world, &op, crate::clock::SimTime(0));
    Ok(())
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
