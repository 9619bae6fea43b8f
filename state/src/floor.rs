//! The physical floor of durability on a disk: how many durable commits per second a bare
//! SQLite table sustains there with the settings the store uses (WAL, `synchronous=FULL`).
//! Benchmarks print every figure beside it.

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;

use crate::StateError;
use crate::error::SqlContext;

/// Commits `n` single-row inserts, each in its own transaction, into a scratch database in
/// `dir` (removed afterwards), and returns durable commits per second.
pub fn durable_commit_floor(dir: &Path, n: u32) -> Result<f64, StateError> {
    let path = dir.join(format!("floor-{}.db", std::process::id()));
    let result = (|| {
        let conn = Connection::open(&path).map_err(|e| StateError::OpenDatabase {
            path: path.clone(),
            source: Box::new(e),
        })?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
        )
        .during("preparing the floor benchmark")?;
        let start = Instant::now();
        for i in 0..n {
            conn.execute_batch("BEGIN IMMEDIATE").during("floor benchmark")?;
            conn.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")])
                .during("floor benchmark")?;
            conn.execute_batch("COMMIT").during("floor benchmark")?;
        }
        Ok(f64::from(n) / start.elapsed().as_secs_f64())
    })();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    result
}
