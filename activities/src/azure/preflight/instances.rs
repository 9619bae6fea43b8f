//! The rows of `fog.preflight` about the two instances themselves: emptiness, tier, storage,
//! compute, regions, DNS zone, update policy, instance pools and tenants.

use super::{FogPreflight, Report, Verdict, show, tier_of};
use crate::ActivityError;
use crate::arm::ids::PathBuilder;
use crate::arm::{RESOURCES_API_VERSION, Session};
use crate::azure::instance::database_names;
use crate::azure::refs::Instance;
use crate::azure::{same, text};

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

impl FogPreflight {
    pub(super) async fn instance_checks(
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
        shape_checks(r, a, b);
        region_checks(r, a, b);
        setting_checks(r, a, b);
        self.tenant_check(s, r, a, b).await;
        Ok(())
    }

    /// `same_tenant`: both subscriptions belong to one tenant (read from the instances, or
    /// from the subscriptions when the instances do not say); a warning when neither can be
    /// read.
    async fn tenant_check(&self, s: &Session<'_>, r: &mut Report, a: &Instance, b: &Instance) {
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
                    return;
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
    }
}

/// `same_tier`, `same_storage` and `same_compute` (warn): the sizes the two instances must
/// have in common.
fn shape_checks(r: &mut Report, a: &Instance, b: &Instance) {
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
}

/// `different_regions` and `paired_regions` (warn).
fn region_checks(r: &mut Report, a: &Instance, b: &Instance) {
    let (la, lb) = (
        super::super::regions::normalize(&a.location),
        super::super::regions::normalize(&b.location),
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
        super::super::regions::paired(&la, &lb),
        Verdict::Warn,
        format!("{la} and {lb} are an Azure region pair"),
        format!("{la} and {lb} are not paired; geo-replication will be slower"),
    );
}

/// `same_dns_zone`, `same_update_policy` and `no_instance_pool`: the settings a failover
/// group requires of the pair.
fn setting_checks(r: &mut Report, a: &Instance, b: &Instance) {
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
}
