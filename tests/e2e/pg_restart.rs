//! Issue 17: PostgreSQL restarted the hard way (`pg_ctl restart -m immediate`: every
//! connection cut, crash recovery) in the middle of a run. The run goes on after the driver
//! reconnects, or stops with an error naming the lost connection and `resume` finishes it;
//! either way every effect happened once, counted from outside (the runbook's append-only
//! call log), and the audit trail verifies.

use crate::common::{code, stderr, stdout};
use crate::pg_backend::OnPostgres;

/// The `command` steps of the kill-matrix runbook, in order.
const COMMANDS: &[&str] = &["first", "second", "third", "fragile"];

#[test]
fn a_postgres_restart_mid_run_loses_nothing_and_repeats_nothing() {
    let OnPostgres { db, server } = OnPostgres::start("restart");
    // The driver waits in the foreground at the approval `gate`, between `first` and
    // `second`, with its connections open.
    let (driver, run) = db.driver_at_the_gate(&[]);

    server.restart_immediate();
    let approve = db.run(&["approve", &run, "gate", "--by", "bob"]);
    assert_eq!(code(&approve), 0, "approve after the restart: {}", stderr(&approve));
    let driven = driver.wait_with_output();
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
    assert_eq!(db.calls(), COMMANDS, "each command exactly once, in order");
    db.assert_audit_ok();
}
