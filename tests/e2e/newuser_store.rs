//! A new user's finding (session 6): `store copy` into a PostgreSQL target that refuses TLS
//! said `sslmode=require` for a `verify-full` URL, and its hint spoke of `--db` and of files
//! although the store that failed was the copy's target (`FOGBOOK_COPY_TO`).

use std::path::PathBuf;

use fogbook_testpg::TestPostgres;

use crate::common::{Sandbox, code, stderr};

#[test]
fn a_copy_whose_target_refuses_tls_names_the_target_and_not_another_mode() {
    let sb = Sandbox::new();
    let rehearsal = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo-rehearsal.yaml");
    let journal = sb.path("journal.txt").display().to_string();
    let out = sb.run(&[
        "run",
        &rehearsal.display().to_string(),
        "--set",
        &format!("journal={journal}"),
    ]);
    assert_eq!(
        code(&out),
        3,
        "a source with a run waiting at its approval: {}",
        stderr(&out)
    );

    let server = TestPostgres::start();
    let target = server.url().replace("sslmode=disable", "sslmode=verify-full");
    let source = format!("sqlite:{}", sb.db().display());
    let out = sb.run_env(
        &["store", "copy", "--from", &source],
        &[
            ("FOGBOOK_COPY_TO", &target),
            ("FOGBOOK_LOCAL_DIR", &sb.dir.path().display().to_string()),
        ],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 6, "{err}");
    assert!(err.contains("does not accept TLS connections"), "{err}");
    assert!(err.contains("sslmode=verify-full"), "the mode the URL gave: {err}");
    assert!(!err.contains("sslmode=require"), "a mode the URL did not give: {err}");
    assert!(
        err.contains("hint: the copy's target (--to / FOGBOOK_COPY_TO)"),
        "{err}"
    );
    assert!(!err.contains("--db"), "{err}");
    assert!(!err.contains("disk space"), "{err}");
    assert!(!err.contains(server.password()), "{err}");
}
