//! Read-only commands: `status`, `runs`, `history`, `report`, `audit verify`.
//!
//! JSON output uses the serializable rows of the state crate wrapped in a document with a
//! `schema_version`; text output is for people.

mod drive;
mod history;
mod run_report;
mod runs;
mod shared;
mod status;
mod verify;

pub(crate) use drive::{Drive, drive_of_run, lease_clock_now, set_stall_json};
pub(crate) use history::history;
pub(crate) use run_report::report;
pub(crate) use runs::runs;
pub(crate) use shared::next_after_failure;
pub(crate) use status::status;
pub(crate) use verify::verify;
