//! Two `fogbook resume RUN` of one interrupted rehearsal started at once: the lease decides
//! who restores the emulator (it listens on the run's recorded address, which one process
//! can hold), so exactly one drives and the other is refused naming it (exit 4), as two
//! resumes of a real run are, never "free that port" (exit 2). Each Microsoft.Sql mutation
//! reaches the emulator once, counted in the emulator's own journal (its state file).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Output};

use serde_json::Value;

use crate::common::{Sandbox, assert_audit_ok, code, stderr};

const SUB: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README's quick start (a rehearsal of change-primary-region on the emulator).
fn quick_start(sb: &Sandbox, failpoint: Option<&str>) -> Output {
    let mut c = sb.cmd();
    c.current_dir(root()).args([
        "run",
        "runbooks/change-primary-region.yaml",
        "--params",
        "examples/change-primary-region.yaml",
        "--sim",
        "--auto-approve",
    ]);
    if let Some(fp) = failpoint {
        c.env("FOGBOOK_FAILPOINTS", fp);
    }
    c.output().unwrap()
}

/// The emulator's journal of accepted Microsoft.Sql mutations, in order, from the sandbox's
/// one rehearsal state file.
fn sql_mutations(sb: &Sandbox) -> Vec<String> {
    let files: Vec<PathBuf> = std::fs::read_dir(sb.path("state.db.sim"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "one rehearsal, one emulator state: {files:?}");
    let state: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    state["journal"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["applied"], true, "a mutation was refused: {e}");
            let path = e["path"].as_str().unwrap().split('?').next().unwrap();
            let path = path.trim_start_matches(&format!("/subscriptions/{SUB}/resourceGroups/"));
            format!("{} {path}", e["method"].as_str().unwrap())
        })
        .filter(|m| m.contains("/Microsoft.Sql/"))
        .collect()
}

/// Two resumes of `run` started back to back; returns (driver, refused) with the driver's pid.
fn race(sb: &Sandbox, run: &str, failpoint: Option<&str>) -> ((u32, Output), (u32, Output)) {
    let env: Vec<(&str, &str)> = failpoint.map(|fp| ("FOGBOOK_FAILPOINTS", fp)).into_iter().collect();
    let a: Child = sb.spawn(&["resume", run], &env);
    let b: Child = sb.spawn(&["resume", run], &env);
    let (pa, pb) = (a.id(), b.id());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let drove = |o: &Output| match failpoint {
        Some(_) => o.status.signal() == Some(9),
        None => code(o) == 0,
    };
    match (drove(&a), drove(&b)) {
        (true, false) => ((pa, a), (pb, b)),
        (false, true) => ((pb, b), (pa, a)),
        _ => panic!(
            "exactly one of two resumes drives ({failpoint:?}): {:?} {}\n{:?} {}",
            a.status,
            stderr(&a),
            b.status,
            stderr(&b)
        ),
    }
}

#[test]
fn two_resumes_of_a_rehearsal_at_once_exactly_one_drives() {
    let base = Sandbox::new();
    let out = quick_start(&base, None);
    assert_eq!(code(&out), 0, "uninterrupted rehearsal: {}", stderr(&out));
    let base_sql = sql_mutations(&base);

    let sb = Sandbox::new();
    // Killed inside the creation of the new instance, then each round's driver killed at a
    // later point (inside seeding among them), the last round's driver finishing the run.
    let out = quick_start(&sb, Some("after-progress:create-new-instance"));
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    let run = sb.last_run_id();
    let rounds = [
        Some("after-start:failover-to-secondary"),
        Some("after-progress:create-group"),
        Some("after-finish:failover-to-new-primary"),
        None,
    ];
    for fp in rounds {
        let ((pid, _), (_, refused)) = race(&sb, &run, fp);
        let err = stderr(&refused);
        assert_eq!(code(&refused), 4, "the other resume is refused ({fp:?}): {err}");
        assert!(err.contains("is being driven by"), "{err}");
        assert!(
            err.contains(&format!(":{pid}:")),
            "the refusal names the driving process {pid}: {err}"
        );
        assert!(!err.contains("free that port"), "{err}");
    }
    assert_eq!(sb.run_status(&run), "succeeded");
    assert_eq!(
        sql_mutations(&sb),
        base_sql,
        "each Microsoft.Sql mutation reached the emulator once, in the order of an uninterrupted rehearsal"
    );
    assert_audit_ok(&sb);
}

/// `status` of a rehearsal gives the run's age and its open windows in the time it
/// rehearses, the real time beside it, as `report` does; `--format json` has both ages.
#[test]
fn status_of_a_rehearsal_speaks_in_simulated_time() {
    let sb = Sandbox::new();
    // Killed inside seeding: the unprotected window of B's databases is open.
    let out = quick_start(&sb, Some("after-progress:create-group"));
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    let run = sb.last_run_id();
    let out = sb.run(&["status", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = crate::common::stdout(&out);
    let age = text
        .lines()
        .find(|l| l.starts_with("age: "))
        .unwrap_or_else(|| panic!("an age line: {text}"));
    assert!(age.contains(" simulated (") && age.ends_with(')'), "{age}");
    let open = text
        .lines()
        .find(|l| l.starts_with("OPEN unprotected window"))
        .unwrap_or_else(|| panic!("the open window: {text}"));
    assert!(open.contains(" simulated ("), "{open}");
    let stalled = text
        .lines()
        .find(|l| l.starts_with("!!! STALLED"))
        .unwrap_or_else(|| panic!("the stalled banner: {text}"));
    assert!(stalled.contains(" simulated ("), "{stalled}");

    let out = sb.run(&["--format", "json", "status", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let real = doc["age_ms"].as_i64().expect("age_ms");
    let sim = doc["simulated_age_ms"]
        .as_i64()
        .expect("simulated_age_ms of a rehearsal");
    let scale = doc["rehearsal"]["time_scale"].as_f64().unwrap();
    assert!(scale > 1.0, "{scale}");
    assert!(
        sim >= real && (sim as f64 - real as f64 * scale).abs() <= scale,
        "{sim} ms simulated is {real} ms real at {scale}x"
    );
}
