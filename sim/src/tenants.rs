//! Microsoft Entra tenants of the subscriptions (served by `Subscriptions_Get`, which
//! `fog.preflight` reads to compare tenants), and the rule that a failover group may join instances of
//! different subscriptions only when both subscriptions belong to the same tenant
//! ("as long as subscriptions are associated to the same Microsoft Entra tenant").

use crate::arm_error::ArmError;
use crate::world::{Instance, World};

/// The tenant of a subscription whose estate names none.
pub(crate) const DEFAULT_TENANT: &str = "72f9a1b0-3c4d-4e5f-8a6b-7c8d9e0f1a2b";

/// The tenant of subscription `sub` (case-insensitive), if the estate has it.
pub(crate) fn tenant_of<'w>(world: &'w World, sub: &str) -> Option<&'w str> {
    world
        .tenants
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(sub))
        .map(|(_, t)| t.as_str())
}

/// A group between `primary` and `partner` needs their subscriptions in one tenant.
pub(crate) fn check_same_tenant(world: &World, primary: &Instance, partner: &Instance) -> Result<(), ArmError> {
    let (a, b) = (
        tenant_of(world, &primary.subscription).unwrap_or(DEFAULT_TENANT),
        tenant_of(world, &partner.subscription).unwrap_or(DEFAULT_TENANT),
    );
    if a.eq_ignore_ascii_case(b) {
        return Ok(());
    }
    // The REST specs list no code for this case (contract/error-codes.txt, `emulator`): the
    // emulator names it after the rule.
    Err(ArmError::bad_request(
        "InstanceFailoverGroupCrossTenantNotSupported",
        format!(
            "Managed instances '{}' (subscription '{}', tenant '{a}') and '{}' (subscription '{}', tenant '{b}') are in subscriptions of different Microsoft Entra tenants; a failover group across subscriptions needs both in the same tenant.",
            primary.name, primary.subscription, partner.name, partner.subscription
        ),
    ))
}
