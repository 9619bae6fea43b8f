//! The runner's PostgreSQL server, shared by the PostgreSQL trials (each has its own
//! database on it; a restart is gated so that what a trial cannot retry is not cut), and the
//! workers ("hosts") that talk to it, each through a proxy the runner owns.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Child;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Instant;

use fogbook_testpg::TestPostgres;
use nix::sys::signal::Signal;

use crate::proc::{Env, Sim, spawn_engine};
use crate::proxy::Proxy;
use crate::trial::{Record, now_ms};

/// The runner's PostgreSQL server, shared by the trials (each has its own database).
pub(crate) struct PgServer {
    pub(crate) server: TestPostgres,
    /// Held (read) by a trial while it needs the server up for something it cannot retry
    /// (creating its database, its checks); a restart takes it (write).
    pub(crate) gate: RwLock<()>,
    /// Every restart of the server: (start, end), wall clock ms. Another trial's restart is a
    /// disruption of this trial's processes too.
    pub(crate) restarts: Mutex<Vec<(i128, i128)>>,
}

impl PgServer {
    pub(crate) fn start() -> Result<PgServer, String> {
        let server =
            TestPostgres::try_start().map_err(|e| format!("cannot start a throwaway PostgreSQL server: {e}"))?;
        Ok(PgServer {
            server,
            gate: RwLock::new(()),
            restarts: Mutex::new(Vec::new()),
        })
    }

    /// Creates database `name` (while the server is up) and returns its URL. Then a
    /// checkpoint: `CREATE DATABASE` writes the whole template to the WAL, and a server
    /// restarted the hard way replays the WAL since the last checkpoint, which after a few
    /// dozen databases took longer than a trial (90 s on the loaded 2-core VM).
    pub(crate) fn database(&self, name: &str) -> Result<String, String> {
        let _r = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        self.server
            .try_create_database(name)
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        self.sql(&self.server.url(), "CHECKPOINT")?;
        Ok(self.server.url_for(name))
    }

    /// Drops database `name` (a passing trial's: the cluster stays small).
    pub(crate) fn drop_database(&self, name: &str) {
        let _r = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        let _ = self.sql(
            &self.server.url(),
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }

    /// Runs `sql` with `psql` (the Debian `postgresql-client`, a dependency of the server).
    /// The password goes in `PGPASSWORD`, not on `psql`'s command line.
    fn sql(&self, url: &str, sql: &str) -> Result<(), String> {
        let password = self.server.password();
        let url = url.replacen(&format!(":{password}@"), "@", 1);
        let out = std::process::Command::new("psql")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PGPASSWORD", password)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", sql])
            .output()
            .map_err(|e| format!("psql: {e} (install the Debian package postgresql-client)"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "psql -c {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.server.port()
    }

    /// `pg_ctl restart -m immediate`, once the other trials' checks are done.
    pub(crate) fn restart(&self) -> Result<(), String> {
        let _w = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        let from = now_ms();
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| self.server.restart_immediate()));
        self.restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((from, now_ms()));
        res.map_err(|_| format!("pg_ctl restart -m immediate failed: {}", tail(&self.server.log())))
    }

    pub(crate) fn restarts_between(&self, from: i128, to: i128) -> Vec<i128> {
        self.restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(a, b)| *b >= from && *a <= to)
            .flat_map(|(a, b)| [*a, *b])
            .collect()
    }
}

pub(crate) fn tail(log: &str) -> String {
    log.lines().rev().take(10).collect::<Vec<_>>().join(" | ")
}

/// A worker ("host"): its proxy to the database, and its process when it runs.
pub(crate) struct Worker {
    pub(crate) name: String,
    pub(crate) proxy: Proxy,
    pub(crate) child: Option<Child>,
    /// When to start it again after a kill.
    pub(crate) restart_at: Option<Instant>,
    /// Signals the runner sent to the current process.
    pub(crate) sent: Vec<Signal>,
}

impl Worker {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// The database URL through `proxy_port` instead of the server's own port.
pub(crate) fn via(url: &str, server_port: u16, proxy_port: u16) -> String {
    url.replacen(
        &format!("127.0.0.1:{server_port}/"),
        &format!("127.0.0.1:{proxy_port}/"),
        1,
    )
}

pub(crate) fn spawn_worker(
    env: &Env,
    dir: &Path,
    url: &str,
    pg: &PgServer,
    sim: &Sim,
    w: &mut Worker,
    rec: &mut Record,
) -> Result<(), String> {
    let db = via(url, pg.port(), w.proxy.port);
    let args: Vec<String> = ["worker", "--poll", "200ms", "--concurrency", "2", "--name", &w.name]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let child = spawn_engine(env, dir, Path::new(&db), &sim.url, &args)?;
    rec.drivers.insert(child.id());
    w.child = Some(child);
    w.sent.clear();
    w.restart_at = None;
    Ok(())
}

/// Returns once no restart of the server is under way (a restart holds the gate).
pub(crate) fn wait_for_server(pg: &PgServer) {
    drop(pg.gate.read().unwrap_or_else(PoisonError::into_inner));
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::PgServer;
    use crate::proc::{Env, spawn_engine};

    /// The engine processes of a PostgreSQL trial get their database in `FOGBOOK_DB`: read
    /// from outside, no process's command line (`/proc/PID/cmdline`, which every user of the
    /// machine may read) holds the password, and the URL still reaches the process.
    ///
    /// The `fogbook` started is a stand-in script (the kernel runs it as `sh SCRIPT ARGS…`,
    /// so its command line is what the runner passed): it writes the `FOGBOOK_DB` it got,
    /// then waits on a FIFO for the test to let it end.
    #[test]
    fn no_engine_process_of_a_pg_trial_has_the_password_on_its_command_line() {
        let pg = PgServer::start().unwrap();
        let url = pg.database("t_cmdline").unwrap();
        let password = pg.server.password().to_owned();
        assert!(url.contains(&password), "the trial's URL carries the password: {url}");

        let dir = tempfile::tempdir().unwrap();
        let (bin, got, go) = (
            dir.path().join("fogbook"),
            dir.path().join("fogbook.db"),
            dir.path().join("fogbook.go"),
        );
        std::fs::write(
            &bin,
            "#!/bin/sh\nprintf %s \"$FOGBOOK_DB\" > \"$0.db\"\nread line < \"$0.go\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mkfifo = std::process::Command::new("mkfifo").arg(&go).status().unwrap();
        assert!(mkfifo.success(), "mkfifo {}", go.display());
        let env = Env {
            fogbook: bin,
            root: dir.path().to_owned(),
            break_mode: None,
            local_dir: None,
        };

        for args in [vec!["worker", "--poll", "200ms", "--name", "w1"], vec!["resume", "r1"]] {
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            let mut child = spawn_engine(&env, dir.path(), Path::new(&url), "http://127.0.0.1:9", &args).unwrap();
            // Opening the FIFO waits for the script to open it too: by then it runs (the
            // command line is read from a process past its exec) and has written `got`; it
            // stays blocked in `read` until the newline below.
            let mut fifo = std::fs::OpenOptions::new().write(true).open(&go).unwrap();
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(cmdline.contains(&args[0]), "the process read is the engine: {cmdline}");
            assert!(
                !cmdline.contains(&password),
                "{}: the password is on the command line: {cmdline}",
                args[0]
            );
            fifo.write_all(b"\n").unwrap();
            drop(fifo);
            assert!(child.wait().unwrap().success());
            assert_eq!(
                std::fs::read_to_string(&got).unwrap(),
                url,
                "FOGBOOK_DB is the trial's URL"
            );
            std::fs::remove_file(&got).unwrap();
        }
        pg.drop_database("t_cmdline");
    }
}
