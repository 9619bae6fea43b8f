//! [`Tx`] over a PostgreSQL connection: the store's closures run unchanged on it.
//!
//! Each SQL text is rewritten once ([`postgres_placeholders`]) and prepared once per
//! connection; the prepared statement (which knows the type PostgreSQL inferred for each
//! parameter) is cached under the original text. [`Value`]s are bound as the type the
//! statement expects (an integer to a `BIGINT` column as `i64`, to a text parameter as its
//! decimal text), and rows are read back into the seam's [`Row`] by column type: integers
//! and booleans as [`Value::Int`] (as SQLite stores them), reals, texts and byte strings.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use postgres::Statement;
use postgres::types::{ToSql, Type};

use crate::pg::postgres_placeholders;
use crate::pg::prefetch::Prefetched;
use crate::pg::session::{Answer, Request, Session as Client, SessionError};
use crate::sql::{ChainHead, Dialect, Error, Result, Row, RunAhead, StepAhead, Tx, Value};

/// One PostgreSQL connection with its prepared statements.
pub(crate) struct PgConn {
    client: Client,
    /// Prepared statements by the store's SQL text (before the placeholders are rewritten).
    statements: HashMap<String, Statement>,
    /// Set (by a test hook only): leases follow the caller's clock, not the server's.
    caller_clock: Arc<AtomicBool>,
    /// Statements whose answers nobody reads, not sent yet ([`Tx::execute_later`]): they go
    /// out in one pipeline with the next statement that needs an answer.
    queue: Vec<Queued>,
    /// Whether a pipeline went out since [`PgConn::queue_savepoint`].
    sent: bool,
    /// Where the current write's statements start in `queue`: the ones before it were
    /// queued by earlier writes of the group (their ends deferred, [`PgConn::defer`]).
    mark: usize,
    /// A statement an earlier write of the group queued failed, reported to a later one:
    /// the transaction is aborted, and the whole group with it.
    poisoned: Option<crate::BackendError>,
    /// The server's clock as read at the start of the write transaction, and when that
    /// request was sent ([`PgConn::set_clock`]).
    clock: Option<(crate::Millis, Instant)>,
}

/// A statement waiting in [`PgConn`]'s queue.
struct Queued {
    stmt: Statement,
    params: Vec<Bound>,
    /// The start of its SQL text, to name it when it fails.
    sql: String,
}

/// A queued statement failed: the statement that sent it with its own reports this.
#[derive(Debug, thiserror::Error)]
#[error("`{sql}…`, sent earlier in this write, failed")]
pub(crate) struct QueuedFailed {
    sql: String,
    #[source]
    source: tokio_postgres::Error,
}

/// The server's clock in milliseconds since the epoch: the one clock every host's lease
/// decisions are made by. `clock_timestamp()`, not `now()`: a write transaction of the
/// group commit may be open a while, and a lease is decided at the instant it is checked.
pub(crate) const DB_NOW_MS: &str = "SELECT CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)";

impl PgConn {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            statements: HashMap::new(),
            caller_clock: Arc::default(),
            queue: Vec::new(),
            sent: false,
            mark: 0,
            poisoned: None,
            clock: None,
        }
    }

    /// This connection's leases follow the caller's clock while `flag` is set.
    pub(crate) fn with_clock_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.caller_clock = flag;
        self
    }

    /// The client itself (transaction control, the advisory lock).
    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Whether the connection to the server is gone (it must be opened again).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The server's clock read at `server` (milliseconds) by a request sent at `sent`:
    /// [`Tx::lease_now`] is then that reading plus the time elapsed since `sent`, until
    /// `None` is set. The reading was taken after the request left, so the estimate is
    /// never behind the server's clock, and is ahead of it by at most the time the request
    /// took to reach the server.
    pub(crate) fn set_clock(&mut self, clock: Option<(crate::Millis, Instant)>) {
        self.clock = clock;
    }

    /// Queues `sql` (no parameters, e.g. `SAVEPOINT write`) to go out first in the next
    /// pipeline, and notes that nothing was sent since.
    pub(crate) fn queue_savepoint(&mut self, sql: &str) -> Result<()> {
        self.start_write();
        self.enqueue(sql, &[])
    }

    /// Marks where the next write's statements start (a write alone in its transaction
    /// starts at once, without a savepoint).
    pub(crate) fn start_write(&mut self) {
        self.sent = false;
        self.mark = self.queue.len();
    }

    /// Queues `sql` (no parameters, e.g. `RELEASE SAVEPOINT write`) to end the current
    /// write without waiting for its answer: its statements, and this, go out with the
    /// next statement that needs an answer or with the commit. A failure among them is then
    /// reported to a later write of the group, and fails the whole group
    /// ([`PgConn::poisoned`]).
    pub(crate) fn defer(&mut self, sql: &str) -> Result<()> {
        self.enqueue(sql, &[])
    }

    /// The failure of a statement an earlier write of the group queued, if one was
    /// reported: the transaction is aborted, and every write of the group fails with it.
    pub(crate) fn poisoned(&self) -> Option<crate::BackendError> {
        self.poisoned.clone()
    }

    /// Drops the current write's queued statements unsent (those of earlier writes stay
    /// queued); returns whether anything was sent since it started (when not, the server
    /// has seen nothing of the write).
    pub(crate) fn discard(&mut self) -> bool {
        let mark = self.mark.min(self.queue.len());
        self.queue.truncate(mark);
        self.sent
    }

    /// Drops everything queued (the transaction is ending).
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.mark = 0;
        self.poisoned = None;
    }

    /// Sends the queued statements with `sql` (no parameters, e.g. `RELEASE SAVEPOINT
    /// write`, `COMMIT`) in one round trip; fails when any of them failed.
    /// Prepares `sql` now (a round trip, the first time on this connection only), so that a
    /// later [`Self::flush_with`] of it sends nothing but its pipeline: a connection lost
    /// while preparing had sent nothing of it.
    pub(crate) fn prepare(&mut self, sql: &str) -> Result<()> {
        self.statement(sql).map(|_| ()).map_err(Error::backend)
    }

    pub(crate) fn flush_with(&mut self, sql: &str) -> Result<()> {
        let stmt = self.statement(sql).map_err(Error::backend)?;
        self.send(&stmt, Vec::new(), false).map(|_| ())
    }

    fn enqueue(&mut self, sql: &str, params: &[Value]) -> Result<()> {
        let stmt = self.statement(sql).map_err(Error::backend)?;
        let params = bind(&stmt, params)?;
        let sql = sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
        self.queue.push(Queued { stmt, params, sql });
        Ok(())
    }

    /// Sends the queue and then `stmt` in one pipeline; `stmt`'s answer, or the error of
    /// the first queued statement that failed (the write is then rolled back).
    fn send(&mut self, stmt: &Statement, params: Vec<Bound>, rows: bool) -> Result<Answer> {
        let queued = std::mem::take(&mut self.queue);
        let mark = std::mem::take(&mut self.mark);
        self.sent = true;
        let mut requests: Vec<Request<'_>> = queued
            .iter()
            .map(|q| Request {
                stmt: &q.stmt,
                params: q.params.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect(),
                rows: false,
            })
            .collect();
        requests.push(Request {
            stmt,
            params: params.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect(),
            rows,
        });
        let mut answers = self.client.pipeline(&requests).map_err(Error::backend)?.into_iter();
        for (i, q) in queued.iter().enumerate() {
            if let Some(Err(source)) = answers.next() {
                let failed: crate::BackendError = Arc::new(QueuedFailed {
                    sql: q.sql.clone(),
                    source,
                });
                if i < mark {
                    self.poisoned = Some(failed.clone());
                }
                return Err(Error::Backend(failed));
            }
        }
        match answers.next() {
            Some(answer) => answer.map_err(|e| Error::backend(SessionError::Db(e))),
            None => Err(Error::NoRows),
        }
    }

    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, SessionError> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(&postgres_placeholders(sql))?;
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

/// The store's closures see a PostgreSQL connection (inside the writer's transaction for
/// writes) as this.
pub(crate) struct PgTx<'a> {
    conn: &'a RefCell<PgConn>,
    /// The write transaction's chain head, kept in memory until its commit (writes only).
    chain: Option<&'a RefCell<Option<ChainHead>>>,
    /// The rows the group's writes declared, read with its `BEGIN` (writes only).
    ahead: Option<&'a RefCell<Prefetched>>,
}

impl<'a> PgTx<'a> {
    /// A read: every statement is sent at once.
    pub(crate) fn new(conn: &'a RefCell<PgConn>) -> Self {
        Self {
            conn,
            chain: None,
            ahead: None,
        }
    }

    /// A write of the writer's group transaction: the chain head is kept in `chain` (read
    /// at BEGIN, under the write lock) and statements whose answers nobody reads are
    /// queued, to go out with the next one that needs an answer or with the write's end.
    pub(crate) fn writing(
        conn: &'a RefCell<PgConn>,
        chain: &'a RefCell<Option<ChainHead>>,
        ahead: &'a RefCell<Prefetched>,
    ) -> Self {
        Self {
            conn,
            chain: Some(chain),
            ahead: Some(ahead),
        }
    }
}

impl Tx for PgTx<'_> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        let mut conn = self.conn.borrow_mut();
        let stmt = conn.statement(sql).map_err(Error::backend)?;
        let bound = bind(&stmt, params)?;
        match conn.send(&stmt, bound, false)? {
            Answer::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Answer::Rows(rows) => Ok(rows.len()),
        }
    }

    fn execute_later(&self, sql: &str, params: &[Value]) -> Result<()> {
        if self.chain.is_none() {
            return self.execute(sql, params).map(|_| ());
        }
        self.conn.borrow_mut().enqueue(sql, params)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut conn = self.conn.borrow_mut();
        let stmt = conn.statement(sql).map_err(Error::backend)?;
        let bound = bind(&stmt, params)?;
        let rows = match conn.send(&stmt, bound, true)? {
            Answer::Rows(rows) => rows,
            Answer::Count(_) => Vec::new(),
        };
        let columns: Arc<[String]> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
        rows.iter()
            .map(|r| {
                let values = (0..columns.len())
                    .map(|i| read(r, i, &columns))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Row::new(columns.clone(), values))
            })
            .collect()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn lease_now(&self, caller: crate::Millis) -> Result<crate::Millis> {
        let clock = {
            let conn = self.conn.borrow();
            if conn.caller_clock.load(Ordering::Relaxed) {
                return Ok(caller);
            }
            conn.clock
        };
        if let Some((server, sent)) = clock {
            // Rounded up: the estimate stays ahead of (never behind) the server's clock.
            let elapsed = i64::try_from(sent.elapsed().as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
            return Ok(server.saturating_add(elapsed));
        }
        let rows = self.query(DB_NOW_MS, &[])?;
        rows.first().ok_or(Error::NoRows)?.get(0)
    }

    fn chain_head(&self) -> Option<&RefCell<Option<ChainHead>>> {
        self.chain
    }

    fn prefetched_run(&self, run_id: &str) -> Option<RunAhead> {
        self.ahead?.borrow_mut().take_run(run_id)
    }

    fn prefetched_step(&self, run_id: &str, step_id: &str) -> Option<StepAhead> {
        self.ahead?.borrow_mut().take_step(run_id, step_id)
    }
}

type Bound = Box<dyn ToSql + Sync + Send>;

/// `params` converted to the types `stmt` expects.
fn bind(stmt: &Statement, params: &[Value]) -> Result<Vec<Bound>> {
    let types = stmt.params();
    if types.len() != params.len() {
        return Err(Error::Conversion {
            column: "the statement's parameters".to_owned(),
            found: "another number of values",
            expected: "one value per parameter",
        });
    }
    types
        .iter()
        .zip(params)
        .enumerate()
        .map(|(i, (ty, v))| bind_one(ty, v).ok_or_else(|| mismatch(i, ty, v)))
        .collect()
}

fn mismatch(i: usize, ty: &Type, v: &Value) -> Error {
    Error::Conversion {
        column: format!("parameter ${} ({ty})", i + 1),
        found: match v {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        },
        expected: "a value of the parameter's type",
    }
}

/// One value as the Rust type the client binds to `ty`; `None` when it does not fit.
fn bind_one(ty: &Type, v: &Value) -> Option<Bound> {
    Some(match (ty, v) {
        (t, Value::Null) if *t == Type::INT8 => Box::new(None::<i64>),
        (t, Value::Null) if *t == Type::INT4 => Box::new(None::<i32>),
        (t, Value::Null) if *t == Type::INT2 => Box::new(None::<i16>),
        (t, Value::Null) if *t == Type::FLOAT8 => Box::new(None::<f64>),
        (t, Value::Null) if *t == Type::FLOAT4 => Box::new(None::<f32>),
        (t, Value::Null) if *t == Type::BOOL => Box::new(None::<bool>),
        (t, Value::Null) if *t == Type::BYTEA => Box::new(None::<Vec<u8>>),
        (_, Value::Null) => Box::new(None::<String>),
        (t, Value::Int(i)) if *t == Type::INT8 => Box::new(*i),
        (t, Value::Int(i)) if *t == Type::INT4 => Box::new(i32::try_from(*i).ok()?),
        (t, Value::Int(i)) if *t == Type::INT2 => Box::new(i16::try_from(*i).ok()?),
        #[allow(clippy::cast_precision_loss, reason = "as SQLite converts an integer to a real")]
        (t, Value::Int(i)) if *t == Type::FLOAT8 => Box::new(*i as f64),
        (t, Value::Int(i)) if *t == Type::BOOL => Box::new(*i != 0),
        (t, Value::Int(i)) if is_text(t) => Box::new(i.to_string()),
        (t, Value::Real(f)) if *t == Type::FLOAT8 => Box::new(*f),
        #[allow(clippy::cast_possible_truncation, reason = "a REAL parameter is 4 bytes wide")]
        (t, Value::Real(f)) if *t == Type::FLOAT4 => Box::new(*f as f32),
        (t, Value::Real(f)) if is_text(t) => Box::new(f.to_string()),
        (t, Value::Text(s)) if is_text(t) => Box::new(s.clone()),
        (t, Value::Text(s)) if *t == Type::BYTEA => Box::new(s.clone().into_bytes()),
        (t, Value::Blob(b)) if *t == Type::BYTEA => Box::new(b.clone()),
        _ => return None,
    })
}

fn is_text(t: &Type) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::UNKNOWN].contains(t)
}

/// Column `i` of `row` as a [`Value`].
fn read(row: &postgres::Row, i: usize, columns: &[String]) -> Result<Value> {
    let ty = row.columns().get(i).map(|c| c.type_().clone()).unwrap_or(Type::UNKNOWN);
    let v = if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int))
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| Value::Int(v.into())))
    } else if ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|v| Value::Int(v.into())))
    } else if ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|v| Value::Int(v.into())))
    } else if ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i).map(|v| v.map(Value::Real))
    } else if ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(i)
            .map(|v| v.map(|v| Value::Real(v.into())))
    } else if ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i).map(|v| v.map(Value::Blob))
    } else if is_text(&ty) {
        row.try_get::<_, Option<String>>(i).map(|v| v.map(Value::Text))
    } else {
        return Err(Error::Conversion {
            column: columns.get(i).cloned().unwrap_or_default(),
            found: "a PostgreSQL type the store does not read",
            expected: "an integer, boolean, real, text or bytea column",
        });
    };
    Ok(v.map_err(Error::backend)?.unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::str::FromStr;

    use super::*;
    use crate::pg::StoreUrl;
    use crate::sql::{OptionalExt, params};

    fn db(server: &fogbook_testpg::TestPostgres) -> RefCell<PgConn> {
        let StoreUrl::Postgres(url) = StoreUrl::from_str(&server.url()).unwrap() else {
            panic!("not a PostgreSQL URL");
        };
        let mut client = Client::open(&url, "test", crate::pg::Limits::default()).unwrap();
        client
            .batch_execute(
                "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, i BIGINT, r DOUBLE PRECISION,
                                 s TEXT, b BYTEA, \"window\" TEXT)",
            )
            .unwrap();
        RefCell::new(PgConn::new(client))
    }

    /// The same statements and values as SQLite's test of the seam: `?N` placeholders,
    /// `RETURNING`, integers, booleans, reals, text, bytes and NULLs go in and come back as
    /// they were; a missing row is `NoRows`; a wrong type names the column.
    #[test]
    fn values_go_in_and_come_back_as_they_were() {
        let server = fogbook_testpg::TestPostgres::start();
        let conn = db(&server);
        let tx: &dyn Tx = &PgTx::new(&conn);
        let none: Option<&str> = None;
        let id: i64 = tx
            .query_row(
                "INSERT INTO t (i, r, s, b) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                params![-7i64, 1.5f64, "é", vec![0u8, 255]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(id, 1, "RETURNING gives the new key");
        for _ in 0..2 {
            // The second run uses the cached statement.
            assert_eq!(
                tx.execute(
                    "INSERT INTO t (i, s, \"window\") VALUES (?1, ?2, ?2)",
                    params![true, none]
                )
                .unwrap(),
                1
            );
        }
        assert_eq!(conn.borrow().statements.len(), 2, "each SQL text is prepared once");
        let rows = tx
            .query_map(
                "SELECT i, r, s, b FROM t WHERE id <= ?1 ORDER BY id",
                params![2i64],
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        r.get::<Option<f64>>(1)?,
                        r.get::<Option<String>>(2)?,
                        r.get::<Option<Vec<u8>>>(3)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            rows,
            [
                (-7, Some(1.5), Some("é".to_owned()), Some(vec![0, 255])),
                (1, None, None, None)
            ]
        );
        let exists: bool = tx
            .query_row("SELECT EXISTS (SELECT 1 FROM t WHERE i = ?1)", params![-7i64], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(exists, "a PostgreSQL boolean reads as SQLite's 0/1");
        let wrong = tx.query_row("SELECT s FROM t WHERE id = 1", params![], |r| r.get::<i64>(0));
        assert!(
            matches!(wrong, Err(Error::Conversion { ref column, .. }) if column == "s"),
            "{wrong:?}"
        );
        let missing = tx
            .query_row("SELECT i FROM t WHERE id = ?1", params![42i64], |r| r.get::<i64>(0))
            .optional()
            .unwrap();
        assert_eq!(missing, None);
    }

    #[test]
    fn a_failed_statement_keeps_the_servers_error() {
        let server = fogbook_testpg::TestPostgres::start();
        let conn = db(&server);
        let tx: &dyn Tx = &PgTx::new(&conn);
        let err = tx
            .execute("INSERT INTO nowhere VALUES (?1)", params![1i64])
            .unwrap_err();
        let Error::Backend(source) = err else { panic!("{err:?}") };
        let text = format!("{source}: {:?}", source.source());
        assert!(text.contains("nowhere"), "{text}");
    }
}
