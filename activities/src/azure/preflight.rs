//! `fog.preflight` and `fog.drift`: what the failover-group procedure requires of two
//! instances, and the settings that are not replicated and must be kept equal by hand.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::fog::read_view;
use super::instance::database_names;
use super::network::{FOG_RULES, Rule, nsg_of, nsg_rules, peerings, ports_open};
use super::refs::{Instance, InstanceRef};
use super::{arm, same, text, with_receipts};
use crate::arm::ids::{ArmId, PathBuilder, same_id};
use crate::arm::{NETWORK_API_VERSION, RESOURCES_API_VERSION, SQL_API_VERSION, Session};
use crate::{ActivityCtx, ActivityError, Env};

/// The verdict of one requirement.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Pass,
    Warn,
    Fail,
}

/// One row of the preflight table.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Check {
    requirement: &'static str,
    status: Verdict,
    reason: String,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, requirement: &'static str, status: Verdict, reason: impl Into<String>) {
        self.0.push(Check {
            requirement,
            status,
            reason: reason.into(),
        });
    }

    fn check(&mut self, requirement: &'static str, ok: bool, otherwise: Verdict, pass: String, problem: String) {
        if ok {
            self.add(requirement, Verdict::Pass, pass);
        } else {
            self.add(requirement, otherwise, problem);
        }
    }

    fn table(&self) -> String {
        let width = self.0.iter().map(|c| c.requirement.len()).max().unwrap_or(0);
        self.0
            .iter()
            .map(|c| {
                let status = match c.status {
                    Verdict::Pass => "pass",
                    Verdict::Warn => "warn",
                    Verdict::Fail => "FAIL",
                };
                format!("{status}  {:width$}  {}", c.requirement, c.reason)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn tier_of(i: &Instance) -> Option<String> {
    i.tier.clone().or_else(|| {
        let sku = i.sku_name.as_deref()?.to_ascii_uppercase();
        if sku.starts_with("GP") {
            Some("GeneralPurpose".into())
        } else if sku.starts_with("BC") {
            Some("BusinessCritical".into())
        } else {
            None
        }
    })
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| v.to_string())
}

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

/// The tenant of a subscription, when it can be read.
async fn tenant_of(s: &Session<'_>, subscription: &str) -> Option<String> {
    let path = PathBuilder::default()
        .lit("subscriptions")
        .name("subscription", subscription)
        .ok()?
        .build();
    let body = s.get_opt(subscription, &path, RESOURCES_API_VERSION).await.ok()??;
    text(&body, "/tenantId").map(str::to_owned)
}

/// `fog.preflight`: checks every configuration requirement and limitation of a failover
/// group between `primary` and `secondary` and reports a table of pass / warn / fail with
/// the reason; the step fails (`PreflightFailed`) when any row fails.
///
/// Rows: `instances_exist`, `secondary_empty`, `same_tier`, `same_storage`, `same_compute`
/// (warn), `different_regions`, `paired_regions` (warn), `same_dns_zone`,
/// `same_update_policy`, `address_spaces_disjoint` (peered networks included),
/// `vnet_peering`, `nsg_ports`, `one_group_per_instance`, `no_instance_pool`, `same_tenant`.
/// `vnet_peering` and `nsg_ports` only warn unless `require_network: true` (the configure
/// runbook checks before it peers and opens ports). With `needs` (the activities of the
/// steps that follow), a `permission` row per action those steps need and scope they touch
/// (both instances, both resource groups, both VNets and NSGs), read through
/// `Microsoft.Authorization/permissions`; a missing one fails, naming the action and the
/// scope. Output: `checks`, `passed`, `warnings`, `failed` (names), `table` (text). Read-only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogPreflight {
    /// The primary instance.
    primary: InstanceRef,
    /// The secondary instance.
    secondary: InstanceRef,
    /// The group to be created (a group of that name already pairing the two passes
    /// `one_group_per_instance`).
    #[serde(default)]
    name: Option<String>,
    /// Fail (instead of warn) when the VNets are not peered or NSG ports are closed.
    #[serde(default)]
    require_network: bool,
    /// The group `name` exists now (with other members) and the runbook deletes it before it
    /// creates the new one: membership in it does not count against `one_group_per_instance`.
    #[serde(default)]
    replacing: bool,
    /// The activities (`uses`) of the steps that follow, whose Azure permissions the caller
    /// must hold: `fog.create`, `fog.delete`, `fog.failover`, `fog.force_failover`,
    /// `instance.scale`, `instance.set_update_policy`, `instance.create_like`,
    /// `instance.delete`, `network.peer`, `network.open_fog_ports`.
    #[serde(default)]
    needs: Vec<String>,
}

/// The api-version of `Microsoft.Authorization/permissions`.
const AUTHORIZATION_API_VERSION: &str = "2022-04-01";

/// Where an action is needed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The primary's resource group (group create and delete are sent there).
    PrimaryGroup,
    /// Both resource groups (a failover is sent to the secondary's; a fail-back to the other).
    BothGroups,
    Instances,
    Vnets,
    Nsgs,
}

/// The Azure actions an activity needs, and where.
fn needs_of(uses: &str) -> Option<&'static [(&'static str, Scope)]> {
    Some(match uses {
        "fog.create" => &[(
            "Microsoft.Sql/locations/instanceFailoverGroups/write",
            Scope::PrimaryGroup,
        )],
        "fog.delete" => &[(
            "Microsoft.Sql/locations/instanceFailoverGroups/delete",
            Scope::PrimaryGroup,
        )],
        "fog.failover" => &[(
            "Microsoft.Sql/locations/instanceFailoverGroups/failover/action",
            Scope::BothGroups,
        )],
        "fog.force_failover" => &[(
            "Microsoft.Sql/locations/instanceFailoverGroups/forceFailoverAllowDataLoss/action",
            Scope::BothGroups,
        )],
        "instance.scale" | "instance.set_update_policy" | "instance.create_like" => {
            &[("Microsoft.Sql/managedInstances/write", Scope::Instances)]
        }
        "instance.delete" => &[("Microsoft.Sql/managedInstances/delete", Scope::Instances)],
        "network.peer" => &[(
            "Microsoft.Network/virtualNetworks/virtualNetworkPeerings/write",
            Scope::Vnets,
        )],
        "network.open_fog_ports" => &[(
            "Microsoft.Network/networkSecurityGroups/securityRules/write",
            Scope::Nsgs,
        )],
        _ => return None,
    })
}

/// Whether an action pattern (`*` wildcards, case-insensitive) covers `action`. Deliberately
/// not shared with the emulator, which enforces the same rule.
fn covers(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return p == a;
    };
    if parts.len() == 1 {
        return p == a;
    }
    let Some(mut rest) = a.strip_prefix(first) else {
        return false;
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether the permissions listed at a scope grant `action`: one entry whose `actions` cover
/// it and whose `notActions` do not.
fn granted(entries: &[serde_json::Value], action: &str) -> bool {
    let list = |e: &serde_json::Value, key: &str| -> Vec<String> {
        e.get(key)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    entries.iter().any(|e| {
        list(e, "actions").iter().any(|p| covers(p, action)) && !list(e, "notActions").iter().any(|p| covers(p, action))
    })
}

impl FogPreflight {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.primary.validate()?;
        self.secondary.validate()?;
        if let Some(n) = &self.name {
            crate::arm::ids::check_name("failover group name", n)?;
        }
        let s = Session::new(arm(env)?, ctx);
        let mut r = Report::default();
        let (a, b) = (self.primary.read(&s).await?, self.secondary.read(&s).await?);
        let (Some(a), Some(b)) = (a, b) else {
            r.add(
                "instances_exist",
                Verdict::Fail,
                "the primary or the secondary does not exist",
            );
            return finish(&s, r);
        };
        r.add(
            "instances_exist",
            Verdict::Pass,
            format!("{} and {} exist", a.name, b.name),
        );
        self.instance_checks(&s, &mut r, &a, &b).await?;
        self.network_checks(&s, &mut r, &a, &b).await?;
        self.group_checks(&s, &mut r, &a, &b).await?;
        self.permission_checks(&s, &mut r, &a, &b).await?;
        finish(&s, r)
    }

    /// One `permission` row per action the following steps need, on each scope they touch.
    async fn permission_checks(
        &self,
        s: &Session<'_>,
        r: &mut Report,
        a: &Instance,
        b: &Instance,
    ) -> Result<(), ActivityError> {
        let mut wanted: Vec<(&'static str, Scope)> = Vec::new();
        for uses in &self.needs {
            let needs = needs_of(uses).ok_or_else(|| {
                ActivityError::invalid(format!(
                    "`needs` names `{uses}`, which is not an Azure activity that changes anything; use fog.create, fog.delete, fog.failover, fog.force_failover, instance.scale, instance.set_update_policy, instance.create_like, instance.delete, network.peer or network.open_fog_ports"
                ))
            })?;
            for need in needs {
                if !wanted.contains(need) {
                    wanted.push(*need);
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let group = |i: &InstanceRef| -> Result<(String, String), ActivityError> {
            Ok((
                i.subscription.clone(),
                PathBuilder::resource_group(&i.subscription, &i.resource_group)?.build(),
            ))
        };
        let instance =
            |i: &InstanceRef| -> Result<(String, String), ActivityError> { Ok((i.subscription.clone(), i.path()?)) };
        let vnet = |x: &Instance| -> Result<(String, String), ActivityError> {
            let id = x.vnet()?;
            Ok((id.subscription.clone(), id.path()?))
        };
        // Each scope's permissions are read once.
        let mut cache: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
        for (action, kind) in wanted {
            let scopes: Vec<(String, String)> = match kind {
                Scope::PrimaryGroup => vec![group(&self.primary)?],
                Scope::BothGroups => vec![group(&self.primary)?, group(&self.secondary)?],
                Scope::Instances => vec![instance(&self.primary)?, instance(&self.secondary)?],
                Scope::Vnets => vec![vnet(a)?, vnet(b)?],
                Scope::Nsgs => {
                    let mut out = Vec::new();
                    for i in [&self.primary, &self.secondary] {
                        if let Some(nsg) = nsg_of(s, i).await? {
                            out.push((nsg.subscription.clone(), nsg.path()?));
                        }
                    }
                    out
                }
            };
            let mut seen = Vec::new();
            for (sub, scope) in scopes {
                if seen.iter().any(|x: &String| x.eq_ignore_ascii_case(&scope)) {
                    continue;
                }
                seen.push(scope.clone());
                let entries = match cache.iter().find(|(k, _)| k.eq_ignore_ascii_case(&scope)) {
                    Some((_, e)) => e.clone(),
                    None => {
                        let path = format!("{scope}/providers/Microsoft.Authorization/permissions");
                        let e = s.list(&sub, &path, AUTHORIZATION_API_VERSION).await?;
                        cache.push((scope.clone(), e.clone()));
                        e
                    }
                };
                r.check(
                    "permission",
                    granted(&entries, action),
                    Verdict::Fail,
                    format!("{action} on {scope}"),
                    format!("the caller lacks {action} on {scope}"),
                );
            }
        }
        Ok(())
    }

    async fn instance_checks(
        &self,
        s: &Session<'_>,
        r: &mut Report,
        a: &Instance,
        b: &Instance,
    ) -> Result<(), ActivityError> {
        let dbs = database_names(s, &self.secondary).await?;
        r.check(
            "secondary_empty",
            dbs.is_empty(),
            Verdict::Fail,
            format!("{} has no user databases", b.name),
            format!("{} has user databases: {}", b.name, dbs.join(", ")),
        );
        let (ta, tb) = (tier_of(a), tier_of(b));
        r.check(
            "same_tier",
            same(ta.as_deref(), tb.as_deref()),
            Verdict::Fail,
            format!("both {}", show(ta.as_deref())),
            format!(
                "service tiers differ: {} vs {}",
                show(ta.as_deref()),
                show(tb.as_deref())
            ),
        );
        r.check(
            "same_storage",
            a.storage_gb == b.storage_gb,
            Verdict::Fail,
            format!("both {} GB", show(a.storage_gb)),
            format!(
                "storage sizes differ: {} GB vs {} GB",
                show(a.storage_gb),
                show(b.storage_gb)
            ),
        );
        r.check(
            "same_compute",
            a.v_cores == b.v_cores,
            Verdict::Warn,
            format!("both {} vCores", show(a.v_cores)),
            format!(
                "vCores differ: {} vs {} (the secondary may not keep up after a failover)",
                show(a.v_cores),
                show(b.v_cores)
            ),
        );
        let (la, lb) = (
            super::regions::normalize(&a.location),
            super::regions::normalize(&b.location),
        );
        r.check(
            "different_regions",
            la != lb,
            Verdict::Fail,
            format!("{la} and {lb}"),
            format!("both instances are in {la}; a failover group needs two regions"),
        );
        r.check(
            "paired_regions",
            super::regions::paired(&la, &lb),
            Verdict::Warn,
            format!("{la} and {lb} are an Azure region pair"),
            format!("{la} and {lb} are not paired; geo-replication will be slower"),
        );
        r.check(
            "same_dns_zone",
            a.dns_zone.is_some() && same(a.dns_zone.as_deref(), b.dns_zone.as_deref()),
            Verdict::Fail,
            format!("both in DNS zone {}", show(a.dns_zone.as_deref())),
            format!(
                "DNS zones differ: {} vs {} (create the secondary with dnsZonePartner = the primary)",
                show(a.dns_zone.as_deref()),
                show(b.dns_zone.as_deref())
            ),
        );
        r.check(
            "same_update_policy",
            same(a.database_format.as_deref(), b.database_format.as_deref()),
            Verdict::Fail,
            format!("both {}", show(a.database_format.as_deref())),
            format!(
                "update policies differ: {} vs {}",
                show(a.database_format.as_deref()),
                show(b.database_format.as_deref())
            ),
        );
        let pooled: Vec<&str> = [a, b]
            .iter()
            .filter(|i| i.instance_pool_id.is_some())
            .map(|i| i.name.as_str())
            .collect();
        r.check(
            "no_instance_pool",
            pooled.is_empty(),
            Verdict::Fail,
            "neither instance is in an instance pool".into(),
            format!(
                "in an instance pool (not supported in failover groups): {}",
                pooled.join(", ")
            ),
        );
        let tenants = match (&a.tenant_id, &b.tenant_id) {
            (Some(x), Some(y)) => Some((x.clone(), y.clone())),
            _ if self
                .primary
                .subscription
                .eq_ignore_ascii_case(&self.secondary.subscription) =>
            {
                None
            }
            _ => match (
                tenant_of(s, &self.primary.subscription).await,
                tenant_of(s, &self.secondary.subscription).await,
            ) {
                (Some(x), Some(y)) => Some((x, y)),
                _ => {
                    r.add(
                        "same_tenant",
                        Verdict::Warn,
                        "the tenants of the two subscriptions could not be read",
                    );
                    return Ok(());
                }
            },
        };
        match tenants {
            None => r.add("same_tenant", Verdict::Pass, "same subscription"),
            Some((x, y)) => r.check(
                "same_tenant",
                x.eq_ignore_ascii_case(&y),
                Verdict::Fail,
                format!("both in tenant {x}"),
                format!("tenants differ: {x} vs {y}"),
            ),
        }
        Ok(())
    }

    async fn network_checks(
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

    async fn group_checks(
        &self,
        s: &Session<'_>,
        r: &mut Report,
        a: &Instance,
        b: &Instance,
    ) -> Result<(), ActivityError> {
        let mut taken = Vec::new();
        let mut replaced = Vec::new();
        for (inst, view_of) in [(&self.primary, a), (&self.secondary, b)] {
            let path = inst.group_list_path(&view_of.location)?;
            for g in s.list(&inst.subscription, &path, SQL_API_VERSION).await? {
                let gname = text(&g, "/name").unwrap_or_default().to_owned();
                let p = text(&g, "/properties/managedInstancePairs/0/primaryManagedInstanceId").unwrap_or_default();
                let q = text(&g, "/properties/managedInstancePairs/0/partnerManagedInstanceId").unwrap_or_default();
                let involves = same_id(p, &inst.id()) || same_id(q, &inst.id());
                let ours = self.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&gname))
                    && ((same_id(p, &self.primary.id()) && same_id(q, &self.secondary.id()))
                        || (same_id(q, &self.primary.id()) && same_id(p, &self.secondary.id())));
                let to_be_replaced =
                    self.replacing && self.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&gname));
                if involves && to_be_replaced && !ours {
                    replaced.push(format!(
                        "{} is in group {gname}, which this run deletes first",
                        inst.name
                    ));
                } else if involves && !ours {
                    taken.push(format!("{} is in group {gname}", inst.name));
                }
            }
        }
        if taken.is_empty() && !replaced.is_empty() {
            r.add("one_group_per_instance", Verdict::Pass, replaced.join("; "));
            return Ok(());
        }
        if let Some(name) = &self.name
            && taken.is_empty()
            && let Some(view) = read_view(s, &self.primary, &a.location, name).await?
            && !view.role.is_empty()
        {
            r.add(
                "one_group_per_instance",
                Verdict::Pass,
                format!("already paired in group {name}"),
            );
            return Ok(());
        }
        r.check(
            "one_group_per_instance",
            taken.is_empty(),
            Verdict::Fail,
            "neither instance is in another failover group".into(),
            format!("an instance can be in one failover group only: {}", taken.join("; ")),
        );
        Ok(())
    }
}

fn finish(s: &Session<'_>, r: Report) -> Result<serde_json::Value, ActivityError> {
    let names = |v: Verdict| {
        r.0.iter()
            .filter(|c| c.status == v)
            .map(|c| c.requirement)
            .collect::<Vec<_>>()
    };
    let failed = names(Verdict::Fail);
    let out = with_receipts(
        s,
        json!({
            "checks": r.0,
            "passed": names(Verdict::Pass),
            "warnings": names(Verdict::Warn),
            "failed": failed,
            "table": r.table(),
        }),
    );
    if failed.is_empty() {
        return Ok(out);
    }
    let reasons: Vec<String> =
        r.0.iter()
            .filter(|c| c.status == Verdict::Fail)
            .map(|c| format!("{}: {}", c.requirement, c.reason))
            .collect();
    Err(ActivityError::Failed {
        code: "PreflightFailed".into(),
        message: format!("{} requirement(s) failed: {}", failed.len(), reasons.join("; ")),
        output: Some(out),
    })
}

/// `fog.drift`: compares the settings that are not replicated and must be kept equal on
/// both instances of a group — update policy, service tier, hardware, SKU, vCores, storage,
/// backup storage redundancy, timezone, collation, licence, maintenance configuration and the
/// tags named in `tags` (`tag:NAME`) — and reports the differences with both values. Fails
/// (`DriftDetected`) only with `fail_on_drift: true`. Output: `in_sync`, `differences`
/// (`setting`, `primary`, `secondary`), `settings` (all compared), `summary` (one line per
/// difference). Read-only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogDrift {
    /// The primary instance.
    primary: InstanceRef,
    /// The secondary instance.
    secondary: InstanceRef,
    /// Fail the step when any setting differs (default false: report only).
    #[serde(default)]
    fail_on_drift: bool,
    /// Names of the tags that must be equal on both instances (default none).
    #[serde(default)]
    tags: Vec<String>,
}

impl FogDrift {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.primary.validate()?;
        self.secondary.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let a = self.primary.read_existing(&s).await?;
        let b = self.secondary.read_existing(&s).await?;
        let num = |v: Option<u64>| v.map(|n| n.to_string());
        let prop = |i: &Instance, p: &str| text(&i.body, p).map(str::to_owned);
        let mut rows: Vec<(String, Option<String>, Option<String>)> = vec![
            ("update_policy", a.database_format.clone(), b.database_format.clone()),
            ("tier", tier_of(&a), tier_of(&b)),
            ("hardware", a.family.clone(), b.family.clone()),
            ("sku_name", a.sku_name.clone(), b.sku_name.clone()),
            ("v_cores", num(a.v_cores), num(b.v_cores)),
            ("storage_gb", num(a.storage_gb), num(b.storage_gb)),
            (
                "backup_storage_redundancy",
                a.backup_storage_redundancy.clone(),
                b.backup_storage_redundancy.clone(),
            ),
            ("license_type", a.license_type.clone(), b.license_type.clone()),
            (
                "timezone",
                prop(&a, "/properties/timezoneId"),
                prop(&b, "/properties/timezoneId"),
            ),
            ("collation", a.collation.clone(), b.collation.clone()),
            (
                "maintenance_configuration",
                prop(&a, "/properties/maintenanceConfigurationId").map(|id| last_segment(&id)),
                prop(&b, "/properties/maintenanceConfigurationId").map(|id| last_segment(&id)),
            ),
        ]
        .into_iter()
        .map(|(k, x, y)| (k.to_owned(), x, y))
        .collect();
        for tag in &self.tags {
            let pointer = format!("/tags/{}", tag.replace('~', "~0").replace('/', "~1"));
            rows.push((format!("tag:{tag}"), prop(&a, &pointer), prop(&b, &pointer)));
        }
        let settings: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, x, y)| json!({ "setting": k, "primary": x, "secondary": y }))
            .collect();
        let differences: Vec<serde_json::Value> = rows
            .iter()
            .filter(|(_, x, y)| !same(x.as_deref(), y.as_deref()))
            .map(|(k, x, y)| json!({ "setting": k, "primary": x, "secondary": y }))
            .collect();
        let summary: Vec<String> = rows
            .iter()
            .filter(|(_, x, y)| !same(x.as_deref(), y.as_deref()))
            .map(|(k, x, y)| {
                format!(
                    "{k}: {} has {}, {} has {}",
                    a.name,
                    x.as_deref().unwrap_or("(unset)"),
                    b.name,
                    y.as_deref().unwrap_or("(unset)")
                )
            })
            .collect();
        let out = with_receipts(
            &s,
            json!({
                "in_sync": differences.is_empty(),
                "differences": differences,
                "settings": settings,
                "summary": summary.join("; "),
            }),
        );
        if self.fail_on_drift && !differences.is_empty() {
            let names: Vec<&str> = differences.iter().filter_map(|d| d["setting"].as_str()).collect();
            return Err(ActivityError::Failed {
                code: "DriftDetected".into(),
                message: format!("settings differ between the instances: {}", names.join(", ")),
                output: Some(out),
            });
        }
        Ok(out)
    }
}

/// The last segment of a resource id (`…/publicMaintenanceConfigurations/SQL_Default` →
/// `SQL_Default`).
fn last_segment(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Permissions_ListForResourceGroup` answers as the spec's example does: entries of
    /// `actions` and `notActions`; a grant needs one entry that covers and does not exclude.
    #[test]
    fn permissions_entries_grant_by_pattern() {
        let entries = vec![
            json!({"actions": ["*/read", "Microsoft.Network/*"], "notActions": ["Microsoft.Network/networkSecurityGroups/securityRules/write"], "dataActions": [], "notDataActions": []}),
            json!({"actions": ["Microsoft.Sql/locations/instanceFailoverGroups/*"], "notActions": []}),
        ];
        assert!(granted(
            &entries,
            "Microsoft.Network/virtualNetworks/virtualNetworkPeerings/write"
        ));
        assert!(!granted(
            &entries,
            "Microsoft.Network/networkSecurityGroups/securityRules/write"
        ));
        assert!(granted(
            &entries,
            "Microsoft.Sql/locations/instanceFailoverGroups/failover/action"
        ));
        assert!(!granted(&entries, "Microsoft.Sql/managedInstances/delete"));
        assert!(granted(&entries, "microsoft.sql/managedinstances/read"));
        assert!(!granted(&[], "Microsoft.Sql/managedInstances/read"));
        assert!(needs_of("fog.failover").is_some() && needs_of("wait").is_none());
    }

    #[test]
    fn overlaps_are_found() {
        let a = vec!["10.10.0.0/16".to_owned()];
        assert_eq!(overlap(&a, &["10.20.0.0/16".to_owned()]), None);
        assert!(overlap(&a, &["10.10.5.0/24".to_owned()]).is_some());
    }
}
