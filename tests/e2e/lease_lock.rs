//! One driver per run (lease) and one run per resource (lock).

use std::os::unix::process::ExitStatusExt;

use fogbook_testpg::TestPostgres;

use crate::common::{code, fixture, stderr};
use crate::pg_backend::{Backend, Db};

/// A state on `backend` for one test (on PostgreSQL, on a server of the test's own).
fn state(backend: Backend) -> (Option<TestPostgres>, Db) {
    let server = (backend == Backend::Postgres).then(TestPostgres::start);
    let db = Db::new(backend, server.as_ref(), "lease_lock");
    (server, db)
}

#[test]
fn two_resumes_at_once_exactly_one_drives() {
    two_resumes_at_once(Backend::Sqlite);
}

#[test]
fn two_resumes_at_once_exactly_one_drives_on_postgres() {
    two_resumes_at_once(Backend::Postgres);
}

fn two_resumes_at_once(backend: Backend) {
    let (_server, db) = state(backend);
    let first = db.run_env(
        &[
            "run",
            &fixture("long-wait.yaml").display().to_string(),
            "--set",
            "duration=2s",
        ],
        &[("FOGBOOK_FAILPOINTS", "after-start:nap")],
    );
    assert_eq!(first.status.signal(), Some(9));
    let run = db.last_run_id();
    let a = db.spawn(&["resume", &run], &[]);
    let b = db.spawn(&["resume", &run], &[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [code(&a), code(&b)];
    assert!(
        codes.contains(&0) && codes.contains(&4),
        "one drives, one is refused: {codes:?}"
    );
    let refused = if code(&a) == 4 { &a } else { &b };
    let err = stderr(refused);
    assert!(err.contains("is being driven by"), "{err}");
    let data = db
        .text(
            "SELECT data FROM events WHERE run_id = ?1 AND kind = 'lease.taken_over'",
            &[&run],
        )
        .expect("the takeover from the killed process is audited");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    let owner = data["owner"].as_str().unwrap().to_owned();
    assert!(err.contains(&owner), "the refusal names the owner {owner}: {err}");
    assert_eq!(db.run_status(&run), "succeeded");
    db.assert_audit_ok();
}

#[test]
fn a_second_run_on_the_same_group_is_refused_naming_the_holder() {
    second_run_refused(Backend::Sqlite);
}

#[test]
fn a_second_run_on_the_same_group_is_refused_naming_the_holder_on_postgres() {
    second_run_refused(Backend::Postgres);
}

fn second_run_refused(backend: Backend) {
    let (_server, db) = state(backend);
    let sb = &db.sb;
    let out = sb.path("out.txt").display().to_string();
    let gated = fixture("gated.yaml").display().to_string();
    let first = db.run(&["run", &gated, "--set", &format!("out={out}")]);
    assert_eq!(code(&first), 3, "{}", stderr(&first));
    let holder = db.last_run_id();
    let second = db.run(&["run", &gated, "--set", &format!("out={out}")]);
    assert_eq!(code(&second), 4, "{}", stderr(&second));
    let err = stderr(&second);
    assert!(err.contains("fog/fog-one") && err.contains(&holder), "{err}");
    let runs = db.ints("SELECT count(*) FROM runs", &[])[0];
    assert_eq!(runs, 1, "the refused run was not created");

    // Another group is free.
    let other = db.run(&[
        "run",
        &gated,
        "--set",
        &format!("out={out}"),
        "--set",
        "group=fog-two",
        "--auto-approve",
    ]);
    assert_eq!(code(&other), 0, "{}", stderr(&other));

    // Cancelling the holder releases the lock.
    let cancel = db.run(&["cancel", &holder]);
    assert_eq!(code(&cancel), 0, "{}", stderr(&cancel));
    let again = db.run(&["run", &gated, "--set", &format!("out={out}"), "--auto-approve"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    db.assert_audit_ok();
}

#[test]
fn an_approval_can_be_waited_for_in_the_foreground() {
    approval_waited_for(Backend::Sqlite);
}

#[test]
fn an_approval_can_be_waited_for_in_the_foreground_on_postgres() {
    approval_waited_for(Backend::Postgres);
}

fn approval_waited_for(backend: Backend) {
    let (_server, db) = state(backend);
    let sb = &db.sb;
    let out = sb.path("out.txt").display().to_string();
    let child = db.spawn(
        &[
            "run",
            &fixture("gated.yaml").display().to_string(),
            "--set",
            &format!("out={out}"),
            "--wait",
        ],
        &[],
    );
    let start = std::time::Instant::now();
    // The condition, not the time, is what the test waits for.
    while !db.exists()
        || db
            .try_query("SELECT progress FROM steps WHERE step_id = 'confirm'", &[])
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .is_none_or(|row| row.first() == Some(&crate::pg_backend::Cell::Text(None)))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting for the approval to be requested"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let run = db.last_run_id();
    let approve = db.run(&["approve", &run, "confirm", "--by", "bob"]);
    assert_eq!(code(&approve), 0, "{}", stderr(&approve));
    let done = child.wait_with_output().unwrap();
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    assert_eq!(sb.lines_of("out.txt"), vec!["version-one"]);
}
