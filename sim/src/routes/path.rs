//! ARM request paths, parsed case-insensitively into the resources the emulator serves.

use axum::http::Method;

/// Which provider's api-versions a path accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Sql,
    Network,
    /// Microsoft.Authorization: any `YYYY-MM-DD[-preview]`.
    Authorization,
    /// Polling URLs accept whatever api-version the operation was started with.
    Polling,
    /// Azure Monitor metrics (`Microsoft.Insights/metrics` under a resource).
    Insights,
    /// Azure Resource Manager itself (`Subscriptions_Get`).
    Resources,
}

/// A recognised ARM path. Names keep the URL's casing; comparisons are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArmPath {
    /// `Subscriptions_Get`.
    Subscription {
        sub: String,
    },
    InstanceListAll {
        sub: String,
    },
    /// `GET {scope}/providers/Microsoft.Authorization/permissions`.
    Permissions {
        sub: String,
        scope: String,
    },
    /// `GET /subscriptions/{s}/providers/Microsoft.Sql/locations/{loc}/capabilities`.
    Capabilities {
        sub: String,
        location: String,
    },
    VnetListAll {
        sub: String,
    },
    VnetList {
        sub: String,
        rg: String,
    },
    SubnetList {
        sub: String,
        rg: String,
        vnet: String,
    },
    NsgListAll {
        sub: String,
    },
    NsgList {
        sub: String,
        rg: String,
    },
    InstanceList {
        sub: String,
        rg: String,
    },
    Instance {
        sub: String,
        rg: String,
        name: String,
    },
    DatabaseList {
        sub: String,
        rg: String,
        instance: String,
    },
    /// Azure Monitor metrics of an instance (`…/managedInstances/NAME/providers/Microsoft.Insights/metrics`).
    InstanceMetrics {
        sub: String,
        rg: String,
        instance: String,
    },
    Database {
        sub: String,
        rg: String,
        instance: String,
        name: String,
    },
    GroupList {
        sub: String,
        rg: String,
        location: String,
    },
    Group {
        sub: String,
        rg: String,
        location: String,
        name: String,
    },
    GroupFailover {
        sub: String,
        rg: String,
        location: String,
        name: String,
        forced: bool,
    },
    OperationStatus {
        sub: String,
        id: String,
    },
    OperationResult {
        sub: String,
        id: String,
    },
    Vnet {
        sub: String,
        rg: String,
        name: String,
    },
    Subnet {
        sub: String,
        rg: String,
        vnet: String,
        name: String,
    },
    PeeringList {
        sub: String,
        rg: String,
        vnet: String,
    },
    Peering {
        sub: String,
        rg: String,
        vnet: String,
        name: String,
    },
    Nsg {
        sub: String,
        rg: String,
        name: String,
    },
    RuleList {
        sub: String,
        rg: String,
        nsg: String,
    },
    Rule {
        sub: String,
        rg: String,
        nsg: String,
        name: String,
    },
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Decodes `%XX` escapes (location display names arrive as `Japan%20East`).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(value) = u8::from_str_radix(hex, 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ArmPath {
    /// Parses a request path (without the query).
    pub(crate) fn parse(path: &str) -> Option<ArmPath> {
        const PERMISSIONS: &str = "/providers/microsoft.authorization/permissions";
        let trimmed = path.trim_end_matches('/');
        if trimmed.to_ascii_lowercase().ends_with(PERMISSIONS) {
            let scope = percent_decode(&trimmed[..trimmed.len() - PERMISSIONS.len()]);
            let mut parts = scope.trim_start_matches('/').split('/');
            return match (parts.next(), parts.next()) {
                (Some(subs), Some(sub)) if eq(subs, "subscriptions") && !sub.is_empty() => Some(ArmPath::Permissions {
                    sub: sub.to_owned(),
                    scope: scope.clone(),
                }),
                _ => None,
            };
        }
        let segments: Vec<String> = path.trim_matches('/').split('/').map(percent_decode).collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let owned = |x: &str| x.to_owned();
        match s.as_slice() {
            [subs, sub] if eq(subs, "subscriptions") => Some(ArmPath::Subscription { sub: owned(sub) }),
            [subs, sub, providers, ns, mis]
                if eq(subs, "subscriptions")
                    && eq(providers, "providers")
                    && eq(ns, "Microsoft.Sql")
                    && eq(mis, "managedInstances") =>
            {
                Some(ArmPath::InstanceListAll { sub: owned(sub) })
            }
            [subs, sub, providers, ns, kind]
                if eq(subs, "subscriptions") && eq(providers, "providers") && eq(ns, "Microsoft.Network") =>
            {
                if eq(kind, "virtualNetworks") {
                    Some(ArmPath::VnetListAll { sub: owned(sub) })
                } else if eq(kind, "networkSecurityGroups") {
                    Some(ArmPath::NsgListAll { sub: owned(sub) })
                } else {
                    None
                }
            }
            [subs, sub, providers, ns, locations, location, capabilities]
                if eq(subs, "subscriptions")
                    && eq(providers, "providers")
                    && eq(ns, "Microsoft.Sql")
                    && eq(locations, "locations")
                    && eq(capabilities, "capabilities") =>
            {
                Some(ArmPath::Capabilities {
                    sub: owned(sub),
                    location: owned(location),
                })
            }
            [subs, sub, providers, ns, locations, _location, kind, id]
                if eq(subs, "subscriptions") && eq(providers, "providers") && eq(locations, "locations") =>
            {
                let status = (eq(ns, "Microsoft.Sql")
                    && (eq(kind, "managedInstanceAzureAsyncOperation")
                        || eq(kind, "instanceFailoverGroupAzureAsyncOperation")))
                    || (eq(ns, "Microsoft.Network") && eq(kind, "operations"));
                let result = (eq(ns, "Microsoft.Sql")
                    && (eq(kind, "managedInstanceOperationResults")
                        || eq(kind, "instanceFailoverGroupOperationResults")))
                    || (eq(ns, "Microsoft.Network") && eq(kind, "operationResults"));
                if status {
                    Some(ArmPath::OperationStatus {
                        sub: owned(sub),
                        id: owned(id),
                    })
                } else if result {
                    Some(ArmPath::OperationResult {
                        sub: owned(sub),
                        id: owned(id),
                    })
                } else {
                    None
                }
            }
            [subs, sub, rgs, rg, providers, ns, rest @ ..]
                if eq(subs, "subscriptions") && eq(rgs, "resourceGroups") && eq(providers, "providers") =>
            {
                let (sub, rg) = (owned(sub), owned(rg));
                if eq(ns, "Microsoft.Sql") {
                    Self::sql(sub, rg, rest)
                } else if eq(ns, "Microsoft.Network") {
                    Self::network(sub, rg, rest)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn sql(sub: String, rg: String, rest: &[&str]) -> Option<ArmPath> {
        let o = |x: &str| x.to_owned();
        Some(match rest {
            [mis] if eq(mis, "managedInstances") => ArmPath::InstanceList { sub, rg },
            [mis, name] if eq(mis, "managedInstances") => ArmPath::Instance { sub, rg, name: o(name) },
            [mis, mi, providers, insights, metrics]
                if eq(mis, "managedInstances")
                    && eq(providers, "providers")
                    && eq(insights, "Microsoft.Insights")
                    && eq(metrics, "metrics") =>
            {
                ArmPath::InstanceMetrics {
                    sub,
                    rg,
                    instance: o(mi),
                }
            }
            [mis, mi, dbs] if eq(mis, "managedInstances") && eq(dbs, "databases") => ArmPath::DatabaseList {
                sub,
                rg,
                instance: o(mi),
            },
            [mis, mi, dbs, db] if eq(mis, "managedInstances") && eq(dbs, "databases") => ArmPath::Database {
                sub,
                rg,
                instance: o(mi),
                name: o(db),
            },
            [locs, loc, fogs] if eq(locs, "locations") && eq(fogs, "instanceFailoverGroups") => ArmPath::GroupList {
                sub,
                rg,
                location: o(loc),
            },
            [locs, loc, fogs, name] if eq(locs, "locations") && eq(fogs, "instanceFailoverGroups") => ArmPath::Group {
                sub,
                rg,
                location: o(loc),
                name: o(name),
            },
            [locs, loc, fogs, name, action]
                if eq(locs, "locations")
                    && eq(fogs, "instanceFailoverGroups")
                    && (eq(action, "failover") || eq(action, "forceFailoverAllowDataLoss")) =>
            {
                ArmPath::GroupFailover {
                    sub,
                    rg,
                    location: o(loc),
                    name: o(name),
                    forced: eq(action, "forceFailoverAllowDataLoss"),
                }
            }
            _ => return None,
        })
    }

    fn network(sub: String, rg: String, rest: &[&str]) -> Option<ArmPath> {
        let o = |x: &str| x.to_owned();
        Some(match rest {
            [vnets] if eq(vnets, "virtualNetworks") => ArmPath::VnetList { sub, rg },
            [vnets, name] if eq(vnets, "virtualNetworks") => ArmPath::Vnet { sub, rg, name: o(name) },
            [vnets, vnet, subnets] if eq(vnets, "virtualNetworks") && eq(subnets, "subnets") => {
                ArmPath::SubnetList { sub, rg, vnet: o(vnet) }
            }
            [vnets, vnet, subnets, name] if eq(vnets, "virtualNetworks") && eq(subnets, "subnets") => ArmPath::Subnet {
                sub,
                rg,
                vnet: o(vnet),
                name: o(name),
            },
            [vnets, vnet, peerings] if eq(vnets, "virtualNetworks") && eq(peerings, "virtualNetworkPeerings") => {
                ArmPath::PeeringList { sub, rg, vnet: o(vnet) }
            }
            [vnets, vnet, peerings, name] if eq(vnets, "virtualNetworks") && eq(peerings, "virtualNetworkPeerings") => {
                ArmPath::Peering {
                    sub,
                    rg,
                    vnet: o(vnet),
                    name: o(name),
                }
            }
            [nsgs] if eq(nsgs, "networkSecurityGroups") => ArmPath::NsgList { sub, rg },
            [nsgs, name] if eq(nsgs, "networkSecurityGroups") => ArmPath::Nsg { sub, rg, name: o(name) },
            [nsgs, nsg, rules] if eq(nsgs, "networkSecurityGroups") && eq(rules, "securityRules") => {
                ArmPath::RuleList { sub, rg, nsg: o(nsg) }
            }
            [nsgs, nsg, rules, name] if eq(nsgs, "networkSecurityGroups") && eq(rules, "securityRules") => {
                ArmPath::Rule {
                    sub,
                    rg,
                    nsg: o(nsg),
                    name: o(name),
                }
            }
            _ => return None,
        })
    }

    /// The subscription the request is charged to.
    pub(crate) fn subscription(&self) -> &str {
        match self {
            ArmPath::Subscription { sub }
            | ArmPath::InstanceListAll { sub }
            | ArmPath::Permissions { sub, .. }
            | ArmPath::Capabilities { sub, .. }
            | ArmPath::VnetListAll { sub }
            | ArmPath::VnetList { sub, .. }
            | ArmPath::SubnetList { sub, .. }
            | ArmPath::NsgListAll { sub }
            | ArmPath::NsgList { sub, .. }
            | ArmPath::InstanceList { sub, .. }
            | ArmPath::Instance { sub, .. }
            | ArmPath::DatabaseList { sub, .. }
            | ArmPath::InstanceMetrics { sub, .. }
            | ArmPath::Database { sub, .. }
            | ArmPath::GroupList { sub, .. }
            | ArmPath::Group { sub, .. }
            | ArmPath::GroupFailover { sub, .. }
            | ArmPath::OperationStatus { sub, .. }
            | ArmPath::OperationResult { sub, .. }
            | ArmPath::Vnet { sub, .. }
            | ArmPath::Subnet { sub, .. }
            | ArmPath::PeeringList { sub, .. }
            | ArmPath::Peering { sub, .. }
            | ArmPath::Nsg { sub, .. }
            | ArmPath::RuleList { sub, .. }
            | ArmPath::Rule { sub, .. } => sub,
        }
    }

    /// The provider whose api-versions apply.
    pub(crate) fn provider(&self) -> Provider {
        match self {
            ArmPath::InstanceListAll { .. }
            | ArmPath::Capabilities { .. }
            | ArmPath::InstanceList { .. }
            | ArmPath::Instance { .. }
            | ArmPath::DatabaseList { .. }
            | ArmPath::Database { .. }
            | ArmPath::GroupList { .. }
            | ArmPath::Group { .. }
            | ArmPath::GroupFailover { .. } => Provider::Sql,
            ArmPath::OperationStatus { .. } | ArmPath::OperationResult { .. } => Provider::Polling,
            ArmPath::InstanceMetrics { .. } => Provider::Insights,
            ArmPath::Subscription { .. } => Provider::Resources,
            ArmPath::Permissions { .. } => Provider::Authorization,
            _ => Provider::Network,
        }
    }

    /// The spec's operationId for `method` on this path (used by fault rules), if allowed.
    pub(crate) fn operation_id(&self, method: &Method) -> Option<&'static str> {
        let m = method.as_str();
        Some(match (self, m) {
            (ArmPath::Subscription { .. }, "GET") => "Subscriptions_Get",
            (ArmPath::InstanceListAll { .. }, "GET") => "ManagedInstances_List",
            (ArmPath::Capabilities { .. }, "GET") => "Capabilities_ListByLocation",
            (ArmPath::Permissions { scope, .. }, "GET") => {
                if scope.to_ascii_lowercase().contains("/providers/") {
                    "Permissions_ListForResource"
                } else {
                    "Permissions_ListForResourceGroup"
                }
            }
            (ArmPath::InstanceList { .. }, "GET") => "ManagedInstances_ListByResourceGroup",
            (ArmPath::Instance { .. }, "GET") => "ManagedInstances_Get",
            (ArmPath::Instance { .. }, "PUT") => "ManagedInstances_CreateOrUpdate",
            (ArmPath::Instance { .. }, "PATCH") => "ManagedInstances_Update",
            (ArmPath::Instance { .. }, "DELETE") => "ManagedInstances_Delete",
            (ArmPath::DatabaseList { .. }, "GET") => "ManagedDatabases_ListByInstance",
            (ArmPath::Database { .. }, "GET") => "ManagedDatabases_Get",
            (ArmPath::InstanceMetrics { .. }, "GET") => "Metrics_List",
            (ArmPath::Database { .. }, "PUT") => "ManagedDatabases_CreateOrUpdate",
            (ArmPath::Database { .. }, "DELETE") => "ManagedDatabases_Delete",
            (ArmPath::GroupList { .. }, "GET") => "InstanceFailoverGroups_ListByLocation",
            (ArmPath::Group { .. }, "GET") => "InstanceFailoverGroups_Get",
            (ArmPath::Group { .. }, "PUT") => "InstanceFailoverGroups_CreateOrUpdate",
            (ArmPath::Group { .. }, "DELETE") => "InstanceFailoverGroups_Delete",
            (ArmPath::GroupFailover { forced: false, .. }, "POST") => "InstanceFailoverGroups_Failover",
            (ArmPath::GroupFailover { forced: true, .. }, "POST") => {
                "InstanceFailoverGroups_ForceFailoverAllowDataLoss"
            }
            (ArmPath::OperationStatus { .. }, "GET") => "AzureAsyncOperation_Get",
            (ArmPath::OperationResult { .. }, "GET") => "OperationResults_Get",
            (ArmPath::Vnet { .. }, "GET") => "VirtualNetworks_Get",
            (ArmPath::Vnet { .. }, "PUT") => "VirtualNetworks_CreateOrUpdate",
            (ArmPath::Vnet { .. }, "DELETE") => "VirtualNetworks_Delete",
            (ArmPath::VnetListAll { .. }, "GET") => "VirtualNetworks_ListAll",
            (ArmPath::VnetList { .. }, "GET") => "VirtualNetworks_List",
            (ArmPath::SubnetList { .. }, "GET") => "Subnets_List",
            (ArmPath::Subnet { .. }, "GET") => "Subnets_Get",
            (ArmPath::Subnet { .. }, "PUT") => "Subnets_CreateOrUpdate",
            (ArmPath::Subnet { .. }, "DELETE") => "Subnets_Delete",
            (ArmPath::PeeringList { .. }, "GET") => "VirtualNetworkPeerings_List",
            (ArmPath::Peering { .. }, "GET") => "VirtualNetworkPeerings_Get",
            (ArmPath::Peering { .. }, "PUT") => "VirtualNetworkPeerings_CreateOrUpdate",
            (ArmPath::Peering { .. }, "DELETE") => "VirtualNetworkPeerings_Delete",
            (ArmPath::Nsg { .. }, "GET") => "NetworkSecurityGroups_Get",
            (ArmPath::Nsg { .. }, "PUT") => "NetworkSecurityGroups_CreateOrUpdate",
            (ArmPath::Nsg { .. }, "DELETE") => "NetworkSecurityGroups_Delete",
            (ArmPath::NsgListAll { .. }, "GET") => "NetworkSecurityGroups_ListAll",
            (ArmPath::NsgList { .. }, "GET") => "NetworkSecurityGroups_List",
            (ArmPath::RuleList { .. }, "GET") => "SecurityRules_List",
            (ArmPath::Rule { .. }, "GET") => "SecurityRules_Get",
            (ArmPath::Rule { .. }, "PUT") => "SecurityRules_CreateOrUpdate",
            (ArmPath::Rule { .. }, "DELETE") => "SecurityRules_Delete",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_case_insensitively_with_display_locations() {
        let p = ArmPath::parse(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.sql/locations/Japan%20East/instanceFailoverGroups/fog/failover",
        );
        assert_eq!(
            p,
            Some(ArmPath::GroupFailover {
                sub: "s".into(),
                rg: "rg".into(),
                location: "Japan East".into(),
                name: "fog".into(),
                forced: false
            })
        );
        let op = ArmPath::parse(
            "/subscriptions/s/providers/Microsoft.Sql/locations/eastus/managedInstanceOperationResults/abc",
        );
        assert_eq!(
            op,
            Some(ArmPath::OperationResult {
                sub: "s".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            ArmPath::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/x"),
            None
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
