//! How long each operation takes, in simulated seconds.
//!
//! The figures are the order of magnitude Azure documents or users report: an instance create
//! takes hours, a scale or update-policy change tens of minutes to hours, seeding is a
//! size-of-data copy (faster between paired regions), a planned failover about a minute.

use crate::regions;

/// Creating an instance.
pub(crate) const INSTANCE_CREATE: f64 = 4.0 * 3600.0;
/// Changing vCores or storage within a tier.
pub(crate) const INSTANCE_SCALE: f64 = 60.0 * 60.0;
/// Changing the service tier (a new virtual cluster node set).
pub(crate) const INSTANCE_TIER_CHANGE: f64 = 2.0 * 3600.0;
/// Changing the update policy (`databaseFormat`).
pub(crate) const INSTANCE_UPDATE_POLICY: f64 = 45.0 * 60.0;
/// Deleting an instance.
pub(crate) const INSTANCE_DELETE: f64 = 30.0 * 60.0;
/// Changing a failover group's endpoints.
pub(crate) const GROUP_UPDATE: f64 = 60.0;
/// Deleting a failover group.
pub(crate) const GROUP_DELETE: f64 = 2.0 * 60.0;
/// A planned failover (full synchronisation, then the role switch).
pub(crate) const PLANNED_FAILOVER: f64 = 60.0;
/// A forced failover (no synchronisation).
pub(crate) const FORCED_FAILOVER: f64 = 30.0;
/// Fixed cost of establishing a group before data moves.
pub(crate) const SEEDING_SETUP: f64 = 10.0 * 60.0;
/// Seeding rate between paired regions, GB per hour.
pub(crate) const SEEDING_GB_PER_HOUR_PAIRED: f64 = 250.0;
/// Seeding rate between other regions, GB per hour.
pub(crate) const SEEDING_GB_PER_HOUR_UNPAIRED: f64 = 100.0;

/// Seeding time for `total_gb` of data from `from` to `to`.
pub(crate) fn seeding(total_gb: f64, from: &str, to: &str) -> f64 {
    let rate = if regions::are_paired(from, to) {
        SEEDING_GB_PER_HOUR_PAIRED
    } else {
        SEEDING_GB_PER_HOUR_UNPAIRED
    };
    SEEDING_SETUP + total_gb.max(0.0) / rate * 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_is_proportional_and_faster_between_pairs() {
        assert_eq!(seeding(0.0, "eastus", "westus"), SEEDING_SETUP);
        assert_eq!(seeding(500.0, "eastus", "westus"), SEEDING_SETUP + 2.0 * 3600.0);
        assert_eq!(seeding(500.0, "westus", "northeurope"), SEEDING_SETUP + 5.0 * 3600.0);
        assert!(seeding(1000.0, "eastus", "westus") > seeding(500.0, "eastus", "westus"));
    }
}
