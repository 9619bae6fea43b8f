//! The network rows of `fog.preflight`: disjoint address spaces, VNet peering and the NSG
//! ports a failover group needs.

use super::{FogPreflight, Report, Verdict};
use crate::ActivityError;
use crate::arm::ids::{ArmId, same_id};
use crate::arm::{NETWORK_API_VERSION, Session};
use crate::azure::network::{FOG_RULES, Rule, nsg_of, nsg_rules, peerings, ports_open};
use crate::azure::refs::Instance;
use crate::azure::text;

fn cidr(text: &str) -> Option<(u32, u32)> {
    let (addr, len) = text.trim().split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let start = u32::from(addr) & mask;
    Some((start, start | !mask))
}

/// The first pair of overlapping prefixes of `a` and `b`.
pub(crate) fn overlap(a: &[String], b: &[String]) -> Option<(String, String)> {
    for x in a {
        for y in b {
            if let (Some((s1, e1)), Some((s2, e2))) = (cidr(x), cidr(y))
                && s1 <= e2
                && s2 <= e1
            {
                return Some((x.clone(), y.clone()));
            }
        }
    }
    None
}

fn prefixes(v: &serde_json::Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(|x| x.as_array())
        .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The address space of a VNet and of the networks peered with it (except `other`).
async fn address_space(
    s: &Session<'_>,
    vnet: &ArmId,
    other: &ArmId,
) -> Result<(Vec<String>, Vec<String>), ActivityError> {
    let body = s.get(&vnet.subscription, &vnet.path()?, NETWORK_API_VERSION).await?;
    let own = prefixes(&body, "/properties/addressSpace/addressPrefixes");
    let mut peered = Vec::new();
    let path = format!("{}/virtualNetworkPeerings", vnet.path()?);
    for p in s.list(&vnet.subscription, &path, NETWORK_API_VERSION).await? {
        let remote = text(&p, "/properties/remoteVirtualNetwork/id").unwrap_or_default();
        if same_id(remote, &other.display()) {
            continue;
        }
        let mut space = prefixes(&p, "/properties/remoteAddressSpace/addressPrefixes");
        if space.is_empty()
            && let Ok(id) = ArmId::parse(remote)
            && let Ok(path) = id.path()
            && let Ok(Some(r)) = s.get_opt(&id.subscription, &path, NETWORK_API_VERSION).await
        {
            space = prefixes(&r, "/properties/addressSpace/addressPrefixes");
        }
        peered.extend(space);
    }
    Ok((own, peered))
}

impl FogPreflight {
    pub(super) async fn network_checks(
        &self,
        s: &Session<'_>,
        r: &mut Report,
        a: &Instance,
        b: &Instance,
    ) -> Result<(), ActivityError> {
        let (va, vb) = (a.vnet()?, b.vnet()?);
        let network = if self.require_network {
            Verdict::Fail
        } else {
            Verdict::Warn
        };
        if same_id(&va.display(), &vb.display()) {
            r.add(
                "address_spaces_disjoint",
                Verdict::Pass,
                "both instances share one virtual network",
            );
            r.add(
                "vnet_peering",
                Verdict::Pass,
                "both instances share one virtual network",
            );
        } else {
            let (own_a, peered_a) = address_space(s, &va, &vb).await?;
            let (own_b, peered_b) = address_space(s, &vb, &va).await?;
            let side_a: Vec<String> = own_a.iter().chain(&peered_a).cloned().collect();
            let side_b: Vec<String> = own_b.iter().chain(&peered_b).cloned().collect();
            match overlap(&side_a, &side_b) {
                None => r.add(
                    "address_spaces_disjoint",
                    Verdict::Pass,
                    format!(
                        "{} and {} (with their peered networks) do not overlap",
                        own_a.join(","),
                        own_b.join(",")
                    ),
                ),
                Some((x, y)) => r.add(
                    "address_spaces_disjoint",
                    Verdict::Fail,
                    format!(
                        "address spaces overlap: {x} ({} side) and {y} ({} side)",
                        va.name(),
                        vb.name()
                    ),
                ),
            }
            let state = |list: &[(String, String, String)], remote: &ArmId| {
                list.iter()
                    .find(|(_, id, _)| same_id(id, &remote.display()))
                    .map(|(_, _, st)| st.clone())
            };
            let ab = state(&peerings(s, &va).await?, &vb);
            let ba = state(&peerings(s, &vb).await?, &va);
            let connected = |st: &Option<String>| st.as_deref().is_some_and(|x| x.eq_ignore_ascii_case("Connected"));
            r.check(
                "vnet_peering",
                connected(&ab) && connected(&ba),
                network,
                format!("{} and {} are peered both ways (Connected)", va.name(), vb.name()),
                format!(
                    "{} and {} are not peered both ways ({} → {}: {}, back: {}); network.peer does it",
                    va.name(),
                    vb.name(),
                    va.name(),
                    vb.name(),
                    ab.as_deref().unwrap_or("none"),
                    ba.as_deref().unwrap_or("none")
                ),
            );
        }
        let mut closed = Vec::new();
        for inst in [&self.primary, &self.secondary] {
            match nsg_of(s, inst).await? {
                None => closed.push(format!("{}: subnet has no NSG", inst.name)),
                Some(nsg) => {
                    let rules: Vec<Rule> = nsg_rules(s, &nsg).await?.into_iter().map(|(r, _)| r).collect();
                    for (_, direction, ports, _) in FOG_RULES {
                        if !ports_open(&rules, direction, ports) {
                            closed.push(format!("{} {direction} {ports}", nsg.name()));
                        }
                    }
                }
            }
        }
        r.check(
            "nsg_ports",
            closed.is_empty(),
            network,
            "inbound and outbound TCP 5022 and 11000-11999 are allowed on both NSGs".into(),
            format!("closed: {}; network.open_fog_ports opens them", closed.join(", ")),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_are_found() {
        let a = vec!["10.10.0.0/16".to_owned()];
        assert_eq!(overlap(&a, &["10.20.0.0/16".to_owned()]), None);
        assert!(overlap(&a, &["10.10.5.0/24".to_owned()]).is_some());
    }
}
