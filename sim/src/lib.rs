//! fogbook-sim: a local Azure Resource Manager for managed instances, failover groups and
//! networking, served over real HTTP (or HTTPS) on loopback.
//!
//! It is the other side of the wire, not a mock: it has its own wire structs with Azure's field
//! names (api-version 2025-01-01, also 2023-08-01 and 2025-08-01-preview for Microsoft.Sql, and
//! any recent Microsoft.Network version), answers long-running operations the way ARM does
//! (202 with `Azure-AsyncOperation`, `Location` and `Retry-After`), enforces the failover-group
//! rules with Azure's error codes, throttles per subscription, injects faults deterministically,
//! and journals every accepted mutating request.
//!
//! Main types: [`SimConfig`] (with an [`Estate`] read from YAML and optional [`FaultConfig`]),
//! [`start`], which returns a running [`SimHandle`]; [`SeenRequest`], what an in-process
//! [`RequestObserver`] receives.
//!
//! Invariants:
//! - time is simulated ([`SimConfig::time_scale`] plus `POST /_sim/clock/advance`); operations
//!   complete lazily when a request observes the clock past their end, so no timers run;
//! - the world is only changed under one lock, which is never held across an `.await`;
//! - with a state file, every accepted mutation is saved (temporary file and rename) before the
//!   response is sent;
//! - this crate depends on no other fogbook crate.

mod arm_error;
mod clock;
mod config;
mod durations;
mod emulator;
mod error;
mod estate;
mod faults;
mod ids;
mod journal;
mod lro;
mod persist;
mod regions;
mod requests;
mod routes;
mod rules;
mod server;
mod tenants;
mod throttle;
mod tier;
mod wire;
mod world;

pub use config::{SimConfig, TlsFiles};
pub use error::SimError;
pub use estate::Estate;
pub use faults::{FaultConfig, FaultRule};
pub use persist::saved_databases;
pub use requests::{RequestObserver, SeenRequest};
pub use server::{SimHandle, start};
