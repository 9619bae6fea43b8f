//! The state in PostgreSQL (issue 17): the README's first command with `--db postgres://…`
//! (a throwaway server of the test's own) runs the shipped runbook end to end, and `runs`,
//! `status`, `history` and `audit verify` read it; a process SIGKILLed mid-run is finished
//! by `resume` with no Microsoft.Sql mutation sent twice.
//!
//! Effects are counted from outside the engine: the emulator's journal, in the state file
//! the in-process emulator saves after every accepted mutation (kept, for a PostgreSQL
//! store, under `FOGBOOK_LOCAL_DIR`).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fogbook_testpg::TestPostgres;
use serde_json::Value;

use crate::common::{Sandbox, code, stderr, stdout};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README's first command (the quick start), continuation lines joined.
pub(crate) fn quick_start() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let after = &text[text.find("## Quick start").expect("README has a quick start")..];
    let block = after.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let mut line = String::new();
    for l in block.lines().map(str::trim) {
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        match l.strip_suffix('\\') {
            Some(part) => line.push_str(part),
            None => {
                line.push_str(l);
                break;
            }
        }
    }
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(words[..4], ["cargo", "run", "--locked", "--"], "README command: {line}");
    assert!(
        line.contains("--sim") && line.contains("--db /tmp/fogbook-demo.db"),
        "{line}"
    );
    words[4..].to_vec()
}

/// `fogbook ARGS` from the repository root with the state in `db` (every `--db` value the
/// README names replaced by it) and the local files in the sandbox.
pub(crate) fn fogbook(sb: &Sandbox, db: &str, args: &[String]) -> Command {
    let mut c = sb.cmd();
    c.current_dir(root())
        .env("FOGBOOK_DB", db)
        .env("FOGBOOK_LOCAL_DIR", sb.dir.path());
    c.args(
        args.iter()
            .map(|a| if a == "/tmp/fogbook-demo.db" { db } else { a.as_str() }),
    );
    c
}

pub(crate) fn run(sb: &Sandbox, db: &str, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    fogbook(sb, db, &args).output().unwrap()
}

/// The emulator state files of the sandbox's rehearsals (in `fogbook-pg-….sim/`).
fn state_files(sb: &Sandbox) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(sb.dir.path()).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("fogbook-pg-") && name.ends_with(".sim") {
            for f in std::fs::read_dir(&dir).unwrap() {
                files.push(f.unwrap().path());
            }
        }
    }
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files
}

/// The Microsoft.Sql mutations the emulator accepted, in order.
pub(crate) fn sql_mutations(file: &Path) -> Vec<String> {
    let state: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    state["journal"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["applied"], true, "a mutation was refused: {e}");
            format!(
                "{} {}",
                e["method"].as_str().unwrap(),
                e["path"].as_str().unwrap().split('?').next().unwrap()
            )
        })
        .filter(|m| m.contains("/Microsoft.Sql/"))
        .collect()
}

/// The runs (id, status) read from outside fogbook: the rows of the PostgreSQL database.
pub(crate) fn runs_in_postgres(db: &str) -> Vec<(String, String)> {
    let url: fogbook_state::pg::StoreUrl = db.parse().unwrap();
    let fogbook_state::pg::StoreUrl::Postgres(url) = url else {
        unreachable!("a PostgreSQL URL")
    };
    let mut client = fogbook_state::pg::connect(&url).unwrap();
    client
        .query("SELECT id, status FROM runs ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect()
}

/// The id of the only run in `db`.
pub(crate) fn only_run(sb: &Sandbox, db: &str) -> String {
    let out = run(sb, db, &["--format", "json", "runs"]);
    assert_eq!(code(&out), 0, "runs: {}", stderr(&out));
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs
        .as_array()
        .or_else(|| runs["runs"].as_array())
        .expect("a list of runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0]["id"].as_str().unwrap().to_owned()
}

/// The README's first command, on PostgreSQL: the run succeeds, and the commands that read
/// the state (`runs`, `status`, `history`, `audit verify`) read it from there; no SQLite
/// file is created.
#[test]
fn the_readme_quick_start_runs_on_postgres() {
    let server = TestPostgres::start();
    let db = server.url();
    let sb = Sandbox::new();
    let out = fogbook(&sb, &db, &quick_start()).output().unwrap();
    assert_eq!(code(&out), 0, "quick start on PostgreSQL: {}", stderr(&out));
    assert!(!stderr(&out).contains(server.password()), "no password printed");
    let id = only_run(&sb, &db);
    let status = run(&sb, &db, &["status", &id]);
    assert_eq!(code(&status), 0, "{}", stderr(&status));
    assert!(stdout(&status).contains("succeeded"), "{}", stdout(&status));
    let history = run(&sb, &db, &["--format", "json", "history", &id]);
    assert_eq!(code(&history), 0, "{}", stderr(&history));
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"run.created"), "{kinds:?}");
    assert!(kinds.contains(&"run.succeeded"), "{kinds:?}");
    let verify = run(&sb, &db, &["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
    assert_eq!(runs_in_postgres(&db), [(id, "succeeded".to_owned())]);
    assert_eq!(
        state_files(&sb).len(),
        1,
        "the rehearsal's emulator state is kept locally"
    );
}

/// A run on PostgreSQL killed (SIGKILL) right after the seeding of the new group saved its
/// progress is finished by `resume` alone: every Microsoft.Sql mutation was sent once, as
/// in an uninterrupted run.
#[test]
fn a_run_killed_mid_seeding_is_finished_by_resume_on_postgres() {
    let server = TestPostgres::start();
    let sb = Sandbox::new();
    let quick = quick_start();

    let base_db = server.create_database("base");
    let base = Sandbox::new();
    let out = fogbook(&base, &base_db, &quick).output().unwrap();
    assert_eq!(code(&out), 0, "uninterrupted run: {}", stderr(&out));
    let base_files = state_files(&base);
    assert_eq!(base_files.len(), 1);
    let expected = sql_mutations(&base_files[0]);
    assert!(
        expected.iter().any(|m| m.contains("instanceFailoverGroups")),
        "{expected:?}"
    );

    let db = server.create_database("killed");
    let mut c = fogbook(&sb, &db, &quick);
    c.env("FOGBOOK_FAILPOINTS", "after-progress:create-group");
    let out = c.output().unwrap();
    assert_eq!(out.status.signal(), Some(9), "the kill was reached: {}", stderr(&out));
    let id = only_run(&sb, &db);
    let resumed = run(&sb, &db, &["resume", &id]);
    assert_eq!(code(&resumed), 0, "resume: {}{}", stdout(&resumed), stderr(&resumed));
    let files = state_files(&sb);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        sql_mutations(&files[0]),
        expected,
        "each Microsoft.Sql mutation once, in order"
    );
    let verify = run(&sb, &db, &["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
    assert_eq!(runs_in_postgres(&db), [(id, "succeeded".to_owned())]);
}

/// Two processes (two "hosts") resume the same run on PostgreSQL at once, after its driver
/// was SIGKILLed: exactly one drives it to the end, the other is refused (exit 4) naming
/// the driver, whose takeover from the killed process is in the audit trail.
#[test]
fn two_resumes_at_once_on_postgres_exactly_one_drives() {
    let server = TestPostgres::start();
    let db = server.url();
    let sb = Sandbox::new();
    let fixture = crate::common::fixture("long-wait.yaml").display().to_string();
    let mut first = fogbook(
        &sb,
        &db,
        &["run".to_owned(), fixture, "--set".to_owned(), "duration=2s".to_owned()],
    );
    first.env("FOGBOOK_FAILPOINTS", "after-start:nap");
    let first = first.output().unwrap();
    assert_eq!(first.status.signal(), Some(9), "{}", stderr(&first));
    let id = only_run(&sb, &db);
    let spawn = || {
        fogbook(&sb, &db, &["resume".to_owned(), id.clone()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [code(&a), code(&b)];
    assert!(
        codes.contains(&0) && codes.contains(&4),
        "one drives, one is refused: {codes:?}\n{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    let refused = stderr(if code(&a) == 4 { &a } else { &b });
    assert!(refused.contains("is being driven by"), "{refused}");
    let history = run(&sb, &db, &["--format", "json", "history", &id]);
    assert_eq!(code(&history), 0, "{}", stderr(&history));
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let taken = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "lease.taken_over")
        .expect("the takeover from the killed process is audited");
    let owner = taken["data"]["owner"].as_str().unwrap();
    assert!(
        refused.contains(owner),
        "the refusal names the driver {owner}: {refused}"
    );
    let status = run(&sb, &db, &["status", &id]);
    assert!(stdout(&status).contains("succeeded"), "{}", stdout(&status));
    let verify = run(&sb, &db, &["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
    assert_eq!(runs_in_postgres(&db), [(id, "succeeded".to_owned())]);
}
