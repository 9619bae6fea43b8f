//! Microsoft.Network's network security groups and their rules (written at once, as every
//! network write: see the parent module).

use axum::http::StatusCode;

use super::{NSG_TYPE, bad_format, nsg_key, written};
use crate::arm_error::ArmError;
use crate::estate::derived_guid;
use crate::ids;
use crate::regions;
use crate::routes::context::{Ctx, parse_body};
use crate::routes::render;
use crate::routes::response::ArmResponse;
use crate::wire::{List, SecurityGroupIn, SecurityRuleIn, SecurityRuleProperties};
use crate::world::{SecurityGroup, SecurityRule};

pub(crate) fn get_nsg(ctx: &Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let nsg = ctx
        .world()
        .security_groups
        .get(&nsg_key(sub, rg, name))
        .ok_or_else(|| ArmError::not_found(NSG_TYPE, name, rg))?;
    ArmResponse::json(StatusCode::OK, &render::nsg(ctx.world(), nsg))
}

pub(crate) fn list_nsgs(ctx: &Ctx<'_>, sub: &str, rg: Option<&str>) -> Result<ArmResponse, ArmError> {
    if let Some(rg) = rg
        && !ctx.world().has_resource_group(sub, rg)
    {
        return Err(ArmError::resource_group_not_found(rg));
    }
    let world = ctx.world();
    let value = world
        .security_groups
        .values()
        .filter(|g| g.subscription.eq_ignore_ascii_case(sub))
        .filter(|g| rg.is_none_or(|rg| g.resource_group.eq_ignore_ascii_case(rg)))
        .map(|g| render::nsg(world, g))
        .collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

/// A create or a full update. `securityRules`, when given, replace the group's rules (each
/// checked as a rule PUT checks it); when absent, an existing group keeps its rules.
pub(crate) fn put_nsg(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    if !ctx.world().has_resource_group(sub, rg) {
        return Err(ArmError::resource_group_not_found(rg));
    }
    let request: SecurityGroupIn = parse_body(body)?;
    let key = nsg_key(sub, rg, name);
    let existing = ctx.world().security_groups.get(&key).cloned();
    let location = match (&request.location, &existing) {
        (Some(l), _) => regions::normalize(l),
        (None, Some(g)) => g.location.clone(),
        (None, None) => return Err(ArmError::invalid_parameter("The 'location' property is required.")),
    };
    let id = ids::nsg(sub, rg, name);
    let mut group = SecurityGroup {
        id: id.clone(),
        subscription: sub.to_owned(),
        resource_group: rg.to_owned(),
        name: name.to_owned(),
        location: location.clone(),
        rules: Vec::new(),
        tags: request
            .tags
            .or_else(|| existing.as_ref().map(|g| g.tags.clone()))
            .unwrap_or_default(),
        resource_guid: existing
            .as_ref()
            .map_or_else(|| derived_guid(&id), |g| g.resource_guid.clone()),
    };
    match request.properties.and_then(|p| p.security_rules) {
        Some(rules) => {
            for r in rules {
                let rule_name = r.name.ok_or_else(|| bad_format("Every security rule needs a name."))?;
                let props = r
                    .properties
                    .ok_or_else(|| bad_format(format!("Security rule '{rule_name}' needs properties.")))?;
                let rule = rule_from(&group, &rule_name, props)?;
                group.rules.push(rule);
            }
        }
        None => group.rules = existing.as_ref().map(|g| g.rules.clone()).unwrap_or_default(),
    }
    ctx.world_mut().security_groups.insert(key.clone(), group);
    let world = ctx.world();
    let stored = world
        .security_groups
        .get(&key)
        .ok_or_else(|| ArmError::not_found(NSG_TYPE, name, rg))?;
    let response = ArmResponse::json(StatusCode::OK, &render::nsg(world, stored))?;
    Ok(written(ctx, existing.is_none(), sub, &location, &id, response))
}

pub(crate) fn delete_nsg(ctx: &mut Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let key = nsg_key(sub, rg, name);
    if !ctx.world().security_groups.contains_key(&key) {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    }
    let user = ctx.world().virtual_networks.values().find_map(|v| {
        v.subnets
            .iter()
            .find(|s| s.security_group_id.as_deref().is_some_and(|id| ids::key(id) == key))
            .map(|s| format!("{}/subnets/{}", v.name, s.name))
    });
    if let Some(subnet) = user {
        return Err(ArmError::bad_request(
            "InUseNetworkSecurityGroupCannotBeDeleted",
            format!(
                "Network security group '{name}' is in use by subnet '{subnet}' and cannot be deleted. Dissociate it first."
            ),
        ));
    }
    ctx.world_mut().security_groups.remove(&key);
    Ok(ArmResponse::empty(StatusCode::OK))
}

pub(crate) fn list_rules(ctx: &Ctx<'_>, sub: &str, rg: &str, nsg: &str) -> Result<ArmResponse, ArmError> {
    let group = ctx
        .world()
        .security_groups
        .get(&nsg_key(sub, rg, nsg))
        .ok_or_else(|| ArmError::not_found(NSG_TYPE, nsg, rg))?;
    let value = group.rules.iter().map(|r| render::rule(group, r)).collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

pub(crate) fn get_rule(ctx: &Ctx<'_>, sub: &str, rg: &str, nsg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let group = ctx
        .world()
        .security_groups
        .get(&nsg_key(sub, rg, nsg))
        .ok_or_else(|| ArmError::not_found(NSG_TYPE, nsg, rg))?;
    let rule = group
        .rules
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| ArmError::not_found("Microsoft.Network/networkSecurityGroups/securityRules", name, rg))?;
    ArmResponse::json(StatusCode::OK, &render::rule(group, rule))
}

fn one_of(value: Option<String>, field: &str, allowed: &[&str]) -> Result<String, ArmError> {
    let value = value.ok_or_else(|| bad_format(format!("The security rule property '{field}' is required.")))?;
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(&value))
        .map(|a| (*a).to_owned())
        .ok_or_else(|| {
            ArmError::bad_request(
                "SecurityRuleParameterContainsUnsupportedValue",
                format!("Security rule parameter {field} has value '{value}', which is not one of {allowed:?}."),
            )
        })
}

/// A rule of `group` from its properties, checked as Azure checks them.
fn rule_from(group: &SecurityGroup, name: &str, p: SecurityRuleProperties) -> Result<SecurityRule, ArmError> {
    let protocol = one_of(p.protocol, "protocol", &["Tcp", "Udp", "Icmp", "Esp", "*", "Ah"])?;
    let access = one_of(p.access, "access", &["Allow", "Deny"])?;
    let direction = one_of(p.direction, "direction", &["Inbound", "Outbound"])?;
    let priority = p
        .priority
        .ok_or_else(|| bad_format("The security rule property 'priority' is required."))?;
    if !(100..=4096).contains(&priority) {
        return Err(ArmError::bad_request(
            "SecurityRuleInvalidPriority",
            format!("Security rule '{name}' has invalid priority {priority}; it must be between 100 and 4096."),
        ));
    }
    if let Some(other) = group.rules.iter().find(|r| {
        !r.name.eq_ignore_ascii_case(name) && r.priority == priority && r.direction.eq_ignore_ascii_case(&direction)
    }) {
        return Err(ArmError::bad_request(
            "SecurityRuleConflict",
            format!(
                "Security rule '{name}' conflicts with rule '{}': both have priority {priority} and direction {direction}.",
                other.name
            ),
        ));
    }
    Ok(SecurityRule {
        name: name.to_owned(),
        protocol,
        access,
        priority,
        direction,
        source_port_range: p.source_port_range,
        source_port_ranges: p.source_port_ranges,
        destination_port_range: p.destination_port_range,
        destination_port_ranges: p.destination_port_ranges,
        source_address_prefix: p.source_address_prefix,
        source_address_prefixes: p.source_address_prefixes,
        destination_address_prefix: p.destination_address_prefix,
        destination_address_prefixes: p.destination_address_prefixes,
        description: p.description,
    })
}

pub(crate) fn put_rule(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    nsg: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    let key = nsg_key(sub, rg, nsg);
    let group = ctx
        .world()
        .security_groups
        .get(&key)
        .cloned()
        .ok_or_else(|| ArmError::not_found(NSG_TYPE, nsg, rg))?;
    let request: SecurityRuleIn = parse_body(body)?;
    let p = request
        .properties
        .ok_or_else(|| bad_format("The 'properties' object is required."))?;
    let rule = rule_from(&group, name, p)?;
    let created = !group.rules.iter().any(|r| r.name.eq_ignore_ascii_case(name));
    let out = render::rule(&group, &rule);
    if let Some(target) = ctx.world_mut().security_groups.get_mut(&key) {
        target.rules.retain(|r| !r.name.eq_ignore_ascii_case(name));
        target.rules.push(rule);
    }
    let response = ArmResponse::json(StatusCode::OK, &out)?;
    let id = out.id.clone();
    Ok(written(ctx, created, sub, &group.location, &id, response))
}

pub(crate) fn delete_rule(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    nsg: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let Some(group) = ctx.world_mut().security_groups.get_mut(&nsg_key(sub, rg, nsg)) else {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    };
    let before = group.rules.len();
    group.rules.retain(|r| !r.name.eq_ignore_ascii_case(name));
    Ok(ArmResponse::empty(if group.rules.len() == before {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    }))
}
