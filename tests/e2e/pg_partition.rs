//! Issue 17: a driver on PostgreSQL cut off from its database by a network partition
//! (packets taken and never answered, no reset: a proxy that stops forwarding) notices on
//! its own, sends no Azure request once its lease may be another's, and ends with the
//! lease-lost code; another process with a working path to the database takes the run over
//! after the lease and finishes it. Effects are counted from outside: the emulator's
//! request counts and journal, and the rows of the database.

use std::fs::File;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use fogbook_testpg::{TestPostgres, TestProxy};
use serde_json::{Value, json};

use crate::common::{Sandbox, code, stderr, stdout};
use crate::seed_runbooks::{Sim, get_json, journal, start_sim, state};

const GROUP_DELETE: &str = "InstanceFailoverGroups_Delete";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_args() -> Vec<String> {
    vec![
        "run".to_owned(),
        root().join("runbooks/change-primary-region.yaml").display().to_string(),
        "--params".to_owned(),
        root().join("examples/change-primary-region.yaml").display().to_string(),
        "--set".to_owned(),
        format!(
            "admin_password_file={}",
            root().join("examples/sim-admin-password.txt").display()
        ),
        "--auto-approve".to_owned(),
    ]
}

/// `fogbook ARGS` on the database `db`, against the emulator, with a 2 s lease.
fn fogbook(sb: &Sandbox, sim: &Sim, db: &str, args: &[String]) -> std::process::Command {
    let mut c = sb.cmd();
    c.args(args)
        .env("FOGBOOK_DB", db)
        .env("FOGBOOK_LOCAL_DIR", sb.dir.path())
        .env("FOGBOOK_ARM_ENDPOINT", &sim.url)
        .env("FOGBOOK_ARM_TOKEN", "anything")
        .env("FOGBOOK_LEASE_TTL", "2s");
    c
}

/// How many group DELETEs reached the emulator (any answer), and how many it answered 429.
fn group_deletes(sim: &Sim) -> (u64, u64) {
    let requests = get_json(&sim.url, "/_sim/requests");
    let mut all = 0;
    let mut throttled = 0;
    for c in requests["counts"].as_array().unwrap() {
        if c["operation"] == GROUP_DELETE {
            let n = c["count"].as_u64().unwrap();
            all += n;
            if c["status"] == 429 {
                throttled += n;
            }
        }
    }
    (all, throttled)
}

/// The group DELETEs the emulator applied (journal).
fn applied_group_deletes(sim: &Sim) -> usize {
    journal(&sim.url)
        .into_iter()
        .filter(|e| {
            e["method"] == "DELETE"
                && e["applied"] == true
                && e["path"].as_str().unwrap().contains("/instanceFailoverGroups/fog-demo")
        })
        .count()
}

/// The runs (id, status), read straight from the database.
fn runs(db: &str) -> Vec<(String, String)> {
    let fogbook_state::pg::StoreUrl::Postgres(url) = db.parse().unwrap() else {
        unreachable!("a PostgreSQL URL")
    };
    let mut client = fogbook_state::pg::connect(&url).unwrap();
    client
        .query("SELECT id, status FROM runs ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(mut c: std::process::Command, sb: &Sandbox, tag: &str) -> Child {
    c.stdout(File::create(sb.path(&format!("{tag}.out"))).unwrap())
        .stderr(File::create(sb.path(&format!("{tag}.err"))).unwrap());
    c.spawn().expect("spawn fogbook")
}

#[test]
fn a_driver_cut_off_from_postgres_stops_and_another_host_finishes_the_run() {
    let server = TestPostgres::start();
    let proxy = TestProxy::start(server.port());
    let direct = server.url();
    let cut_off = proxy.url(&format!("{direct}&connect_timeout=1"));
    let sb = Sandbox::new();
    let sim = start_sim(&root().join("examples/estate.yaml"), None);
    // The group's DELETE is throttled twice (429 with Retry-After): the driver waits to retry.
    sim.set_faults(&json!({ "seed": 1, "rules": [
        { "operation": GROUP_DELETE, "error_rate": 1.0, "error_status": 429, "max_hits": 2 }
    ] }));

    // Driver A reaches the database through the proxy; its every round trip is bounded
    // by 1 s. Its network to the database is cut once its first DELETE was throttled.
    let mut a = fogbook(&sb, &sim, &cut_off, &run_args());
    a.env("FOGBOOK_PG_TIMEOUT", "1s");
    let mut a = spawn(a, &sb, "a");
    let a_err = || std::fs::read_to_string(sb.path("a.err")).unwrap();
    wait_until("A's group DELETE throttled", Duration::from_secs(120), || {
        group_deletes(&sim).1 >= 1 || a.try_wait().unwrap().is_some()
    });
    proxy.black_hole();
    assert!(
        a.try_wait().unwrap().is_none(),
        "A ended before its DELETE was throttled: {}",
        a_err()
    );
    let [(run, _)] = <[_; 1]>::try_from(runs(&direct)).expect("one run");

    // A notices on its own, while the partition lasts: it ends with the lease-lost code,
    // saying what happened.
    let partitioned = Instant::now();
    wait_until("A to notice the partition and end", Duration::from_secs(60), || {
        a.try_wait().unwrap().is_some()
    });
    let noticed = partitioned.elapsed();
    let status = a.wait().unwrap();
    let a_err = a_err();
    assert_eq!(status.code(), Some(4), "A exits with the lease-lost code: {a_err}");
    assert!(
        a_err.contains("lost the connection to PostgreSQL") || a_err.contains("no answer from the server"),
        "A says it lost the database: {a_err}"
    );
    assert!(
        a_err.contains("no request was sent") || a_err.contains("lease"),
        "A says what became of its lease: {a_err}"
    );
    let deletes_when_a_ended = group_deletes(&sim).0;

    // B, with a working path to the database, takes the run over after the lease (refused,
    // exit 4, while A's lease is valid) and drives it to its end.
    let resume = vec!["resume".to_owned(), run.clone()];
    let start = Instant::now();
    let b = loop {
        let out = fogbook(&sb, &sim, &direct, &resume).output().unwrap();
        if code(&out) != 4 {
            break out;
        }
        assert!(
            stderr(&out).contains("is being driven by"),
            "B refused only because A's lease is still valid: {}",
            stderr(&out)
        );
        assert!(start.elapsed() < Duration::from_secs(60), "B never took over");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code(&b), 0, "B drove the run to its end: {}{}", stdout(&b), stderr(&b));
    assert_eq!(runs(&direct), [(run.clone(), "succeeded".to_owned())]);

    let history = || {
        let out = fogbook(
            &sb,
            &sim,
            &direct,
            &[
                "--format".to_owned(),
                "json".to_owned(),
                "history".to_owned(),
                run.clone(),
            ],
        )
        .output()
        .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let history: Value = serde_json::from_slice(&out.stdout).unwrap();
        history["events"].as_array().unwrap().clone()
    };
    let before_heal = history();

    // The network comes back: what A had sent into the partition is delivered, and changes
    // nothing (its transactions were ended by the server, or are refused by the fence).
    proxy.heal();
    wait_until(
        "every connection through the proxy closed",
        Duration::from_secs(60),
        || proxy.open_directions() == 0,
    );
    assert_eq!(history(), before_heal, "nothing written after the network came back");
    assert_eq!(runs(&direct), [(run.clone(), "succeeded".to_owned())]);
    assert_eq!(applied_group_deletes(&sim), 1, "the group was deleted once");
    assert!(
        state(&sim.url)["world"]["failover_groups"].get("fog-demo").is_some(),
        "the group B re-created is still there"
    );
    let (deletes, _) = group_deletes(&sim);
    assert!(
        deletes > deletes_when_a_ended,
        "B's DELETE came after A ended ({deletes} > {deletes_when_a_ended})"
    );
    let kinds: Vec<&str> = before_heal.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"lease.taken_over"),
        "B's takeover is audited: {kinds:?}"
    );
    assert!(kinds.contains(&"run.succeeded"), "{kinds:?}");
    let verify = fogbook(&sb, &sim, &direct, &["audit".to_owned(), "verify".to_owned()])
        .output()
        .unwrap();
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
    eprintln!("A noticed the partition and ended {noticed:?} after it began");
}
