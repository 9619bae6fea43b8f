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

    // Nor is a run continued without one: approved, resumed without a token, it stays as it
    // was and nothing is sent.
    let run = sb.last_run_id();
    sb.run(&["approve", &run, "approve", "--by", "tester"]);
    let out = sb.run(&["--arm-endpoint", &azure.url, "resume", &run]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("was not continued"), "{}", stderr(&out));
    assert_eq!(sb.run_status(&run), "waiting");
    assert!(crate::seed_runbooks::journal(&azure.url).is_empty(), "nothing sent");
}

const LOCKED: &str = r#"runbook: locked
version: 1
params:
  ok: { type: bool, default: false }
  touch: { type: bool, default: false }
  out: { type: string }
locks: ["fog/shared"]
steps:
  - id: change
    uses: command
    when: "${{ params.touch }}"
    with:
      program: sh
      args: ["-c", "echo changed >> \"$OUT\""]
      env: { OUT: "${{ params.out }}" }
      on_ambiguous: rerun
  - id: check
    uses: assert
    with:
      that: "${{ params.ok }}"
      message: the check failed
"#;

/// A run that fails before any step that changes something started releases its locks (the
/// next run is not refused); one that changed something keeps them, and the refusal of the
/// next run names the holder, its status, where it failed, its windows and the ways out.
#[test]
fn a_failed_run_keeps_its_locks_only_if_it_changed_something() {
    let sb = Sandbox::new();
    let rb = sb.write("locked.yaml", LOCKED);
    let rb = rb.to_str().unwrap();
    let out_file = sb.path("effects.txt");
    let out_set = format!("out={}", out_file.display());

    let out = sb.run(&["run", rb, "--set", &out_set]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let untouched = sb.last_run_id();
    assert!(stderr(&out).contains("locks are released"), "{}", stderr(&out));
    // The failure is printed once per stream, and the steps table keeps its shape.
    assert_eq!(stderr(&out).matches("the check failed").count(), 1, "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("the check failed").count(), 1, "{}", stdout(&out));
    let row = stdout(&out)
        .lines()
        .find(|l| l.trim_start().starts_with("check "))
        .unwrap()
        .to_owned();
    assert!(row.trim_end().ends_with("AssertionFailed"), "{row}");

    // Not refused: the failed run changed nothing.
    let out = sb.run(&["run", rb, "--set", &out_set, "--set", "touch=true"]);
    assert_eq!(code(&out), 1, "fails at its check, not at the lock: {}", stderr(&out));
    let holder = sb.last_run_id();
    assert_ne!(holder, untouched);
    assert_eq!(sb.lines_of("effects.txt"), ["changed"]);

    // Refused: the last one changed something and keeps the lock.
    let out = sb.run(&["run", rb, "--set", &out_set, "--set", "ok=true"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    for part in [
        format!("locked by run {holder}"),
        "status failed".to_owned(),
        "failed at step `check`".to_owned(),
        "no window is open".to_owned(),
        format!("fogbook resume {holder} --retry-failed"),
        format!("fogbook cancel {holder}"),
    ] {
        assert!(err.contains(&part), "`{part}` in: {err}");
    }
    assert_eq!(sb.lines_of("effects.txt"), ["changed"], "the refused run did nothing");

    // The released run, retried, takes its lock again and is refused while another holds it.
    let out = sb.run(&["resume", &untouched, "--retry-failed"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains(&holder), "{}", stderr(&out));
}
