//! The `permission` rows of `fog.preflight`: the Azure actions the following steps need, on
//! the scopes they touch, read through `Microsoft.Authorization/permissions`.

use super::{FogPreflight, Report, Verdict};
use crate::ActivityError;
use crate::arm::Session;
use crate::arm::ids::PathBuilder;
use crate::azure::network::nsg_of;
use crate::azure::refs::{Instance, InstanceRef};
use crate::catalog::{ActionScope as Scope, ActivityKind};

/// The api-version of `Microsoft.Authorization/permissions`.
const AUTHORIZATION_API_VERSION: &str = "2022-04-01";

/// The Azure actions activity `uses` needs, and where; `None` when `fog.preflight` checks
/// none for it.
fn needs_of(uses: &str) -> Option<&'static [(&'static str, Scope)]> {
    ActivityKind::from_name(uses)
        .map(ActivityKind::azure_actions)
        .filter(|actions| !actions.is_empty())
}

/// The activities whose actions `needs` can check, for the error that names another.
fn checked_activities() -> String {
    let names: Vec<&str> = ActivityKind::ALL
        .iter()
        .filter(|k| !k.azure_actions().is_empty())
        .map(|k| k.name())
        .collect();
    names.join(", ")
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
    /// The actions the activities in `needs` require, each once, in the order first needed.
    fn wanted_actions(&self) -> Result<Vec<(&'static str, Scope)>, ActivityError> {
        let mut wanted: Vec<(&'static str, Scope)> = Vec::new();
        for uses in &self.needs {
            let needs = needs_of(uses).ok_or_else(|| {
                ActivityError::invalid(format!(
                    "`needs` names `{uses}`, which is not an Azure activity whose permissions preflight checks; use one of {}",
                    checked_activities()
                ))
            })?;
            for need in needs {
                if !wanted.contains(need) {
                    wanted.push(*need);
                }
            }
        }
        Ok(wanted)
    }

    /// The (subscription, path) of each resource a `kind` of scope means for this pair.
    async fn scopes(
        &self,
        s: &Session<'_>,
        kind: Scope,
        a: &Instance,
        b: &Instance,
    ) -> Result<Vec<(String, String)>, ActivityError> {
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
        Ok(match kind {
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
        })
    }

    /// One `permission` row per action the following steps need, on each scope they touch.
    pub(super) async fn permission_checks(
        &self,
        s: &Session<'_>,
        r: &mut Report,
        a: &Instance,
        b: &Instance,
    ) -> Result<(), ActivityError> {
        let wanted = self.wanted_actions()?;
        // Each scope's permissions are read once.
        let mut cache: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
        for (action, kind) in wanted {
            let scopes = self.scopes(s, kind, a, b).await?;
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
}
