//! Fleets: one runbook over many targets with rate control (issue 18).
//!
//! [`file::parse`] reads a fleet file; [`resolve_query`] runs its estate query, if any,
//! once (the targets found are then stored with the fleet, so a resume never queries again); [`create_fleet`] pins it with its runbook and
//! resolved targets; [`drive_fleet`] is the fleet's durable driver. The driver holds the
//! fleet's lease, decides from the store alone (no memory survives a restart) which target
//! starts next, and starts it by creating its run and linking it in one transaction
//! (`Store::start_fleet_target`); each target's run is then driven by the ordinary
//! [`Engine::drive`](crate::Engine::drive). A driver killed at any moment is resumed by
//! another call of [`drive_fleet`]: started targets are re-driven (the runs resume), none
//! is started twice, and the running count never exceeds `max_concurrency` because it is
//! counted from the stored targets before each start.
//!
//! A fleet may have a maintenance window (its own, or that of the schedule that fired it):
//! outside it no target starts, the running ones finish, and the fleet waits, saying until
//! when; a worker drives it again once the window is open ([`drivable_fleets`]).

mod budget;
mod driver;
pub mod file;
mod query;
mod scheduled;
mod template;

pub(crate) use budget::request_priority;
pub use driver::{CreateFleet, FleetOutcome, WINDOW_WAIT, create_fleet, drive_fleet};
pub use file::{FleetFile, MaxErrors, RateControl, TargetQuery, parse};
pub use query::resolve_query;
pub use scheduled::{active_fleet_of, drivable_fleets, drive_for_worker, fire_decision, is_fleet_file};
