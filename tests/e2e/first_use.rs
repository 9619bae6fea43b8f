//! Concurrent first use: any number of processes may open a new database at once.

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr};

/// Ten `fogbook run` started together on a `--db` that does not exist yet: all of them
/// succeed (the schema is created once; the others wait for it instead of re-applying it).
#[test]
fn ten_concurrent_runs_on_a_new_database_all_succeed() {
    let sb = Sandbox::new();
    assert!(!sb.db().exists());
    let job = fixture("job.yaml").display().to_string();
    let out = sb.path("effects.txt").display().to_string();
    let children: Vec<_> = (0..10)
        .map(|i| {
            let (group, out) = (format!("group=g{i}"), format!("out={out}"));
            sb.spawn(&["run", &job, "--set", &out, "--set", &group, "--set", "pause=0s"], &[])
        })
        .collect();
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
