//! Helpers shared by the end-to-end tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A temporary workspace: a state database path and a directory for runbooks and effects.
pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.path("state.db")
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// A `fogbook` command with this sandbox's database and a hermetic environment.
    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fogbook"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FOGBOOK_DB", self.db())
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("spawn fogbook")
    }

    pub(crate) fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("spawn fogbook")
    }

    pub(crate) fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut c = self.cmd();
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().expect("spawn fogbook")
    }

    /// Opens the state database read-only for checks.
    pub(crate) fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db")
    }

    /// The id of the only (or newest) run.
    pub(crate) fn last_run_id(&self) -> String {
        self.sql()
            .query_row(
                "SELECT id FROM runs ORDER BY created_at DESC, id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("a run exists")
    }

    pub(crate) fn run_status(&self, run: &str) -> String {
        self.sql()
            .query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0))
            .expect("run")
    }

    pub(crate) fn step_status(&self, run: &str, step: &str) -> String {
        self.sql()
            .query_row(
                "SELECT status FROM steps WHERE run_id = ?1 AND step_id = ?2",
                [run, step],
                |r| r.get(0),
            )
            .expect("step")
    }

    /// Polls the database until `pred` holds (the condition, not the time, is what the
    /// test waits for); panics after `limit`.
    pub(crate) fn wait_for(&self, what: &str, limit: Duration, mut pred: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.db().exists() && pred(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}");
    }

    /// Stops process `pid` (SIGSTOP, as a VM pause would) at a moment when it holds no write
    /// transaction on this sandbox's database, and returns once every thread of it is
    /// stopped (`false`: the process had ended). A SQLite writer stopped inside its transaction keeps every other writer out
    /// for as long as it stays stopped (no server ends the transaction, as PostgreSQL's does:
    /// `pg_attack_frozen_tx.rs`), so a test of another process taking the run over freezes
    /// the driver between its writes: stopped inside one (the test takes the write lock
    /// itself to find out), it is thawed and stopped again. Under load a commit lasts long
    /// enough for a stop to land inside it now and then.
    pub(crate) fn freeze_between_writes(&self, pid: u32) -> bool {
        let target = Pid::from_raw(i32::try_from(pid).expect("a pid"));
        let probe = rusqlite::Connection::open(self.db()).expect("open db");
        let start = Instant::now();
        let mut inside = 0;
        loop {
            kill(target, Signal::SIGSTOP).expect("stop the process");
            while !all_stopped(pid) {
                if ended(pid) {
                    return false;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "process {pid} did not stop");
                std::thread::sleep(Duration::from_millis(5));
            }
            // Nothing of it runs now: if the write lock is free, it stays free.
            if probe.execute_batch("BEGIN IMMEDIATE; ROLLBACK").is_ok() {
                return true;
            }
            inside += 1;
            kill(target, Signal::SIGCONT).expect("thaw the process");
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "process {pid} was stopped inside a write transaction {inside} times"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the driver `fogbook ARGS`, waits until the newest run's step `step` runs, and
    /// freezes the driver (between writes) while the store names it the run's holder with a
    /// live lease. On a loaded machine a driver can be starved past its lease before the
    /// freeze (it then stops and gives the lease up): such a start does not give the scene
    /// the test needs, so it is killed and the driver started again. Returns the frozen
    /// driver, its run and its owner name.
    pub(crate) fn frozen_driver(&self, args: &[&str], env: &[(&str, &str)], step: &str) -> (Child, String, String) {
        for _ in 0..5 {
            // A start thrown away leaves its run behind, its step still marked running.
            let earlier = self.runs();
            let mut driver = self.spawn(args, env);
            self.wait_for(&format!("the driver to run `{step}`"), Duration::from_secs(60), |sb| {
                sb.runs() > earlier
                    && sb
                        .sql()
                        .query_row(
                            "SELECT s.status FROM steps s JOIN runs r ON r.id = s.run_id WHERE s.step_id = ?1
                         ORDER BY r.created_at DESC, r.id DESC LIMIT 1",
                            [step],
                            |r| r.get::<_, String>(0),
                        )
                        .is_ok_and(|status| status == "running")
            });
            let run = self.last_run_id();
            if self.freeze_between_writes(driver.id()) {
                let held: (Option<String>, Option<i64>) = self
                    .sql()
                    .query_row(
                        "SELECT lease_owner, lease_expires_at FROM runs WHERE id = ?1",
                        [&run],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .expect("the run");
                if let (Some(owner), Some(expires)) = held
                    && expires > now_ms()
                {
                    return (driver, run, owner);
                }
            }
            let _ = driver.kill();
            let _ = driver.wait();
        }
        panic!("the driver lost its lease before it could be frozen holding it, five times");
    }

    /// How many runs the database holds (none yet when it does not exist).
    fn runs(&self) -> i64 {
        if !self.db().exists() {
            return 0;
        }
        self.sql()
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .unwrap_or(0)
    }

    pub(crate) fn lines_of(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/PID/task/*/stat`):
/// SIGSTOP stops each thread when it next leaves the kernel, after `kill` has returned.
fn all_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
    })
}

/// Whether process `pid` has ended (gone, or a zombie not yet reaped).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Milliseconds since the Unix epoch: the clock SQLite leases are written by.
pub(crate) fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A process the test started: killed and reaped when dropped (the test ended, or failed
/// half-way), unless it was waited for.
pub(crate) struct Started(Option<Child>);

impl Started {
    pub(crate) fn new(child: Child) -> Self {
        Self(Some(child))
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("a process not waited for yet")
    }

    /// Kills the process now and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to end on its own; what it wrote and how it ended.
    pub(crate) fn wait_with_output(mut self) -> Output {
        let child = self.0.take().expect("a process not waited for yet");
        child.wait_with_output().expect("wait for fogbook")
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `audit verify` for the sandbox and asserts that the trail verifies.
pub(crate) fn assert_audit_ok(sb: &Sandbox) {
    let out = sb.run(&["audit", "verify"]);
    assert_eq!(code(&out), 0, "audit verify failed: {}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("ok:"), "{}", stdout(&out));
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/fixtures")
        .join(name)
}

/// A plain HTTP GET on loopback (status, body); `bearer` adds a dummy token.
pub(crate) fn http_get(url: &str, path: &str, bearer: bool) -> (u16, String) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = if bearer { "Authorization: Bearer t\r\n" } else { "" };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
