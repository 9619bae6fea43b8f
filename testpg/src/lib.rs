//! A throwaway PostgreSQL server for fogbook's tests.
//!
//! [`TestPostgres::start`] finds the PostgreSQL server binaries (the Debian package
//! `postgresql`: `/usr/lib/postgresql/<major>/bin/initdb` and `pg_ctl`), creates a cluster in
//! a new temp dir with `initdb`, starts it with `pg_ctl` on a free port of 127.0.0.1 (it
//! listens on loopback only; its unix socket lives in the temp dir), creates a database and
//! hands out a `postgres://` URL with a password (SCRAM over TCP, as in production).
//! Dropping the value stops the server and removes the temp dir.
//!
//! Invariants:
//! - no system-wide server, port or socket is ever used: every server is private to one
//!   [`TestPostgres`] value;
//! - when the tests run as root, every server program runs as the unprivileged `postgres`
//!   user (`initdb` refuses root), through `runuser`, with the temp dir given to that user;
//! - missing binaries are an error naming the package and `scripts/test`, which installs it.
//!
//! [`TestProxy`] stands between a client and a server on loopback and can stop forwarding
//! without closing anything (a network partition as the client sees it), then heal.
//!
//! This crate is a dev-dependency only; nothing here is built into fogbook.

mod binaries;
mod error;
mod proxy;
mod server;
mod tls;

pub use error::TestPgError;
pub use proxy::TestProxy;
pub use server::TestPostgres;
