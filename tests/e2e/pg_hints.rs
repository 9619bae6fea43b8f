//! Issue 17: a PostgreSQL store that fails (exit 6) gets a hint about a server (is it
//! running and reachable, the URL's credentials, `FOGBOOK_PG_TIMEOUT`), not about a file
//! (permissions, disk space) as a SQLite store does.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::{Sandbox, code, stderr};
use crate::pg_backend::OnPostgres;

/// What the PostgreSQL hint says, and what only the SQLite one does.
fn assert_postgres_hint(err: &str) {
    assert!(
        err.contains("hint: the PostgreSQL state store (--db) could not be used"),
        "{err}"
    );
    assert!(err.contains("is the server running and reachable"), "{err}");
    assert!(err.contains("FOGBOOK_PG_TIMEOUT"), "{err}");
    assert!(!err.contains("disk space"), "{err}");
    // The next command it names runs as written (`status` needs a run).
    assert!(err.contains("`fogbook runs` shows where each run is"), "{err}");
}

/// A port of 127.0.0.1 where nothing listens (bound, then let go).
fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_postgres_url_where_nothing_listens_gets_the_postgres_hint() {
    let sb = Sandbox::new();
    let url = format!(
        "postgres://fogbook:secret@127.0.0.1:{}/fogbook?sslmode=disable&connect_timeout=5",
        dead_port()
    );
    let out = sb.run_env(
        &["runs"],
        &[
            ("FOGBOOK_DB", &url),
            ("FOGBOOK_LOCAL_DIR", &sb.dir.path().display().to_string()),
        ],
    );
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert_postgres_hint(&stderr(&out));

    // The same command on a SQLite file that is not a database keeps the file's hint.
    let file = sb.write("not-a-db.sqlite", "not a database, just text\n");
    let out = sb.run_env(&["runs"], &[("FOGBOOK_DB", &file.display().to_string())]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("disk space"), "{}", stderr(&out));
}

#[test]
fn a_postgres_server_stopped_mid_command_gets_the_postgres_hint() {
    let OnPostgres { db, server } = OnPostgres::start("stopped");
    // The driver waits in the foreground at the approval `gate`, renewing its lease.
    let (mut driver, _) = db.driver_at_the_gate(&[("FOGBOOK_PG_TIMEOUT", "1s"), ("FOGBOOK_LEASE_TTL", "3s")]);

    // The server stops (and its data directory goes): the driver's next round trip fails.
    drop(server);
    let start = Instant::now();
    while driver.child().try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            driver.kill();
            panic!("the driver did not stop once its database was gone");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = driver.wait_with_output();
    let err = stderr(&out);
    // Which of the driver's round trips fails first decides the exit code: its next read or
    // write (the store failed, 6), or, when the lease had little left (a renewal delayed
    // on a loaded machine), the heartbeat's renewal, after which the driver stops on its
    // lease (4: it lost the lease and sends nothing more). Either way it says the database
    // failed, never that it stalled, and the hint is the server's.
    match code(&out) {
        6 => {}
        4 => assert!(
            err.contains("its lease could not be renewed before it expired, because the state database failed"),
            "{err}"
        ),
        other => panic!("the driver ended with {other}: {err}"),
    }
    assert!(!err.contains("stopped or stalled"), "{err}");
    assert_postgres_hint(&err);
}

/// A server that answers and refuses the login (a wrong password, a database that does not
/// exist) gets a hint about the URL's credentials and names, not about a server to wait for.
#[test]
fn a_refused_login_gets_a_hint_about_the_url_not_the_server() {
    let server = fogbook_testpg::TestPostgres::start();
    let sb = Sandbox::new();
    let local = sb.dir.path().display().to_string();
    let good = server.url();
    let wrong_password = good.replacen(server.password(), "not-the-password", 1);
    let no_database = server.url_for("fogbok");
    for (url, why) in [
        (wrong_password, "(the password or the role was refused)"),
        (no_database, "(no such database)"),
    ] {
        let out = sb.run_env(&["runs"], &[("FOGBOOK_DB", &url), ("FOGBOOK_LOCAL_DIR", &local)]);
        assert_eq!(code(&out), 6, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "hint: the PostgreSQL server answered and refused this connection {why}"
            )),
            "{err}"
        );
        assert!(err.contains("must be percent-encoded"), "{err}");
        assert!(!err.contains("is the server running"), "{err}");
    }
}
