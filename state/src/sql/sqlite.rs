//! [`Tx`] over a rusqlite connection (inside a transaction for writes).

use std::cell::RefCell;
use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ToSql};

use super::{ChainHead, Dialect, Error, Result, Row, Tx, Value};
use crate::StateError;
use crate::error::SqlContext;

/// The store's closures see a SQLite connection (or the transaction deref'd to one) as this.
pub(crate) struct SqliteTx<'a> {
    conn: &'a Connection,
    /// The chain head of a write transaction, kept in memory until its commit.
    chain: Option<&'a RefCell<Option<ChainHead>>>,
}

impl<'a> SqliteTx<'a> {
    /// A connection outside any write transaction (reads).
    pub(crate) fn new(conn: &'a Connection) -> Self {
        Self { conn, chain: None }
    }

    /// A write transaction whose audit chain head is kept in `chain` (empty until the first
    /// append reads it) and written by the caller before the commit.
    pub(crate) fn with_chain(conn: &'a Connection, chain: &'a RefCell<Option<ChainHead>>) -> Self {
        Self {
            conn,
            chain: Some(chain),
        }
    }
}

impl Tx for SqliteTx<'_> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        // Every statement goes through SQLite's prepared-statement cache: the store runs the
        // same few statements for every step, and preparing them once saves most of a
        // transaction's CPU.
        let mut stmt = self.conn.prepare_cached(sql).map_err(sqlite)?;
        stmt.execute(rusqlite::params_from_iter(params.iter().map(Bind)))
            .map_err(sqlite)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(sqlite)?;
        let columns: Arc<[String]> = stmt.column_names().map(str::to_owned).collect();
        let width = columns.len();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter().map(Bind)))
            .map_err(sqlite)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(sqlite)? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match r.get_ref(i).map_err(sqlite)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Real(f) => Value::Real(f),
                    // Text that is not valid UTF-8 (the file was changed outside fogbook)
                    // is kept as bytes, for `Row::opt_text` to name.
                    ValueRef::Text(b) => match std::str::from_utf8(b) {
                        Ok(s) => Value::Text(s.to_owned()),
                        Err(_) => Value::Blob(b.to_vec()),
                    },
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            out.push(Row::new(columns.clone(), values));
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn chain_head(&self) -> Option<&RefCell<Option<ChainHead>>> {
        self.chain
    }
}

/// A [`Value`] bound to a SQLite statement.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::Borrowed;
        Ok(Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn sqlite(e: rusqlite::Error) -> Error {
    Error::backend(without_sql(e))
}

/// The SQLite work outside the seam (opening, migrations, the commit floor) names what it
/// was doing the same way.
impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn during(self, operation: &'static str) -> std::result::Result<T, StateError> {
        self.map_err(|source| StateError::Database {
            operation,
            source: Arc::new(without_sql(source)),
        })
    }
}

/// The error without the statement it came from: an error names what the store was doing,
/// never prints the SQL (a migration's text is a hundred lines).
pub(crate) fn without_sql(e: rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqlInputError { error, msg, .. } => rusqlite::Error::SqliteFailure(error, Some(msg)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sql::{OptionalExt, params};

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, i INTEGER, r REAL, s TEXT, b BLOB)")
            .unwrap();
        conn
    }

    #[test]
    fn values_go_in_and_come_back_as_they_were() {
        let conn = db();
        let tx: &dyn Tx = &SqliteTx::new(&conn);
        let none: Option<&str> = None;
        let id: i64 = tx
            .query_row(
                "INSERT INTO t (i, r, s, b) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                params![-7i64, 1.5f64, "é", vec![0u8, 255]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(id, 1, "RETURNING gives the new key");
        assert_eq!(
            tx.execute("INSERT INTO t (i, s) VALUES (?1, ?2)", params![true, none])
                .unwrap(),
            1
        );
        let rows = tx
            .query_map("SELECT i, r, s, b FROM t ORDER BY id", params![], |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<Option<f64>>(1)?,
                    r.get::<Option<String>>(2)?,
                    r.get::<Option<Vec<u8>>>(3)?,
                ))
            })
            .unwrap();
        assert_eq!(
            rows,
            [
                (-7, Some(1.5), Some("é".to_owned()), Some(vec![0, 255])),
                (1, None, None, None)
            ]
        );
        let wrong = tx.query_row("SELECT s FROM t WHERE id = 1", params![], |r| r.get::<i64>(0));
        assert!(
            matches!(wrong, Err(Error::Conversion { ref column, .. }) if column == "s"),
            "{wrong:?}"
        );
    }

    #[test]
    fn no_row_is_an_error_that_optional_turns_into_none() {
        let conn = db();
        let tx: &dyn Tx = &SqliteTx::new(&conn);
        let q = || tx.query_row("SELECT i FROM t WHERE id = ?1", params![42i64], |r| r.get::<i64>(0));
        assert!(matches!(q(), Err(Error::NoRows)));
        assert_eq!(q().optional().unwrap(), None);
    }

    #[test]
    fn text_that_is_not_utf8_is_named_by_row_and_column() {
        let conn = db();
        conn.execute_batch("INSERT INTO t (s) VALUES (CAST(X'FF' AS TEXT))")
            .unwrap();
        let tx: &dyn Tx = &SqliteTx::new(&conn);
        let err = tx
            .query_row("SELECT s FROM t", params![], |r| r.text(0, &|| "row 1".to_owned()))
            .unwrap_err();
        assert!(
            matches!(err, Error::Unreadable(ref cell) if cell.0 == "row 1, column s"),
            "{err:?}"
        );
    }

    #[test]
    fn a_failed_statement_keeps_sqlites_error_without_the_sql() {
        let conn = db();
        let tx: &dyn Tx = &SqliteTx::new(&conn);
        let err = tx.execute("INSERT INTO nowhere VALUES (1)", params![]).unwrap_err();
        let Error::Backend(source) = err else { panic!("{err:?}") };
        let text = source.to_string();
        assert!(text.contains("no such table"), "{text}");
        assert!(!text.contains("INSERT"), "the SQL is left out: {text}");
    }
}
