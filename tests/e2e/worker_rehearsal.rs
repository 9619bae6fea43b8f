//! Issue 17: a worker does not take over a rehearsal (`run --sim`) whose driver is frozen
//! (SIGSTOP) past its lease: that process still holds the emulator's address, where the
//! rehearsal's operations are polled, so the worker leaves the run to it with one log line
//! naming the driver, as `resume` refuses it (exit 4), before any takeover. Thawed, the
//! driver finishes the rehearsal itself. On SQLite and on PostgreSQL (where a worker claims
//! the leases of the runs it will drive in one transaction).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fogbook_testpg::TestPostgres;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::pg_backend::{Backend, Cell, Db};

/// The worker's line when it leaves a run to the holder of its lease.
const LEFT: &str = "not taking this run over";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child killed (SIGKILL also ends a stopped one) and reaped when dropped, so a failing
/// assertion leaves no frozen driver holding a port.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn count(db: &Db, sql: &str, run: &str) -> i64 {
    db.ints(sql, &[run])[0]
}

fn body(backend: Backend, server: Option<&TestPostgres>) {
    let db = Db::new(backend, server, "workerrehearsal");
    let ttl = [("FOGBOOK_LEASE_TTL", "2s")];
    let runbook = root().join("runbooks/configure-failover-group.yaml");
    let params = root().join("examples/configure-failover-group.yaml");
    let estate = root().join("examples/estate-unpaired.yaml");
    let mut driver = KillOnDrop(db.spawn(
        &[
            "run",
            runbook.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
            "--sim",
            "--sim-estate",
            estate.to_str().unwrap(),
            "--auto-approve",
        ],
        &ttl,
    ));
    let pid = Pid::from_raw(i32::try_from(driver.0.id()).unwrap());
    let start = Instant::now();
    while !db.exists()
        || db
            .try_query(
                "SELECT count(*) FROM steps s JOIN runs r ON r.id = s.run_id
                 WHERE s.status = 'running' AND r.lease_owner IS NOT NULL",
                &[],
            )
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .is_none_or(|row| row.first() != Some(&Cell::Int(1)))
    {
        assert!(
            driver.0.try_wait().unwrap().is_none(),
            "the rehearsal ended before it was frozen"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no step of the rehearsal ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(pid, Signal::SIGSTOP).unwrap();
    let run = db.last_run_id();
    let owner = db
        .text("SELECT lease_owner FROM runs WHERE id = ?1", &[&run])
        .expect("the driver holds the lease");
    // The frozen driver's lease runs out, by the clock leases are written by.
    let expired = match backend {
        Backend::Sqlite => "SELECT lease_expires_at FROM runs WHERE id = ?1",
        Backend::Postgres => {
            "SELECT lease_expires_at - CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)
             FROM runs WHERE id = ?1"
        }
    };
    let start = Instant::now();
    loop {
        let left = db.ints(expired, &[&run])[0];
        let left = match backend {
            Backend::Sqlite => {
                left - i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
            }
            Backend::Postgres => left,
        };
        if left < 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A worker looks at the run at every poll and leaves it to its frozen driver.
    let mut worker = KillOnDrop(db.spawn(&["worker", "--poll", "200ms"], &ttl));
    let err = worker.0.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l: &String| l.contains(LEFT)) {
        assert!(
            Instant::now() < deadline,
            "the worker never said it leaves the run: {seen:?}"
        );
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the worker never said it leaves the run: {seen:?}"),
        }
    }
    let line = seen.iter().find(|l| l.contains(LEFT)).unwrap();
    assert!(
        line.contains(&run) && line.contains(&owner) && line.contains("still listens on 127.0.0.1:"),
        "names the run, its driver and the address it holds: {line}"
    );
    // The driver stays frozen over several of the worker's polls (placing the thaw).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM events WHERE run_id = ?1 AND kind = 'lease.taken_over'",
            &run
        ),
        0,
        "the worker took nothing over"
    );
    assert_eq!(
        db.text("SELECT lease_owner FROM runs WHERE id = ?1", &[&run])
            .as_deref(),
        Some(owner.as_str()),
        "the worker claimed no lease"
    );
    seen.extend(lines.try_iter());
    assert!(
        !seen.iter().any(|l| l.contains("emulator restored")),
        "the worker restored no emulator while the driver held its address: {seen:?}"
    );

    // Thawed, the driver goes on: it finishes the rehearsal, or, frozen past its own
    // deadline, stops sending nothing (exit 4, see `frozen_driver.rs`), and then the worker
    // takes the run over from the exited process and finishes it.
    kill(pid, Signal::SIGCONT).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = driver.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the thawed driver did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut driver_err = String::new();
    if let Some(mut e) = driver.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut driver_err);
    }
    match status.code() {
        Some(0) => {}
        // Stopped on its lease (fenced before a request, or its write refused).
        Some(4) => assert!(driver_err.contains("lease"), "{driver_err}"),
        other => panic!("the thawed driver ended with {other:?}: {driver_err}"),
    }
    let start = Instant::now();
    while db.run_status(&run) != "succeeded" {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the rehearsal did not finish: {} {driver_err}",
            db.run_status(&run)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM events WHERE run_id = ?1 AND kind = 'lease.taken_over'",
            &run
        ),
        0,
        "no lease was taken from the driver while it lived (one it left is not a takeover)"
    );

    kill(Pid::from_raw(i32::try_from(worker.0.id()).unwrap()), Signal::SIGTERM).unwrap();
    let exit = worker.0.wait().unwrap();
    seen.extend(lines.iter());
    assert_eq!(exit.code(), Some(0), "{seen:?}");
    assert_eq!(
        seen.iter().filter(|l| l.contains(LEFT)).count(),
        1,
        "one line: {seen:?}"
    );
    db.assert_audit_ok();
}

#[test]
fn a_worker_leaves_a_rehearsal_to_its_frozen_driver_on_sqlite() {
    body(Backend::Sqlite, None);
}

#[test]
fn a_worker_leaves_a_rehearsal_to_its_frozen_driver_on_postgres() {
    let server = TestPostgres::start();
    body(Backend::Postgres, Some(&server));
}
