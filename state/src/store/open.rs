//! Opening the database file (read-write or read-only) and the SQLite settings it needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::{Backend, Store};
use crate::StateError;
use crate::pg::StoreUrl;
use crate::thread::ConnThread;

impl Store {
    /// Opens (creating with mode 0600 if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StateError::OpenDatabase {
            path: path.to_owned(),
            source: e,
        };
        create_private(path).map_err(|e| open_err(Box::new(e)))?;
        let mut conn = Connection::open(path).map_err(|e| open_err(Box::new(e)))?;
        conn.set_prepared_statement_cache_capacity(128);
        // Query-planner stability: a cached statement keeps its plan whatever values are
        // bound. Without it, SQLite (built with STAT4) re-prepares a statement each time a
        // new value is bound to a parameter the planner looked at, which was a tenth of the
        // SQLite thread's time with many runs at once.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(|e| open_err(Box::new(e)))?;
        // 8 MiB of page cache (SQLite's default is 2 MiB): with many runs at once the pages
        // of their rows stay cached instead of being read back from the file.
        conn.pragma_update(None, "cache_size", -8192)
            .map_err(|e| open_err(Box::new(e)))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| open_err(Box::new(e)))?;
        crate::migrations::check(&conn, path)?;
        let mode = wal_mode(&conn).map_err(|e| open_err(Box::new(e)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!("journal_mode is {mode}, WAL is required").into()));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| open_err(Box::new(e)))?;
        crate::migrations::apply(&mut conn, path)?;
        let moved = current_sqlite(&conn).map_err(|e| open_err(Box::new(e)))?;
        Ok(Self::new(Backend::Sqlite(ConnThread::spawn(conn)), moved))
    }

    /// Opens an existing database for a command that only reads it (`status`, `runs`,
    /// `history`, `report`, `audit verify`). When this process may write the file it is
    /// opened as by [`Store::open`] (so closing it still checkpoints and removes the WAL);
    /// otherwise it is opened read-only, and nothing is created or written, so a read-only
    /// file (or folder, or medium) works. A database whose schema is older than this
    /// build's must be opened with write access once, to bring it up to date.
    pub fn open_read_only(path: &Path) -> Result<Self, StateError> {
        use rusqlite::OpenFlags;
        let writable = std::fs::OpenOptions::new().read(true).write(true).open(path).is_ok();
        if writable && let Ok(store) = Self::open(path) {
            return Ok(store);
        }
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StateError::OpenDatabase {
            path: path.to_owned(),
            source: e,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open = |target: &str, flags: OpenFlags| -> Result<(Connection, bool), StateError> {
            let conn = Connection::open_with_flags(target, flags).map_err(|e| open_err(Box::new(e)))?;
            conn.set_prepared_statement_cache_capacity(128);
            conn.busy_timeout(Duration::from_secs(10))
                .map_err(|e| open_err(Box::new(e)))?;
            let upgrade = crate::migrations::needs_upgrade(&conn, path)?;
            Ok((conn, upgrade))
        };
        let (conn, upgrade) = match open(&path.to_string_lossy(), flags) {
            Ok(opened) => opened,
            // WAL needs its `-shm` index, which a read-only folder cannot hold. With no
            // `-wal` file no process has the database open for writing (a writer keeps
            // one), so the main file is the whole database: read it as immutable.
            Err(StateError::OpenDatabase { source, .. })
                if is_cannot_init(source.as_ref()) && !wal_file(path, "-wal").exists() =>
            {
                open(&immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)?
            }
            Err(e) => return Err(e),
        };
        if upgrade {
            drop(conn);
            return Self::open(path);
        }
        let moved = current_sqlite(&conn).map_err(|e| open_err(Box::new(e)))?;
        Ok(Self::new(Backend::Sqlite(ConnThread::spawn(conn)), moved))
    }

    /// Closes the database cleanly: the WAL is checkpointed into the main file and
    /// removed. A process should call this before it exits; a crash instead leaves the WAL,
    /// which SQLite replays on the next open, so nothing committed is lost either way.
    pub async fn close(&self) {
        match &self.conn {
            Backend::Sqlite(c) => c.close().await,
            Backend::Postgres(c) => c.close(),
        }
    }

    /// Opens the store `url` names: a SQLite file as [`Store::open`] does, or a PostgreSQL
    /// database, connecting (TLS as the URL says) and bringing its schema up to date (under
    /// an advisory lock, so any number of processes on any number of hosts may do it at
    /// once).
    pub fn open_url(url: &StoreUrl) -> Result<Self, StateError> {
        match url {
            StoreUrl::Sqlite(path) => Self::open(path),
            StoreUrl::Postgres(pg) => {
                // The blocking client runs a runtime of its own, which cannot start on a
                // thread that drives async tasks (the caller's may): connect on another.
                let url = pg.clone();
                let opened = std::thread::spawn(move || {
                    let limits = crate::pg::Limits::from_env().map_err(StateError::Postgres)?;
                    let mut client = crate::pg::connect(&url).map_err(StateError::Postgres)?;
                    crate::pg::migrate(&mut client).map_err(StateError::Postgres)?;
                    let moved = crate::moved::current_pg(&mut client)
                        .map_err(|source| StateError::Postgres(crate::pg::PgError::ReadSchema { source }))?;
                    drop(client);
                    Ok::<_, StateError>((crate::pg::thread::PgThread::spawn(&url, limits)?, moved))
                })
                .join()
                .map_err(|_| StateError::StoreClosed)??;
                Ok(Self::new(Backend::Postgres(opened.0), opened.1))
            }
        }
    }

    /// As [`Store::open_read_only`] for a SQLite file; a PostgreSQL database is opened as by
    /// [`Store::open_url`] (its schema is brought up to date; the commands that only read
    /// write nothing else).
    pub fn open_url_read_only(url: &StoreUrl) -> Result<Self, StateError> {
        match url {
            StoreUrl::Sqlite(path) => Self::open_read_only(path),
            StoreUrl::Postgres(_) => Self::open_url(url),
        }
    }
}

pub(super) fn create_private(path: &Path) -> std::io::Result<()> {
    use std::fs::OpenOptions;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether SQLite could not set up the WAL index of a read-only database (its `-shm`, in a
/// folder this process cannot write).
pub(super) fn is_cannot_init(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(
        e.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(f, _))
            if matches!(
                f.extended_code,
                rusqlite::ffi::SQLITE_READONLY_CANTINIT | rusqlite::ffi::SQLITE_READONLY_DIRECTORY
            ) || f.code == rusqlite::ErrorCode::CannotOpen
    )
}

/// `X.db-wal` or `X.db-shm` beside `X.db`.
pub(super) fn wal_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A `file:` URI that opens `path` as immutable (no locks, no `-shm`).
pub(super) fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Switches the connection to WAL and returns the journal mode SQLite reports. Setting the
/// mode needs a lock that SQLite does not wait for through the busy handler when another
/// process is opening (or migrating) the same new database at that instant, so `SQLITE_BUSY`
/// is retried here for as long as the busy timeout would have waited.
pub(super) fn wal_mode(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                // A lock wait, not a timing assumption: the other opener holds the lock for
                // the few milliseconds its own switch or migration takes.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The current mark of a SQLite database, read on the connection before the store's thread
/// takes it.
fn current_sqlite(conn: &Connection) -> rusqlite::Result<Option<crate::moved::MovedMark>> {
    conn.query_row(crate::moved::CURRENT, [], |r| {
        Ok(crate::moved::MovedMark {
            id: r.get(0)?,
            target: r.get(1)?,
            done: r.get::<_, String>(2)? == "moved",
            by: r.get(3)?,
            started_at: r.get(4)?,
            moved_at: r.get(5)?,
        })
    })
    .optional()
}
