//! One test body, two backends: a [`Db`] is a sandbox's state on SQLite (its file) or on a
//! PostgreSQL database of a throwaway server, with the commands run against it and the
//! rows read from outside fogbook (SQLite's file, or a connection of the test's own).

use std::process::{Child, Output};

use fogbook_testpg::TestPostgres;

use crate::common::{Sandbox, code, stderr, stdout};

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
        let mut c = self.sb.cmd();
        c.args(args);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("spawn fogbook")
    }

    pub(crate) fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut c = self.sb.cmd();
        c.args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in self.env() {
            c.env(k, v);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().expect("spawn fogbook")
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
