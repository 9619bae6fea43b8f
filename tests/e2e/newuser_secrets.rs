//! A new user's finding (session 6): the PostgreSQL password given with `--db` was printed in
//! clear in every "next command" hint. A hint shows the URL with its password as `***`, and
//! says once that the printed commands need the real URL (or `FOGBOOK_DB`).

use std::net::TcpListener;

use crate::common::{Sandbox, code, stderr, stdout};

const SECRET: &str = "Sup3rSecretPw-4711";

#[test]
fn a_password_given_with_db_appears_in_no_hint() {
    let sb = Sandbox::new();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://fogbook:{SECRET}@127.0.0.1:{port}/fogbook?sslmode=disable&connect_timeout=5");
    let local = sb.dir.path().display().to_string();
    for args in [
        vec!["runs"],
        vec!["approvals"],
        vec!["status", "0190a0a0-0000-7000-8000-000000000000"],
        vec!["resume", "0190a0a0-0000-7000-8000-000000000000"],
    ] {
        let mut full = vec!["--db", url.as_str()];
        full.extend(args.iter().copied());
        let out = sb.run_env(&full, &[("FOGBOOK_LOCAL_DIR", &local)]);
        let (out_text, err_text) = (stdout(&out), stderr(&out));
        assert_eq!(code(&out), 6, "{args:?}: {err_text}");
        assert!(
            !out_text.contains(SECRET),
            "{args:?} printed the password on stdout: {out_text}"
        );
        assert!(
            !err_text.contains(SECRET),
            "{args:?} printed the password on stderr: {err_text}"
        );
        // The hint still names the store it was given, masked, and says how to run it.
        assert!(
            err_text.contains("--db 'postgres://fogbook:***@127.0.0.1"),
            "{args:?}: {err_text}"
        );
        assert!(err_text.contains("FOGBOOK_DB"), "{args:?}: {err_text}");
    }
}
