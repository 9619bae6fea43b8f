#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The PostgreSQL schema (issue 17): migrating is idempotent and safe from many processes at
//! once, the schema has every table, column, key and index of the SQLite one, and the audit
//! trail is append-only there too. Each test starts its own throwaway server.

mod backends;
use backends::pg_url;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};

use fogbook_state::Store;
use fogbook_state::pg::{self, PgError};
use fogbook_testpg::TestPostgres;

fn client(url: &str) -> postgres::Client {
    pg::connect(&pg_url(url)).unwrap()
}

/// Migrating an already migrated database changes nothing: the version stays, each
/// migration is recorded once, and rows written in between are kept.
#[test]
fn migrating_twice_is_idempotent() {
    let server = TestPostgres::start();
    let mut db = client(&server.url());
    assert_eq!(pg::schema_version(&mut db).unwrap(), 0, "a new database has no schema");
    pg::migrate(&mut db).unwrap();
    assert_eq!(pg::schema_version(&mut db).unwrap(), pg::SCHEMA_VERSION);
    db.execute(
        "INSERT INTO runbook_texts (sha256, text) VALUES ('h', 'runbook: one')",
        &[],
    )
    .unwrap();
    pg::migrate(&mut db).unwrap();
    let mut again = client(&server.url());
    pg::migrate(&mut again).unwrap();
    assert_eq!(pg::schema_version(&mut db).unwrap(), pg::SCHEMA_VERSION);
    let recorded: i64 = db.query_one("SELECT count(*) FROM fogbook_schema", &[]).unwrap().get(0);
    assert_eq!(recorded, pg::SCHEMA_VERSION, "each migration is recorded once");
    let kept: i64 = db.query_one("SELECT count(*) FROM runbook_texts", &[]).unwrap().get(0);
    assert_eq!(kept, 1, "the data written between the migrations is kept");
    let chain: i64 = db.query_one("SELECT count(*) FROM chain", &[]).unwrap().get(0);
    assert_eq!(chain, 1, "the chain head is seeded once");
}

/// Eight connections (as eight workers on several hosts would have) migrate one new
/// database at the same instant: every one succeeds and the schema is applied once.
#[test]
fn eight_concurrent_migrations_of_a_fresh_database_all_succeed() {
    let server = TestPostgres::start();
    let url = server.create_database("fresh");
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut db = client(&url);
                barrier.wait();
                pg::migrate(&mut db).map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))
            })
        })
        .collect();
    let failures: Vec<String> = handles.into_iter().filter_map(|h| h.join().unwrap().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of 8 migrations failed: {failures:?}",
        failures.len()
    );
    let mut db = client(&url);
    assert_eq!(pg::schema_version(&mut db).unwrap(), pg::SCHEMA_VERSION);
    let recorded: i64 = db.query_one("SELECT count(*) FROM fogbook_schema", &[]).unwrap().get(0);
    assert_eq!(recorded, pg::SCHEMA_VERSION, "the schema was applied once");
}

/// A table of a schema: its columns (name to NOT NULL, for columns outside the primary key)
/// and its primary key.
#[derive(Debug, PartialEq, Eq)]
struct Table {
    columns: BTreeMap<String, bool>,
    primary_key: BTreeSet<String>,
}

/// Columns only the PostgreSQL schema has: none (the lease epochs of issue 17 are in both).
const PG_ONLY: &[(&str, &str)] = &[];

/// The PostgreSQL schema has every table of the SQLite schema (as `Store::open` migrates a
/// new file), with the same columns, NOT NULL constraints, primary keys and named indexes
/// (over the same columns); the only extra columns are the lease epochs.
#[test]
fn the_schema_has_every_table_column_key_and_index_of_the_sqlite_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let lite = rusqlite::Connection::open(&path).unwrap();
    let names: Vec<String> = lite
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut sqlite = BTreeMap::new();
    for name in names {
        let mut columns = BTreeMap::new();
        let mut primary_key = BTreeSet::new();
        let mut stmt = lite
            .prepare("SELECT name, \"notnull\", pk FROM pragma_table_info(?1)")
            .unwrap();
        let rows = stmt
            .query_map([&name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, i64>(2)?))
            })
            .unwrap();
        for row in rows {
            let (column, not_null, pk) = row.unwrap();
            if pk > 0 {
                primary_key.insert(column.clone());
            }
            // A primary key is NOT NULL in PostgreSQL whatever it says; SQLite only enforces
            // it for INTEGER keys, so its flag is not compared.
            columns.insert(column, not_null && pk == 0);
        }
        sqlite.insert(name, Table { columns, primary_key });
    }
    let sqlite_indexes: BTreeMap<String, (String, Vec<String>)> = {
        let mut stmt = lite
            .prepare(
                "SELECT m.name, m.tbl_name, i.name FROM sqlite_master m, pragma_index_info(m.name) i
                 WHERE m.type = 'index' AND m.sql IS NOT NULL ORDER BY m.name, i.seqno",
            )
            .unwrap();
        let mut indexes: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for row in stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .unwrap()
        {
            let (index, table, column) = row.unwrap();
            indexes
                .entry(index)
                .or_insert_with(|| (table, Vec::new()))
                .1
                .push(column);
        }
        indexes
    };
    assert!(
        sqlite.contains_key("runs") && sqlite.contains_key("events"),
        "{sqlite:?}"
    );

    let server = TestPostgres::start();
    let mut db = client(&server.url());
    pg::migrate(&mut db).unwrap();
    let mut postgres: BTreeMap<String, Table> = BTreeMap::new();
    for row in db
        .query(
            "SELECT table_name::text, column_name::text, is_nullable = 'NO' FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> 'fogbook_schema'",
            &[],
        )
        .unwrap()
    {
        let (table, column, not_null): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        postgres
            .entry(table)
            .or_insert_with(|| Table {
                columns: BTreeMap::new(),
                primary_key: BTreeSet::new(),
            })
            .columns
            .insert(column, not_null);
    }
    for row in db
        .query(
            "SELECT tc.table_name::text, k.column_name::text FROM information_schema.table_constraints tc
             JOIN information_schema.key_column_usage k
               ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema
             WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()
               AND tc.table_name <> 'fogbook_schema'",
            &[],
        )
        .unwrap()
    {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        let table = postgres.get_mut(&table).unwrap();
        table.primary_key.insert(column.clone());
        table.columns.insert(column, false);
    }
    for (table, column) in PG_ONLY {
        let pg_table = postgres.get_mut(*table).unwrap();
        let sqlite_has_it = sqlite[*table].columns.contains_key(*column);
        if !sqlite_has_it {
            assert_eq!(
                pg_table.columns.remove(*column),
                Some(true),
                "{table}.{column} is NOT NULL"
            );
        }
    }
    assert_eq!(postgres, sqlite, "PostgreSQL (left) and SQLite (right) schemas differ");

    let mut pg_indexes: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for row in db
        .query(
            "SELECT i.relname::text, t.relname::text, a.attname::text
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
             WHERE n.nspname = current_schema() AND NOT x.indisprimary AND NOT x.indisunique
             ORDER BY i.relname, k.ord",
            &[],
        )
        .unwrap()
    {
        let (index, table, column): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        pg_indexes
            .entry(index)
            .or_insert_with(|| (table, Vec::new()))
            .1
            .push(column);
    }
    assert_eq!(
        pg_indexes, sqlite_indexes,
        "named indexes: PostgreSQL (left), SQLite (right)"
    );
}

/// Editing or deleting an audit event is refused by the database itself, as in SQLite.
#[test]
fn the_audit_trail_is_append_only() {
    let server = TestPostgres::start();
    let mut db = client(&server.url());
    pg::migrate(&mut db).unwrap();
    db.execute(
        "INSERT INTO events (gseq, run_id, seq, at, kind, data, prev_hash, hash)
         VALUES (1, 'r1', 1, 0, 'run.created', '{}', 'p', 'h')",
        &[],
    )
    .unwrap();
    for edit in ["UPDATE events SET kind = 'x'", "DELETE FROM events", "TRUNCATE events"] {
        let err = db.execute(edit, &[]).expect_err(edit);
        let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
        assert_eq!(message, "the audit trail is append-only", "{edit}: {err}");
    }
    let kept: i64 = db.query_one("SELECT count(*) FROM events", &[]).unwrap().get(0);
    assert_eq!(kept, 1);
}

/// A database migrated by a newer fogbook is refused, and left as it was.
#[test]
fn a_newer_schema_is_refused() {
    let server = TestPostgres::start();
    let mut db = client(&server.url());
    pg::migrate(&mut db).unwrap();
    db.execute(
        "INSERT INTO fogbook_schema (version) VALUES ($1)",
        &[&(pg::SCHEMA_VERSION + 1)],
    )
    .unwrap();
    let err = pg::migrate(&mut db).unwrap_err();
    assert!(
        matches!(err, PgError::NewerSchema { found, known } if found == pg::SCHEMA_VERSION + 1 && known == pg::SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer than this build knows"), "{err}");
}

/// A connection the server drops between the login and the schema's first read (a restart
/// right after a worker connected: the server says it terminates the connection, or its
/// process is killed and says nothing) fails as a passing fault, which a starting worker
/// waits out (`is_transient`); a statement the server refuses (no right to create the
/// schema) does not, and fails at once.
#[test]
fn a_connection_lost_before_the_schema_is_read_is_transient_and_a_refusal_is_not() {
    let server = TestPostgres::start();
    let mut admin = client(&server.url());
    let mut db = client(&server.url());
    let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let ended: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(ended, "the connection's server process ends");
    let err = pg::migrate(&mut db).unwrap_err();
    assert!(
        matches!(err, PgError::ReadSchema { .. }),
        "the schema's first read fails: {err:?}"
    );
    assert!(err.is_transient(), "a lost connection is tried again: {err:?}");

    // (PostgreSQL 15 gives PUBLIC no CREATE on schema `public`; older servers did.)
    admin
        .batch_execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC; CREATE ROLE visitor LOGIN PASSWORD 'visitor-pw'")
        .unwrap();
    let visitor = server.url().replacen(
        &server.url()[..server.url().find('@').unwrap()],
        "postgres://visitor:visitor-pw",
        1,
    );
    let err = pg::migrate(&mut client(&visitor)).unwrap_err();
    let refused = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<postgres::Error>())
        .and_then(postgres::Error::as_db_error)
        .map(|db| db.code().clone());
    assert_eq!(
        refused,
        Some(postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "the server refuses the schema to a role without rights: {err:?}"
    );
    assert!(!err.is_transient(), "a refusal is not tried again: {err:?}");

    // A server process killed outright says nothing: the connection just closes.
    let mut db = client(&server.url());
    let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -KILL {pid}");
    let err = pg::migrate(&mut db).unwrap_err();
    let closed = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<postgres::Error>())
        .is_some_and(|e| e.as_db_error().is_none());
    assert!(
        closed,
        "no answer from the server, only the end of the connection: {err:?}"
    );
    assert!(err.is_transient(), "a connection that closed is tried again: {err:?}");
}

/// The store's kind of SQL, written once for SQLite (`?N`, `"window"` quoted, `ON CONFLICT
/// DO NOTHING`, `RETURNING`), runs unchanged on PostgreSQL once its placeholders are
/// renumbered, with the same integers, texts and NULLs bound and read back.
#[test]
fn the_same_sql_runs_on_both_backends() {
    const TEXT: &str = "INSERT INTO runbook_texts (sha256, text) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
    const RUN: &str = "INSERT INTO runs (id, runbook_name, runbook_version, runbook_sha256, params, status,
                                         auto_approve, created_at, updated_at, audit_head, audit_count, \"window\")
                       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
    const WINDOW: &str = "INSERT INTO windows (run_id, kind, opened_step, opened_at, subject)
                          VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id";
    const STATUS: &str = "UPDATE runs SET status = ?2, updated_at = ?3 WHERE id = ?1 AND lease_owner IS NULL";
    const READ: &str = "SELECT runbook_version, auto_approve, \"window\", lease_owner, status, updated_at
                        FROM runs WHERE id = ?1";
    type Read = (i64, i64, Option<String>, Option<String>, String, i64);
    let window = Some(r#"{"start_min":60}"#.to_owned());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let lite = rusqlite::Connection::open(&path).unwrap();
    for _ in 0..2 {
        lite.execute(TEXT, rusqlite::params!["h1", "runbook: one"]).unwrap();
    }
    lite.execute(
        RUN,
        rusqlite::params![
            "r1", "rb", 3_i64, "h1", "{}", "running", 1_i64, 10_i64, 10_i64, "head", 0_i64, window
        ],
    )
    .unwrap();
    let lite_window: i64 = lite
        .query_row(
            WINDOW,
            rusqlite::params!["r1", "unprotected", "s1", 11_i64, None::<String>],
            |r| r.get(0),
        )
        .unwrap();
    let lite_updated = lite
        .execute(STATUS, rusqlite::params!["r1", "succeeded", 12_i64])
        .unwrap();
    let lite_read: Read = lite
        .query_row(READ, ["r1"], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap();

    let server = TestPostgres::start();
    let mut db = client(&server.url());
    pg::migrate(&mut db).unwrap();
    for _ in 0..2 {
        db.execute(&*pg::postgres_placeholders(TEXT), &[&"h1", &"runbook: one"])
            .unwrap();
    }
    db.execute(
        &*pg::postgres_placeholders(RUN),
        &[
            &"r1", &"rb", &3_i64, &"h1", &"{}", &"running", &1_i64, &10_i64, &10_i64, &"head", &0_i64, &window,
        ],
    )
    .unwrap();
    let pg_window: i64 = db
        .query_one(
            &*pg::postgres_placeholders(WINDOW),
            &[&"r1", &"unprotected", &"s1", &11_i64, &None::<String>],
        )
        .unwrap()
        .get(0);
    let pg_updated = db
        .execute(&*pg::postgres_placeholders(STATUS), &[&"r1", &"succeeded", &12_i64])
        .unwrap();
    let row = db.query_one(&*pg::postgres_placeholders(READ), &[&"r1"]).unwrap();
    let pg_read: Read = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));

    assert_eq!(
        (pg_window, pg_updated, &pg_read),
        (lite_window, lite_updated as u64, &lite_read)
    );
    assert_eq!(lite_read, (3, 1, window, None, "succeeded".to_owned(), 12));
    let texts: i64 = db.query_one("SELECT count(*) FROM runbook_texts", &[]).unwrap().get(0);
    assert_eq!(texts, 1, "ON CONFLICT DO NOTHING kept one text");
}
