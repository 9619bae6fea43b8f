//! Opening the state database for a command: an existing one (a missing file is an error,
//! not a new database), for writing or read-only.

use std::path::Path;

use fogbook_state::{StateError, Store};

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output;

/// Opens the store for a command that needs an existing database: a missing file is an
/// error (and is not created), so a typo in `--db` does not silently show nothing.
pub(crate) async fn with_store<F, Fut>(cli: &Cli, f: F) -> Exit
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Exit>,
{
    let Some(store) = open_existing(cli) else {
        return Exit::BadInput;
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
    let Some(store) = open_existing_with(cli, Store::open_read_only) else {
        return Exit::BadInput;
    };
    let exit = f(store.clone()).await;
    store.close().await;
    exit
}

pub(crate) fn open_existing(cli: &Cli) -> Option<Store> {
    open_existing_with(cli, Store::open)
}

pub(crate) fn open_existing_with(cli: &Cli, open: fn(&Path) -> Result<Store, StateError>) -> Option<Store> {
    match std::fs::metadata(&cli.db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            output::error(
                &format!("no state database at {}", cli.db.display()),
                Some("pass --db (or set FOGBOOK_DB)"),
            );
            return None;
        }
        // A folder on the way that this user cannot enter: the file may well exist.
        Err(e) => {
            output::error(
                &format!("cannot reach the state database {}: {e}", cli.db.display()),
                Some(
                    "check the permissions of the file and of every folder above it (each folder must be searchable by this user)",
                ),
            );
            return None;
        }
    }
    match open(&cli.db) {
        Ok(s) => {
            tracing::debug!(db = %cli.db.display(), "store.opened");
            Some(s)
        }
        Err(e) => {
            output::error_chain(&e, None);
            None
        }
    }
}
