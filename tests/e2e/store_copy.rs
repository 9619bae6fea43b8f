//! `fogbook store copy` (issue 17): a SQLite store moved into PostgreSQL keeps its audit
//! chain (same events, same head), a run killed mid-way on SQLite is finished on PostgreSQL
//! with no Microsoft.Sql mutation sent twice (counted in the emulator's journal) and copied
//! back into SQLite the same, and the
//! copy refuses a tampered source, a source with a run being driven, and a target that
//! already holds data, writing nothing each time.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use fogbook_testpg::TestPostgres;
use serde_json::Value;

use crate::common::{Sandbox, code, stderr, stdout};
use crate::postgres::{fogbook, only_run, quick_start, run, runs_in_postgres, sql_mutations};

/// The emulator state files of the sandbox's SQLite rehearsals (in `<db>.sim/`).
fn sim_files(sb: &Sandbox) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(sb.dir.path()).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() && dir.extension().is_some_and(|e| e == "sim") {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "json") {
                    files.push(f);
                }
            }
        }
    }
    files
}

/// Rows of `table` in the PostgreSQL database `db`, read from outside fogbook (0 when
/// fogbook never created its tables there).
fn pg_rows(db: &str, table: &str) -> i64 {
    let url: fogbook_state::pg::StoreUrl = db.parse().unwrap();
    let fogbook_state::pg::StoreUrl::Postgres(url) = url else {
        unreachable!("a PostgreSQL URL")
    };
    let mut client = fogbook_state::pg::connect(&url).unwrap();
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .unwrap()
        .get(0);
    if !exists {
        return 0;
    }
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

/// The events of a run as `history --format json` prints them.
fn events(sb: &Sandbox, db: &str, id: &str) -> Value {
    let out = run(sb, db, &["--format", "json", "history", id]);
    assert_eq!(code(&out), 0, "history: {}", stderr(&out));
    let history: Value = serde_json::from_slice(&out.stdout).unwrap();
    history["events"].clone()
}

/// The head `audit verify --format json` reports.
fn verified_head(sb: &Sandbox, db: &str) -> String {
    let out = run(sb, db, &["--format", "json", "audit", "verify"]);
    assert_eq!(code(&out), 0, "audit verify: {}{}", stdout(&out), stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    v["report"]["head"].as_str().unwrap().to_owned()
}

/// The README's first command, killed (SIGKILL) on SQLite right after the new group's
/// seeding saved its progress, is copied into PostgreSQL: the copy prints the same chain
/// head on both sides, `history` and `audit verify` read the same there, and `resume` on
/// PostgreSQL finishes the run with each Microsoft.Sql mutation sent once, as in an
/// uninterrupted run.
#[test]
fn a_run_killed_on_sqlite_is_copied_to_postgres_and_finished_there_once() {
    let server = TestPostgres::start();
    let quick = quick_start();

    let base = Sandbox::new();
    let base_db = base.db().display().to_string();
    let out = fogbook(&base, &base_db, &quick).output().unwrap();
    assert_eq!(code(&out), 0, "uninterrupted run: {}", stderr(&out));
    let base_files = sim_files(&base);
    assert_eq!(base_files.len(), 1, "{base_files:?}");
    let expected = sql_mutations(&base_files[0]);
    assert!(
        expected.iter().any(|m| m.contains("instanceFailoverGroups")),
        "{expected:?}"
    );

    let sb = Sandbox::new();
    let db = sb.db().display().to_string();
    let mut c = fogbook(&sb, &db, &quick);
    c.env("FOGBOOK_FAILPOINTS", "after-progress:create-group");
    let out = c.output().unwrap();
    assert_eq!(out.status.signal(), Some(9), "the kill was reached: {}", stderr(&out));
    let id = only_run(&sb, &db);
    let source_events = events(&sb, &db, &id);
    let source_head = verified_head(&sb, &db);

    let pg = server.url();
    let copy = run(
        &sb,
        &db,
        &["store", "copy", "--from", &format!("sqlite:{db}"), "--to", &pg],
    );
    assert_eq!(code(&copy), 0, "store copy: {}{}", stdout(&copy), stderr(&copy));
    let printed = stdout(&copy);
    assert!(!printed.contains(server.password()) && !stderr(&copy).contains(server.password()));
    assert!(printed.contains("audit verify on the copy: ok"), "{printed}");
    assert!(
        printed.contains(&format!("source {source_head}")) && printed.contains(&format!("copy   {source_head}")),
        "both chain heads are the source's: {printed}"
    );
    assert!(
        stderr(&copy).contains(&format!("{id}: its driver")),
        "the killed driver's lease is named: {}",
        stderr(&copy)
    );
    assert_eq!(verified_head(&sb, &pg), source_head, "the same chain on PostgreSQL");
    assert_eq!(events(&sb, &pg, &id), source_events, "the same trail on PostgreSQL");
    assert_eq!(runs_in_postgres(&pg), [(id.clone(), "running".to_owned())]);

    let resumed = run(&sb, &pg, &["resume", &id]);
    assert_eq!(
        code(&resumed),
        0,
        "resume on PostgreSQL: {}{}",
        stdout(&resumed),
        stderr(&resumed)
    );
    let files = sim_files(&sb);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        sql_mutations(&files[0]),
        expected,
        "each Microsoft.Sql mutation once, in order, across the move"
    );
    let pg_head = verified_head(&sb, &pg);
    assert_eq!(runs_in_postgres(&pg), [(id.clone(), "succeeded".to_owned())]);

    // And back: the finished run, copied from PostgreSQL into a new SQLite file, verifies
    // there with the same head and trail.
    let back = sb.path("back.db").display().to_string();
    let copy = run(
        &sb,
        &pg,
        &["store", "copy", "--from", &pg, "--to", &format!("sqlite:{back}")],
    );
    assert_eq!(code(&copy), 0, "store copy back: {}{}", stdout(&copy), stderr(&copy));
    assert_eq!(verified_head(&sb, &back), pg_head);
    assert_eq!(events(&sb, &back, &id), events(&sb, &pg, &id));
}

/// A one-step run on SQLite (finished), for the refusals.
fn finished_run(sb: &Sandbox) -> String {
    let fixture = crate::common::fixture("long-wait.yaml").display().to_string();
    let out = sb.run(&["run", &fixture, "--set", "duration=10ms"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    sb.last_run_id()
}

fn copy_args(sb: &Sandbox, to: &str) -> Vec<String> {
    [
        "store",
        "copy",
        "--from",
        &format!("sqlite:{}", sb.db().display()),
        "--to",
        to,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// An event edited in the source (the triggers dropped, as an attacker with the file
/// would) is refused: the copy names the event and writes nothing into the target.
#[test]
fn a_tampered_source_is_refused_and_nothing_is_written() {
    let server = TestPostgres::start();
    let sb = Sandbox::new();
    let id = finished_run(&sb);
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    conn.execute_batch("DROP TRIGGER events_no_update;").unwrap();
    let changed = conn
        .execute(
            "UPDATE events SET data = '{\"edited\":true}' WHERE run_id = ?1 AND seq = 2",
            [&id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let pg = server.url();
    let out = sb.run(&copy_args(&sb, &pg).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&out), 6, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("does not verify")
            && err.contains(&format!("run {id} event #2"))
            && err.contains("nothing was copied"),
        "{err}"
    );
    assert_eq!(pg_rows(&pg, "runs"), 0, "nothing written");
    assert_eq!(pg_rows(&pg, "events"), 0, "nothing written");
}

/// A target that already holds fogbook data is refused, naming what it holds; its rows
/// are unchanged, and the source is left unmarked (it still drives runs).
#[test]
fn a_target_with_data_is_refused_and_left_unchanged() {
    let server = TestPostgres::start();
    let sb = Sandbox::new();
    finished_run(&sb);
    let pg = server.url();
    let args = copy_args(&sb, &pg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = sb.run(&args);
    assert_eq!(code(&first), 0, "{}{}", stdout(&first), stderr(&first));
    let events = pg_rows(&pg, "events");
    assert!(events > 0);
    // Another store (the first one is marked as moved now) copied into the same target.
    let other = Sandbox::new();
    finished_run(&other);
    finished_run(&other);
    let args = copy_args(&other, &pg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again = other.run(&args);
    assert_eq!(code(&again), 2, "{}{}", stdout(&again), stderr(&again));
    let err = stderr(&again);
    assert!(
        err.contains("already holds fogbook data") && err.contains("runs: 1") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(pg_rows(&pg, "events"), events, "the target is unchanged");
    assert_eq!(pg_rows(&pg, "runs"), 1, "the target is unchanged");
    finished_run(&other);
}

/// While a process drives a run of the source, the copy is refused naming the run and its
/// driver; once that process is gone, the same copy goes through.
#[test]
fn a_source_with_a_run_being_driven_is_refused_naming_it() {
    let server = TestPostgres::start();
    let sb = Sandbox::new();
    let fixture = crate::common::fixture("long-wait.yaml").display().to_string();
    let mut driver = sb.spawn(&["run", &fixture, "--set", "duration=10m"], &[]);
    sb.wait_for("the run to be driven", Duration::from_secs(60), |sb| {
        sb.sql()
            .query_row(
                "SELECT count(*) FROM steps WHERE step_id = 'nap' AND status = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
    });
    let id = sb.last_run_id();
    let pg = server.url();
    let args = copy_args(&sb, &pg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sb.run(&args);
    assert_eq!(code(&out), 4, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{id} is being driven by")) && err.contains("nothing was copied"),
        "{err}"
    );
    assert_eq!(pg_rows(&pg, "runs"), 0, "nothing written");
    driver.kill().unwrap();
    driver.wait().unwrap();
    let out = sb.run(&args);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(runs_in_postgres(&pg), [(id, "running".to_owned())]);
}
