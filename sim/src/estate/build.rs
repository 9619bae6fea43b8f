//! How an estate file becomes the emulator's [`World`]: each resource group, instance and
//! failover group added, with its references and address ranges checked.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{FailoverGroupSpec, InstanceSpec, ResourceGroupSpec};
use crate::clock::SimTime;
use crate::error::SimError;
use crate::ids;
use crate::regions;
use crate::rules;
use crate::world::{
    Database, Delegation, FailoverGroup, Instance, Member, Peering, ResourceGroup, SecurityGroup, SecurityRule, Subnet,
    VirtualNetwork, World,
};

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
pub(super) fn reference(sub: &str, text: &str, make: impl Fn(&str, &str, &str) -> String) -> Result<String, SimError> {
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

pub(super) fn check_cidr(cidr: &str, context: &str) -> Result<(), SimError> {
    if rules::cidr_range(cidr).is_none() {
        return Err(SimError::InvalidEstate(format!(
            "{context}: '{cidr}' is not an IPv4 CIDR"
        )));
    }
    Ok(())
}

pub(super) fn add_resource_group(world: &mut World, sub: &str, rg: &ResourceGroupSpec) -> Result<(), SimError> {
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

pub(super) fn add_instance(
    world: &mut World,
    sub: &str,
    rg: &ResourceGroupSpec,
    spec: &InstanceSpec,
) -> Result<(), SimError> {
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

pub(super) fn add_group(world: &mut World, sub: &str, spec: &FailoverGroupSpec) -> Result<(), SimError> {
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
