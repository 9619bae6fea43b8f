//! The rules Azure enforces on failover groups, update policies and networking, with Azure's
//! error codes (the codes the REST API specification lists, in `sim/tests/sim/contract/error-codes.txt`).
//!
//! Deliberately absent: NSG address prefixes are not evaluated (a rule's ports, protocol,
//! direction and access decide), and Azure's default security rules are not modelled, so the
//! failover-group ports must be opened by explicit rules, as the docs require.

use crate::arm_error::ArmError;
use crate::ids;
use crate::world::{Instance, SecurityGroup, VirtualNetwork, World};

/// The update policies, oldest format first; a change may only move right.
const FORMATS: &[&str] = &["SQLServer2022", "SQLServer2025", "AlwaysUpToDate"];

/// Azure's spelling of an update policy given in any case, if known.
pub(crate) fn canonical_format(text: &str) -> Option<&'static str> {
    FORMATS.iter().copied().find(|f| f.eq_ignore_ascii_case(text))
}

fn format_rank(format: &str) -> usize {
    FORMATS.iter().position(|f| f.eq_ignore_ascii_case(format)).unwrap_or(0)
}

/// Checks an update-policy change of `instance` to `new_format` (already canonical).
pub(crate) fn check_format_change(world: &World, instance: &Instance, new_format: &str) -> Result<(), ArmError> {
    let (old, new) = (format_rank(&instance.database_format), format_rank(new_format));
    if new < old {
        let code = if instance.database_format.eq_ignore_ascii_case("AlwaysUpToDate") {
            "ManagedInstanceUpdateSloFromVersionlessToVersionedNotAllowed"
        } else {
            "ManagedInstanceUpdateSloFromNewerToOlderVersionEditionNotAllowed"
        };
        return Err(ArmError::bad_request(
            code,
            format!(
                "Changing the update policy from '{}' to '{new_format}' is not allowed: the database format upgrade is one-way.",
                instance.database_format
            ),
        ));
    }
    if let Some(group) = world.group_of(&instance.id)
        && ids::key(&group.primary.instance_id) == ids::key(&instance.id)
        && let Some(secondary) = world.instance(&group.secondary.instance_id)
        && new > format_rank(&secondary.database_format)
    {
        return Err(ArmError::bad_request(
            "ManagedInstanceUpdateSloGeoPrimaryWithNewerVersionEditionThanSecondary",
            format!(
                "The geo-primary '{}' cannot get a newer update policy ('{new_format}') than its geo-secondary '{}' ('{}'). Change the secondary first.",
                instance.name, secondary.name, secondary.database_format
            ),
        ));
    }
    Ok(())
}

/// Whether the two instances have different update policies (a failover is then refused).
pub(crate) fn check_failover_formats(primary: &Instance, secondary: &Instance) -> Result<(), ArmError> {
    if format_rank(&primary.database_format) != format_rank(&secondary.database_format) {
        return Err(ArmError::bad_request(
            "ManagedInstanceFailoverInFailoverGroupInstancesWithDifferentVersionEditions",
            format!(
                "Failover is not allowed: instances '{}' ('{}') and '{}' ('{}') have different update policies.",
                primary.name, primary.database_format, secondary.name, secondary.database_format
            ),
        ));
    }
    Ok(())
}

/// Every requirement of a new failover group between `primary` and `partner`, in the order
/// Azure's documentation lists them. The caller has checked the request body and the location.
pub(crate) fn check_group_create(
    world: &World,
    primary: &Instance,
    partner: &Instance,
    partner_region: &str,
) -> Result<(), ArmError> {
    if primary.location == partner.location {
        return Err(ArmError::bad_request(
            "InvalidFailoverGroupRegion",
            format!(
                "The primary and the partner managed instance are both in region '{}'.",
                primary.location
            ),
        ));
    }
    if crate::regions::normalize(partner_region) != partner.location {
        return Err(ArmError::bad_request(
            "FailoverGroupRegionMismatch",
            format!(
                "The partner region '{partner_region}' does not match the partner managed instance's region '{}'.",
                partner.location
            ),
        ));
    }
    for inst in [primary, partner] {
        if inst.instance_pool_id.is_some() {
            return Err(ArmError::bad_request(
                "ManagedInstanceGeoDRNotAllowedForInstancePool",
                format!(
                    "Managed instance '{}' is in an instance pool; failover groups are not supported.",
                    inst.name
                ),
            ));
        }
        if inst.state != "Ready" {
            return Err(ArmError::conflict(
                "ConflictingManagedInstanceOperation",
                format!(
                    "Managed instance '{}' is not ready (state '{}').",
                    inst.name, inst.state
                ),
            ));
        }
        if let Some(group) = world.group_of(&inst.id) {
            return Err(ArmError::conflict(
                "InstanceFailoverGroupAlreadyExists",
                format!(
                    "Managed instance '{}' is already in failover group '{}'; an instance can be in one group only. Delete that group first, or use it.",
                    inst.name, group.name
                ),
            ));
        }
        if let Some(op) = world.running_operation_on(&ids::key(&inst.id)) {
            let message = format!("An operation is in progress on managed instance '{}'.", inst.name);
            return Err(if matches!(op.kind, crate::lro::OpKind::InstanceUpdate { .. }) {
                ArmError::bad_request("ManagedInstanceUpdateSloOngoing", message)
            } else {
                ArmError::conflict("ConflictingManagedInstanceOperation", message)
            });
        }
    }
    crate::tenants::check_same_tenant(world, primary, partner)?;
    if !partner.databases.is_empty() {
        return Err(ArmError::bad_request(
            "GeoDrSecondaryInstanceNotEmpty",
            format!(
                "The secondary managed instance '{}' has {} user database(s); it must be empty.",
                partner.name,
                partner.databases.len()
            ),
        ));
    }
    if !primary.tier.eq_ignore_ascii_case(&partner.tier) {
        return Err(ArmError::bad_request(
            "ServerEditionMismatch",
            format!(
                "The service tier of the partner '{}' ({}) must be the same as the primary's '{}' ({}).",
                partner.name, partner.tier, primary.name, primary.tier
            ),
        ));
    }
    if primary.storage_gb != partner.storage_gb {
        return Err(ArmError::bad_request(
            "GeoDrInstanceSizeMismatch",
            format!(
                "The instances differ in storage size: '{}' has {} GB, '{}' has {} GB.",
                primary.name, primary.storage_gb, partner.name, partner.storage_gb
            ),
        ));
    }
    if primary.dns_zone != partner.dns_zone {
        return Err(ArmError::bad_request(
            "DnsZoneMismatch",
            format!(
                "The partner managed instance '{}' is not in the DNS zone '{}' of the primary; create it with dnsZonePartner.",
                partner.name, primary.dns_zone
            ),
        ));
    }
    // A primary with an older update policy than its secondary is allowed (the secondary can
    // read the older format); only the reverse is refused. Failover then needs equal policies.
    if format_rank(&primary.database_format) > format_rank(&partner.database_format) {
        return Err(ArmError::bad_request(
            "ManagedInstanceEstablishingFailoverGroupGeoPrimaryWithNewerVersionEditionThanSecondary",
            format!(
                "The primary '{}' has a newer update policy ('{}') than the secondary '{}' ('{}'). Upgrade the secondary first.",
                primary.name, primary.database_format, partner.name, partner.database_format
            ),
        ));
    }
    check_networking(world, primary, partner)
}

fn networking_error(message: String) -> ArmError {
    ArmError::bad_request("InstanceFailoverGroupIncorrectNetworkingConfiguration", message)
}

/// Non-overlapping address spaces, a connected peering, and NSG rules open for the
/// geo-replication ports in both directions on both sides.
pub(crate) fn check_networking(world: &World, a: &Instance, b: &Instance) -> Result<(), ArmError> {
    let (Some((vnet_a, subnet_a)), Some((vnet_b, subnet_b))) = (world.subnet(&a.subnet_id), world.subnet(&b.subnet_id))
    else {
        return Err(networking_error(
            "The subnet of one of the instances does not exist.".into(),
        ));
    };
    if ids::key(&vnet_a.id) != ids::key(&vnet_b.id) {
        if let Some((pa, pb)) = overlapping(&vnet_a.address_prefixes, &vnet_b.address_prefixes) {
            return Err(networking_error(format!(
                "The address spaces of '{}' ({pa}) and '{}' ({pb}) overlap.",
                vnet_a.name, vnet_b.name
            )));
        }
        if peering_state(world, vnet_a, &vnet_b.id) != "Connected" {
            return Err(networking_error(format!(
                "The virtual networks '{}' and '{}' are not connected by a peering in both directions.",
                vnet_a.name, vnet_b.name
            )));
        }
    }
    for (inst, subnet) in [(a, subnet_a), (b, subnet_b)] {
        let nsg = subnet
            .security_group_id
            .as_deref()
            .and_then(|id| world.security_groups.get(&ids::key(id)));
        let Some(nsg) = nsg else {
            return Err(networking_error(format!(
                "The subnet '{}' of managed instance '{}' has no network security group.",
                subnet.name, inst.name
            )));
        };
        for direction in ["Inbound", "Outbound"] {
            for (lo, hi) in [(5022, 5022), (11000, 11999)] {
                if !ports_allowed(nsg, direction, lo, hi) {
                    let ports = if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") };
                    return Err(networking_error(format!(
                        "The network security group '{}' of managed instance '{}' does not allow {direction} TCP traffic on port(s) {ports}.",
                        nsg.name, inst.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// `Connected` when `vnet` peers with `remote_id` and the remote peers back, else `Initiated`.
pub(crate) fn peering_state(world: &World, vnet: &VirtualNetwork, remote_id: &str) -> &'static str {
    let forward = vnet
        .peerings
        .iter()
        .any(|p| ids::key(&p.remote_id) == ids::key(remote_id));
    let back = world
        .virtual_networks
        .get(&ids::key(remote_id))
        .is_some_and(|r| r.peerings.iter().any(|p| ids::key(&p.remote_id) == ids::key(&vnet.id)));
    if forward && back { "Connected" } else { "Initiated" }
}

/// An IPv4 CIDR as the inclusive range of addresses it covers.
pub(crate) fn cidr_range(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = cidr.trim().split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let start = u32::from(addr) & mask;
    Some((start, start | !mask))
}

/// The first pair of prefixes, one from each list, that overlap.
pub(crate) fn overlapping(a: &[String], b: &[String]) -> Option<(String, String)> {
    for pa in a {
        for pb in b {
            if let (Some((s1, e1)), Some((s2, e2))) = (cidr_range(pa), cidr_range(pb))
                && s1 <= e2
                && s2 <= e1
            {
                return Some((pa.clone(), pb.clone()));
            }
        }
    }
    None
}

/// Whether `inner` lies inside one of `outer`.
pub(crate) fn within(inner: &str, outer: &[String]) -> bool {
    let Some((s, e)) = cidr_range(inner) else { return false };
    outer
        .iter()
        .filter_map(|o| cidr_range(o))
        .any(|(os, oe)| os <= s && e <= oe)
}

fn port_range(text: &str) -> Option<(u32, u32)> {
    let text = text.trim();
    if text == "*" {
        return Some((0, 65535));
    }
    match text.split_once('-') {
        Some((lo, hi)) => Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)),
        None => {
            let p = text.parse().ok()?;
            Some((p, p))
        }
    }
}

/// Whether every TCP port in `lo..=hi` is allowed in `direction`, evaluating the rules in
/// priority order: the first rule that matches a port decides it; unmatched ports are denied.
pub(crate) fn ports_allowed(nsg: &SecurityGroup, direction: &str, lo: u32, hi: u32) -> bool {
    let mut rules: Vec<_> = nsg
        .rules
        .iter()
        .filter(|r| r.direction.eq_ignore_ascii_case(direction))
        .filter(|r| r.protocol == "*" || r.protocol.eq_ignore_ascii_case("Tcp"))
        .collect();
    rules.sort_by_key(|r| r.priority);
    let mut undecided = vec![(lo, hi)];
    for rule in rules {
        let ranges: Vec<(u32, u32)> = rule.destination_ports().into_iter().filter_map(port_range).collect();
        let allow = rule.access.eq_ignore_ascii_case("Allow");
        let mut next = Vec::new();
        for (ulo, uhi) in undecided {
            let mut pieces = vec![(ulo, uhi)];
            for &(rlo, rhi) in &ranges {
                let mut rest = Vec::new();
                for (plo, phi) in pieces {
                    if rhi < plo || rlo > phi {
                        rest.push((plo, phi));
                        continue;
                    }
                    if !allow {
                        return false;
                    }
                    if plo < rlo {
                        rest.push((plo, rlo - 1));
                    }
                    if phi > rhi {
                        rest.push((rhi + 1, phi));
                    }
                }
                pieces = rest;
            }
            next.extend(pieces);
        }
        undecided = next;
        if undecided.is_empty() {
            return true;
        }
    }
    undecided.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::SecurityRule;

    fn rule(priority: i32, direction: &str, access: &str, ports: &[&str]) -> SecurityRule {
        SecurityRule {
            name: format!("r{priority}"),
            protocol: "Tcp".into(),
            access: access.into(),
            priority,
            direction: direction.into(),
            destination_port_ranges: ports.iter().map(|p| (*p).to_owned()).collect(),
            ..SecurityRule::default()
        }
    }

    fn nsg(rules: Vec<SecurityRule>) -> SecurityGroup {
        SecurityGroup {
            id: "n".into(),
            subscription: "s".into(),
            resource_group: "rg".into(),
            name: "n".into(),
            location: "eastus".into(),
            rules,
            tags: Default::default(),
            resource_guid: String::new(),
        }
    }

    #[test]
    fn ports_need_an_allow_before_any_deny() {
        let open = nsg(vec![rule(1100, "Inbound", "Allow", &["5022", "11000-11999"])]);
        assert!(ports_allowed(&open, "Inbound", 5022, 5022));
        assert!(ports_allowed(&open, "Inbound", 11000, 11999));
        assert!(!ports_allowed(&open, "Outbound", 5022, 5022));

        let split = nsg(vec![
            rule(100, "Inbound", "Allow", &["11000-11499"]),
            rule(200, "Inbound", "Allow", &["11500-11999"]),
        ]);
        assert!(ports_allowed(&split, "Inbound", 11000, 11999));

        let denied = nsg(vec![
            rule(100, "Inbound", "Deny", &["11500"]),
            rule(200, "Inbound", "Allow", &["*"]),
        ]);
        assert!(!ports_allowed(&denied, "Inbound", 11000, 11999));
        assert!(ports_allowed(&denied, "Inbound", 5022, 5022));

        let partial = nsg(vec![rule(100, "Inbound", "Allow", &["11000-11998"])]);
        assert!(!ports_allowed(&partial, "Inbound", 11000, 11999));
    }

    #[test]
    fn cidrs_overlap_and_contain() {
        let a = vec!["10.1.0.0/16".to_owned()];
        let b = vec!["10.2.0.0/16".to_owned()];
        let c = vec!["10.0.0.0/8".to_owned()];
        assert_eq!(overlapping(&a, &b), None);
        assert!(overlapping(&a, &c).is_some());
        assert!(within("10.1.3.0/24", &a));
        assert!(!within("10.2.3.0/24", &a));
        assert_eq!(cidr_range("10.0.0.0/33"), None);
    }

    #[test]
    fn formats_are_canonicalised() {
        assert_eq!(canonical_format("SqlServer2025"), Some("SQLServer2025"));
        assert_eq!(canonical_format("alwaysuptodate"), Some("AlwaysUpToDate"));
        assert_eq!(canonical_format("SQLServer2019"), None);
    }
}
