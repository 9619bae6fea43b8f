//! `fogbook bench --db postgres://…` with tiny sizes on a throwaway server: the floor (a
//! durable commit on that server, with the settings it reports, read back from outside) and
//! the sequential and concurrent figures are printed and agree with each other, and the
//! scratch schema is gone afterwards, the database's own tables untouched. Timing is only
//! reported, never asserted.

use fogbook_testpg::TestPostgres;
use serde_json::Value;

use crate::common::{Sandbox, code, stderr, stdout};

const TINY: &[&str] = &[
    "bench",
    "--floor-commits",
    "5",
    "--steps",
    "5",
    "--runs",
    "3",
    "--steps-per-run",
    "2",
];

/// The first column of the one row `sql` returns, as text, read from outside fogbook.
fn query_text(db: &str, sql: &str) -> Option<String> {
    let url: fogbook_state::pg::StoreUrl = db.parse().unwrap();
    let fogbook_state::pg::StoreUrl::Postgres(url) = url else {
        unreachable!("a PostgreSQL URL")
    };
    let mut client = fogbook_state::pg::connect(&url).unwrap();
    client.query_one(sql, &[]).unwrap().get(0)
}

/// One setting of the server.
fn setting(db: &str, name: &str) -> String {
    query_text(db, &format!("SHOW {name}")).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn bench_on_postgres_reports_steps_beside_the_servers_commit_floor() {
    let server = TestPostgres::start();
    let db = server.url();
    let sb = Sandbox::new();
    let mut args = TINY.to_vec();
    args.extend(["--db", &db, "--format", "json"]);
    let out = sb.run(&args);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains(server.password()) && !stderr(&out).contains(server.password()));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["kind"], "bench", "{doc}");
    assert_eq!(doc["backend"], "postgres", "{doc}");
    assert_eq!(doc["synchronous_commit"], setting(&db, "synchronous_commit"), "{doc}");
    assert_eq!(doc["fsync"], setting(&db, "fsync"), "{doc}");

    let f = |k: &str| doc[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {doc}"));
    let samples: Vec<f64> = doc["floor_samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(samples.len(), 3, "before, between and after the workloads: {doc}");
    assert!(samples.iter().all(|s| *s > 0.0), "{doc}");
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(
        close(f("floor_commits_per_s"), sorted[1]),
        "the floor is the median: {doc}"
    );
    for kind in ["sequential", "concurrent"] {
        let per_s = f(&format!("{kind}_steps_per_s"));
        assert!(per_s > 0.0, "{doc}");
        assert!(
            close(f(&format!("{kind}_ratio")), per_s / f("floor_commits_per_s")),
            "{kind} is given beside the floor: {doc}"
        );
        assert!(f(&format!("{kind}_commits_per_step")) > 0.0, "{doc}");
    }
    assert_eq!(doc["config"]["sequential_steps"], 5);
    assert_eq!(doc["config"]["concurrent_runs"], 3);

    let left = query_text(
        &db,
        "SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 'fogbook_bench_%'",
    );
    assert_eq!(left.as_deref(), Some("0"), "the scratch schema is dropped");
    let own = query_text(&db, "SELECT to_regclass('public.runs')::text");
    assert_eq!(own, None, "nothing is written into the database's own tables");

    let mut args = TINY.to_vec();
    args.extend(["--db", &db]);
    let text = sb.run(&args);
    assert_eq!(code(&text), 0, "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("floor: durable PostgreSQL commits"), "{text}");
    assert!(text.contains("sequential: one run of 5 no-op steps"), "{text}");
    assert!(text.contains("concurrent: 3 runs x 2 steps"), "{text}");
    assert!(
        text.contains(&format!("synchronous_commit={}", setting(&db, "synchronous_commit"))),
        "{text}"
    );
}
