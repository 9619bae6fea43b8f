//! A new user's finding (session 6): a driver frozen past its lease (SIGSTOP) and thawed
//! after another process took the run over and finished it said "new_owner=nobody" and "no
//! other process took the run over … `resume` continues it". Its last words now name the
//! process that took the run over and what became of the run, with no resume hint.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, code, fixture, now_ms, stderr};

#[test]
fn a_thawed_driver_names_the_process_that_took_its_run_over() {
    let sb = Sandbox::new();
    let env = [("FOGBOOK_LEASE_TTL", "1s")];
    let runbook = fixture("long-wait.yaml").display().to_string();
    // Frozen between writes (stopped inside one, a lease renewal, A would keep B out of the
    // SQLite file), holding a live lease.
    let (a, run, _) = sb.frozen_driver(&["run", &runbook, "--set", "duration=4s"], &env, "nap");
    let pid_a = Pid::from_raw(a.id() as i32);

    // B takes the run over once A's lease has expired (refused with exit 4 until then) and
    // finishes it.
    let start = Instant::now();
    let b = loop {
        let out = sb.run_env(&["resume", &run], &env);
        if code(&out) != 4 {
            break out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "B never took over: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    assert_eq!(sb.run_status(&run), "succeeded");
    let taker: String = sb
        .sql()
        .query_row(
            "SELECT json_extract(data, '$.owner') FROM events WHERE run_id = ?1 AND kind = 'lease.taken_over'",
            [&run],
            |r| r.get(0),
        )
        .expect("B's takeover is in the audit trail");

    kill(pid_a, Signal::SIGCONT).unwrap();
    let a = a.wait_with_output().unwrap();
    let err = stderr(&a);
    assert_eq!(code(&a), 4, "{err}");
    assert!(
        err.contains(&format!("{taker} took it over")),
        "A names the process that took over: {err}"
    );
    assert!(
        err.contains("has since succeeded"),
        "A says what became of the run: {err}"
    );
    assert!(!err.contains("no other process took the run over"), "{err}");
    assert!(!err.contains("new_owner=nobody"), "{err}");
    assert!(
        !err.contains(&format!("resume {run}")),
        "no resume hint for a finished run: {err}"
    );
}

/// A driver frozen past its lease and thawed before any other process took the run over
/// stops (exit 4) and gives the lease up, as it does when it fences itself before a request:
/// the store no longer names a process that has exited, so the next process acquires the
/// run instead of taking it over (`lease.taken_over`) from it. Which of the two a thawed
/// driver met first (its heartbeat's renewal, or the check before a request) was a matter
/// of scheduling; here it is the renewal: a wait step sends nothing.
#[test]
fn a_thawed_driver_whose_lease_nobody_took_gives_it_up() {
    let sb = Sandbox::new();
    let env = [("FOGBOOK_LEASE_TTL", "1s")];
    let runbook = fixture("long-wait.yaml").display().to_string();
    let (a, run, owner) = sb.frozen_driver(&["run", &runbook, "--set", "duration=120s"], &env, "nap");
    let expires: i64 = sb
        .sql()
        .query_row("SELECT lease_expires_at FROM runs WHERE id = ?1", [&run], |r| r.get(0))
        .unwrap();
    // The lease expires (by the clock SQLite leases are written by, this host's).
    let start = Instant::now();
    while now_ms() <= expires {
        assert!(start.elapsed() < Duration::from_secs(30), "the lease never expired");
        std::thread::sleep(Duration::from_millis(20));
    }

    kill(Pid::from_raw(a.id() as i32), Signal::SIGCONT).unwrap();
    let a = a.wait_with_output().unwrap();
    let err = stderr(&a);
    assert_eq!(code(&a), 4, "{err}");
    let (holder, status): (Option<String>, String) = sb
        .sql()
        .query_row("SELECT lease_owner, status FROM runs WHERE id = ?1", [&run], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(holder, None, "A gave up the lease it no longer held: {err}");
    assert_eq!(status, "pending", "{err}");
    let released: i64 = sb
        .sql()
        .query_row(
            "SELECT count(*) FROM events WHERE run_id = ?1 AND kind = 'lease.released'
             AND json_extract(data, '$.owner') = ?2",
            [&run, &owner],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(released, 1, "A's release is audited: {err}");
}
