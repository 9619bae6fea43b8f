//! Issue 17: a `fogbook worker` started while its PostgreSQL server is down (restarting,
//! failing over, not reachable yet) waits for it, saying so once on stderr, and starts when
//! it answers; SIGTERM while it waits exits 0. A refused login still fails at once (exit 6).
//!
//! Effects are counted from outside: the job fixture appends one line per call of its
//! command steps to `effects.txt`.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fogbook_testpg::{TestPostgres, TestProxy};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{code, fixture, stderr, stdout};
use crate::pg_backend::{Backend, Db};

/// The line the worker writes once while its database does not answer.
const WAITING: &str = "does not answer yet";

/// A worker we started: its stderr lines arrive on `lines`; killed and reaped on drop.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn spawn(db: &Db) -> Self {
        Self::spawn_with(db, &["worker", "--name", "waiter"], &[])
    }

    fn spawn_with(db: &Db, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = db.spawn(args, env);
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a stderr line containing `text`; returns the lines read until then.
    fn wait_for_line(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with `{text}` on the worker's stderr: {seen:?}"),
            }
        }
    }

    /// Sends SIGTERM and returns the exit code and the rest of stderr.
    fn terminate(mut self) -> (i32, Vec<String>) {
        kill(Pid::from_raw(i32::try_from(self.child.id()).unwrap()), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let rest: Vec<String> = self.lines.iter().collect();
        (status.code().unwrap_or(-1), rest)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_worker_started_while_postgres_is_down_waits_for_it_then_drives_the_queued_run() {
    let server = TestPostgres::start();
    let db = Db::new(Backend::Postgres, Some(&server), "workerwait");
    let effects = db.sb.path("effects.txt");
    let queued = db.run(&[
        "run",
        &fixture("job.yaml").display().to_string(),
        "--detach",
        "--set",
        &format!("out={}", effects.display()),
    ]);
    assert_eq!(code(&queued), 0, "{}", stderr(&queued));
    let run = stdout(&queued).trim().to_owned();
    server.stop();

    // A worker stopped while it waits exits 0, having said once what it waits for.
    let first = Worker::spawn(&db);
    let said = first.wait_for_line(WAITING);
    let (exit, rest) = first.terminate();
    assert_eq!(exit, 0, "{said:?} {rest:?}");
    let all: Vec<&String> = said.iter().chain(&rest).collect();
    assert_eq!(all.iter().filter(|l| l.contains(WAITING)).count(), 1, "{all:?}");
    let line = all.iter().find(|l| l.contains(WAITING)).unwrap();
    assert!(line.contains("127.0.0.1") && line.contains("Ctrl-C"), "{line}");
    assert!(!effects.exists(), "nothing ran while the database was down");
    // It drives no run yet: its stop note does not speak of one.
    assert!(rest.iter().any(|l| l == "stopping…"), "{rest:?}");
    assert!(!all.iter().any(|l| l.contains("the run stays resumable")), "{all:?}");

    // Another one waits, the server comes back, and it drives the queued run once.
    let second = Worker::spawn(&db);
    second.wait_for_line(WAITING);
    server.start_again();
    second.wait_for_line("the worker starts");
    let start = Instant::now();
    while db.run_status(&run) != "succeeded" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker did not finish run {run}: {}",
            db.run_status(&run)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (exit, rest) = second.terminate();
    assert_eq!(exit, 0, "{rest:?}");
    assert_eq!(rest.iter().filter(|l| l.contains(WAITING)).count(), 0, "{rest:?}");
    let lines = std::fs::read_to_string(&effects).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        [format!("{run} before"), format!("{run} after")],
        "{lines}"
    );
    db.assert_audit_ok();
}

#[test]
fn a_worker_whose_login_is_refused_fails_at_once() {
    let server = TestPostgres::start();
    server.create_database("badlogin");
    let url = server
        .url_for("badlogin")
        .replace(&format!(":{}@", server.password()), ":not-the-password@");
    let db = Db::new(Backend::Postgres, Some(&server), "badlogin2");
    let started = Instant::now();
    let out = db.run_env(&["worker"], &[("FOGBOOK_DB", &url)]);
    assert_eq!(code(&out), 6, "{}{}", stdout(&out), stderr(&out));
    assert!(!stderr(&out).contains(WAITING), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// Item 5 and 6 of the new user's report: a database outage while a worker runs is said
/// once, with its cause, by the worker's polls and by its listening connection (not once a
/// second, not under the name of each job that failed: "cannot read whether the store was
/// moved", "cannot fire schedules"), and its end is said once too: the last lines of the
/// log no longer read as broken once the database is back.
#[test]
fn a_database_outage_is_said_once_with_its_cause_and_its_end_once() {
    let server = TestPostgres::start();
    let db = Db::new(Backend::Postgres, Some(&server), "outage");
    let proxy = TestProxy::start(server.port());
    let through = proxy.url(db.url().unwrap());
    let worker = Worker::spawn_with(
        &db,
        &["worker", "--name", "outage", "--poll", "100ms"],
        &[("FOGBOOK_DB", &through), ("FOGBOOK_PG_TIMEOUT", "1s")],
    );
    let mut said = worker.wait_for_line("worker ");
    // Connecting through the proxy while the server is down: accepted, then closed.
    server.stop();
    said.extend(worker.wait_for_line("does not answer"));
    // Many tries of the polls and of the listening connection (the old listener logged
    // one line per try, a second apart), counted at the proxy.
    let tries = proxy.accepted();
    let start = Instant::now();
    while proxy.accepted() < tries + 60 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} tries",
            proxy.accepted() - tries
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.start_again();
    said.extend(worker.wait_for_line("answers again"));
    if !said.iter().any(|l| l.contains("listening for work again")) {
        said.extend(worker.wait_for_line("listening for work again"));
    }
    let (exit, rest) = worker.terminate();
    assert_eq!(exit, 0, "{said:?} {rest:?}");
    let all: Vec<&String> = said.iter().chain(&rest).collect();
    let count = |text: &str| all.iter().filter(|l| l.contains(text)).count();
    assert_eq!(count("the state database does not answer"), 1, "{all:#?}");
    assert_eq!(count("the state database answers again"), 1, "{all:#?}");
    assert_eq!(count("listening for work again"), 1, "{all:#?}");
    let listen_failed: Vec<_> = all
        .iter()
        .filter(|l| l.contains("cannot listen for work") || l.contains("the connection listening for work was lost"))
        .collect();
    assert_eq!(listen_failed.len(), 1, "{all:#?}");
    for job in [
        "cannot read whether the store was moved",
        "cannot fire schedules",
        "cannot list runs",
    ] {
        assert_eq!(count(job), 0, "{all:#?}");
    }
    // Both lines carry their causes, not only "cannot connect to PostgreSQL at URL".
    let outage = all
        .iter()
        .find(|l| l.contains("the state database does not answer"))
        .unwrap();
    for line in [outage, listen_failed[0]] {
        let cause = line.split("/outage?sslmode=disable").nth(1).unwrap_or_default();
        assert!(cause.contains(": "), "{line}");
    }
}
