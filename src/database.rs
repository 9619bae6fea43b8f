//! Opening the state database for a command: an existing one (a missing file is an error,
//! not a new database), for writing or read-only.

use std::path::Path;

use fogbook_state::{StateError, Store};

use crate::cli::Cli;
use crate::error::fail;
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
    let exit = f(store.clone()).await;
    store.close().await;
    exit
}

/// Opens the existing database for writing: a missing one is bad input (exit 2), one that
/// cannot be reached, opened or migrated is the database failing (exit 6).
pub(crate) fn open_existing(cli: &Cli) -> Result<Store, Exit> {
    open_existing_with(cli, Store::open)
}

pub(crate) fn open_existing_with(cli: &Cli, open: fn(&Path) -> Result<Store, StateError>) -> Result<Store, Exit> {
    match std::fs::metadata(&cli.db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            output::error(
                &format!("no state database at {}", cli.db.display()),
                Some("pass --db (or set FOGBOOK_DB)"),
            );
            return Err(Exit::BadInput);
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
