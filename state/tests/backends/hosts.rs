//! Stores on one throwaway PostgreSQL server, each a "host" of its own (every process on
//! every host opens its own `Store`), and the machine's clock, which the server's follows.

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use fogbook_state::Store;
use fogbook_state::pg::{PgUrl, StoreUrl};
use fogbook_testpg::TestPostgres;

/// The test machine's clock in ms after the epoch (the database server runs on it too).
pub(crate) fn real_now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// `url`, which must be a `postgres://` URL, parsed as the store parses `--db`.
pub(crate) fn pg_url(url: &str) -> PgUrl {
    let StoreUrl::Postgres(url) = StoreUrl::from_str(url).unwrap() else {
        unreachable!("a PostgreSQL URL")
    };
    url
}

/// A new store on `server`: another host. Its leases go by the server's clock.
pub(crate) fn host(server: &TestPostgres) -> Store {
    Store::open_url(&StoreUrl::from_str(&server.url()).unwrap()).unwrap()
}
