#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What `--db` / `FOGBOOK_DB` accepts (issue 17): SQLite paths and `sqlite:` URLs,
//! PostgreSQL URLs with their TLS mode, errors that say what is accepted, and passwords that
//! are never printed.

use std::path::PathBuf;
use std::str::FromStr;

use fogbook_state::pg::{StoreUrl, StoreUrlError, TlsMode};

fn sqlite(input: &str) -> PathBuf {
    match StoreUrl::from_str(input) {
        Ok(StoreUrl::Sqlite(path)) => path,
        other => panic!("{input}: expected a SQLite path, got {other:?}"),
    }
}

fn postgres(input: &str) -> fogbook_state::pg::PgUrl {
    match StoreUrl::from_str(input) {
        Ok(StoreUrl::Postgres(url)) => url,
        other => panic!("{input}: expected a PostgreSQL URL, got {other:?}"),
    }
}

fn refused(input: &str) -> StoreUrlError {
    StoreUrl::from_str(input).expect_err(input)
}

#[test]
fn plain_paths_and_sqlite_urls_are_sqlite_files() {
    for (input, path) in [
        ("fogbook.db", "fogbook.db"),
        ("/var/lib/fogbook/state.db", "/var/lib/fogbook/state.db"),
        ("./a dir/state.db", "./a dir/state.db"),
        ("sqlite:fogbook.db", "fogbook.db"),
        ("sqlite:/abs/state.db", "/abs/state.db"),
        ("sqlite://rel/state.db", "rel/state.db"),
        ("sqlite:///abs/state.db", "/abs/state.db"),
    ] {
        assert_eq!(sqlite(input), PathBuf::from(path), "{input}");
    }
    assert_eq!(StoreUrl::from_str("sqlite:x.db").unwrap().to_string(), "x.db");
}

#[test]
fn postgres_urls_carry_their_tls_mode() {
    for (input, tls) in [
        ("postgres://fog@db.example.com/fogbook", TlsMode::Prefer),
        (
            "postgresql://fog@db.example.com:6432/fogbook?sslmode=disable",
            TlsMode::Disable,
        ),
        ("postgres://fog@db.example.com/fogbook?sslmode=prefer", TlsMode::Prefer),
        (
            "postgres://fog@db.example.com/fogbook?sslmode=require",
            TlsMode::Require,
        ),
        (
            "postgres://fog@db.example.com/fogbook?sslmode=verify-ca",
            TlsMode::Require,
        ),
        (
            "postgres://fog@db.example.com/fogbook?sslmode=verify-full",
            TlsMode::Require,
        ),
        (
            "POSTGRES://fog@db.example.com/fogbook?sslmode=require&application_name=w1",
            TlsMode::Require,
        ),
    ] {
        assert_eq!(postgres(input).tls(), tls, "{input}");
    }
    let url = postgres("postgres://fog@db.example.com/fogbook?sslmode=verify-full&sslrootcert=%2Fetc%2Froot%20ca.pem");
    assert_eq!(url.root_cert(), Some(std::path::Path::new("/etc/root ca.pem")));
}

#[test]
fn refusals_say_what_is_accepted() {
    for (input, expected) in [
        ("", StoreUrlError::Empty),
        ("  ", StoreUrlError::Empty),
        ("sqlite:", StoreUrlError::EmptySqlitePath),
        ("sqlite://", StoreUrlError::EmptySqlitePath),
        (
            "mysql://root@localhost/fog",
            StoreUrlError::UnknownScheme {
                scheme: "mysql".to_owned(),
            },
        ),
        ("host=db.example.com dbname=fog user=fog", StoreUrlError::KeyValue),
        ("dbname=fog", StoreUrlError::KeyValue),
    ] {
        assert_eq!(refused(input), expected, "{input:?}");
    }
    let unknown = refused("mysql://root@localhost/fog").to_string();
    assert_eq!(
        unknown,
        "unknown store URL scheme `mysql`: --db (FOGBOOK_DB) takes a SQLite file path, `sqlite:PATH`, or \
         `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=require`"
    );
    let mode = refused("postgres://fog:s3cret@db.example.com/fog?sslmode=allow").to_string();
    assert_eq!(
        mode,
        "invalid PostgreSQL URL postgres://fog:***@db.example.com/fog?sslmode=allow: sslmode `allow` is not one \
         of disable, prefer, require, verify-ca, verify-full"
    );
    let option = refused("postgres://fog:s3cret@db.example.com/fog?colour=blue").to_string();
    assert!(
        option.starts_with("invalid PostgreSQL URL postgres://fog:***@db.example.com/fog?colour=blue: ")
            && option.contains("colour"),
        "{option}"
    );
    let no_host = refused("postgres:///fog").to_string();
    assert!(no_host.contains("names no host"), "{no_host}");
    // An `@` left in the password: the client would take `ss@db.example.com` for the host.
    let at = refused("postgres://fog:p@ss@db.example.com/fog?sslmode=disable").to_string();
    assert!(
        at.contains("an `@` that is not percent-encoded: write it as `%40`") && !at.contains("p@ss"),
        "{at}"
    );
    postgres("postgres://fog:p%40ss@db.example.com/fog?sslmode=disable");
}

/// Display, Debug and every refusal mask the password, whether it is in the user info
/// or a `password=` parameter.
#[test]
fn passwords_are_never_printed() {
    let secret = "s3cr%40t!";
    for (input, shown) in [
        (
            format!("postgres://fog:{secret}@db.example.com:5432/fogbook?sslmode=require"),
            "postgres://fog:***@db.example.com:5432/fogbook?sslmode=require",
        ),
        (
            format!("postgresql://fog@db.example.com/fogbook?password={secret}&sslmode=disable"),
            "postgresql://fog@db.example.com/fogbook?password=***&sslmode=disable",
        ),
        (
            format!("postgres://fog:{secret}@h1:5432,h2:5433/fogbook"),
            "postgres://fog:***@h1:5432,h2:5433/fogbook",
        ),
        (
            "postgres://fog@db.example.com/fogbook".to_owned(),
            "postgres://fog@db.example.com/fogbook",
        ),
    ] {
        let url = StoreUrl::from_str(&input).unwrap();
        assert_eq!(url.to_string(), shown);
        let debug = format!("{url:?}");
        assert!(debug.contains(shown) && !debug.contains(secret), "{debug}");
    }
    let bad = refused(&format!("postgres://fog:{secret}@db.example.com/fog?sslmode=nope"));
    assert!(
        !bad.to_string().contains(secret) && !format!("{bad:?}").contains(secret),
        "{bad}"
    );
}
