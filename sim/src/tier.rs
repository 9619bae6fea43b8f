//! Next-gen General Purpose (`properties.isGeneralPurposeV2`): the General Purpose tier on
//! Elastic SAN storage. An instance moves to or from it with a PATCH, except inside a
//! failover group: Azure documents that such a change "isn't supported" for a member of a
//! group ("first delete the failover group before modifying either replica, and then
//! re-create the failover group after the change takes effect").

use crate::arm_error::ArmError;
use crate::world::{Instance, World};

/// Checks a change of `inst` to `next_gen`: only a General Purpose instance can be Next-gen,
/// and no member of a failover group may change it.
pub(crate) fn check_next_gen_change(world: &World, inst: &Instance, next_gen: bool) -> Result<(), ArmError> {
    if next_gen && !inst.tier.eq_ignore_ascii_case("GeneralPurpose") {
        return Err(ArmError::bad_request(
            "InvalidParameterValue",
            format!(
                "Managed instance '{}' is {}; only a General Purpose instance can use Next-gen General Purpose.",
                inst.name, inst.tier
            ),
        ));
    }
    if let Some(group) = world.group_of(&inst.id) {
        // The REST specs list no code for this case (contract/error-codes.txt, `emulator`):
        // the emulator names it after the limitation; the message is the documented one.
        return Err(ArmError::bad_request(
            "ManagedInstanceInFailoverGroupNextGenChangeNotSupported",
            format!(
                "Changing the service tier to, or from, the Next-gen General Purpose tier isn't supported for managed instance '{}' in failover group '{}'. Delete the failover group before modifying either replica, and re-create it after the change takes effect.",
                inst.name, group.name
            ),
        ));
    }
    Ok(())
}
