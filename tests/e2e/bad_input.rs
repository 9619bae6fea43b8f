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

/// Hostile values, generated: huge files and strings, NUL bytes, invalid UTF-8, names that
/// would escape a URL path, huge numbers, deep nesting. Each is refused with exit 2, no
/// panic, and the database untouched.
#[test]
fn hostile_values_are_refused_without_a_trace() {
    let sb = sandbox_with_one_run();
    let before = db_bytes(&sb);
    let base = std::fs::read_to_string(fixture("window.yaml")).unwrap();
    let instance_rb = "runbook: hostile\nversion: 1\nparams:\n  mi: { type: instance }\n  group: { type: name }\nsteps:\n  - id: a\n    uses: instance.get\n    with: { instance: \"${{ params.mi }}\" }\n";
    let rb_file = sb.write("instance.yaml", instance_rb);
    let mut cases: Vec<(String, Vec<u8>, Vec<String>)> = vec![
        (
            "ten-megabytes".into(),
            format!("{base}\ndescription: \"{}\"\n", "x".repeat(10 << 20)).into_bytes(),
            vec![],
        ),
        (
            "nul-byte".into(),
            base.replace("runbook: window", "runbook: win\0dow").into_bytes(),
            vec![],
        ),
        (
            "invalid-utf8".into(),
            [base.as_bytes(), &[0xff, 0xfe, 0x00]].concat(),
            vec![],
        ),
        (
            "huge-version".into(),
            base.replace("version: 1", "version: 99999999999999999999999999")
                .into_bytes(),
            vec![],
        ),
        (
            "deep-nesting".into(),
            format!("{base}\nx-deep: {}{}\n", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            vec![],
        ),
        ("only-nuls".into(), vec![0; 4096], vec![]),
    ];
    for (label, value) in [
        ("slash", "a/b"),
        ("dotdot", ".."),
        ("dotdot-inside", "a..b"),
        ("control", "a\u{7}b"),
        ("long-name", &"n".repeat(100_000)),
    ] {
        cases.push((
            format!("instance-name-{label}"),
            Vec::new(),
            vec![
                "--set".into(),
                "mi.subscription=s".into(),
                "--set".into(),
                "mi.resource_group=rg".into(),
                "--set".into(),
                format!("mi.name={value}"),
                "--set".into(),
                "group=g".into(),
            ],
        ));
        cases.push((
            format!("group-name-{label}"),
            Vec::new(),
            vec![
                "--set".into(),
                "mi.subscription=s".into(),
                "--set".into(),
                "mi.resource_group=rg".into(),
                "--set".into(),
                "mi.name=m".into(),
                "--set".into(),
                format!("group={value}"),
            ],
        ));
    }
    assert!(cases.len() >= 16);
    for (label, bytes, sets) in cases {
        let args: Vec<String> = if bytes.is_empty() {
            let mut a = vec!["run".to_owned(), rb_file.display().to_string()];
            a.extend(sets);
            a
        } else {
            let p = sb.path(&format!("{label}.yaml"));
            std::fs::write(&p, &bytes).unwrap();
            vec!["run".to_owned(), p.display().to_string()]
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.run(&argv);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{label}: {}", &err[..err.len().min(2000)]);
        assert!(err.contains("error"), "{label}: {}", &err[..err.len().min(2000)]);
        assert!(!err.contains("panicked"), "{label}");
        assert!(
            err.len() < 20_000,
            "{label}: the error does not echo the hostile value ({} bytes)",
            err.len()
        );
        assert_eq!(db_bytes(&sb), before, "{label}: the database changed");
    }
}
