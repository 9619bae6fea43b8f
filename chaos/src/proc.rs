//! The processes under test: `fogbook sim serve` (the emulator, restartable on the same port
//! with the same `--state`) and the engine (`fogbook run` / `fogbook resume`), plus a tiny
//! HTTP/1.0 client for the emulator's admin API.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// Simulated time runs this many times faster than real time: a 4-hour create takes 0.4 s.
pub(crate) const TIME_SCALE: u32 = 36_000;

/// The lease every engine process gets (`FOGBOOK_LEASE_TTL`): short, so that takeovers
/// after a kill or a pause happen within a trial.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(2);

/// Where the binary and the repository are, and what every engine process gets.
#[derive(Clone, Debug)]
pub(crate) struct Env {
    /// The `fogbook` binary under test.
    pub(crate) fogbook: PathBuf,
    /// The repository root: cwd of every engine process (parameter files name relative paths).
    pub(crate) root: PathBuf,
    /// `FOGBOOK_CHAOS_BREAK` for the engine (a deliberately broken build), if any.
    pub(crate) break_mode: Option<String>,
    /// `FOGBOOK_LOCAL_DIR` of every engine process (with `--db postgres`: where a PostgreSQL
    /// store keeps its local files), if set.
    pub(crate) local_dir: Option<PathBuf>,
}

/// Whether `db` names a PostgreSQL database (a `postgres://` URL) rather than a file.
pub(crate) fn is_url(db: &Path) -> bool {
    db.to_str().is_some_and(|s| s.starts_with("postgres://"))
}

/// A free loopback port: bind port 0, read it, close.
pub(crate) fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("local_addr: {e}"))
}

/// A running (or stopped) `fogbook sim serve` with a state file, on a fixed port.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) url: String,
    port: u16,
    child: Option<Child>,
    _stdout: Option<BufReader<ChildStdout>>,
    estate: PathBuf,
    state: PathBuf,
    dir: PathBuf,
}

impl Sim {
    /// Starts an emulator for `estate` in `dir` (state file `dir/sim.json`) on a free port.
    pub(crate) fn start(env: &Env, dir: &Path, estate: &Path) -> Result<Sim, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut sim = Sim {
                url: format!("http://127.0.0.1:{port}"),
                port,
                child: None,
                _stdout: None,
                estate: estate.to_owned(),
                state: dir.join("sim.json"),
                dir: dir.to_owned(),
            };
            match sim.spawn(env) {
                Ok(()) => return Ok(sim),
                Err(e) => last = e,
            }
        }
        Err(format!("the emulator did not start: {last}"))
    }

    fn spawn(&mut self, env: &Env) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sim.log"))
            .map_err(|e| format!("sim.log: {e}"))?;
        let port_file = self.dir.join("sim.port");
        let _ = std::fs::remove_file(&port_file);
        let mut c = Command::new(&env.fogbook);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .args(["sim", "serve", "--estate"])
            .arg(&self.estate)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--state")
            .arg(&self.state)
            .args(["--time-scale", &TIME_SCALE.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)]);
        let mut child = c.spawn().map_err(|e| format!("spawn sim serve: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no stdout".into());
        };
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        if line.trim() != self.url {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("sim serve printed {:?}, expected {}", line.trim(), self.url));
        }
        self.child = Some(child);
        self._stdout = Some(out);
        Ok(())
    }

    /// Stops the emulator with `signal` (SIGKILL, or SIGTERM for a clean shutdown).
    pub(crate) fn stop(&mut self, signal: Signal) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
            let _ = child.wait();
        }
        self._stdout = None;
    }

    /// Starts the stopped emulator again: same port, same state file.
    pub(crate) fn start_again(&mut self, env: &Env) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..40 {
            match self.spawn(env) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the emulator did not restart on port {}: {last}", self.port))
    }

    /// `GET path` on the admin API, as JSON.
    pub(crate) fn get(&self, path: &str) -> Result<Value, String> {
        match http(&self.url, "GET", path, None)? {
            (200, v) => Ok(v),
            (s, v) => Err(format!("GET {path}: {s} {v}")),
        }
    }

    /// The journal's entries.
    pub(crate) fn journal(&self) -> Result<Vec<Value>, String> {
        let j = self.get("/_sim/journal")?;
        j.get("entries")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| format!("journal without entries: {j}"))
    }

    /// The ARM requests this emulator process received, counted per (operationId, status;
    /// 0 when an injected fault closed the connection). The counts live in the process: read
    /// them before stopping it.
    pub(crate) fn requests(&self) -> Result<Vec<(String, u16, u64)>, String> {
        let r = self.get("/_sim/requests")?;
        Ok(r["counts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["operation"].as_str().unwrap_or_default().to_owned(),
                    u16::try_from(c["status"].as_u64().unwrap_or(0)).unwrap_or(0),
                    c["count"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    }

    /// Replaces the fault configuration.
    pub(crate) fn set_faults(&self, faults: &Value) -> Result<(), String> {
        match http(&self.url, "PUT", "/_sim/faults", Some(faults))? {
            (200, _) => Ok(()),
            (s, v) => Err(format!("PUT /_sim/faults: {s} {v}")),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop(Signal::SIGKILL);
    }
}

/// One HTTP/1.0 request (never chunked): status and body (JSON, or a JSON string).
pub(crate) fn http(url: &str, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).map_err(|e| format!("{method} {path}: connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("{method} {path}: read: {e}"))?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok((
        status,
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
    ))
}

/// A `fogbook` command on `db` (a file, or a `postgres://` URL) with a hermetic environment
/// (cwd = the repository root). The database goes in `FOGBOOK_DB`, as DEPLOYMENT tells
/// operators to pass it, never on the command line: a PostgreSQL URL carries the password,
/// and every user of the machine may read a process's arguments (`/proc/PID/cmdline`, `ps`).
pub(crate) fn fogbook(env: &Env, db: &Path, sim_url: Option<&str>) -> Command {
    let mut c = Command::new(&env.fogbook);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("USER", "chaos")
        .env("FOGBOOK_LEASE_TTL", format!("{}s", LEASE_TTL.as_secs()))
        .env("FOGBOOK_DB", db)
        .current_dir(&env.root)
        .stdin(Stdio::null());
    if let Some(url) = sim_url {
        c.env("FOGBOOK_ARM_ENDPOINT", url).env("FOGBOOK_ARM_TOKEN", "x");
    }
    if let Some(b) = &env.break_mode {
        c.env("FOGBOOK_CHAOS_BREAK", b);
    }
    if let Some(d) = &env.local_dir {
        c.env("FOGBOOK_LOCAL_DIR", d);
    }
    c
}

/// Runs a short `fogbook` query command to completion.
pub(crate) fn query(env: &Env, db: &Path, args: &[&str]) -> Result<Output, String> {
    fogbook(env, db, None)
        .args(args)
        .output()
        .map_err(|e| format!("fogbook {}: {e}", args.join(" ")))
}

/// Runs a `fogbook ... --format json` query and parses its stdout.
pub(crate) fn query_json(env: &Env, db: &Path, args: &[&str]) -> Result<Value, String> {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--format", "json"]);
    let out = query(env, db, &a)?;
    if !out.status.success() {
        return Err(format!(
            "fogbook {} exited {:?}: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("fogbook {}: not JSON: {e}", args.join(" ")))
}

/// Starts an engine process (`run ...` or `resume RUN`), output appended to `dir/engine.log`.
/// Each engine process leads its own process group, so that the runner can signal the whole
/// group (as a terminal's Ctrl-C or a service manager's stop does) and nothing else.
pub(crate) fn spawn_engine(env: &Env, dir: &Path, db: &Path, sim_url: &str, args: &[String]) -> Result<Child, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("engine.log"))
        .map_err(|e| format!("engine.log: {e}"))?;
    let mut header = log.try_clone().map_err(|e| e.to_string())?;
    let _ = writeln!(header, "==== fogbook {}", args.join(" "));
    let err: File = log.try_clone().map_err(|e| e.to_string())?;
    let child = fogbook(env, db, Some(sim_url))
        .args(args)
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn fogbook: {e}"))?;
    let _ = writeln!(header, "==== pid {}", child.id());
    Ok(child)
}

/// Sends `signal` to `child` alone (`group: false`) or to its whole process group.
pub(crate) fn signal(child: &Child, signal: Signal, group: bool) {
    let Ok(pid) = i32::try_from(child.id()) else { return };
    let _ = if group {
        nix::sys::signal::killpg(Pid::from_raw(pid), signal)
    } else {
        kill(Pid::from_raw(pid), signal)
    };
}
