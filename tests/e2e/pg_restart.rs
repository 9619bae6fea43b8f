//! Issue 17: PostgreSQL restarted the hard way (`pg_ctl restart -m immediate`: every
//! connection cut, crash recovery) in the middle of a run. The run goes on after the driver
//! reconnects, or stops with an error naming the lost connection and `resume` finishes it;
//! either way every effect happened once, counted from outside (the runbook's append-only
//! call log), and the audit trail verifies.

use std::time::{Duration, Instant};

use fogbook_testpg::TestPostgres;

use crate::common::{code, fixture, stderr, stdout};
use crate::pg_backend::{Backend, Cell, Db};

/// The `command` steps of the kill-matrix runbook, in order.
const COMMANDS: &[&str] = &["first", "second", "third", "fragile"];

#[test]
fn a_postgres_restart_mid_run_loses_nothing_and_repeats_nothing() {
    let server = TestPostgres::start();
    let db = Db::new(Backend::Postgres, Some(&server), "restart");
    let log = db.sb.path("effects.txt").display().to_string();
    let runbook = fixture("kill-matrix.yaml").display().to_string();
    // The driver waits in the foreground at the approval `gate`, between `first` and
    // `second`, with its connections open.
    let driver = db.spawn(&["run", &runbook, "--set", &format!("out={log}"), "--wait"], &[]);
    let start = Instant::now();
    // The condition, not the time, is what the test waits for.
    while db
        .try_query("SELECT progress FROM steps WHERE step_id = 'gate'", &[])
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .is_none_or(|row| row.first() == Some(&Cell::Text(None)))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for the approval to be requested"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = db.last_run_id();

    server.restart_immediate();
    let approve = db.run(&["approve", &run, "gate", "--by", "bob"]);
    assert_eq!(code(&approve), 0, "approve after the restart: {}", stderr(&approve));
    let driven = driver.wait_with_output().unwrap();
    if code(&driven) != 0 {
        // It stopped: with a message that says the database connection was lost, and the
        // run is resumable.
        let err = stderr(&driven);
        assert!(
            err.contains("lost the connection to PostgreSQL"),
            "the driver stopped for another reason ({}): {err}",
            code(&driven)
        );
        let resumed = db.run(&["resume", &run]);
        assert_eq!(code(&resumed), 0, "resume: {}{}", stdout(&resumed), stderr(&resumed));
    }
    assert_eq!(db.run_status(&run), "succeeded");
    let calls: Vec<String> = db
        .sb
        .lines_of("effects.txt")
        .iter()
        .map(|line| line.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(calls, COMMANDS, "each command exactly once, in order");
    db.assert_audit_ok();
}
