//! Where the PostgreSQL server binaries are.

use std::path::{Path, PathBuf};

use crate::TestPgError;

/// The directory holding `initdb`, `pg_ctl` and `createdb`.
///
/// `FOGBOOK_PG_BIN` names it explicitly; otherwise the newest Debian install
/// (`/usr/lib/postgresql/<major>/bin`) is taken, then a `PATH` entry that has all three.
pub(crate) fn bin_dir() -> Result<PathBuf, TestPgError> {
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os("FOGBOOK_PG_BIN") {
        let dir = PathBuf::from(dir);
        if complete(&dir) {
            return Ok(dir);
        }
        searched.push(dir);
    }
    let debian = Path::new("/usr/lib/postgresql");
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    majors.sort();
    if let Some((_, dir)) = majors.into_iter().rev().find(|(_, dir)| complete(dir)) {
        return Ok(dir);
    }
    searched.push(debian.join("*/bin"));
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| complete(dir))
    {
        return Ok(dir);
    }
    searched.push(PathBuf::from("$PATH"));
    Err(TestPgError::MissingBinaries { searched })
}

fn complete(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "createdb", "postgres"]
        .iter()
        .all(|name| dir.join(name).is_file())
}
