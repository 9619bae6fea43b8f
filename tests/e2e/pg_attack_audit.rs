//! Attack on issue 17's "one tamper-evident audit chain, correct under concurrent writers
//! from several hosts": `audit verify` run again and again while two worker processes (two
//! hosts, each with its own connections) append to the chain. Every verify must pass (it
//! reads the chain and the runs, steps and windows it checks them against in one consistent
//! read, so a write landing between two of its statements cannot make a sound trail look
//! tampered), the chain must verify at the end, and a head taken in the middle of the
//! writes must be found again (`--since-head`). Runs on both backends, PostgreSQL first.

use std::time::{Duration, Instant};

use fogbook_testpg::TestPostgres;
use serde_json::Value;

use crate::common::{code, stderr, stdout};
use crate::pg_backend::{Backend, Db};

const RUNS: usize = 16;

/// `audit verify --format json` (with `extra` arguments): passed, head, events verified.
fn verify(db: &Db, extra: &[&str]) -> (String, u64) {
    let mut args = vec!["--format", "json", "audit", "verify"];
    args.extend_from_slice(extra);
    let out = db.run(&args);
    assert_eq!(
        code(&out),
        0,
        "audit verify failed while others wrote: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    (
        v["report"]["head"].as_str().unwrap().to_owned(),
        v["report"]["events"].as_u64().unwrap(),
    )
}

fn verify_under_concurrent_writers(backend: Backend) {
    let server = (backend == Backend::Postgres).then(TestPostgres::start);
    let db = Db::new(backend, server.as_ref(), "audit_attack");
    for i in 0..RUNS {
        let out = db.detach_job(&format!("g{i}"), "200ms", &[]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let args = |name| {
        [
            "worker",
            "--concurrency",
            "4",
            "--poll",
            "50ms",
            "--exit-when-idle",
            "--name",
            name,
        ]
    };
    let mut workers = [
        db.spawn_logged(&args("w1"), &[], "w1"),
        db.spawn_logged(&args("w2"), &[], "w2"),
    ];
    let start = Instant::now();
    let mut seen: Vec<(String, u64)> = Vec::new();
    while workers.iter_mut().any(|w| w.try_wait().unwrap().is_none()) {
        assert!(start.elapsed() < Duration::from_secs(120), "the workers did not end");
        seen.push(verify(&db, &[]));
    }
    for (i, w) in workers.iter_mut().enumerate() {
        let status = w.wait().unwrap();
        let err = std::fs::read_to_string(db.sb.path(&format!("w{}.err", i + 1))).unwrap();
        assert_eq!(status.code(), Some(0), "worker {}: {err}", i + 1);
    }
    let succeeded = db.query("SELECT id FROM runs WHERE status = 'succeeded'", &[]);
    assert_eq!(succeeded.len(), RUNS, "every run succeeded");
    let (_, events) = verify(&db, &[]);
    // The verifies ran while the chain grew (else this test attacked nothing).
    let growing: Vec<u64> = seen.iter().map(|(_, n)| *n).collect();
    assert!(
        growing.len() >= 2 && growing.first() < growing.last() && *growing.last().unwrap() <= events,
        "verifies saw the chain grow: {growing:?} then {events}"
    );
    // Every head seen in the middle of the writes is still on the chain.
    for (head, _) in &seen {
        verify(&db, &["--since-head", head]);
    }
}

#[test]
fn audit_verify_passes_while_two_workers_append_on_postgres() {
    verify_under_concurrent_writers(Backend::Postgres);
}

#[test]
fn audit_verify_passes_while_two_workers_append_on_sqlite() {
    verify_under_concurrent_writers(Backend::Sqlite);
}
