//! Networking activities: `network.peer` and `network.open_fog_ports`.

use std::time::Duration;

use reqwest::Method;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::refs::{InstanceRef, vnet_of_subnet};
use super::{arm, text, with_receipts};
use crate::arm::ids::{ArmId, same_id};
use crate::arm::lro::{self, Progress};
use crate::arm::{NETWORK_API_VERSION, Session};
use crate::{ActivityCtx, ActivityError, Env};

/// The geo-replication ports of a failover group: (rule name, direction, ports, priority).
pub(crate) const FOG_RULES: &[(&str, &str, &str, u32)] = &[
    ("allow_redirect_inbound", "Inbound", "11000-11999", 1100),
    ("allow_geodr_inbound", "Inbound", "5022", 1200),
    ("allow_redirect_outbound", "Outbound", "11000-11999", 1100),
    ("allow_geodr_outbound", "Outbound", "5022", 1200),
];

/// The subnet id of an instance: given in the reference, or read from Azure.
pub(crate) async fn subnet_of(s: &Session<'_>, instance: &InstanceRef) -> Result<String, ActivityError> {
    if let Some(id) = &instance.subnet_id {
        return Ok(id.clone());
    }
    instance.read_existing(s).await?.subnet_id.ok_or_else(|| {
        ActivityError::failed(
            "NoSubnet",
            format!("managed instance `{}` reports no subnet", instance.name),
        )
    })
}

/// Peerings of `vnet` as `(name, remote id, state)`.
pub(crate) async fn peerings(s: &Session<'_>, vnet: &ArmId) -> Result<Vec<(String, String, String)>, ActivityError> {
    let path = format!("{}/virtualNetworkPeerings", vnet.path()?);
    let items = s.list(&vnet.subscription, &path, NETWORK_API_VERSION).await?;
    Ok(items
        .iter()
        .map(|p| {
            (
                text(p, "/name").unwrap_or_default().to_owned(),
                text(p, "/properties/remoteVirtualNetwork/id")
                    .unwrap_or_default()
                    .to_owned(),
                text(p, "/properties/peeringState").unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// `network.peer`: peers the VNets of two instances in both directions (convergent: an
/// existing peering to the same remote VNet is kept whatever its name) and waits until both
/// peerings are `Connected`. Instances may be given by `subnet_id` before they exist.
/// Output: `peerings` (`vnet`, `name`, `remote`, `state`, `created`), `arm_requests`.
/// Re-entry: a saved peering operation is polled; existing peerings are not re-created.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkPeer {
    /// One instance (or its subnet).
    primary: InstanceRef,
    /// The other instance (or its subnet).
    secondary: InstanceRef,
    /// Set `allowForwardedTraffic` on both peerings (default false).
    #[serde(default)]
    allow_forwarded_traffic: bool,
}

impl NetworkPeer {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.primary.validate()?;
        self.secondary.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let a = vnet_of_subnet(&subnet_of(&s, &self.primary).await?)?;
        let b = vnet_of_subnet(&subnet_of(&s, &self.secondary).await?)?;
        if same_id(&a.display(), &b.display()) {
            return Ok(json!({ "peerings": [], "note": "both instances are in the same virtual network" }));
        }
        let mut progress = Progress::load(ctx);
        let mut created = Vec::new();
        for (local, remote) in [(&a, &b), (&b, &a)] {
            let key = format!("peer:{}", local.name());
            let exists = peerings(&s, local)
                .await?
                .iter()
                .any(|(_, r, _)| same_id(r, &remote.display()));
            if exists && progress.op(&key).is_none() {
                continue;
            }
            let name: String = format!("{}-to-{}", local.name(), remote.name())
                .chars()
                .take(80)
                .collect();
            let path = format!(
                "{}/virtualNetworkPeerings/{}",
                local.path()?,
                crate::arm::ids::PathBuilder::default()
                    .name("peering name", &name)?
                    .build()
                    .trim_start_matches('/')
            );
            let body = json!({ "properties": {
                "remoteVirtualNetwork": { "id": remote.display() },
                "allowVirtualNetworkAccess": true,
                "allowForwardedTraffic": self.allow_forwarded_traffic,
                "allowGatewayTransit": false,
                "useRemoteGateways": false,
            }});
            let url = s.client.url(&path, NETWORK_API_VERSION)?;
            lro::run(
                &s,
                &mut progress,
                &key,
                &local.subscription,
                Method::PUT,
                url,
                Some(body),
            )
            .await?;
            created.push(local.name().to_owned());
        }
        // Peerings become Connected once both directions exist; wait for it.
        for _ in 0..240 {
            let mut states = Vec::new();
            for (local, remote) in [(&a, &b), (&b, &a)] {
                let found = peerings(&s, local)
                    .await?
                    .into_iter()
                    .find(|(_, r, _)| same_id(r, &remote.display()));
                let (name, _, state) = found.unwrap_or_default();
                states.push(json!({
                    "vnet": local.display(), "name": name, "remote": remote.display(), "state": state,
                    "created": created.iter().any(|c| c == local.name()),
                }));
            }
            if states.iter().all(|p| {
                p["state"]
                    .as_str()
                    .is_some_and(|st| st.eq_ignore_ascii_case("Connected"))
            }) {
                return Ok(with_receipts(&s, json!({ "peerings": states })));
            }
            s.pause(Duration::from_secs(15)).await?;
        }
        Err(ActivityError::Transient {
            code: "PeeringNotConnected".into(),
            message: format!(
                "the peerings between {} and {} are not Connected yet",
                a.name(),
                b.name()
            ),
            retry_after: None,
        })
    }
}

/// One security rule as far as the port check needs it.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) priority: u32,
    pub(crate) direction: String,
    pub(crate) allow: bool,
    pub(crate) tcp: bool,
    pub(crate) ports: Vec<(u32, u32)>,
}

impl Rule {
    pub(crate) fn from_body(v: &serde_json::Value) -> Self {
        let p = |k: &str| text(v, &format!("/properties/{k}")).unwrap_or_default().to_owned();
        let mut ranges: Vec<String> = Vec::new();
        if let Some(r) = text(v, "/properties/destinationPortRange") {
            ranges.push(r.to_owned());
        }
        if let Some(list) = v
            .pointer("/properties/destinationPortRanges")
            .and_then(|x| x.as_array())
        {
            ranges.extend(list.iter().filter_map(|x| x.as_str().map(str::to_owned)));
        }
        let protocol = p("protocol");
        Self {
            name: text(v, "/name").unwrap_or_default().to_owned(),
            priority: v
                .pointer("/properties/priority")
                .and_then(|x| x.as_u64())
                .unwrap_or(u64::from(u32::MAX)) as u32,
            direction: p("direction"),
            allow: p("access").eq_ignore_ascii_case("Allow"),
            tcp: protocol == "*" || protocol.eq_ignore_ascii_case("Tcp"),
            ports: ranges.iter().filter_map(|r| port_range(r)).collect(),
        }
    }
}

fn port_range(text: &str) -> Option<(u32, u32)> {
    let t = text.trim();
    if t == "*" {
        return Some((0, 65535));
    }
    match t.split_once('-') {
        Some((lo, hi)) => Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)),
        None => t.parse().ok().map(|p| (p, p)),
    }
}

/// Whether every TCP port of `ports` (`5022`, `11000-11999`) is allowed in `direction` by
/// the explicit rules, evaluated in priority order (the first matching rule decides a port;
/// a port no rule matches counts as closed, as the failover-group documentation asks for
/// explicit rules).
pub(crate) fn ports_open(rules: &[Rule], direction: &str, ports: &str) -> bool {
    let Some(range) = port_range(ports) else { return false };
    let mut ordered: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.tcp && r.direction.eq_ignore_ascii_case(direction))
        .collect();
    ordered.sort_by_key(|r| r.priority);
    let mut open = vec![range];
    for rule in ordered {
        let mut next = Vec::new();
        for (lo, hi) in open {
            let mut pieces = vec![(lo, hi)];
            for &(rlo, rhi) in &rule.ports {
                let mut rest = Vec::new();
                for (plo, phi) in pieces {
                    if rhi < plo || rlo > phi {
                        rest.push((plo, phi));
                        continue;
                    }
                    if !rule.allow {
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
        open = next;
        if open.is_empty() {
            return true;
        }
    }
    open.is_empty()
}

/// The NSG id of an instance's subnet.
pub(crate) async fn nsg_of(s: &Session<'_>, instance: &InstanceRef) -> Result<Option<ArmId>, ActivityError> {
    let subnet = subnet_of(s, instance).await?;
    let id = ArmId::parse(&subnet)?.expect("Microsoft.Network", &["virtualNetworks", "subnets"])?;
    let body = s.get(&id.subscription, &id.path()?, NETWORK_API_VERSION).await?;
    match text(&body, "/properties/networkSecurityGroup/id") {
        Some(nsg) => Ok(Some(
            ArmId::parse(nsg)?.expect("Microsoft.Network", &["networkSecurityGroups"])?,
        )),
        None => Ok(None),
    }
}

/// The explicit security rules of an NSG.
pub(crate) async fn nsg_rules(s: &Session<'_>, nsg: &ArmId) -> Result<Vec<(Rule, serde_json::Value)>, ActivityError> {
    let items = s
        .list(
            &nsg.subscription,
            &format!("{}/securityRules", nsg.path()?),
            NETWORK_API_VERSION,
        )
        .await?;
    Ok(items.into_iter().map(|v| (Rule::from_body(&v), v)).collect())
}

/// `network.open_fog_ports`: on the NSG of each instance's subnet, allows inbound and
/// outbound TCP 5022 and 11000-11999 (rules `allow_redirect_inbound` 1100,
/// `allow_geodr_inbound` 1200, `allow_redirect_outbound` 1100, `allow_geodr_outbound` 1200;
/// a taken priority moves to the next free one, and a rule goes before any deny rule that
/// would block it). Ports already open by other rules are left as they are; no other rule is
/// touched. Output: `nsgs` (`id`, `rules` with `name`, `priority`, `action`), `arm_requests`.
/// Re-entry: saved rule operations are polled; existing rules are not re-sent.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkOpenFogPorts {
    /// One instance (or its subnet).
    primary: InstanceRef,
    /// The other instance (or its subnet).
    secondary: InstanceRef,
}

impl NetworkOpenFogPorts {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.primary.validate()?;
        self.secondary.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let mut progress = Progress::load(ctx);
        let mut report = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for instance in [&self.primary, &self.secondary] {
            let nsg = nsg_of(&s, instance).await?.ok_or_else(|| {
                ActivityError::failed(
                    "SubnetHasNoNetworkSecurityGroup",
                    format!(
                        "the subnet of managed instance `{}` has no network security group",
                        instance.name
                    ),
                )
            })?;
            if seen.iter().any(|id| same_id(id, &nsg.display())) {
                continue;
            }
            seen.push(nsg.display());
            let mut rules: Vec<Rule> = nsg_rules(&s, &nsg).await?.into_iter().map(|(r, _)| r).collect();
            let mut actions = Vec::new();
            for (name, direction, ports, wanted) in FOG_RULES {
                let key = format!("rule:{}:{name}", nsg.name());
                let saved = progress.op(&key).is_some();
                if !saved && ports_open(&rules, direction, ports) {
                    actions.push(
                        json!({ "name": name, "direction": direction, "ports": ports, "action": "already-open" }),
                    );
                    continue;
                }
                let existing = rules.iter().find(|r| r.name.eq_ignore_ascii_case(name)).cloned();
                let priority = match &existing {
                    Some(r) => r.priority,
                    None => free_priority(&rules, direction, ports, *wanted)?,
                };
                let body = json!({ "properties": {
                    "protocol": "Tcp", "access": "Allow", "direction": direction, "priority": priority,
                    "sourcePortRange": "*", "destinationPortRange": ports,
                    "sourceAddressPrefix": "VirtualNetwork", "destinationAddressPrefix": "VirtualNetwork",
                    "description": "fogbook: failover-group geo-replication",
                }});
                let path = crate::arm::ids::PathBuilder::default().name("rule name", name)?.build();
                let url = s
                    .client
                    .url(&format!("{}/securityRules{path}", nsg.path()?), NETWORK_API_VERSION)?;
                let result = lro::run(&s, &mut progress, &key, &nsg.subscription, Method::PUT, url, Some(body)).await?;
                rules.retain(|r| !r.name.eq_ignore_ascii_case(name));
                let mut rule = Rule::from_body(&result);
                if rule.name.is_empty() {
                    rule = Rule {
                        name: (*name).to_owned(),
                        priority,
                        direction: (*direction).to_owned(),
                        allow: true,
                        tcp: true,
                        ports: port_range(ports).into_iter().collect(),
                    };
                }
                rules.push(rule);
                let action = if existing.is_some() { "updated" } else { "created" };
                actions.push(json!({ "name": name, "direction": direction, "ports": ports, "priority": priority, "action": action }));
            }
            for (_, direction, ports, _) in FOG_RULES {
                if !ports_open(&rules, direction, ports) {
                    return Err(ActivityError::failed(
                        "NsgPortsBlocked",
                        format!(
                            "{direction} TCP {ports} is still blocked on `{}` by a higher-priority rule",
                            nsg.name()
                        ),
                    ));
                }
            }
            report.push(json!({ "id": nsg.display(), "rules": actions }));
        }
        Ok(with_receipts(&s, json!({ "nsgs": report })))
    }
}

/// A priority for a new allow rule: `wanted` or the next free one, but before (lower than)
/// any deny rule matching `ports` in `direction`.
fn free_priority(rules: &[Rule], direction: &str, ports: &str, wanted: u32) -> Result<u32, ActivityError> {
    let same_dir: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.direction.eq_ignore_ascii_case(direction))
        .collect();
    let range = port_range(ports).unwrap_or((0, 0));
    let limit = same_dir
        .iter()
        .filter(|r| !r.allow && r.tcp && r.ports.iter().any(|&(lo, hi)| lo <= range.1 && range.0 <= hi))
        .map(|r| r.priority)
        .min()
        .unwrap_or(4097);
    let taken = |p: u32| same_dir.iter().any(|r| r.priority == p);
    let start = if wanted < limit { wanted } else { 100 };
    (start..limit.min(4097))
        .find(|p| !taken(*p))
        .ok_or_else(|| ActivityError::failed("NoFreePriority", format!("no free {direction} priority before {limit}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: u32, direction: &str, allow: bool, ports: &[(u32, u32)]) -> Rule {
        Rule {
            name: format!("r{priority}"),
            priority,
            direction: direction.into(),
            allow,
            tcp: true,
            ports: ports.to_vec(),
        }
    }

    #[test]
    fn ports_need_an_allow_before_any_deny() {
        let open = [rule(1100, "Inbound", true, &[(5022, 5022), (11000, 11999)])];
        assert!(ports_open(&open, "Inbound", "5022"));
        assert!(ports_open(&open, "Inbound", "11000-11999"));
        assert!(!ports_open(&open, "Outbound", "5022"));
        let split = [
            rule(100, "Inbound", true, &[(11000, 11499)]),
            rule(200, "Inbound", true, &[(11500, 11999)]),
        ];
        assert!(ports_open(&split, "Inbound", "11000-11999"));
        let denied = [
            rule(100, "Inbound", false, &[(11500, 11500)]),
            rule(200, "Inbound", true, &[(0, 65535)]),
        ];
        assert!(!ports_open(&denied, "Inbound", "11000-11999"));
        assert!(ports_open(&denied, "Inbound", "5022"));
    }

    #[test]
    fn priorities_skip_taken_ones_and_go_before_denies() {
        let rules = [
            rule(1100, "Inbound", true, &[(80, 80)]),
            rule(1101, "Inbound", true, &[(443, 443)]),
        ];
        assert_eq!(free_priority(&rules, "Inbound", "5022", 1100).unwrap(), 1102);
        assert_eq!(free_priority(&rules, "Outbound", "5022", 1100).unwrap(), 1100);
        let deny = [rule(500, "Inbound", false, &[(5022, 5022)])];
        assert_eq!(free_priority(&deny, "Inbound", "5022", 1200).unwrap(), 100);
    }
}
