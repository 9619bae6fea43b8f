//! Microsoft.Network: virtual networks with subnets and peerings, security groups and rules.
//!
//! Network writes complete at once: the answer carries the final body with
//! `provisioningState: Succeeded` and an `Azure-AsyncOperation` URL whose status is already
//! `Succeeded`, so clients that poll (the spec says `final-state-via: azure-async-operation`)
//! and clients that do not both see the result.

mod security;

use axum::http::StatusCode;

use super::context::{Ctx, parse_body};
use super::render;
use super::response::ArmResponse;
use crate::arm_error::ArmError;
use crate::estate::derived_guid;
use crate::ids;
use crate::regions;
use crate::rules;
use crate::wire::{List, PeeringIn, PeeringPropertiesIn, SubnetIn, VirtualNetworkIn};
use crate::world::{Delegation, Peering, Subnet, VirtualNetwork};

pub(crate) use security::{delete_nsg, delete_rule, get_nsg, get_rule, list_nsgs, list_rules, put_nsg, put_rule};

const VNET_TYPE: &str = "Microsoft.Network/virtualNetworks";
const NSG_TYPE: &str = "Microsoft.Network/networkSecurityGroups";

fn vnet_key(sub: &str, rg: &str, name: &str) -> String {
    ids::key(&ids::vnet(sub, rg, name))
}

fn nsg_key(sub: &str, rg: &str, name: &str) -> String {
    ids::key(&ids::nsg(sub, rg, name))
}

fn written(ctx: &mut Ctx<'_>, created: bool, sub: &str, location: &str, id: &str, body: ArmResponse) -> ArmResponse {
    let url = ctx.network_done(sub, location, id);
    // The operation is already over; `Retry-After: 1` and `retry-after-ms: 50` tell the
    // client to look again at once instead of waiting its default polling interval.
    let mut body = body
        .with_header("azure-asyncoperation", url)
        .with_header("retry-after", "1".to_owned())
        .with_header("retry-after-ms", "50".to_owned());
    body.status = if created { StatusCode::CREATED } else { StatusCode::OK };
    body
}

fn bad_format(message: impl Into<String>) -> ArmError {
    ArmError::bad_request("InvalidRequestFormat", message)
}

// ----- virtual networks ------------------------------------------------------------------

pub(crate) fn get_vnet(ctx: &Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let vnet = ctx
        .world()
        .virtual_networks
        .get(&vnet_key(sub, rg, name))
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, name, rg))?;
    ArmResponse::json(StatusCode::OK, &render::vnet(ctx.world(), vnet))
}

fn subnet_from(spec: SubnetIn, space: &[String], vnet_name: &str) -> Result<Subnet, ArmError> {
    let name = spec.name.ok_or_else(|| bad_format("Every subnet needs a name."))?;
    let props = spec.properties.unwrap_or_default();
    let prefix = props
        .address_prefix
        .or_else(|| props.address_prefixes.and_then(|p| p.into_iter().next()))
        .ok_or_else(|| bad_format(format!("Subnet '{name}' needs an addressPrefix.")))?;
    if rules::cidr_range(&prefix).is_none() {
        return Err(ArmError::bad_request(
            "InvalidAddressPrefixFormat",
            format!("Address prefix '{prefix}' of subnet '{name}' is not a valid CIDR."),
        ));
    }
    if !rules::within(&prefix, space) {
        return Err(ArmError::bad_request(
            "NetcfgSubnetRangeOutsideVnet",
            format!("Subnet '{name}' ({prefix}) is not within the address space of virtual network '{vnet_name}'."),
        ));
    }
    let delegations = props
        .delegations
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| {
            let service_name = d.properties?.service_name?;
            Some(Delegation {
                name: d.name.unwrap_or_else(|| "delegation".into()),
                service_name,
            })
        })
        .collect();
    Ok(Subnet {
        name,
        address_prefix: prefix,
        security_group_id: props.network_security_group.map(|r| r.id),
        route_table_id: props.route_table.map(|r| r.id),
        delegations,
    })
}

/// Subnets of one network must not overlap (Azure: 400 `NetcfgSubnetRangesOverlap`).
fn check_subnets_disjoint(subnets: &[Subnet], vnet_name: &str) -> Result<(), ArmError> {
    for (i, a) in subnets.iter().enumerate() {
        for b in &subnets[i + 1..] {
            if rules::overlapping(
                std::slice::from_ref(&a.address_prefix),
                std::slice::from_ref(&b.address_prefix),
            )
            .is_some()
            {
                return Err(ArmError::bad_request(
                    "NetcfgSubnetRangesOverlap",
                    format!(
                        "Subnet '{}' ({}) overlaps subnet '{}' ({}) in virtual network '{vnet_name}'. Give each subnet its own range.",
                        a.name, a.address_prefix, b.name, b.address_prefix
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn peering_from(name: String, props: PeeringPropertiesIn) -> Result<Peering, ArmError> {
    let remote = props
        .remote_virtual_network
        .ok_or_else(|| bad_format(format!("Peering '{name}' needs remoteVirtualNetwork.id.")))?;
    Ok(Peering {
        name,
        remote_id: remote.id,
        allow_virtual_network_access: props.allow_virtual_network_access.unwrap_or(true),
        allow_forwarded_traffic: props.allow_forwarded_traffic.unwrap_or(false),
        allow_gateway_transit: props.allow_gateway_transit.unwrap_or(false),
        use_remote_gateways: props.use_remote_gateways.unwrap_or(false),
    })
}

pub(crate) fn put_vnet(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    if !ctx.world().has_resource_group(sub, rg) {
        return Err(ArmError::resource_group_not_found(rg));
    }
    let request: VirtualNetworkIn = parse_body(body)?;
    let key = vnet_key(sub, rg, name);
    let existing = ctx.world().virtual_networks.get(&key).cloned();
    let location = match (&request.location, &existing) {
        (Some(l), _) => regions::normalize(l),
        (None, Some(v)) => v.location.clone(),
        (None, None) => return Err(ArmError::invalid_parameter("The 'location' property is required.")),
    };
    let props = request.properties.unwrap_or_default();
    let space = props.address_space.map(|s| s.address_prefixes).unwrap_or_default();
    if space.is_empty() {
        return Err(bad_format("properties.addressSpace.addressPrefixes must not be empty."));
    }
    if let Some(bad) = space.iter().find(|p| rules::cidr_range(p).is_none()) {
        return Err(ArmError::bad_request(
            "InvalidAddressPrefixFormat",
            format!("Address prefix '{bad}' is not a valid CIDR."),
        ));
    }
    let subnets = props
        .subnets
        .unwrap_or_default()
        .into_iter()
        .map(|s| subnet_from(s, &space, name))
        .collect::<Result<Vec<_>, _>>()?;
    check_subnets_disjoint(&subnets, name)?;
    let id = ids::vnet(sub, rg, name);
    for inst in ctx.world().instances.values() {
        if let Some((vnet_id, subnet)) = ids::split_subnet(&inst.subnet_id)
            && ids::key(&vnet_id) == key
            && !subnets.iter().any(|s| s.name.eq_ignore_ascii_case(&subnet))
        {
            return Err(ArmError::bad_request(
                "InUseSubnetCannotBeDeleted",
                format!(
                    "Subnet '{subnet}' is in use by managed instance '{}' and cannot be deleted.",
                    inst.name
                ),
            ));
        }
    }
    let peerings = match props.virtual_network_peerings {
        Some(list) => list
            .into_iter()
            .map(|p: PeeringIn| {
                let pname = p.name.ok_or_else(|| bad_format("Every peering needs a name."))?;
                peering_from(pname, p.properties.unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => existing.as_ref().map(|v| v.peerings.clone()).unwrap_or_default(),
    };
    let vnet = VirtualNetwork {
        id: id.clone(),
        subscription: sub.to_owned(),
        resource_group: rg.to_owned(),
        name: name.to_owned(),
        location: location.clone(),
        address_prefixes: space,
        subnets,
        peerings,
        tags: request
            .tags
            .or_else(|| existing.as_ref().map(|v| v.tags.clone()))
            .unwrap_or_default(),
        resource_guid: existing
            .as_ref()
            .map_or_else(|| derived_guid(&id), |v| v.resource_guid.clone()),
    };
    ctx.world_mut().virtual_networks.insert(key.clone(), vnet);
    let world = ctx.world();
    let vnet = world
        .virtual_networks
        .get(&key)
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, name, rg))?;
    let body = ArmResponse::json(StatusCode::OK, &render::vnet(world, vnet))?;
    Ok(written(ctx, existing.is_none(), sub, &location, &id, body))
}

pub(crate) fn get_subnet(ctx: &Ctx<'_>, sub: &str, rg: &str, vnet: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let v = ctx
        .world()
        .virtual_networks
        .get(&vnet_key(sub, rg, vnet))
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, vnet, rg))?;
    let s = v
        .subnet(name)
        .ok_or_else(|| ArmError::not_found("Microsoft.Network/virtualNetworks/subnets", name, rg))?;
    ArmResponse::json(StatusCode::OK, &render::subnet(v, s))
}

pub(crate) fn list_vnets(ctx: &Ctx<'_>, sub: &str, rg: Option<&str>) -> Result<ArmResponse, ArmError> {
    if let Some(rg) = rg
        && !ctx.world().has_resource_group(sub, rg)
    {
        return Err(ArmError::resource_group_not_found(rg));
    }
    let world = ctx.world();
    let value = world
        .virtual_networks
        .values()
        .filter(|v| v.subscription.eq_ignore_ascii_case(sub))
        .filter(|v| rg.is_none_or(|rg| v.resource_group.eq_ignore_ascii_case(rg)))
        .map(|v| render::vnet(world, v))
        .collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

/// The managed instance using a subnet of `vnet_key` (named `subnet`, or any when `None`).
fn instance_in_subnet(ctx: &Ctx<'_>, vnet_key: &str, subnet: Option<&str>) -> Option<(String, String)> {
    ctx.world().instances.values().find_map(|inst| {
        let (vnet_id, name) = ids::split_subnet(&inst.subnet_id)?;
        (ids::key(&vnet_id) == vnet_key && subnet.is_none_or(|s| s.eq_ignore_ascii_case(&name)))
            .then(|| (inst.name.clone(), name))
    })
}

fn in_use_subnet(instance: &str, subnet: &str) -> ArmError {
    ArmError::bad_request(
        "InUseSubnetCannotBeDeleted",
        format!(
            "Subnet '{subnet}' is in use by managed instance '{instance}' and cannot be deleted. Delete the instance first."
        ),
    )
}

pub(crate) fn delete_vnet(ctx: &mut Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let key = vnet_key(sub, rg, name);
    if !ctx.world().virtual_networks.contains_key(&key) {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    }
    if let Some((instance, subnet)) = instance_in_subnet(ctx, &key, None) {
        return Err(in_use_subnet(&instance, &subnet));
    }
    ctx.world_mut().virtual_networks.remove(&key);
    Ok(ArmResponse::empty(StatusCode::OK))
}

pub(crate) fn list_subnets(ctx: &Ctx<'_>, sub: &str, rg: &str, vnet: &str) -> Result<ArmResponse, ArmError> {
    let v = ctx
        .world()
        .virtual_networks
        .get(&vnet_key(sub, rg, vnet))
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, vnet, rg))?;
    let value = v.subnets.iter().map(|s| render::subnet(v, s)).collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

pub(crate) fn put_subnet(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    vnet: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    let key = vnet_key(sub, rg, vnet);
    let v = ctx
        .world()
        .virtual_networks
        .get(&key)
        .cloned()
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, vnet, rg))?;
    let mut request: SubnetIn = parse_body(body)?;
    request.name = Some(name.to_owned());
    let subnet = subnet_from(request, &v.address_prefixes, vnet)?;
    let existing = v.subnet(name).cloned();
    if let Some(old) = &existing
        && old.address_prefix != subnet.address_prefix
        && let Some((instance, _)) = instance_in_subnet(ctx, &key, Some(name))
    {
        return Err(ArmError::bad_request(
            "InUsePrefixCannotBeDeleted",
            format!(
                "IpPrefix {} on Subnet {name} has active allocations (managed instance '{instance}') and cannot be deleted.",
                old.address_prefix
            ),
        ));
    }
    let mut subnets: Vec<Subnet> = v
        .subnets
        .iter()
        .filter(|s| !s.name.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    subnets.push(subnet.clone());
    check_subnets_disjoint(&subnets, vnet)?;
    if let Some(target) = ctx.world_mut().virtual_networks.get_mut(&key) {
        match target.subnets.iter_mut().find(|s| s.name.eq_ignore_ascii_case(name)) {
            Some(slot) => *slot = subnet,
            None => target.subnets.push(subnet),
        }
    }
    let world = ctx.world();
    let target = world
        .virtual_networks
        .get(&key)
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, vnet, rg))?;
    let s = target
        .subnet(name)
        .ok_or_else(|| ArmError::not_found("Microsoft.Network/virtualNetworks/subnets", name, rg))?;
    let out = render::subnet(target, s);
    let id = out.id.clone();
    let response = ArmResponse::json(StatusCode::OK, &out)?;
    Ok(written(ctx, existing.is_none(), sub, &v.location, &id, response))
}

pub(crate) fn delete_subnet(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    vnet: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let key = vnet_key(sub, rg, vnet);
    let exists = ctx
        .world()
        .virtual_networks
        .get(&key)
        .is_some_and(|v| v.subnet(name).is_some());
    if !exists {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    }
    if let Some((instance, subnet)) = instance_in_subnet(ctx, &key, Some(name)) {
        return Err(in_use_subnet(&instance, &subnet));
    }
    if let Some(target) = ctx.world_mut().virtual_networks.get_mut(&key) {
        target.subnets.retain(|s| !s.name.eq_ignore_ascii_case(name));
    }
    Ok(ArmResponse::empty(StatusCode::OK))
}

// ----- peerings --------------------------------------------------------------------------

pub(crate) fn list_peerings(ctx: &Ctx<'_>, sub: &str, rg: &str, vnet: &str) -> Result<ArmResponse, ArmError> {
    let v = ctx
        .world()
        .virtual_networks
        .get(&vnet_key(sub, rg, vnet))
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, vnet, rg))?;
    let value = v.peerings.iter().map(|p| render::peering(ctx.world(), v, p)).collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

pub(crate) fn get_peering(ctx: &Ctx<'_>, sub: &str, rg: &str, vnet: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let v = ctx
        .world()
        .virtual_networks
        .get(&vnet_key(sub, rg, vnet))
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, vnet, rg))?;
    let p = v
        .peering(name)
        .ok_or_else(|| ArmError::not_found("Microsoft.Network/virtualNetworks/virtualNetworkPeerings", name, rg))?;
    ArmResponse::json(StatusCode::OK, &render::peering(ctx.world(), v, p))
}

pub(crate) fn put_peering(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    vnet: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    let key = vnet_key(sub, rg, vnet);
    let v = ctx
        .world()
        .virtual_networks
        .get(&key)
        .cloned()
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, vnet, rg))?;
    let request: PeeringIn = parse_body(body)?;
    let peering = peering_from(name.to_owned(), request.properties.unwrap_or_default())?;
    if ids::key(&peering.remote_id) == key {
        return Err(bad_format("A virtual network cannot peer with itself."));
    }
    if let Some(remote) = ctx.world().virtual_networks.get(&ids::key(&peering.remote_id))
        && let Some((a, b)) = rules::overlapping(&v.address_prefixes, &remote.address_prefixes)
    {
        return Err(ArmError::bad_request(
            "VnetAddressSpacesOverlap",
            format!(
                "Cannot peer '{}' with '{}': address spaces {a} and {b} overlap.",
                v.name, remote.name
            ),
        ));
    }
    let created = v.peering(name).is_none();
    if let Some(target) = ctx.world_mut().virtual_networks.get_mut(&key) {
        target.peerings.retain(|p| !p.name.eq_ignore_ascii_case(name));
        target.peerings.push(peering);
    }
    let world = ctx.world();
    let target = world
        .virtual_networks
        .get(&key)
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, vnet, rg))?;
    let p = target
        .peering(name)
        .ok_or_else(|| ArmError::not_found(VNET_TYPE, name, rg))?;
    let response = ArmResponse::json(StatusCode::OK, &render::peering(world, target, p))?;
    let id = format!("{}/virtualNetworkPeerings/{name}", v.id);
    Ok(written(ctx, created, sub, &v.location, &id, response))
}

pub(crate) fn delete_peering(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    vnet: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let key = vnet_key(sub, rg, vnet);
    let Some(target) = ctx.world_mut().virtual_networks.get_mut(&key) else {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    };
    let before = target.peerings.len();
    target.peerings.retain(|p| !p.name.eq_ignore_ascii_case(name));
    Ok(ArmResponse::empty(if target.peerings.len() == before {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    }))
}
