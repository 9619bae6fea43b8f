//! Operator fixes found by the new-user trial (task `opfix2`): each test runs the binary as
//! that user did and checks what they saw.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{Sandbox, code, fixture, stderr, stdout};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// `run --sim` of `configure-failover-group` on its example parameters (the demo estate
/// without its group), with `env`.
fn rehearsal_args() -> Vec<String> {
    vec![
        "run".to_owned(),
        root()
            .join("runbooks/configure-failover-group.yaml")
            .display()
            .to_string(),
        "--params".to_owned(),
        root()
            .join("examples/configure-failover-group.yaml")
            .display()
            .to_string(),
        "--sim".to_owned(),
        "--sim-estate".to_owned(),
        root().join("examples/estate-unpaired.yaml").display().to_string(),
        "--auto-approve".to_owned(),
    ]
}

/// A rehearsal killed (SIGKILL, by a failpoint) right after the group's creation started:
/// its cloud operation is in flight, nobody drives it. Returns its run id.
fn killed_rehearsal(sb: &Sandbox) -> String {
    let args = rehearsal_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sb.run_env(&args, &[("FOGBOOK_FAILPOINTS", "after-start:create-group")]);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{}",
        stderr(&out)
    );
    sb.last_run_id()
}

/// The emulator state files of the sandbox's rehearsals (`<db>.sim/`).
fn state_files(sb: &Sandbox) -> Vec<PathBuf> {
    let dir = PathBuf::from(format!("{}.sim", sb.db().display()));
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn count_events(sb: &Sandbox, run: &str, kind: &str) -> i64 {
    sb.sql()
        .query_row(
            "SELECT count(*) FROM events WHERE run_id = ?1 AND kind = ?2",
            [run, kind],
            |r| r.get(0),
        )
        .unwrap()
}

/// A child process killed (SIGKILL, which also ends a stopped one) and reaped when dropped,
/// so a failing assertion leaves no frozen driver holding a port.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Item 1: a driver frozen (SIGSTOP) past its lease still holds its emulator's address. A
/// competing `resume` is refused busy (exit 4), naming the driver's process and what to do,
/// before any takeover; once that process is gone, `resume` finishes the rehearsal.
#[test]
fn a_resume_of_a_rehearsal_whose_driver_is_frozen_is_busy_and_names_the_driver() {
    let sb = Sandbox::new();
    let args = rehearsal_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let driver = KillOnDrop(sb.spawn(&args, &[("FOGBOOK_LEASE_TTL", "2s")]));
    let pid = driver.0.id();
    sb.wait_for("a step of the rehearsal to run", Duration::from_secs(60), |sb| {
        sb.sql()
            .query_row("SELECT count(*) FROM steps WHERE status = 'running'", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0)
            >= 1
    });
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGSTOP).unwrap();
    let run = sb.last_run_id();
    // The frozen driver's lease runs out (the condition, read from the database).
    sb.wait_for("the frozen driver's lease to expire", Duration::from_secs(30), |sb| {
        sb.sql()
            .query_row("SELECT lease_expires_at FROM runs WHERE id = ?1", [&run], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .unwrap()
            .is_some_and(|until| until < now_ms())
    });

    let out = sb.run_env(&["resume", &run], &[("FOGBOOK_LEASE_TTL", "2s")]);
    let err = stderr(&out);
    assert_eq!(code(&out), 4, "busy, not bad input: {err}");
    assert!(
        err.contains(&format!("process {pid} on host")) && err.contains("still listens on 127.0.0.1:"),
        "names the driver and the address it holds: {err}"
    );
    assert!(
        err.contains(&format!("kill -CONT {pid}")) && err.contains(&format!("fogbook resume {run}")),
        "says what to do: {err}"
    );
    assert!(!err.contains("free that port"), "{err}");
    assert_eq!(
        count_events(&sb, &run, "lease.taken_over"),
        0,
        "refused before taking the lease over"
    );

    // Once the frozen driver is gone, the run is taken over and finishes.
    drop(driver);
    let out = sb.run_env(&["resume", &run], &[("FOGBOOK_LEASE_TTL", "2s")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.run_status(&run), "succeeded");
}

/// Item 2: a corrupt emulator state file is named as corrupt, with what to do, not taken
/// for a port in use.
#[test]
fn a_corrupt_emulator_state_file_is_named_as_corrupt() {
    let sb = Sandbox::new();
    let run = killed_rehearsal(&sb);
    let files = state_files(&sb);
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::write(&files[0], "{ not the emulator's state").unwrap();
    let out = sb.run(&["resume", &run]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains(&format!("{} is corrupt", files[0].display())),
        "names the file as corrupt: {err}"
    );
    assert!(err.contains(&format!("fogbook cancel {run}")), "{err}");
    assert!(!err.contains("free that port"), "not taken for a port in use: {err}");
}

/// Item 3: a cancel refused for a cloud operation in flight (no window open) says to wait
/// for the operation, and how the run goes on (nobody drives it: `resume`).
#[test]
fn a_cancel_refusal_hint_fits_its_reason() {
    let sb = Sandbox::new();
    let run = killed_rehearsal(&sb);
    let out = sb.run(&["cancel", &run, "--by", "dave"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("has a cloud operation in flight"), "{err}");
    assert!(
        err.contains("until its cloud operation has ended")
            && err.contains(&format!("nobody drives it: `fogbook resume {run}` continues it")),
        "the hint fits an operation in flight on a run nobody drives: {err}"
    );
    assert!(!err.contains("window"), "no window is open, the hint names none: {err}");
    assert_eq!(sb.run_status(&run), "running", "nothing changed");
}

/// Item 4: `--db` naming a directory says so and what to pass, for a command that reads an
/// existing database and for one that creates it; nothing is created in the directory.
#[test]
fn db_naming_a_directory_says_it_is_a_directory() {
    let sb = Sandbox::new();
    let dir = sb.path("states");
    std::fs::create_dir(&dir).unwrap();
    let dir_text = dir.display().to_string();
    let job = fixture("job.yaml").display().to_string();
    let out_file = sb.path("out.log").display().to_string();
    for args in [vec!["runs"], vec!["run", &job, "--set", &format!("out={out_file}")]] {
        let out = sb.run_env(&args, &[("FOGBOOK_DB", &dir_text)]);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!("--db {dir_text} is a directory")),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!("--db {}", dir.join("fogbook.db").display())),
            "says what to pass: {err}"
        );
        assert!(!err.contains("disk I/O"), "{err}");
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing created");
    assert!(!Path::new(&out_file).exists(), "no step ran");
}

/// A run of `long-wait.yaml` whose driver was killed in its wait: stalled.
fn stalled_run(sb: &Sandbox) -> String {
    let long_wait = fixture("long-wait.yaml").display().to_string();
    let mut child = sb.spawn(&["run", &long_wait, "--set", "duration=120s"], &[]);
    sb.wait_for("the wait step to run", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row(
                "SELECT COUNT(*) FROM steps WHERE step_id = 'nap' AND status = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n == 1)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    sb.last_run_id()
}

/// Item 5: `status --format json` and `runs --format json` give a stall in one shape:
/// `stalled` a bool, with `stalled_since`, `stalled_since_ms` and `stalled_why`.
#[test]
fn status_and_runs_give_stalled_in_one_shape() {
    let sb = Sandbox::new();
    let run = stalled_run(&sb);
    let out = sb.run(&["--format", "json", "status", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let out = sb.run(&["--format", "json", "runs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let runs: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let listed = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run.as_str())
        .unwrap()
        .clone();
    for doc in [&status, &listed] {
        assert_eq!(doc["stalled"], Value::Bool(true), "{doc}");
        assert!(
            doc["stalled_why"].as_str().is_some_and(|w| w.contains("has exited")),
            "{doc}"
        );
        assert!(
            doc["stalled_since"].is_string() && doc["stalled_since_ms"].is_i64(),
            "{doc}"
        );
    }
    for key in ["stalled_since", "stalled_since_ms", "stalled_why"] {
        assert_eq!(status[key], listed[key], "{key}");
    }

    // A run that is not stalled: false, and nulls.
    let done = sb.run(&[
        "run",
        &fixture("long-wait.yaml").display().to_string(),
        "--set",
        "duration=1ms",
    ]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    let finished = sb.last_run_id();
    let out = sb.run(&["--format", "json", "status", &finished]);
    let status: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["stalled"], Value::Bool(false), "{status}");
    assert!(
        status["stalled_since"].is_null() && status["stalled_why"].is_null(),
        "{status}"
    );
}

/// A fleet of two `job` targets, one at a time, each pausing `pause`.
fn job_fleet(sb: &Sandbox, pause: &str) -> PathBuf {
    sb.write(
        "jobs.yaml",
        &format!(
            "fleet: jobs
runbook: {runbook}
params: {{out: {out}, pause: {pause}}}
targets:
  over: [a, b]
  name: \"job-${{{{ item }}}}\"
  params: {{group: \"g-${{{{ item }}}}\"}}
rate: {{max_concurrency: 1, max_errors: 1}}
",
            runbook = fixture("job.yaml").display(),
            out = sb.path("out.log").display(),
        ),
    )
}

fn kill_now(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Item 6: `fleet status` of a fleet whose driver was killed says it is stalled, with the
/// command that continues it (text, JSON, and the list of fleets); `fleet resume` does.
#[test]
fn fleet_status_of_a_killed_driver_says_stalled_with_the_resume_hint() {
    let sb = Sandbox::new();
    let file = job_fleet(&sb, "2s");
    let mut driver = sb.spawn(&["fleet", "run", file.to_str().unwrap()], &[]);
    sb.wait_for("the first target to start", Duration::from_secs(20), |sb| {
        sb.lines_of("out.log").len() == 1
    });
    kill_now(&mut driver);
    let fleet: String = sb.sql().query_row("SELECT id FROM fleets", [], |r| r.get(0)).unwrap();

    let out = sb.run(&["fleet", "status", "jobs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("status: stalled"), "{text}");
    assert!(
        text.contains("nobody drives this fleet") && text.contains(&format!("`fogbook fleet resume {fleet}`")),
        "{text}"
    );

    let out = sb.run(&["--format", "json", "fleet", "status", "jobs"]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["state"], "stalled", "{doc}");
    assert_eq!(doc["stalled"], Value::Bool(true), "{doc}");

    let out = sb.run(&["fleet", "status"]);
    let list = stdout(&out);
    assert!(
        list.contains("stalled") && list.contains(&format!("fleet resume {fleet}")),
        "{list}"
    );

    let out = sb.run(&["fleet", "resume", &fleet]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&sb.run(&["--format", "json", "fleet", "status", "jobs"]))).unwrap();
    assert_eq!(doc["state"], "succeeded", "{doc}");
    assert_eq!(doc["stalled"], Value::Bool(false), "{doc}");
}

/// Item 8: the fleet commands' store errors go through the one mapping of errors to exit
/// codes: a damaged database (its `fleets` table gone) is the database failing (exit 6, with
/// the hint about --db), not bad input (exit 2).
#[test]
fn a_fleet_command_on_a_damaged_database_exits_6_like_every_command() {
    let sb = Sandbox::new();
    let done = sb.run(&[
        "run",
        &fixture("long-wait.yaml").display().to_string(),
        "--set",
        "duration=1ms",
    ]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    let db = rusqlite::Connection::open(sb.db()).unwrap();
    db.execute_batch("PRAGMA foreign_keys = OFF; DROP TABLE fleets;")
        .unwrap();
    drop(db);
    for args in [
        vec!["fleet", "status"],
        vec!["fleet", "status", "jobs"],
        vec!["fleet", "report", "jobs"],
    ] {
        let out = sb.run(&args);
        let err = stderr(&out);
        assert_eq!(code(&out), 6, "{args:?}: {err}");
        assert!(err.contains("no such table: fleets"), "{args:?}: {err}");
        assert!(
            err.contains("the state database (--db) could not be used"),
            "{args:?}: {err}"
        );
    }
}
