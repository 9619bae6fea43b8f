//! Bad input changes nothing: every malformed runbook and parameter file of the corpus in
//! `engine/tests/bad_runbooks/` gives an error naming the place, exit code 2, and leaves the
//! state database byte-for-byte as it was. The messages themselves are snapshotted by the
//! engine's corpus test; here the binary's behaviour around them is checked.

use std::path::{Path, PathBuf};

use crate::common::{Sandbox, code, fixture, stderr};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("engine/tests/bad_runbooks")
}

/// The database file and its write-ahead log: name, length and a digest of the bytes. An
/// empty or absent WAL hold the same data, and `-shm` is only an index rebuilt from the WAL
/// (the test's own read-only connections leave both behind), so neither counts as a change.
fn db_bytes(sb: &Sandbox) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    for suffix in ["", "-wal"] {
        let p = PathBuf::from(format!("{}{suffix}", sb.db().display()));
        if let Ok(b) = std::fs::read(&p)
            && !(suffix == "-wal" && b.is_empty())
        {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            b.hash(&mut h);
            out.push((suffix.to_owned(), b.len(), h.finish()));
        }
    }
    out
}

fn sandbox_with_one_run() -> Sandbox {
    let sb = Sandbox::new();
    let out = sb.run(&["run", &fixture("window.yaml").display().to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    sb
}

#[test]
fn every_malformed_runbook_and_parameter_file_is_refused_without_a_trace() {
    let sb = sandbox_with_one_run();
    let before = db_bytes(&sb);
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let base = corpus().join("params-base.yaml");
    let mut checked = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name == "params-base.yaml" {
            continue;
        }
        let args: Vec<String> = if name.starts_with("params-") {
            vec![
                "run".into(),
                base.display().to_string(),
                "--params".into(),
                file.display().to_string(),
            ]
        } else {
            vec!["run".into(), file.display().to_string()]
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.run(&args);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{name}: {err}");
        assert!(err.contains(&name), "{name}: the error names the file: {err}");
        assert!(err.contains("error"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(db_bytes(&sb), before, "{name}: the database changed");
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} bad inputs in the corpus");
}

#[test]
fn validate_reports_every_error_of_every_file() {
    let sb = Sandbox::new();
    let files: Vec<String> = ["20-step-unknown-field.yaml", "23-duplicate-step-id.yaml"]
        .iter()
        .map(|f| corpus().join(f))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(files.len(), 2, "corpus files renamed?");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = sb.run(&args);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    for f in &files {
        let name = Path::new(f).file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name), "{name} reported: {err}");
    }
    assert!(!sb.db().exists(), "validate never creates a database");
}

#[test]
fn bad_command_lines_exit_2_and_create_nothing() {
    let sb = Sandbox::new();
    let window = fixture("window.yaml").display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["frobnicate"],
        vec!["run"],
        vec!["run", "does-not-exist.yaml"],
        vec!["run", &window, "--set", "no-equals-sign"],
        vec!["run", &window, "--set", "unknown_param=1"],
        vec!["run", &window, "--params", "missing-params.yaml"],
        vec!["status", "no-such-run"],
        vec!["runs", "--format", "csv"],
        vec!["run", &window, "--lease-ttl", "ten"],
        vec!["resume"],
    ];
    for args in cases {
        let out = sb.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?} says why");
        assert!(!sb.db().exists(), "{args:?} created the database");
    }
}

#[test]
fn commands_on_an_existing_database_refuse_unknown_runs_and_steps() {
    let sb = sandbox_with_one_run();
    let run = sb.last_run_id();
    let before = db_bytes(&sb);
    for args in [
        vec!["status", "nope"],
        vec!["resume", "nope"],
        vec!["approve", "nope", "x", "--by", "me"],
        vec!["approve", &run, "delete-group", "--by", "me"],
        vec!["approve", &run, "missing", "--by", "me"],
        vec!["history", "nope"],
        vec!["audit", "verify", "nope"],
    ] {
        let out = sb.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert_eq!(db_bytes(&sb), before, "{args:?} changed the database");
    }
}
