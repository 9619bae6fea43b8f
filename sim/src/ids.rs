//! ARM resource ids: building them with Azure's casing and comparing them case-insensitively.

/// The lower-case form used as a map key; ARM ids compare case-insensitively.
pub(crate) fn key(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase()
}

/// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{name}`.
pub(crate) fn instance(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{name}")
}

/// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{name}`.
pub(crate) fn vnet(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{name}")
}

/// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/{name}`.
pub(crate) fn nsg(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/{name}")
}

/// The id of one failover group view.
pub(crate) fn fog_view(sub: &str, rg: &str, location: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/locations/{location}/instanceFailoverGroups/{name}"
    )
}

/// The parts of a resource id: subscription, resource group, and the segments after the
/// provider namespace (`type`, `name`, `type`, `name`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedId {
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) namespace: String,
    pub(crate) rest: Vec<String>,
}

/// Parses `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{rest…}`.
pub(crate) fn parse(id: &str) -> Option<ParsedId> {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [subs, sub, rgs, rg, providers, ns, rest @ ..]
            if subs.eq_ignore_ascii_case("subscriptions")
                && rgs.eq_ignore_ascii_case("resourceGroups")
                && providers.eq_ignore_ascii_case("providers")
                && !rest.is_empty() =>
        {
            Some(ParsedId {
                subscription: (*sub).to_owned(),
                resource_group: (*rg).to_owned(),
                namespace: (*ns).to_owned(),
                rest: rest.iter().map(|s| (*s).to_owned()).collect(),
            })
        }
        _ => None,
    }
}

/// For a subnet id, the id of its virtual network and the subnet name.
pub(crate) fn split_subnet(id: &str) -> Option<(String, String)> {
    let parsed = parse(id)?;
    match parsed.rest.as_slice() {
        [vnets, vnet_name, subnets, subnet]
            if vnets.eq_ignore_ascii_case("virtualNetworks") && subnets.eq_ignore_ascii_case("subnets") =>
        {
            Some((
                vnet(&parsed.subscription, &parsed.resource_group, vnet_name),
                subnet.clone(),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_ids_split() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/mi";
        let (vnet_id, subnet) = split_subnet(id).expect("subnet id");
        assert_eq!(vnet_id, vnet("s", "rg", "v"));
        assert_eq!(subnet, "mi");
        assert_eq!(split_subnet("/subscriptions/s"), None);
        assert_eq!(key("/A/B/"), "/a/b");
    }
}
