//! Issue 20, item 1: a driver frozen past its lease (SIGSTOP, as a VM pause, a long GC or a
//! suspended laptop would) while it waits to retry a throttled DELETE must not send that
//! DELETE when it is thawed, after another process took the run over, deleted the failover
//! group and re-created it. The emulator's journal and request counts are the counters.

use std::fs::File;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::common::{Sandbox, assert_audit_ok, code, stderr};
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

fn engine_env(sim: &Sim) -> [(&'static str, &str); 3] {
    [
        ("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()),
        ("FOGBOOK_ARM_TOKEN", "anything"),
        ("FOGBOOK_LEASE_TTL", "2s"),
    ]
}

fn spawn(sb: &Sandbox, sim: &Sim, args: &[String], tag: &str) -> Child {
    let mut c = sb.cmd();
    c.args(args)
        .stdout(File::create(sb.path(&format!("{tag}.out"))).unwrap())
        .stderr(File::create(sb.path(&format!("{tag}.err"))).unwrap());
    for (k, v) in engine_env(sim) {
        c.env(k, v);
    }
    c.spawn().expect("spawn fogbook")
}

/// How many group DELETEs reached the emulator (any answer, throttled ones included), and
/// how many of them it answered 429.
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
fn applied_group_deletes(sim: &Sim) -> Vec<Value> {
    journal(&sim.url)
        .into_iter()
        .filter(|e| {
            e["method"] == "DELETE"
                && e["applied"] == true
                && e["path"].as_str().unwrap().contains("/instanceFailoverGroups/fog-demo")
        })
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_driver_frozen_past_its_lease_sends_nothing_when_thawed() {
    let sb = Sandbox::new();
    let sim = start_sim(&root().join("examples/estate.yaml"), None);
    // The group's DELETE is throttled twice (429 with Retry-After): the driver waits to retry.
    sim.set_faults(&json!({ "seed": 1, "rules": [
        { "operation": GROUP_DELETE, "error_rate": 1.0, "error_status": 429, "max_hits": 2 }
    ] }));

    // Driver A, frozen as soon as its first DELETE was throttled (it then waits to retry).
    let mut a = spawn(&sb, &sim, &run_args(), "a");
    let pid_a = Pid::from_raw(a.id() as i32);
    wait_until("A's group DELETE throttled", Duration::from_secs(60), || {
        group_deletes(&sim).1 >= 1 || a.try_wait().unwrap().is_some()
    });
    kill(pid_a, Signal::SIGSTOP).unwrap();
    assert!(
        a.try_wait().unwrap().is_none(),
        "A ended before the DELETE was throttled: {}",
        std::fs::read_to_string(sb.path("a.err")).unwrap()
    );
    assert!(applied_group_deletes(&sim).is_empty(), "A's DELETE was not applied");
    let run = sb.last_run_id();

    // B resumes as soon as the lease lets it (refused, exit 4, while A's lease is valid), and
    // drives the run to its end: the group is deleted once and re-created.
    let resume = vec!["resume".to_owned(), run.clone()];
    let start = Instant::now();
    let b = loop {
        let mut c = sb.cmd();
        c.args(&resume);
        for (k, v) in engine_env(&sim) {
            c.env(k, v);
        }
        let out = c.output().unwrap();
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
    assert_eq!(code(&b), 0, "B drove the run to its end: {}", stderr(&b));
    assert_eq!(sb.run_status(&run), "succeeded");
    assert_eq!(applied_group_deletes(&sim).len(), 1, "B deleted the group once");
    assert!(state(&sim.url)["world"]["failover_groups"].get("fog-demo").is_some());
    let deletes_before_thaw = group_deletes(&sim).0;

    // A is thawed: it finds its lease gone before its retry and sends nothing.
    kill(pid_a, Signal::SIGCONT).unwrap();
    let status = a.wait().unwrap();
    let a_err = std::fs::read_to_string(sb.path("a.err")).unwrap();
    assert_eq!(
        group_deletes(&sim).0,
        deletes_before_thaw,
        "A sent no DELETE after it was thawed: {a_err}"
    );
    let applied = applied_group_deletes(&sim);
    assert_eq!(applied.len(), 1, "exactly one applied DELETE of the group: {applied:?}");
    assert!(
        state(&sim.url)["world"]["failover_groups"].get("fog-demo").is_some(),
        "the group B re-created is still there"
    );
    assert_eq!(status.code(), Some(4), "A exits 4 (lost its lease): {a_err}");
    assert!(
        a_err.contains("at step `delete-group`: this process was frozen or starved past its lease")
            && a_err.contains("no request was sent"),
        "A says it sent nothing: {a_err}"
    );
    assert_eq!(sb.run_status(&run), "succeeded");
    assert_audit_ok(&sb);
}

#[test]
fn a_thawed_driver_leaves_the_run_resumable_without_sending() {
    let sb = Sandbox::new();
    let sim = start_sim(&root().join("examples/estate.yaml"), None);
    sim.set_faults(&json!({ "seed": 1, "rules": [
        { "operation": GROUP_DELETE, "error_rate": 1.0, "error_status": 429, "max_hits": 2 }
    ] }));
    let mut a = spawn(&sb, &sim, &run_args(), "a");
    let pid_a = Pid::from_raw(a.id() as i32);
    wait_until("A's group DELETE throttled", Duration::from_secs(60), || {
        group_deletes(&sim).1 >= 1 || a.try_wait().unwrap().is_some()
    });
    kill(pid_a, Signal::SIGSTOP).unwrap();
    assert!(
        a.try_wait().unwrap().is_none(),
        "A ended before the DELETE was throttled"
    );
    let run = sb.last_run_id();

    // Nobody takes over; A stays frozen until its stored lease has expired by more than the
    // margin (500 ms of the 2 s lease), so its own deadline has certainly passed.
    let expiry = || -> i64 {
        sb.sql()
            .query_row("SELECT lease_expires_at FROM runs WHERE id = ?1", [&run], |r| r.get(0))
            .unwrap()
    };
    let now_ms = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    wait_until("A's lease expired past the margin", Duration::from_secs(30), || {
        now_ms() > expiry() + 500
    });
    let deletes_before_thaw = group_deletes(&sim).0;
    kill(pid_a, Signal::SIGCONT).unwrap();
    let status = a.wait().unwrap();
    let a_err = std::fs::read_to_string(sb.path("a.err")).unwrap();
    assert_eq!(
        group_deletes(&sim).0,
        deletes_before_thaw,
        "A sent no DELETE after it was thawed: {a_err}"
    );
    assert_eq!(status.code(), Some(4), "{a_err}");
    assert!(a_err.contains("no request was sent"), "{a_err}");
    assert!(applied_group_deletes(&sim).is_empty());

    // The run is resumable at once (A gave its lease up) and ends as it should.
    let mut c = sb.cmd();
    c.args(["resume", &run]);
    for (k, v) in engine_env(&sim) {
        c.env(k, v);
    }
    let b = c.output().unwrap();
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    assert_eq!(sb.run_status(&run), "succeeded");
    assert_eq!(applied_group_deletes(&sim).len(), 1, "the group was deleted once");
    assert!(state(&sim.url)["world"]["failover_groups"].get("fog-demo").is_some());
    assert_audit_ok(&sb);
}
