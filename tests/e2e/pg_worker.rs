//! Workers on several hosts sharing a PostgreSQL store (issue 17): each `fogbook worker`
//! process is a "host" of its own (its own connections, its own lease owner). Runs are
//! claimed so each is driven exactly once; an idle worker is woken by `NOTIFY` long before
//! its poll; a worker SIGKILLed has its run taken over, audited; a worker frozen past its
//! lease and thawed after the takeover writes nothing.
//!
//! Effects are counted from outside: the job fixture appends one line per call of its
//! command steps to `effects.txt`, and the audit events are read from the database's rows.

use std::collections::BTreeMap;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use fogbook_state::pg::StoreUrl;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{code, fixture, stderr, stdout};
use crate::pg_backend::OnPostgres;

/// The shared PostgreSQL sandbox, with the reads these tests make.
struct PgSandbox {
    pg: OnPostgres,
}

impl PgSandbox {
    fn new() -> Self {
        Self {
            pg: OnPostgres::start("workers"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.pg.db.run(args)
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.pg.db.spawn(args, &[])
    }

    /// A detached run of the job fixture (pending, driven by nobody yet).
    fn detach(&self, group: &str, pause: &str) -> String {
        let out = self.pg.db.detach_job(group, pause, &[]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    }

    /// The rows of `sql`, each column read as text (`NULL` as an empty string), straight
    /// from the database.
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let StoreUrl::Postgres(url) = self.pg.db.url().unwrap().parse::<StoreUrl>().unwrap() else {
            unreachable!("a PostgreSQL URL")
        };
        let mut client = fogbook_state::pg::connect(&url).unwrap();
        client
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<_, Option<String>>(i).unwrap_or_default())
                    .collect()
            })
            .collect()
    }

    fn status(&self, run: &str) -> String {
        self.rows(&format!("SELECT status FROM runs WHERE id = '{run}'"))[0][0].clone()
    }

    /// Waits until `pred` holds, failing after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, mut pred: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !pred(self) {
            assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn effects(&self) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for line in self.pg.db.sb.lines_of("effects.txt") {
            *seen.entry(line).or_default() += 1;
        }
        seen
    }

    fn assert_audit_ok(&self) {
        let out = self.run(&["audit", "verify"]);
        assert_eq!(code(&out), 0, "audit verify: {}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).starts_with("ok:"), "{}", stdout(&out));
    }
}

/// Three workers (three hosts) and twelve pending runs: every run is driven by exactly one
/// worker (one lease acquisition each, each step started once, each effect once), and the
/// work is spread: the claims hand each worker runs of its own.
#[test]
fn three_workers_drive_twelve_runs_each_exactly_once() {
    let pg = PgSandbox::new();
    let runs: Vec<String> = (0..12).map(|i| pg.detach(&format!("g{i}"), "300ms")).collect();
    let args = ["worker", "--concurrency", "4", "--poll", "50ms", "--exit-when-idle"];
    let workers: Vec<Child> = (0..3).map(|_| pg.spawn(&args)).collect();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    for run in &runs {
        assert_eq!(pg.status(run), "succeeded", "{run}");
        let counts = pg.rows(&format!(
            "SELECT CAST(sum(CASE WHEN kind IN ('lease.acquired', 'lease.taken_over') THEN 1 ELSE 0 END) AS TEXT),
                    CAST(sum(CASE WHEN kind = 'step.started' THEN 1 ELSE 0 END) AS TEXT)
             FROM events WHERE run_id = '{run}'"
        ));
        assert_eq!(counts[0], ["1", "3"], "{run}: one lease, each step started once");
    }
    let effects = pg.effects();
    assert_eq!(effects.len(), 24, "{effects:?}");
    assert!(effects.values().all(|n| *n == 1), "an effect repeated: {effects:?}");
    let drivers = pg.rows("SELECT DISTINCT data::jsonb->>'owner' FROM events WHERE kind = 'lease.acquired'");
    assert!(drivers.len() >= 2, "the runs were shared: {drivers:?}");
    pg.assert_audit_ok();
}

/// A schedule firing every second with three workers running: each fire time makes one
/// run, whichever worker fired it.
#[test]
fn a_schedule_fires_once_per_fire_time_with_three_workers() {
    let pg = PgSandbox::new();
    let add = pg.run(&[
        "schedule",
        "add",
        "--name",
        "every-second",
        "--cron",
        "* * * * * *",
        &fixture("job.yaml").display().to_string(),
        "--set",
        &format!("out={}", pg.pg.db.sb.path("effects.txt").display()),
        "--set",
        "pause=10ms",
    ]);
    assert_eq!(code(&add), 0, "{}", stderr(&add));
    let workers: Vec<Child> = (0..3).map(|_| pg.spawn(&["worker", "--poll", "100ms"])).collect();
    pg.wait_for("four scheduled runs to succeed", Duration::from_secs(30), |pg| {
        pg.rows("SELECT id FROM runs WHERE status = 'succeeded'").len() >= 4
    });
    for w in workers {
        kill(Pid::from_raw(w.id() as i32), Signal::SIGTERM).unwrap();
        w.wait_with_output().unwrap();
    }
    let fires = pg.rows("SELECT data::jsonb->>'fire_at' FROM events WHERE kind = 'schedule.fired'");
    let mut per_time: BTreeMap<String, usize> = BTreeMap::new();
    for f in &fires {
        *per_time.entry(f[0].clone()).or_default() += 1;
    }
    assert!(per_time.len() >= 4, "{per_time:?}");
    assert!(
        per_time.values().all(|n| *n == 1),
        "a fire time fired twice: {per_time:?}"
    );
    let runs = pg.rows("SELECT id FROM runs");
    assert_eq!(runs.len(), fires.len(), "one run per fire");
    let effects = pg.effects();
    assert!(effects.values().all(|n| *n == 1), "an effect repeated: {effects:?}");
    pg.assert_audit_ok();
}

/// A worker idle with a 60 s poll picks up a run another process creates within seconds:
/// the run's creation notifies the channel it listens on.
#[test]
fn an_idle_worker_is_woken_by_new_work_long_before_its_poll() {
    let pg = PgSandbox::new();
    let first = pg.detach("g1", "10ms");
    let worker = pg.spawn(&["worker", "--poll", "60s"]);
    // Its first look (at start) drives the first run; from then on it is idle.
    pg.wait_for("the first run to succeed", Duration::from_secs(30), |pg| {
        pg.status(&first) == "succeeded"
    });
    let second = pg.detach("g2", "10ms");
    let created = Instant::now();
    pg.wait_for(
        "the idle worker to drive the second run",
        Duration::from_secs(15),
        |pg| pg.status(&second) == "succeeded",
    );
    assert!(created.elapsed() < Duration::from_secs(15));
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    worker.wait_with_output().unwrap();
    pg.assert_audit_ok();
}

/// A worker SIGKILLed in the middle of a run: another worker (already running, polling)
/// takes the run over within one lease period, the takeover is audited with the dead
/// worker as the previous owner, and no effect repeats.
#[test]
fn a_killed_workers_run_is_taken_over_within_one_lease_period() {
    let pg = PgSandbox::new();
    let run = pg.detach("g", "3s");
    let first = pg.spawn(&["worker", "--lease-ttl", "3s", "--poll", "50ms", "--name", "w1"]);
    pg.wait_for("the run to reach its wait", Duration::from_secs(30), |pg| {
        !pg.rows(&format!(
            "SELECT 'x' FROM steps WHERE run_id = '{run}' AND step_id = 'pause' AND status = 'running'"
        ))
        .is_empty()
    });
    let second = pg.spawn(&["worker", "--lease-ttl", "3s", "--poll", "200ms", "--name", "w2"]);
    let pid = first.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    first.wait_with_output().unwrap();
    pg.wait_for("the takeover", Duration::from_secs(3), |pg| {
        !pg.rows(&format!(
            "SELECT 'x' FROM events WHERE run_id = '{run}' AND kind = 'lease.taken_over'"
        ))
        .is_empty()
    });
    assert!(killed.elapsed() < Duration::from_secs(3), "within one lease period");
    pg.wait_for("the run to succeed", Duration::from_secs(30), |pg| {
        pg.status(&run) == "succeeded"
    });
    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    second.wait_with_output().unwrap();
    let previous = pg.rows(&format!(
        "SELECT data::jsonb->>'previous_owner', data::jsonb->>'owner' FROM events
         WHERE run_id = '{run}' AND kind = 'lease.taken_over'"
    ));
    assert_eq!(previous.len(), 1, "{previous:?}");
    assert!(
        previous[0][0].contains(&format!(":{pid}:")) && previous[0][0].ends_with(":w1"),
        "{previous:?}"
    );
    assert!(previous[0][1].ends_with(":w2"), "{previous:?}");
    let effects = pg.effects();
    assert_eq!(
        effects.keys().cloned().collect::<Vec<_>>(),
        [format!("{run} after"), format!("{run} before")]
    );
    assert!(effects.values().all(|n| *n == 1), "an effect repeated: {effects:?}");
    pg.assert_audit_ok();
}

/// A worker frozen (SIGSTOP) past its lease while its run waits: another worker takes the
/// run over and finishes it; thawed, the first worker is fenced: it writes no event, and
/// its run's last effect does not happen a second time.
#[test]
fn a_worker_frozen_past_its_lease_writes_nothing_when_thawed() {
    let pg = PgSandbox::new();
    let run = pg.detach("g", "4s");
    let first = pg.spawn(&[
        "worker",
        "--lease-ttl",
        "1s",
        "--poll",
        "50ms",
        "--exit-when-idle",
        "--name",
        "w1",
    ]);
    pg.wait_for("the run to reach its wait", Duration::from_secs(30), |pg| {
        !pg.rows(&format!(
            "SELECT 'x' FROM steps WHERE run_id = '{run}' AND step_id = 'pause' AND status = 'running'"
        ))
        .is_empty()
    });
    let pid = Pid::from_raw(first.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let second = pg.spawn(&["worker", "--lease-ttl", "1s", "--poll", "100ms", "--name", "w2"]);
    pg.wait_for("the other worker to finish the run", Duration::from_secs(30), |pg| {
        pg.status(&run) == "succeeded"
    });
    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    second.wait_with_output().unwrap();
    let events_before = pg.rows("SELECT count(*)::text FROM events")[0][0].clone();
    // Thawed after the takeover: its wait ends and it tries to go on.
    kill(pid, Signal::SIGCONT).unwrap();
    let thawed = first.wait_with_output().unwrap();
    assert_eq!(
        pg.rows("SELECT count(*)::text FROM events")[0][0],
        events_before,
        "the thawed worker wrote nothing: {}",
        stderr(&thawed)
    );
    // Fenced is the fencing working, not the worker failing (item 7 of the new user's
    // report): said as a takeover (warnings, no error), not as "driving failed; looking at
    // the run again later".
    let log = stderr(&thawed);
    assert!(!log.contains(" ERROR "), "{log}");
    assert!(!log.contains("driving failed"), "{log}");
    assert!(!log.contains("looking at the run again"), "{log}");
    assert!(
        log.contains(&format!("run {run} was taken over by another process")),
        "{log}"
    );
    let taken = pg.rows(&format!(
        "SELECT data::jsonb->>'previous_owner' FROM events WHERE run_id = '{run}' AND kind = 'lease.taken_over'"
    ));
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert!(taken[0][0].ends_with(":w1"), "{taken:?}");
    let effects = pg.effects();
    assert_eq!(effects.get(&format!("{run} after")), Some(&1), "{effects:?}");
    assert_eq!(effects.get(&format!("{run} before")), Some(&1), "{effects:?}");
    pg.assert_audit_ok();
}
