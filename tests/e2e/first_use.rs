//! Concurrent first use: any number of processes may open a new database at once.

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr};

/// Ten `fogbook run` started together on a `--db` that does not exist yet: all of them
/// succeed (the schema is created once; the others wait for it instead of re-applying it).
/// Three rounds, each on a new database: the race is one of timing.
#[test]
fn ten_concurrent_runs_on_a_new_database_all_succeed() {
    for _ in 0..3 {
        ten_at_once();
    }
}

fn ten_at_once() {
    let sb = Sandbox::new();
    assert!(!sb.db().exists());
    let job = fixture("job.yaml").display().to_string();
    let out = sb.path("effects.txt").display().to_string();
    // Each process reads its parameters from a named pipe (before it opens the database)
    // and blocks there; once all ten wait, the parameters are written, so the ten first
    // opens of the database happen together.
    let children: Vec<_> = (0..10)
        .map(|i| {
            let pipe = sb.path(&format!("params-{i}.yaml"));
            let made = std::process::Command::new("mkfifo").arg(&pipe).status().unwrap();
            assert!(made.success());
            let child = sb.spawn(&["run", &job, "--params", &pipe.display().to_string()], &[]);
            (pipe, format!("out: {out}\ngroup: g{i}\npause: 0s\n"), child)
        })
        .collect();
    let writers: Vec<(std::fs::File, &String)> = children
        .iter()
        .map(|(pipe, params, _)| (std::fs::OpenOptions::new().write(true).open(pipe).unwrap(), params))
        .collect();
    for (mut w, params) in writers {
        std::io::Write::write_all(&mut w, params.as_bytes()).unwrap();
    }
    let children = children.into_iter().map(|(_, _, child)| child);
    let mut failed = Vec::new();
    for child in children {
        let o = child.wait_with_output().unwrap();
        if code(&o) != 0 {
            failed.push(format!("exit {}: {}", code(&o), stderr(&o)));
        }
    }
    assert!(failed.is_empty(), "{} of 10 runs failed: {failed:#?}", failed.len());
    let succeeded: i64 = sb
        .sql()
        .query_row("SELECT count(*) FROM runs WHERE status = 'succeeded'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(succeeded, 10);
    // Counted from outside: each run's two command steps wrote their line once.
    assert_eq!(sb.lines_of("effects.txt").len(), 20);
    assert_audit_ok(&sb);
}
