//! Azure RBAC as the emulator models it: each principal (a bearer token) holds role
//! assignments (`actions` minus `notActions` at a scope and below); every ARM request needs
//! one action on its path, else 403 `AuthorizationFailed`. `GET
//! {scope}/providers/Microsoft.Authorization/permissions` lists what the caller holds there.
//! With no `principals` in the estate every caller may do everything.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::path::ArmPath;
use super::response::ArmResponse;
use crate::arm_error::ArmError;
use crate::world::{Assignment, Principal, World};

/// The action `method` on `path` needs, or `None` when no check applies (polling an
/// operation, reading permissions).
pub(crate) fn required_action(path: &ArmPath, method: &Method) -> Option<String> {
    use ArmPath as P;
    let verb = match method.as_str() {
        "GET" | "HEAD" => "read",
        "DELETE" => "delete",
        _ => "write",
    };
    let kind = match path {
        P::InstanceListAll { .. } | P::InstanceList { .. } | P::Instance { .. } => "Microsoft.Sql/managedInstances",
        P::DatabaseList { .. } | P::Database { .. } => "Microsoft.Sql/managedInstances/databases",
        P::Capabilities { .. } => "Microsoft.Sql/locations/capabilities",
        P::GroupList { .. } | P::Group { .. } => "Microsoft.Sql/locations/instanceFailoverGroups",
        P::GroupFailover { forced, .. } => {
            return Some(format!(
                "Microsoft.Sql/locations/instanceFailoverGroups/{}/action",
                if *forced {
                    "forceFailoverAllowDataLoss"
                } else {
                    "failover"
                }
            ));
        }
        P::VnetListAll { .. } | P::VnetList { .. } | P::Vnet { .. } => "Microsoft.Network/virtualNetworks",
        P::SubnetList { .. } | P::Subnet { .. } => "Microsoft.Network/virtualNetworks/subnets",
        P::PeeringList { .. } | P::Peering { .. } => "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
        P::NsgListAll { .. } | P::NsgList { .. } | P::Nsg { .. } => "Microsoft.Network/networkSecurityGroups",
        P::RuleList { .. } | P::Rule { .. } => "Microsoft.Network/networkSecurityGroups/securityRules",
        P::InstanceMetrics { .. } => "Microsoft.Insights/metrics",
        P::Subscription { .. } => "Microsoft.Resources/subscriptions",
        P::OperationStatus { .. } | P::OperationResult { .. } | P::Permissions { .. } => return None,
    };
    Some(format!("{kind}/{verb}"))
}

/// Whether an action pattern (`*`, `Microsoft.Sql/*`, `Microsoft.Sql/managedInstances/*/read`)
/// covers `action`; case-insensitive, `*` matches any run of characters.
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

/// Whether `scope` (an assignment's) contains `path`: equal, or a parent on a segment boundary.
fn contains(scope: &str, path: &str) -> bool {
    let (s, p) = (
        scope.to_ascii_lowercase(),
        path.trim_end_matches('/').to_ascii_lowercase(),
    );
    p == s || p.starts_with(&format!("{s}/"))
}

/// The principal a token names (`None` when no principals are modelled).
fn principal<'w>(world: &'w World, token: &str) -> Option<Result<&'w Principal, ()>> {
    let list = world.principals.as_ref()?;
    Some(
        list.iter()
            .find(|p| p.token == token)
            .or_else(|| list.iter().find(|p| p.token == "*"))
            .ok_or(()),
    )
}

fn applicable<'p>(p: &'p Principal, path: &str) -> impl Iterator<Item = &'p Assignment> + use<'p> {
    let path = path.to_owned();
    p.assignments.iter().filter(move |a| contains(&a.scope, &path))
}

/// Allows the request or answers 403 `AuthorizationFailed`, naming the action and the scope.
pub(crate) fn authorize(world: &World, token: &str, path: &str, action: &str) -> Result<(), ArmError> {
    let who = match principal(world, token) {
        None => return Ok(()),
        Some(Ok(p)) => {
            let allowed = applicable(p, path).any(|a| {
                a.actions.iter().any(|x| covers(x, action)) && !a.not_actions.iter().any(|x| covers(x, action))
            });
            if allowed {
                return Ok(());
            }
            p.name.clone()
        }
        Some(Err(())) => "unknown principal".to_owned(),
    };
    let scope = path.trim_end_matches('/');
    Err(ArmError::new(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        format!(
            "The client '{who}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        ),
    ))
}

/// `GET {scope}/providers/Microsoft.Authorization/permissions`: the caller's `actions` and
/// `notActions` that apply at `scope`, one entry per assignment.
pub(crate) fn permissions(world: &World, token: &str, scope: &str) -> Result<ArmResponse, ArmError> {
    let entry = |actions: &[String], not_actions: &[String]| json!({"actions": actions, "notActions": not_actions, "dataActions": [], "notDataActions": []});
    let value: Vec<_> = match principal(world, token) {
        None => vec![entry(&["*".to_owned()], &[])],
        Some(Err(())) => Vec::new(),
        Some(Ok(p)) => applicable(p, scope)
            .map(|a| entry(&a.actions, &a.not_actions))
            .collect(),
    };
    ArmResponse::json(StatusCode::OK, &json!({ "value": value }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_scopes() {
        assert!(covers("*", "Microsoft.Sql/managedInstances/write"));
        assert!(covers("Microsoft.Sql/*", "microsoft.sql/managedInstances/write"));
        assert!(covers("*/read", "Microsoft.Network/virtualNetworks/read"));
        assert!(!covers("*/read", "Microsoft.Network/virtualNetworks/write"));
        assert!(!covers(
            "Microsoft.Sql/managedInstances/write",
            "Microsoft.Sql/managedInstances/delete"
        ));
        assert!(contains(
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s/resourcegroups/RG/providers/x"
        ));
        assert!(!contains(
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s/resourceGroups/rg2"
        ));
    }
}
