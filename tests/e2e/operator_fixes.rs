//! Issue 13's operator fixes: path parameters are read against the parameter file's folder
//! (the quick start works from any directory); a rehearsal says what it runs on (its own
//! estate file, not the demo estate) and where an abandoned operation is to be checked (the
//! emulator, not Azure).

use std::path::{Path, PathBuf};

use crate::common::{Sandbox, code, stderr};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_path_parameter_is_read_against_the_parameter_files_folder() {
    let sb = Sandbox::new();
    // The quick start, from the sandbox rather than the repository: the parameter file names
    // the password file relative to itself.
    let rb = root().join("runbooks/change-primary-region.yaml");
    let params = root().join("examples/change-primary-region.yaml");
    let out = sb.run(&[
        "run",
        rb.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "--sim",
        "--auto-approve",
    ]);
    assert_eq!(
        code(&out),
        0,
        "the quick start from another directory: {}",
        stderr(&out)
    );
    let run = sb.last_run_id();
    let stored: String = sb
        .sql()
        .query_row("SELECT params FROM runs WHERE id = ?1", [&run], |r| r.get(0))
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let file = stored["admin_password_file"].as_str().unwrap();
    assert!(Path::new(file).is_absolute(), "stored as an absolute path: {file}");
    assert_eq!(
        std::fs::canonicalize(file).unwrap(),
        std::fs::canonicalize(root().join("examples/sim-admin-password.txt")).unwrap()
    );

    // `--set` gives a path relative to the current directory.
    std::fs::write(sb.path("pw.txt"), "Sandbox-Passw0rd!\n").unwrap();
    let out = sb.run(&[
        "run",
        rb.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "--set",
        "admin_password_file=pw.txt",
        "--sim",
        "--auto-approve",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = sb.last_run_id();
    let stored: String = sb
        .sql()
        .query_row("SELECT params FROM runs WHERE id = ?1", [&run], |r| r.get(0))
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        std::fs::canonicalize(stored["admin_password_file"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(sb.path("pw.txt")).unwrap()
    );
}

#[test]
fn a_rehearsal_names_its_estate_and_a_forced_cancel_points_at_the_emulator() {
    let sb = Sandbox::new();
    let estate = root().join("examples/estate-unpaired.yaml");
    let rb = root().join("runbooks/configure-failover-group.yaml");
    let params = root().join("examples/configure-failover-group.yaml");
    let out = sb.run_env(
        &[
            "run",
            rb.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
            "--sim",
            "--sim-estate",
            estate.to_str().unwrap(),
            "--auto-approve",
        ],
        &[("FOGBOOK_FAILPOINTS", "after-start:create-group")],
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("(estate {},", estate.display())) && !err.contains("demo estate"),
        "names the estate it was given: {err}"
    );
    let run = sb.last_run_id();
    let forced = sb.run(&["cancel", &run, "--by", "dave", "--force", "--reason", "drill"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    let err = stderr(&forced);
    assert!(
        err.contains("abandoned the cloud operation of step `create-group`")
            && err.contains("check its outcome in the emulator")
            && !err.contains("in Azure"),
        "{err}"
    );
}
