//! No run without a credential: a run with Azure steps whose credential gives no token is
//! refused before anything is written (exit 2, the database byte-identical, no lock), and
//! `--auth auto` names every source it tried.

use std::path::{Path, PathBuf};

use crate::common::{Sandbox, code, stderr, stdout};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file in `dir` with its bytes (the database, its WAL and shared memory).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_missing_credential_creates_no_run_and_takes_no_lock() {
    let sb = Sandbox::new();
    let rb = root().join("runbooks/failover.yaml");
    let params = root().join("examples/failover.yaml");
    let (rb, params) = (rb.to_str().unwrap(), params.to_str().unwrap());
    // A database with history: one finished rehearsal.
    let out = sb.run(&["run", rb, "--params", params, "--sim", "--auto-approve"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = files(sb.dir.path());

    let azure = crate::seed_runbooks::start_sim(&root().join("examples/estate.yaml"), None);
    let out = sb.run(&["--arm-endpoint", &azure.url, "run", rb, "--params", params]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("error:").count(), 1, "the error is printed once: {err}");
    assert!(stdout(&out).is_empty(), "nothing on stdout: {}", stdout(&out));
    for source in [
        "FOGBOOK_ARM_TOKEN",
        "workload identity",
        "client secret",
        "managed identity",
        "developer tools",
    ] {
        assert!(err.contains(&format!("\n  {source}")), "`{source}` is named: {err}");
    }
    assert_eq!(files(sb.dir.path()), before, "the database is byte-identical");
    assert!(crate::seed_runbooks::journal(&azure.url).is_empty(), "nothing sent");

    // No lock was taken: the same run with a token is not refused.
    let out = sb.run_env(
        &["--arm-endpoint", &azure.url, "run", rb, "--params", params],
        &[("FOGBOOK_ARM_TOKEN", "t")],
    );
    assert_eq!(
        code(&out),
        3,
        "waits for its approval, not for a lock: {}",
        stderr(&out)
    );
}
