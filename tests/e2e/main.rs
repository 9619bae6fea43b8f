#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the `fogbook` binary: real processes, a temporary state file,
//! SIGKILL at chosen points, and checks made from outside (the effect file, the database,
//! the audit trail).

mod approvals;
mod audit;
mod bad_input;
mod bench_cloud;
mod browser;
mod cancel;
mod cli;
mod colour;
mod common;
mod credential;
mod docs_paths;
mod drift_check;
mod durability;
mod exit_codes;
mod first_use;
mod fleet;
mod fleet_page;
mod fleet_window;
mod frozen_driver;
mod help;
mod kill_matrix;
mod lease_lock;
mod notify;
mod plan;
mod postgres;
mod preflight_permissions;
mod procedures;
mod rehearsal;
mod rehearsal_race;
mod repair;
mod report_html;
mod schedules;
mod sdk_bodies;
mod secrets;
mod seed_runbooks;
mod signals;
mod sim_serve;
mod status;
mod store_messages;
mod store_trail;
mod worker;
