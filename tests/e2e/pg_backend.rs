//! One test body, two backends: a [`Db`] is a sandbox's state on SQLite (its file) or on a
//! PostgreSQL database of a throwaway server, with the commands run against it and the
//! rows read from outside fogbook (SQLite's file, or a connection of the test's own). An
//! [`OnPostgres`] is the PostgreSQL-only tests' sandbox: a server of its own and a [`Db`]
//! on it.

use std::fs::File;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fogbook_testpg::TestPostgres;

use crate::common::{Sandbox, Started, code, fixture, stderr, stdout};

/// Which backend a test body runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A sandbox and where its state lives.
pub(crate) struct Db {
    pub(crate) sb: Sandbox,
    /// The PostgreSQL URL, when the state is there.
    url: Option<String>,
}

/// A sandbox whose state is a database of a throwaway PostgreSQL server of its own (the
/// test may restart or stop it).
pub(crate) struct OnPostgres {
    pub(crate) db: Db,
    pub(crate) server: TestPostgres,
}

impl OnPostgres {
    /// A new server, and a sandbox on its new database `name`.
    pub(crate) fn start(name: &str) -> Self {
        let server = TestPostgres::start();
        Self {
            db: Db::new(Backend::Postgres, Some(&server), name),
            server,
        }
    }
}

/// A cell read from outside fogbook.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    Int(i64),
    Text(Option<String>),
}

impl Db {
    /// A new sandbox on `backend`; on PostgreSQL, a new database `name` of `server`.
    pub(crate) fn new(backend: Backend, server: Option<&TestPostgres>, name: &str) -> Self {
        let url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                server
                    .expect("a PostgreSQL server for a PostgreSQL test")
                    .create_database(name),
            ),
        };
        Self {
            sb: Sandbox::new(),
            url,
        }
    }

    /// The environment that points fogbook at this state (on top of the sandbox's own).
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        match &self.url {
            None => Vec::new(),
            Some(url) => vec![
                ("FOGBOOK_DB", url.clone()),
                ("FOGBOOK_LOCAL_DIR", self.sb.dir.path().display().to_string()),
            ],
        }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub(crate) fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cmd(args, env).output().expect("spawn fogbook")
    }

    pub(crate) fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.cmd(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fogbook")
    }

    /// `fogbook ARGS` in the background (with `env` on top of this state's), its output in
    /// the sandbox's files `TAG.out` and `TAG.err`.
    pub(crate) fn spawn_logged(&self, args: &[&str], env: &[(&str, &str)], tag: &str) -> Child {
        self.cmd(args, env)
            .stdout(File::create(self.sb.path(&format!("{tag}.out"))).unwrap())
            .stderr(File::create(self.sb.path(&format!("{tag}.err"))).unwrap())
            .spawn()
            .expect("spawn fogbook")
    }

    /// `fogbook ARGS` on this state, with `env` on top of it.
    fn cmd(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = self.sb.cmd();
        c.args(args);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// A driver of the kill-matrix fixture (its calls logged to `effects.txt`) in the
    /// foreground, with `env`, once it waits at its approval `gate` (renewing its lease,
    /// its connections open); and its run's id.
    pub(crate) fn driver_at_the_gate(&self, env: &[(&str, &str)]) -> (Started, String) {
        let log = self.sb.path("effects.txt").display().to_string();
        let runbook = fixture("kill-matrix.yaml").display().to_string();
        let driver = Started::new(self.spawn(&["run", &runbook, "--set", &format!("out={log}"), "--wait"], env));
        let start = Instant::now();
        // The condition, not the time, is what the test waits for.
        while self
            .try_query("SELECT progress FROM steps WHERE step_id = 'gate'", &[])
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .is_none_or(|row| row.first() == Some(&Cell::Text(None)))
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for the approval to be requested"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (driver, self.last_run_id())
    }

    /// A run of the job fixture in `group` (its wait `pause` long), detached: pending,
    /// driven by nobody yet; its calls logged to `effects.txt`.
    pub(crate) fn detach_job(&self, group: &str, pause: &str, env: &[(&str, &str)]) -> Output {
        self.run_env(
            &[
                "run",
                &fixture("job.yaml").display().to_string(),
                "--detach",
                "--set",
                &format!("out={}", self.sb.path("effects.txt").display()),
                "--set",
                &format!("group={group}"),
                "--set",
                &format!("pause={pause}"),
            ],
            env,
        )
    }

    /// The commands the kill-matrix fixture called, in order, read from outside fogbook
    /// (`effects.txt`: one line a call, the step's name first).
    pub(crate) fn calls(&self) -> Vec<String> {
        self.sb
            .lines_of("effects.txt")
            .iter()
            .map(|line| line.split(' ').next().unwrap().to_owned())
            .collect()
    }

    /// PostgreSQL only: `run`'s lease is now held by a process on another host, and expired
    /// a minute ago by the database server's clock.
    pub(crate) fn expire_the_lease_elsewhere(&self, run: &str) {
        let held = self.query(
            "UPDATE runs SET lease_owner = 'elsewhere:4242:1',
            lease_expires_at = CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT) - 60000
         WHERE id = ?1 RETURNING id",
            &[run],
        );
        assert_eq!(held.len(), 1);
    }

    /// The PostgreSQL URL, when the state is there.
    pub(crate) fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// Whether the state exists yet (the SQLite file; a PostgreSQL database always does).
    pub(crate) fn exists(&self) -> bool {
        self.url.is_some() || self.sb.db().exists()
    }

    /// The rows of `sql` (`?1`, `?2`… for the text `params`), each cell an integer or a
    /// text, read from outside fogbook.
    pub(crate) fn query(&self, sql: &str, params: &[&str]) -> Vec<Vec<Cell>> {
        self.try_query(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// As [`Self::query`], an error (no such table yet: a process killed before its
    /// migrations) returned.
    pub(crate) fn try_query(&self, sql: &str, params: &[&str]) -> Result<Vec<Vec<Cell>>, String> {
        match &self.url {
            None => {
                let conn = self.sb.sql();
                let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
                let columns = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                        (0..columns)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Integer(n) => Cell::Int(n),
                                    rusqlite::types::ValueRef::Null => Cell::Text(None),
                                    other => Cell::Text(Some(other.as_str().unwrap().to_owned())),
                                })
                            })
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(|e| e.to_string())?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| e.to_string())
            }
            Some(url) => {
                let fogbook_state::pg::StoreUrl::Postgres(url) = url.parse().unwrap() else {
                    unreachable!("a PostgreSQL URL")
                };
                let mut client = fogbook_state::pg::connect(&url).unwrap();
                // The parameters are the test's own ids: inlined as quoted literals.
                let mut sql = sql.to_owned();
                for (i, p) in params.iter().enumerate().rev() {
                    sql = sql.replace(&format!("?{}", i + 1), &format!("'{}'", p.replace('\'', "''")));
                }
                let rows = client.query(&sql, &[]).map_err(|e| e.to_string())?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| match r.columns()[i].type_().name() {
                                "int8" => Cell::Int(r.get(i)),
                                "int4" => Cell::Int(i64::from(r.get::<_, i32>(i))),
                                _ => Cell::Text(r.get(i)),
                            })
                            .collect()
                    })
                    .collect())
            }
        }
    }

    /// The one text cell of the first row of `sql`, if any row.
    pub(crate) fn text(&self, sql: &str, params: &[&str]) -> Option<String> {
        match self.query(sql, params).into_iter().next()?.into_iter().next()? {
            Cell::Text(t) => t,
            Cell::Int(n) => Some(n.to_string()),
        }
    }

    /// The integer cells of the first row of `sql`.
    pub(crate) fn ints(&self, sql: &str, params: &[&str]) -> Vec<i64> {
        let row = self.query(sql, params).into_iter().next().expect("a row");
        row.into_iter()
            .map(|c| match c {
                Cell::Int(n) => n,
                Cell::Text(t) => panic!("{sql}: not an integer: {t:?}"),
            })
            .collect()
    }

    /// The id of the only (or newest) run.
    pub(crate) fn last_run_id(&self) -> String {
        self.text("SELECT id FROM runs ORDER BY created_at DESC, id DESC LIMIT 1", &[])
            .expect("a run exists")
    }

    pub(crate) fn run_status(&self, run: &str) -> String {
        self.text("SELECT status FROM runs WHERE id = ?1", &[run]).expect("run")
    }

    /// `audit verify` passes on this state (and, on PostgreSQL, no SQLite file was made:
    /// the test ran where it says).
    pub(crate) fn assert_audit_ok(&self) {
        if self.url.is_some() {
            assert!(!self.sb.db().exists(), "a PostgreSQL test wrote a SQLite file");
        }
        let out = self.run(&["audit", "verify"]);
        assert_eq!(code(&out), 0, "audit verify failed: {}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).starts_with("ok:"), "{}", stdout(&out));
    }
}
