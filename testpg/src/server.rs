//! One throwaway PostgreSQL server: `initdb` + `pg_ctl` in a temp dir on loopback.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::TestPgError;
use crate::binaries::bin_dir;
use crate::tls::{Certificates, make_certificates};

/// The superuser of every test cluster.
const SUPERUSER: &str = "postgres";
/// The database [`TestPostgres::url`] points at, created at start.
const DATABASE: &str = "fogbook";
/// Temp dirs of test servers start with this; [`sweep_orphans`] looks for them.
const DIR_PREFIX: &str = "fogbook-pg-";
/// The pid of the process that owns a temp dir, written into it.
const OWNER_FILE: &str = "owner.pid";
/// Environment variables of libpq's programs that could point them at another server.
const PG_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGDATA",
    "PGOPTIONS",
];
/// How many free ports are tried when another process takes the chosen one first.
const PORT_TRIES: usize = 5;

/// A PostgreSQL server private to one test, stopped and removed on drop.
///
/// ```no_run
/// let pg = fogbook_testpg::TestPostgres::start();
/// let url = pg.url(); // postgres://postgres:…@127.0.0.1:PORT/fogbook?sslmode=disable
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct TestPostgres {
    dir: TempDir,
    bin: PathBuf,
    /// The user the server programs run as (`runuser -u`), when the tests run as root.
    run_as: Option<String>,
    port: u16,
    password: String,
    /// The server's certificates, when it accepts TLS.
    tls: Option<Certificates>,
}

impl TestPostgres {
    /// Starts a new server, panicking with a message that says what to install when it cannot.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL server: {}", chain(&e)))
    }

    /// Starts a new server: `initdb`, `pg_ctl start` on a free loopback port, `createdb fogbook`.
    /// It accepts no TLS (its URLs say `sslmode=disable`).
    pub fn try_start() -> Result<Self, TestPgError> {
        Self::launch(false)
    }

    /// Starts a new server that also accepts TLS, with a certificate for 127.0.0.1 signed by
    /// a throwaway CA ([`Self::ca_cert`]); made with the `openssl` command.
    pub fn start_with_tls() -> Self {
        Self::launch(true)
            .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL server with TLS: {}", chain(&e)))
    }

    fn launch(tls: bool) -> Result<Self, TestPgError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .map_err(|source| io("creating the temp dir of the test server", source))?;
        let root = std::fs::metadata(dir.path())
            .map_err(|source| io("reading the temp dir's owner", source))?
            .uid()
            == 0;
        let run_as = if root {
            let (uid, gid) = system_user(SUPERUSER).ok_or(TestPgError::NoServerUser)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|source| io("giving the temp dir to the `postgres` user", source))?;
            Some(SUPERUSER.to_owned())
        } else {
            None
        };
        sweep_orphans(&bin, run_as.as_deref());
        std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .map_err(|source| io("writing the owner file of the test server", source))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let password = format!("pw{:x}{nanos:x}", std::process::id());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n"))
            .map_err(|source| io("writing the superuser's password file", source))?;
        if let Some((uid, gid)) = run_as.as_deref().and_then(system_user) {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
                .map_err(|source| io("giving the password file to the `postgres` user", source))?;
        }
        let tls = if tls {
            let certs = make_certificates(dir.path())?;
            if let Some((uid, gid)) = run_as.as_deref().and_then(system_user) {
                for file in [&certs.cert, &certs.key] {
                    std::os::unix::fs::chown(file, Some(uid), Some(gid))
                        .map_err(|source| io("giving the server's certificate to the `postgres` user", source))?;
                }
            }
            // The server refuses a key others can read.
            std::fs::set_permissions(&certs.key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|source| io("restricting the server key's permissions", source))?;
            Some(certs)
        } else {
            None
        };
        let mut server = Self {
            dir,
            bin,
            run_as,
            port: 0,
            password,
            tls,
        };
        let mut initdb = server.program("initdb");
        initdb
            .arg("-D")
            .arg(server.data_dir())
            .args(["-U", SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"]);
        server.run("initdb", initdb)?;
        server.start_on_free_port()?;
        server.try_create_database(DATABASE)?;
        Ok(server)
    }

    /// The URL of the database created at start (`fogbook`), TLS off (loopback).
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The URL of `database` on this server (which must exist: see [`Self::create_database`]).
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}?sslmode=disable",
            self.password, self.port
        )
    }

    /// Creates another empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.try_create_database(name)
            .unwrap_or_else(|e| panic!("cannot create database {name}: {}", chain(&e)));
        self.url_for(name)
    }

    /// Creates another empty database.
    pub fn try_create_database(&self, name: &str) -> Result<(), TestPgError> {
        let mut createdb = self.program("createdb");
        createdb
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, name]);
        self.run(&format!("createdb {name}"), createdb)
    }

    /// The PEM file of the CA that signed the server's certificate (servers started with
    /// [`Self::start_with_tls`] only).
    pub fn ca_cert(&self) -> Option<&Path> {
        self.tls.as_ref().map(|certs| certs.ca.as_path())
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password (user `postgres`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Restarts the server the hard way (`pg_ctl restart -m immediate`): every connection is
    /// cut without a shutdown checkpoint, and the server runs crash recovery before it
    /// accepts connections again, on the same port. Returns once it accepts them.
    pub fn restart_immediate(&self) {
        let mut restart = self.program("pg_ctl");
        restart
            .args(["restart", "-m", "immediate", "-w", "-t", "120", "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file());
        self.run("pg_ctl restart -m immediate", restart)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server (`pg_ctl stop -m immediate`): every connection is cut and new ones
    /// are refused until [`Self::start_again`]. Returns once it has stopped.
    pub fn stop(&self) {
        let mut stop = self.program("pg_ctl");
        stop.args(["stop", "-m", "immediate", "-w", "-t", "120", "-D"])
            .arg(self.data_dir());
        self.run("pg_ctl stop -m immediate", stop)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the server [`Self::stop`] stopped, on the same port with the same options
    /// (`pg_ctl restart` of a stopped server reads them from `postmaster.opts`). Returns once
    /// it accepts connections.
    pub fn start_again(&self) {
        let mut start = self.program("pg_ctl");
        start
            .args(["restart", "-w", "-t", "120", "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file());
        self.run("pg_ctl restart (of a stopped server)", start)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the server on a free port, choosing another one when a process took it first.
    fn start_on_free_port(&mut self) -> Result<(), TestPgError> {
        let mut last = None;
        for _ in 0..PORT_TRIES {
            self.port = free_port()?;
            let log_before = self.log().len();
            let mut options = format!(
                "-p {} -k '{}' -c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c max_connections=100",
                self.port,
                self.dir.path().display()
            );
            if let Some(certs) = &self.tls {
                options.push_str(&format!(
                    " -c ssl=on -c ssl_cert_file='{}' -c ssl_key_file='{}'",
                    certs.cert.display(),
                    certs.key.display()
                ));
            }
            let mut start = self.program("pg_ctl");
            start
                .args(["start", "-w", "-t", "120", "-D"])
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_file())
                .arg("-o")
                .arg(options);
            match self.run("pg_ctl start", start) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let log = self.log();
                    let new = log.get(log_before..).unwrap_or_default();
                    if !new.contains("could not bind") && !new.contains("already in use") {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(TestPgError::Command {
            what: "pg_ctl start".to_owned(),
            detail: "no free port".to_owned(),
        }))
    }

    /// A command running one of the server programs as the server's user.
    fn program(&self, name: &str) -> Command {
        command(&self.bin, name, self.run_as.as_deref(), self.dir.path())
    }

    /// Runs `cmd` to completion; a failure carries its output and the server log's tail.
    fn run(&self, what: &str, mut cmd: Command) -> Result<(), TestPgError> {
        let out = cmd.output().map_err(|e| TestPgError::Command {
            what: what.to_owned(),
            detail: format!("could not run {:?}: {e}", cmd.get_program()),
        })?;
        if out.status.success() {
            return Ok(());
        }
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(TestPgError::Command {
            what: what.to_owned(),
            detail: format!(
                "{}\n--- stdout\n{}--- stderr\n{}--- server log (tail)\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail.join("\n")
            ),
        })
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // The temp dir is removed after this, by `TempDir`'s own drop.
        let mut stop = self.program("pg_ctl");
        stop.args(["stop", "-m", "immediate", "-w", "-D"]).arg(self.data_dir());
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// A command running `bin/name` as `run_as` (when set), in `cwd`, without the libpq
/// environment variables that could point it at another server.
fn command(bin: &Path, name: &str, run_as: Option<&str>, cwd: &Path) -> Command {
    let program = bin.join(name);
    let mut cmd = match run_as {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    };
    for var in PG_ENV {
        cmd.env_remove(var);
    }
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// A port of 127.0.0.1 that nothing listens on right now.
fn free_port() -> Result<u16, TestPgError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| io("finding a free port on 127.0.0.1", source))?;
    let port = listener
        .local_addr()
        .map_err(|source| io("finding a free port on 127.0.0.1", source))?
        .port();
    Ok(port)
}

/// The uid and gid of a local user, from `/etc/passwd`.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Stops and removes the servers of test processes that died without dropping theirs
/// (a killed or timed-out test): temp dirs whose owner process is gone.
fn sweep_orphans(bin: &Path, run_as: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let named = path
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|name| name.starts_with(DIR_PREFIX));
        if !named {
            continue;
        }
        // A dir without an owner file is being set up by a live process.
        let Some(owner) = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc").join(owner.to_string()).exists() {
            continue;
        }
        let mut stop = command(bin, "pg_ctl", run_as, Path::new("/"));
        stop.args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(path.join("data"));
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// `err` and its causes, for a panic message.
fn chain(err: &TestPgError) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    text
}

fn io(what: &str, source: std::io::Error) -> TestPgError {
    TestPgError::Io {
        what: what.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a process exists and is not a zombie (an exited daemon nobody reaped yet).
    fn running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    }

    /// A server starts, takes connections on its port, restarts hard on the same port, and
    /// is gone (process and temp dir) after the drop.
    #[test]
    fn a_server_starts_restarts_and_is_removed_on_drop() {
        let pg = TestPostgres::start();
        let url = pg.url();
        assert!(url.starts_with("postgres://postgres:"), "{url}");
        assert!(url.contains(&format!("@127.0.0.1:{}/fogbook", pg.port())), "{url}");
        std::net::TcpStream::connect(("127.0.0.1", pg.port())).expect("the server listens on its port");
        let pid_file = pg.data_dir().join("postmaster.pid");
        let first_pid = std::fs::read_to_string(&pid_file).unwrap();
        pg.restart_immediate();
        let second_pid = std::fs::read_to_string(&pid_file).unwrap();
        assert_ne!(
            first_pid.lines().next(),
            second_pid.lines().next(),
            "a new postmaster runs"
        );
        std::net::TcpStream::connect(("127.0.0.1", pg.port())).expect("it listens again after the restart");
        assert!(
            pg.log().contains("not properly shut down"),
            "it ran crash recovery:\n{}",
            pg.log()
        );
        let pid: u32 = second_pid.lines().next().unwrap().trim().parse().unwrap();
        let dir = pg.dir.path().to_owned();
        drop(pg);
        assert!(!dir.exists(), "the temp dir is removed");
        assert!(!running(pid), "the postmaster has exited");
    }

    /// A test process killed before its drop leaves its server running; the next start in
    /// any test process stops that server and removes its temp dir.
    #[test]
    fn the_server_of_a_dead_test_process_is_swept_by_the_next_start() {
        let orphan = TestPostgres::start();
        let mut gone = Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        std::fs::write(orphan.dir.path().join(OWNER_FILE), gone.id().to_string()).unwrap();
        let postmaster = std::fs::read_to_string(orphan.data_dir().join("postmaster.pid")).unwrap();
        let pid: u32 = postmaster.lines().next().unwrap().trim().parse().unwrap();
        assert!(running(pid));
        let dir = orphan.dir.path().to_owned();
        // As if the test process were killed: no drop.
        std::mem::forget(orphan);
        let _next = TestPostgres::start();
        assert!(!running(pid), "the orphan's postmaster was stopped");
        assert!(!dir.exists(), "the orphan's temp dir was removed");
    }
}
