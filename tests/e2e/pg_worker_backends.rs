//! The worker and schedule tests on both backends: [`Db`] is a sandbox whose state is a
//! SQLite file or a throwaway PostgreSQL server of the test's own, with the few reads the
//! tests make from outside fogbook written once, in SQL both databases understand (values
//! read back as text).

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use fogbook_state::pg::StoreUrl;
use fogbook_testpg::TestPostgres;

use crate::common::{Sandbox, code, stderr, stdout};

/// Which backend a test body runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A sandbox with its state database.
pub(crate) struct Db {
    pub(crate) sb: Sandbox,
    server: Option<TestPostgres>,
}

impl Db {
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            sb: Sandbox::new(),
            server: match backend {
                Backend::Sqlite => None,
                Backend::Postgres => Some(TestPostgres::start()),
            },
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.sb.path(name)
    }

    fn cmd(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = self.sb.cmd();
        if let Some(server) = &self.server {
            c.env("FOGBOOK_DB", server.url())
                .env("FOGBOOK_LOCAL_DIR", self.sb.dir.path());
        }
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args, &[]).output().expect("spawn fogbook")
    }

    pub(crate) fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.cmd(args, env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn fogbook")
    }

    /// Whether the database exists (SQLite: the file; PostgreSQL: fogbook's schema in it).
    pub(crate) fn exists(&self) -> bool {
        match &self.server {
            None => self.sb.db().exists(),
            Some(_) => {
                self.rows("SELECT table_name FROM information_schema.tables WHERE table_name = 'runs'")
                    .len()
                    == 1
            }
        }
    }

    /// The rows of `sql` (written for both databases, every column cast to text), read from
    /// outside fogbook; none when the database does not exist yet.
    pub(crate) fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match &self.server {
            None => {
                if !self.sb.db().exists() {
                    return Vec::new();
                }
                let conn = self.sb.sql();
                let Ok(mut stmt) = conn.prepare(sql) else {
                    return Vec::new();
                };
                let n = stmt.column_count();
                stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Option<String>>(i)).collect())
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Some(server) => {
                let StoreUrl::Postgres(url) = server.url().parse::<StoreUrl>().unwrap() else {
                    unreachable!("a PostgreSQL URL")
                };
                let mut client = fogbook_state::pg::connect(&url).unwrap();
                let Ok(rows) = client.query(sql, &[]) else {
                    return Vec::new();
                };
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect())
                    .collect()
            }
        }
    }

    /// The first column of the first row of `sql`, as text.
    pub(crate) fn text(&self, sql: &str) -> Option<String> {
        self.rows(sql).into_iter().next()?.into_iter().next()?
    }

    /// A `SELECT count(*) …` (0 when the database does not exist yet).
    pub(crate) fn count(&self, sql: &str) -> i64 {
        let sql = sql.replacen("SELECT count(*)", "SELECT CAST(count(*) AS TEXT)", 1);
        self.text(&sql).and_then(|t| t.parse().ok()).unwrap_or(0)
    }

    pub(crate) fn run_status(&self, run: &str) -> String {
        self.text(&format!("SELECT status FROM runs WHERE id = '{run}'"))
            .expect("run")
    }

    pub(crate) fn step_status(&self, run: &str, step: &str) -> String {
        self.text(&format!(
            "SELECT status FROM steps WHERE run_id = '{run}' AND step_id = '{step}'"
        ))
        .unwrap_or_default()
    }

    /// Polls the database until `pred` holds (the condition, not the time, is what the
    /// test waits for); panics after `limit`.
    pub(crate) fn wait_for(&self, what: &str, limit: Duration, mut pred: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.exists() && pred(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}");
    }

    pub(crate) fn lines_of(&self, name: &str) -> Vec<String> {
        self.sb.lines_of(name)
    }

    pub(crate) fn assert_audit_ok(&self) {
        let out = self.run(&["audit", "verify"]);
        assert_eq!(code(&out), 0, "audit verify failed: {}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).starts_with("ok:"), "{}", stdout(&out));
    }
}

/// Two tests of each named body `fn NAME(backend: Backend)`: `sqlite::NAME` and
/// `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends_e2e {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::pg_worker_backends::Backend::Sqlite);
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::pg_worker_backends::Backend::Postgres);
                }
            )+
        }
    };
}
