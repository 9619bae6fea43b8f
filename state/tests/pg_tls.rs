#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS to PostgreSQL (issue 17): `sslmode` is honoured, with rustls verifying the server's
//! certificate; a server without TLS is refused under `require` with a message that says
//! what to do.

mod backends;
use backends::pg_url;

use fogbook_state::pg::{self, PgError};
use fogbook_testpg::TestPostgres;

fn connect_err(url: &str) -> PgError {
    match pg::connect(&pg_url(url)) {
        Ok(_) => panic!("{url}: connected"),
        Err(e) => e,
    }
}

/// Whether the connection's own session is encrypted, as the server sees it.
fn encrypted(client: &mut postgres::Client) -> bool {
    client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

/// `require` against a server without TLS fails, naming the cause and both ways out, with
/// the password masked; `prefer` falls back to plain TCP there and `disable` uses it.
#[test]
fn require_against_a_server_without_tls_fails_with_a_clear_message() {
    let server = TestPostgres::start();
    let url = server.url().replace("sslmode=disable", "sslmode=require");
    let err = connect_err(&url);
    assert!(matches!(err, PgError::TlsRefused { .. }), "{err:?}");
    let message = err.to_string();
    let shown = format!(
        "postgres://postgres:***@127.0.0.1:{}/fogbook?sslmode=require",
        server.port()
    );
    assert_eq!(
        message,
        format!(
            "the PostgreSQL server at {shown} does not accept TLS connections, and the sslmode of the \
             URL demands TLS: turn TLS on at the server (ssl = on), or, on a trusted network only, connect \
             with sslmode=disable"
        )
    );
    assert!(!message.contains(server.password()));

    let prefer = server.url().replace("sslmode=disable", "sslmode=prefer");
    let mut client = pg::connect(&pg_url(&prefer)).unwrap();
    assert!(!encrypted(&mut client), "prefer falls back to plain TCP");
    let mut client = pg::connect(&pg_url(&server.url())).unwrap();
    assert!(!encrypted(&mut client), "disable is plain TCP");
}

/// Against a server with TLS: `require` and `prefer` encrypt, verifying the certificate
/// against `sslrootcert`; without that root the certificate is refused (not silently
/// trusted); `disable` stays plain.
#[test]
fn tls_is_used_and_the_server_certificate_verified() {
    let server = TestPostgres::start_with_tls();
    let ca = server.ca_cert().unwrap().display().to_string();
    for mode in ["require", "verify-full", "prefer"] {
        let url = server
            .url()
            .replace("sslmode=disable", &format!("sslmode={mode}&sslrootcert={ca}"));
        let mut client = pg::connect(&pg_url(&url)).unwrap_or_else(|e| panic!("{mode}: {e}: {:?}", e));
        assert!(encrypted(&mut client), "{mode} encrypts");
    }
    let mut plain = pg::connect(&pg_url(&server.url())).unwrap();
    assert!(!encrypted(&mut plain), "disable is plain TCP");

    let untrusted = server.url().replace("sslmode=disable", "sslmode=require");
    let err = connect_err(&untrusted);
    assert!(matches!(err, PgError::Connect { .. }), "{err:?}");
    let causes = format!("{:?}", std::error::Error::source(&err));
    assert!(
        causes.contains("UnknownIssuer"),
        "the unknown CA is the cause: {causes}"
    );

    let missing = server
        .url()
        .replace("sslmode=disable", "sslmode=require&sslrootcert=/nonexistent/ca.pem");
    let err = connect_err(&missing);
    assert!(
        err.to_string().starts_with(
            "cannot set up TLS for PostgreSQL: cannot read the certificates of sslrootcert=/nonexistent/ca.pem"
        ),
        "{err}"
    );
}
