//! The store's conformance tests run on both backends: each test body is written once, as
//! `async fn NAME(backend: Backend)`, and `on_both_backends!(NAME, …)` makes two tests of
//! it, `sqlite::NAME` (a new file in a temp dir) and `postgres::NAME` (a throwaway
//! PostgreSQL server of its own, `fogbook_testpg`).
//!
//! It is the state tests' one fixture: the runs and steps they write are built in `runs.rs`,
//! and stores on a PostgreSQL server, one per "host", in `hosts.rs`.

#![allow(dead_code, reason = "each test binary uses what it needs")]

mod hosts;
mod runs;

#[allow(unused_imports, reason = "each test binary uses what it needs")]
pub(crate) use hosts::{host, pg_url, real_now};
#[allow(unused_imports, reason = "each test binary uses what it needs")]
pub(crate) use runs::{complete, fleet, leased, names, run, start};

use std::str::FromStr;

use fogbook_state::Store;
use fogbook_state::pg::StoreUrl;
use fogbook_testpg::TestPostgres;

/// Which backend a test body runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// What keeps a store's database alive: its temp dir, or its server.
pub(crate) enum Guard {
    Sqlite(tempfile::TempDir),
    Postgres(TestPostgres),
}

impl Guard {
    /// The location of the database (a SQLite path, or the PostgreSQL URL).
    pub(crate) fn url(&self) -> StoreUrl {
        match self {
            Self::Sqlite(dir) => StoreUrl::Sqlite(dir.path().join("s.db")),
            Self::Postgres(server) => StoreUrl::from_str(&server.url()).unwrap(),
        }
    }

    /// The count a `SELECT count(*) …` statement gives, read straight from the database
    /// (from outside the store).
    pub(crate) fn count(&self, sql: &str) -> i64 {
        match self {
            Self::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Self::Postgres(server) => {
                let (url, sql) = (server.url(), sql.to_owned());
                // The blocking client cannot run on the test's runtime thread.
                std::thread::spawn(move || {
                    let mut client = fogbook_state::pg::connect(&pg_url(&url)).unwrap();
                    client.query_one(&sql, &[]).unwrap().get::<_, i64>(0)
                })
                .join()
                .unwrap()
            }
        }
    }

    /// A second store on the same database (another process or host would open its own).
    /// The bodies pass times of their own (seconds after the epoch) and step them through
    /// lease expiries, so on PostgreSQL leases follow those times, not the server's clock
    /// (which `pg_worker_clock.rs` tests).
    pub(crate) fn reopen(&self) -> Store {
        let store = Store::open_url(&self.url()).unwrap();
        store.use_caller_clock_for_leases();
        store
    }
}

/// A new, empty store on `backend`.
pub(crate) fn open_store(backend: Backend) -> (Guard, Store) {
    let guard = match backend {
        Backend::Sqlite => Guard::Sqlite(tempfile::tempdir().unwrap()),
        Backend::Postgres => Guard::Postgres(TestPostgres::start()),
    };
    let store = guard.reopen();
    (guard, store)
}

/// Two tests of each named body: `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::backends::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::backends::Backend::Postgres).await;
                }
            )+
        }
    };
}
