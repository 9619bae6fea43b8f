//! Estate queries: the failover groups whose primary is in a region, found by listing
//! (`ManagedInstances_List`, `InstanceFailoverGroups_ListByLocation`). Used by fleets whose
//! targets are a query (`targets: { query: ... }`), once, when the fleet is created.

use std::collections::BTreeSet;

use serde_json::json;

use super::{arm, text};
use crate::arm::ids::{ArmId, PathBuilder};
use crate::arm::{SQL_API_VERSION, Session};
use crate::{ActivityCtx, ActivityError, Env};

/// A region name compared as ARM does: `East US` and `eastus` are the same region.
fn region_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The failover groups of `subscription` whose primary is in `primary_location`, in
/// `resource_groups` (when empty: every resource group holding a managed instance in that
/// region, from `ManagedInstances_List`). Each is an object with `name`, `id`,
/// `subscription`, `resource_group`, `location` (the primary's region, as asked),
/// `partner_location`, `primary_instance`, `partner_instance`, `primary_instance_id`,
/// `partner_instance_id`, `replication_state`; sorted by resource group, then name.
pub async fn find_failover_groups(
    ctx: &ActivityCtx,
    env: &Env,
    subscription: &str,
    resource_groups: &[String],
    primary_location: &str,
) -> Result<Vec<serde_json::Value>, ActivityError> {
    let client = arm(env)?;
    let s = Session::new(client, ctx);
    let wanted = region_key(primary_location);
    let groups: BTreeSet<String> = if resource_groups.is_empty() {
        let path = PathBuilder::default()
            .lit("subscriptions")
            .name("subscription", subscription)?
            .lit("providers/Microsoft.Sql/managedInstances")
            .build();
        let mut rgs = BTreeSet::new();
        for mi in s.list(subscription, &path, SQL_API_VERSION).await? {
            let here = text(&mi, "/location").is_some_and(|l| region_key(l) == wanted);
            if here && let Some(id) = text(&mi, "/id") {
                rgs.insert(ArmId::parse(id)?.resource_group);
            }
        }
        rgs
    } else {
        resource_groups.iter().cloned().collect()
    };
    let mut out = Vec::new();
    for rg in &groups {
        let path = PathBuilder::resource_group(subscription, rg)?
            .lit("providers/Microsoft.Sql/locations")
            .name("location", primary_location)?
            .lit("instanceFailoverGroups")
            .build();
        for g in s.list(subscription, &path, SQL_API_VERSION).await? {
            if !text(&g, "/properties/replicationRole").is_some_and(|r| r.eq_ignore_ascii_case("Primary")) {
                continue;
            }
            let instance_name = |p: &str| {
                text(&g, p)
                    .and_then(|id| ArmId::parse(id).ok())
                    .map(|id| id.name().to_owned())
            };
            out.push(json!({
                "name": text(&g, "/name"),
                "id": text(&g, "/id"),
                "subscription": subscription,
                "resource_group": rg,
                "location": primary_location,
                "partner_location": text(&g, "/properties/partnerRegions/0/location"),
                "primary_instance": instance_name("/properties/managedInstancePairs/0/primaryManagedInstanceId"),
                "partner_instance": instance_name("/properties/managedInstancePairs/0/partnerManagedInstanceId"),
                "primary_instance_id": text(&g, "/properties/managedInstancePairs/0/primaryManagedInstanceId"),
                "partner_instance_id": text(&g, "/properties/managedInstancePairs/0/partnerManagedInstanceId"),
                "replication_state": text(&g, "/properties/replicationState"),
            }));
        }
    }
    Ok(out)
}
