//! Attack on issue 17's single-writer rule: a worker frozen (SIGSTOP: a VM pause, a long GC)
//! **inside a write transaction**, while it holds the store's advisory write lock. The
//! existing frozen-worker test freezes a worker between transactions; here the freeze is
//! placed from outside, by watching `pg_locks` for the worker's writer connection holding
//! the lock and stopping it then (confirmed afterwards: the server waits, idle in
//! transaction, for the frozen client).
//!
//! The promises checked: another host's write goes through within the bound
//! docs/DEPLOYMENT.md states (the server ends the silent transaction after
//! `idle_in_transaction_session_timeout`, half of `FOGBOOK_PG_TIMEOUT`, so a host whose own
//! deadline is `FOGBOOK_PG_TIMEOUT` gets the lock in time); another worker takes the frozen
//! worker's runs over and finishes them; thawed, the frozen worker writes nothing (fenced)
//! and repeats no effect. Effects are counted from outside (the job fixture's append-only
//! call log) and the audit events from the database's rows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{code, stderr, stdout};
use crate::pg_backend::{Cell, Db, OnPostgres};

/// Every round trip's deadline; the server ends a transaction idle for half of it.
const PG_TIMEOUT: &str = "2s";
const LEASE_TTL: &str = "3s";
const RUNS: usize = 6;

fn count(db: &Db, sql: &str) -> i64 {
    match db.query(sql, &[]).remove(0).remove(0) {
        Cell::Int(n) => n,
        Cell::Text(t) => t.unwrap().parse().unwrap(),
    }
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A watch on the database `url`: for a process id, the state of the backend of that
/// process's writer connection and when its transaction began, if that backend holds the
/// store's advisory write lock.
fn lock_watch(url: &str) -> impl FnMut(u32) -> Option<(String, String)> + use<> {
    let fogbook_state::pg::StoreUrl::Postgres(url) = url.parse().unwrap() else {
        unreachable!("a PostgreSQL URL")
    };
    let mut client = fogbook_state::pg::connect(&url).unwrap();
    move |pid| {
        let rows = client
            .query(
                "SELECT a.state, CAST(a.xact_start AS TEXT) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE $1",
                &[&format!("fogbook writer % pid {pid}")],
            )
            .unwrap();
        // The two views are read at slightly different instants: a backend seen holding the
        // lock may already show no transaction (NULL state or start) — not holding it now.
        rows.first().and_then(|r| {
            let state: Option<String> = r.get(0);
            let began: Option<String> = r.get(1);
            state.zip(began)
        })
    }
}

/// Stops `pid` while its writer connection holds the write lock: watches for the lock,
/// stops the process, and keeps the freeze only if the server is then waiting for the
/// frozen client inside that same transaction (else thaws it and watches again).
fn freeze_inside_a_write_transaction(holding: &mut impl FnMut(u32) -> Option<(String, String)>, pid: u32) {
    let target = Pid::from_raw(pid as i32);
    let start = Instant::now();
    let mut tries = 0;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "could not stop the worker inside a write transaction ({tries} tries)"
        );
        if holding(pid).is_none() {
            continue;
        }
        kill(target, Signal::SIGSTOP).unwrap();
        tries += 1;
        // Placing the fault: the stop took effect and bytes already sent were answered.
        std::thread::sleep(Duration::from_millis(50));
        let first = holding(pid);
        std::thread::sleep(Duration::from_millis(50));
        let second = holding(pid);
        if let (Some(a), Some(b)) = (&first, &second)
            && a == b
            && a.0 == "idle in transaction"
        {
            return;
        }
        kill(target, Signal::SIGCONT).unwrap();
    }
}

#[test]
fn a_worker_frozen_inside_a_write_transaction_frees_the_lock_and_is_fenced_when_thawed() {
    let pg = OnPostgres::start("frozen_tx");
    let db = &pg.db;
    let runs: Vec<String> = (0..RUNS)
        .map(|i| {
            let out = db.detach_job(&format!("g{i}"), "8s", &[("FOGBOOK_PG_TIMEOUT", PG_TIMEOUT)]);
            assert_eq!(code(&out), 0, "{}", stderr(&out));
            stdout(&out).trim().to_owned()
        })
        .collect();
    // W1 drives all six; polling every 50 ms and renewing six leases, it writes often.
    let mut w1 = db.spawn_logged(
        &[
            "worker",
            "--concurrency",
            "8",
            "--lease-ttl",
            LEASE_TTL,
            "--poll",
            "50ms",
            "--exit-when-idle",
            "--name",
            "w1",
        ],
        &[("FOGBOOK_PG_TIMEOUT", PG_TIMEOUT)],
        "w1",
    );
    wait_until("every run to reach its wait", Duration::from_secs(60), || {
        count(
            db,
            "SELECT count(*) FROM steps WHERE step_id = 'pause' AND status = 'running'",
        ) == RUNS as i64
    });
    let mut holding = lock_watch(db.url().unwrap());
    freeze_inside_a_write_transaction(&mut holding, w1.id());
    let w1_pid = Pid::from_raw(w1.id() as i32);

    // Another host writes (creates a run) with the same deadline: the lock it waits for is
    // freed by the server within half of it.
    let b = db.detach_job("gb", "10ms", &[("FOGBOOK_PG_TIMEOUT", PG_TIMEOUT)]);
    assert_eq!(
        code(&b),
        0,
        "another host's write waited for the frozen worker's lock past its deadline: {}",
        stderr(&b)
    );
    let late_run = stdout(&b).trim().to_owned();
    assert!(
        holding(w1.id()).is_none(),
        "the frozen worker's transaction was ended by the server"
    );
    assert!(w1.try_wait().unwrap().is_none(), "W1 is frozen, not gone");

    // W2 takes the frozen worker's runs over once their leases expire, and finishes them.
    let mut w2 = db.spawn_logged(
        &[
            "worker",
            "--concurrency",
            "8",
            "--lease-ttl",
            LEASE_TTL,
            "--poll",
            "100ms",
            "--name",
            "w2",
        ],
        &[("FOGBOOK_PG_TIMEOUT", PG_TIMEOUT)],
        "w2",
    );
    wait_until("W2 to finish every run", Duration::from_secs(90), || {
        count(db, "SELECT count(*) FROM runs WHERE status = 'succeeded'") == RUNS as i64 + 1
    });
    kill(Pid::from_raw(w2.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(w2.wait().unwrap().code(), Some(0));
    let events_before = count(db, "SELECT count(*) FROM events");
    let effects_before = db.sb.lines_of("effects.txt");

    // Thawed: its transaction is gone, its leases are others'. It writes nothing.
    kill(w1_pid, Signal::SIGCONT).unwrap();
    let w1_status = w1.wait().unwrap();
    let w1_err = std::fs::read_to_string(db.sb.path("w1.err")).unwrap();
    assert_eq!(
        count(db, "SELECT count(*) FROM events"),
        events_before,
        "the thawed worker wrote nothing: {w1_err}"
    );
    assert_eq!(db.sb.lines_of("effects.txt"), effects_before, "{w1_err}");
    // A worker is a service: runs it lost to another are logged, not its failure.
    assert_eq!(w1_status.code(), Some(0), "{w1_err}");
    assert!(
        w1_err.contains("lost the lease") || w1_err.contains("took it over"),
        "W1 says it was fenced: {w1_err}"
    );

    for run in &runs {
        let taken = db.query(
            "SELECT data FROM events WHERE run_id = ?1 AND kind = 'lease.taken_over'",
            &[run],
        );
        assert_eq!(taken.len(), 1, "{run}: one takeover: {taken:?}");
        let Cell::Text(Some(data)) = &taken[0][0] else {
            panic!("{taken:?}")
        };
        assert!(data.contains(":w1\"") && data.contains(":w2\""), "{run}: {data}");
    }
    let mut per_effect: BTreeMap<String, usize> = BTreeMap::new();
    for line in db.sb.lines_of("effects.txt") {
        *per_effect.entry(line).or_default() += 1;
    }
    assert_eq!(per_effect.len(), 2 * (RUNS + 1), "{per_effect:?}");
    assert!(
        per_effect.values().all(|n| *n == 1),
        "an effect repeated: {per_effect:?}"
    );
    assert!(per_effect.contains_key(&format!("{late_run} after")));
    db.assert_audit_ok();
}
