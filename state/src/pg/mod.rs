//! The PostgreSQL backend's foundations (issue 17): the store location a `--db` value names,
//! connecting with TLS (rustls), the PostgreSQL schema with its migrations, and the
//! placeholder rewriting that lets one SQL text serve both backends.
//!
//! The schema mirrors the SQLite one (`migrations.rs`) table for table and column for
//! column, with types chosen so one SQL text serves both: `BIGINT` for integers and
//! booleans, `TEXT`, identity columns where SQLite has `AUTOINCREMENT`. Runs and fleets also
//! carry `lease_epoch`, the fencing token every write of a driver is checked against.
//!
//! Workers on several hosts (`claim.rs`, `listen.rs`): runs are claimed `FOR UPDATE SKIP
//! LOCKED`, and the transactions that make work notify a channel idle workers listen on.
//!
//! Only this module touches the `postgres` client.

pub(crate) mod claim;
mod connect;
mod error;
mod floor;
pub(crate) mod listen;
mod prefetch;
#[cfg(test)]
mod round_trips;
mod schema;
mod session;
mod sql;
pub(crate) mod thread;
pub(crate) mod tx;
mod url;

pub use connect::connect;
pub use error::{PgError, refused_login};
pub use floor::{PgFloor, commit_floor, create_schema, drop_schema};
pub use listen::{WORK_CHANNEL, WorkListener};
pub use schema::{SCHEMA_VERSION, migrate, schema_version};
pub use session::{Limits, READERS_VAR, TIMEOUT_VAR};
pub use sql::postgres_placeholders;
pub use url::{PgUrl, StoreUrl, StoreUrlError, TlsMode};
