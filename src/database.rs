//! Opening the state database for a command: an existing one (a missing file is an error,
//! not a new database), for writing or read-only.
//!
//! `--db` / `FOGBOOK_DB` is a [`StoreUrl`]: a SQLite file (a plain path, or `sqlite:PATH`)
//! or a PostgreSQL database (`postgres://…`). The files a SQLite database keeps beside it
//! (`<db>.sim/` for rehearsals' emulator state, `<db>-arm-schedule` for the shared ARM
//! request schedule) are kept, for a PostgreSQL database, in the local directory
//! `FOGBOOK_LOCAL_DIR` (default: the current directory) under a name derived from the URL
//! without its password ([`local_base`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use fogbook_state::pg::StoreUrl;
use fogbook_state::{StateError, Store};

use crate::cli::Cli;
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::output;

/// Opens the store for a command that needs an existing database: a missing file is an
/// error (and is not created), so a typo in `--db` does not silently show nothing.
pub(crate) async fn with_store<F, Fut>(cli: &Cli, f: F) -> Exit
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Exit>,
{
    let store = match open_existing(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let exit = f(store.clone()).await;
    store.close().await;
    exit
}

/// As [`with_store`], for a command that only reads: the database is opened read-only, so
/// a read-only file or folder works.
pub(crate) async fn with_read_store<F, Fut>(cli: &Cli, f: F) -> Exit
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Exit>,
{
    let store = match open_existing_with(cli, Store::open_read_only) {
        Ok(s) => s,
        Err(code) => return code,
    };
    crate::store_cmd::note_moved(cli, &store);
    let exit = f(store.clone()).await;
    store.close().await;
    exit
}

/// Opens the existing database for writing: a missing one is bad input (exit 2), one that
/// cannot be reached, opened or migrated is the database failing (exit 6).
pub(crate) fn open_existing(cli: &Cli) -> Result<Store, Exit> {
    let store = open_existing_with(cli, Store::open)?;
    crate::store_cmd::refuse_moved(cli, &store)?;
    Ok(store)
}

/// The store `--db` names; a value that is neither a path nor a URL fogbook accepts is bad
/// input (exit 2).
pub(crate) fn store_url(cli: &Cli) -> Result<StoreUrl, Exit> {
    let url = StoreUrl::from_str(&cli.db.to_string_lossy());
    if let Ok(url) = &url {
        crate::error::note_store(url);
    }
    url.map_err(|e| {
        fail(CliError::usage(
            e.to_string(),
            Some("pass --db (or set FOGBOOK_DB) to a SQLite file or a postgres:// URL"),
        ))
    })
}

/// The database for display: the file, or the URL with its password masked.
pub(crate) fn describe(cli: &Cli) -> String {
    match StoreUrl::from_str(&cli.db.to_string_lossy()) {
        Ok(StoreUrl::Sqlite(path)) => path.display().to_string(),
        Ok(url) => url.to_string(),
        Err(_) => "(an invalid --db)".to_owned(),
    }
}

/// Whether `--db` names a database that exists (a PostgreSQL one is taken to exist: it is
/// created with its schema on first use).
pub(crate) fn exists(cli: &Cli) -> bool {
    match StoreUrl::from_str(&cli.db.to_string_lossy()) {
        Ok(StoreUrl::Sqlite(path)) => path.exists(),
        Ok(StoreUrl::Postgres(_)) => true,
        Err(_) => false,
    }
}

/// The local path the database's sibling files are named after: the SQLite file itself, or,
/// for PostgreSQL, `$FOGBOOK_LOCAL_DIR/fogbook-pg-<URL without password, as a file name>`.
pub(crate) fn local_base(cli: &Cli) -> PathBuf {
    match StoreUrl::from_str(&cli.db.to_string_lossy()) {
        Ok(StoreUrl::Sqlite(path)) => path,
        Ok(url @ StoreUrl::Postgres(_)) => {
            let name: String = url
                .to_string()
                .split_once("://")
                .map_or(String::new(), |(_, rest)| {
                    rest.split('?').next().unwrap_or("").to_owned()
                })
                .replace(":***@", "@")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let dir = std::env::var_os("FOGBOOK_LOCAL_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
            dir.join(format!("fogbook-pg-{name}"))
        }
        Err(_) => cli.db.clone(),
    }
}

/// Opens (creating when missing) the database `--db` names, for a command that creates
/// runs, fleets or schedules or drives them.
pub(crate) fn open_or_create(cli: &Cli) -> Result<Store, Exit> {
    let url = store_url(cli)?;
    if let StoreUrl::Sqlite(path) = &url
        && path.is_dir()
    {
        return Err(fail(directory_refusal(path)));
    }
    let store = Store::open_url(&url).map_err(fail)?;
    crate::store_cmd::refuse_moved(cli, &store)?;
    Ok(store)
}

pub(crate) fn open_existing_with(cli: &Cli, open: fn(&Path) -> Result<Store, StateError>) -> Result<Store, Exit> {
    if let url @ StoreUrl::Postgres(_) = store_url(cli)? {
        // A PostgreSQL database is reached, not found: connecting says what is wrong.
        return match Store::open_url(&url) {
            Ok(s) => {
                tracing::debug!(db = %url, "store.opened");
                Ok(s)
            }
            Err(e) => Err(fail(e)),
        };
    }
    match std::fs::metadata(&cli.db) {
        Ok(m) if m.is_dir() => return Err(fail(directory_refusal(&cli.db))),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(CliError::usage(
                format!("no state database at {}", cli.db.display()),
                Some(
                    "check the path given with --db (or FOGBOOK_DB); a state database is created by the first `fogbook run` that uses it",
                ),
            )));
        }
        // A folder on the way that this user cannot enter: the file may well exist.
        Err(e) => {
            output::error(
                &format!("cannot reach the state database {}: {e}", cli.db.display()),
                Some(
                    "check the permissions of the file and of every folder above it (each folder must be searchable by this user)",
                ),
            );
            return Err(Exit::StoreFailed);
        }
    }
    match open(&cli.db) {
        Ok(s) => {
            tracing::debug!(db = %cli.db.display(), "store.opened");
            Ok(s)
        }
        Err(e) => Err(fail(e)),
    }
}

/// `--db` names a folder: SQLite would only say "disk I/O error" (README "The database files").
fn directory_refusal(path: &Path) -> CliError {
    CliError::usage(
        format!("--db {} is a directory, not a state database file", path.display()),
        Some(&format!(
            "pass the path of a file, e.g. --db {} (the first `fogbook run` creates it, with its -wal and -shm files beside it)",
            path.join("fogbook.db").display()
        )),
    )
}
