#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The store's logic is written once for every backend: outside the SQLite implementation
//! of the seam (and the SQLite-only opening, migrations, commit floor and writer thread), no
//! file names rusqlite, and no SQL text uses what only SQLite understands.

use std::path::{Path, PathBuf};

/// Files that are SQLite's own by design.
const SQLITE_ONLY: &[&str] = &[
    "sql/sqlite.rs",
    "thread.rs",
    "migrations.rs",
    "floor.rs",
    "store/open.rs",
];

/// SQLite-only SQL, each with what to write instead.
const FORBIDDEN: &[(&str, &str)] = &[
    ("INSERT OR ", "INSERT … ON CONFLICT … DO …"),
    ("REPLACE INTO", "INSERT … ON CONFLICT … DO UPDATE"),
    ("rowid", "a declared key column"),
    ("last_insert_rowid", "INSERT … RETURNING"),
    ("changes()", "the count Tx::execute returns"),
    ("json_extract", "reading the JSON in Rust, or Tx::dialect"),
    ("strftime", "times as integer milliseconds"),
    ("julianday", "times as integer milliseconds"),
    ("datetime(", "times as integer milliseconds"),
    ("ifnull(", "COALESCE"),
    (
        "= max(",
        "CASE WHEN … THEN … ELSE … END (scalar max is SQLite's; PostgreSQL has GREATEST)",
    ),
    (
        "= min(",
        "CASE WHEN … THEN … ELSE … END (scalar min is SQLite's; PostgreSQL has LEAST)",
    ),
    ("execute_batch", "one Tx::execute per statement"),
    ("rusqlite", "the seam: crate::sql::Tx"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_store_logic_speaks_only_the_shared_dialect() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        if SQLITE_ONLY.contains(&rel.as_str()) {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            // Comments may name what the code avoids.
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (bad, instead) in FORBIDDEN {
                if code.to_ascii_lowercase().contains(&bad.to_ascii_lowercase()) {
                    found.push(format!("{rel}:{}: `{bad}`: write {instead}", n + 1));
                }
            }
        }
    }
    assert!(checked >= 15, "the store's files were found ({checked})");
    assert!(
        found.is_empty(),
        "SQLite-only text outside the SQLite backend:\n{}",
        found.join("\n")
    );
}
