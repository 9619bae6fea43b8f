//! The Azure Resource Manager client: authentication, pinned api-versions, correlation ids,
//! retries of transient faults, a per-subscription limiter and long-running operations.
//!
//! Main types: [`ArmClient`] (built from an [`ArmConfig`] by [`ArmClient::new`]), [`Secret`]
//! (a token that never prints), [`Pacer`] (how the client waits; tests replace it to move a
//! simulated clock instead of sleeping).
//!
//! Invariants:
//! - the bearer token lives only in a [`Secret`] and in a sensitive request header; it is
//!   never logged, never part of an error, an output or saved progress;
//! - every name that goes into a URL is validated (module `ids`) and percent-encoded as one path
//!   segment; polling URLs given by the server are only followed on the endpoint's origin;
//! - a non-idempotent request (a POST action) is never re-sent by the client once it may
//!   have reached the server; the activity resolves that case by reading state.

mod client;
mod config;
mod credential;
mod estimate;
pub(crate) mod http;
pub(crate) mod ids;
mod limiter;
pub(crate) mod lro;
mod pacer;
mod secret;
mod session;
mod shared_schedule;

pub use client::ArmClient;
pub use config::{ArmConfig, ArmSetupError, AuthChoice, Cloud};
pub use http::clients_built;
pub use limiter::{Priority, Rates};
pub use pacer::{Pacer, PauseReason, TokioPacer};
pub use secret::Secret;
pub(crate) use session::Session;

/// The api-version of every `Microsoft.Sql` request (managed instances, databases, failover
/// groups), docs/DESIGN.md §4 and docs/ARM.md §0.
pub const SQL_API_VERSION: &str = "2025-01-01";
/// The api-version of every `Microsoft.Network` request (virtual networks, peerings, NSGs).
pub const NETWORK_API_VERSION: &str = "2025-07-01";
/// The api-version used to read a subscription (its tenant).
pub const RESOURCES_API_VERSION: &str = "2022-12-01";
