//! Attack on issue 17's operator actions across hosts: while one process (host 1) drives a
//! run on PostgreSQL and waits at its approval, operators on other hosts act on it at the
//! same instant. Two approvals of one step from two processes released together: exactly one
//! is applied and audited (with who and why), the other is refused naming the first, and the
//! run goes on once. Two cancels from two processes while the driver waits: the run ends
//! cancelled once, by one of them, and no step after the approval runs. Effects are counted
//! from outside (the fixture's append-only call log), the audit from the database's rows.

use std::process::Output;

use crate::common::{code, stderr, stdout};
use crate::pg_backend::{Cell, Db, OnPostgres};

/// `args_a` and `args_b` run by two processes started together (another host each).
fn at_once(db: &Db, args_a: &[&str], args_b: &[&str]) -> [Output; 2] {
    let a = db.spawn(args_a, &[]);
    let b = db.spawn(args_b, &[]);
    [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()]
}

fn events(db: &Db, run: &str, kind: &str) -> Vec<String> {
    db.query(
        "SELECT data FROM events WHERE run_id = ?1 AND kind = ?2 ORDER BY seq",
        &[run, kind],
    )
    .into_iter()
    .map(|row| match &row[0] {
        Cell::Text(Some(t)) => t.clone(),
        other => panic!("{other:?}"),
    })
    .collect()
}

#[test]
fn two_hosts_approving_one_step_at_once_apply_one_approval() {
    let pg = OnPostgres::start("approve_race");
    let db = &pg.db;
    let (driver, run) = db.driver_at_the_gate(&[]);
    let outs = at_once(
        db,
        &["approve", &run, "gate", "--by", "bob", "--reason", "ticket 1"],
        &["approve", &run, "gate", "--by", "carol", "--reason", "ticket 2"],
    );
    let won: Vec<&Output> = outs.iter().filter(|o| code(o) == 0).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one approval applied: {:?}",
        outs.iter().map(|o| (code(o), stderr(o))).collect::<Vec<_>>()
    );
    let lost = outs.iter().find(|o| code(o) != 0).unwrap();
    // Refused naming the first, or (when it came after the driver moved on) the step done.
    assert!(
        stderr(lost).contains("already approved by") || stderr(lost).contains("is already completed"),
        "the other is refused: {}",
        stderr(lost)
    );
    let approved = events(db, &run, "step.approved");
    assert_eq!(approved.len(), 1, "audited once: {approved:?}");
    let winner = if code(&outs[0]) == 0 {
        ("bob", "ticket 1")
    } else {
        ("carol", "ticket 2")
    };
    assert!(
        approved[0].contains(winner.0) && approved[0].contains(winner.1),
        "who and why of the one applied: {approved:?}"
    );
    let driven = driver.wait_with_output();
    assert_eq!(code(&driven), 0, "{}{}", stdout(&driven), stderr(&driven));
    assert_eq!(db.run_status(&run), "succeeded");
    assert_eq!(db.calls(), ["first", "second", "third", "fragile"], "each command once");
    db.assert_audit_ok();
}

#[test]
fn two_hosts_cancelling_a_driven_run_at_once_cancel_it_once() {
    let pg = OnPostgres::start("cancel_race");
    let db = &pg.db;
    let (driver, run) = db.driver_at_the_gate(&[]);
    let outs = at_once(
        db,
        &["cancel", &run, "--by", "dave", "--reason", "wrong window"],
        &["cancel", &run, "--by", "erin", "--reason", "wrong group"],
    );
    for o in &outs {
        assert!(
            code(o) == 0 || stderr(o).contains("already"),
            "a cancel failed for another reason: {}",
            stderr(o)
        );
    }
    assert!(outs.iter().any(|o| code(o) == 0), "one cancel applied");
    let driven = driver.wait_with_output();
    assert_ne!(code(&driven), 0, "the driver stopped: {}", stdout(&driven));
    assert_eq!(db.run_status(&run), "cancelled");
    let cancelled = events(db, &run, "run.cancelled");
    assert_eq!(cancelled.len(), 1, "the run ended cancelled once: {cancelled:?}");
    // Each request is audited once, naming its operator.
    let requested = events(db, &run, "run.cancel_requested");
    let applied = outs.iter().filter(|o| code(o) == 0).count();
    assert!(
        requested.len() <= applied && requested.iter().all(|r| r.contains("dave") || r.contains("erin")),
        "{requested:?}"
    );
    let status = stdout(&db.run(&["status", &run]));
    assert!(
        status.contains("wrong window") || status.contains("wrong group"),
        "why: {status}"
    );
    assert_eq!(db.calls(), ["first"], "nothing after the approval ran");
    db.assert_audit_ok();
}
