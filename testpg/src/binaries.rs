//! Where the PostgreSQL server binaries are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::TestPgError;

/// Where Debian installs each major version's server binaries (`<major>/bin`).
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The directory holding `initdb`, `pg_ctl`, `createdb` and `postgres`.
///
/// `FOGBOOK_PG_BIN` names it explicitly (and is then the only place looked at); otherwise
/// the newest Debian install (`/usr/lib/postgresql/<major>/bin`) is taken, then a `PATH`
/// entry that has all of them.
pub(crate) fn bin_dir() -> Result<PathBuf, TestPgError> {
    find(
        std::env::var_os("FOGBOOK_PG_BIN").map(PathBuf::from),
        Path::new(DEBIAN_ROOT),
        std::env::var_os("PATH"),
    )
}

fn find(explicit: Option<PathBuf>, debian: &Path, path: Option<OsString>) -> Result<PathBuf, TestPgError> {
    if let Some(dir) = explicit {
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(TestPgError::MissingBinaries { searched: vec![dir] })
        };
    }
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
    if let Some(path) = &path
        && let Some(dir) = std::env::split_paths(path).find(|dir| complete(dir))
    {
        return Ok(dir);
    }
    Err(TestPgError::MissingBinaries {
        searched: vec![debian.join("*/bin"), PathBuf::from("$PATH")],
    })
}

fn complete(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "createdb", "postgres"]
        .iter()
        .all(|name| dir.join(name).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for name in ["initdb", "pg_ctl", "createdb", "postgres"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
    }

    /// The newest complete Debian install wins over older ones and over `PATH`; without
    /// one, `PATH` is used; with none, the error names the package and `scripts/test`.
    #[test]
    fn the_newest_debian_install_is_found_and_a_missing_one_says_what_to_install() {
        let root = tempfile::tempdir().unwrap();
        let debian = root.path().join("lib/postgresql");
        let on_path = root.path().join("path-bin");
        install(&on_path);
        let path = Some(std::env::join_paths([root.path().join("empty"), on_path.clone()]).unwrap());
        assert_eq!(find(None, &debian, path.clone()).unwrap(), on_path);
        install(&debian.join("15/bin"));
        install(&debian.join("9/bin"));
        std::fs::create_dir_all(debian.join("17/bin")).unwrap(); // incomplete: skipped
        assert_eq!(find(None, &debian, path.clone()).unwrap(), debian.join("15/bin"));
        let explicit = root.path().join("explicit");
        let err = find(Some(explicit.clone()), &debian, path).unwrap_err();
        assert!(matches!(&err, TestPgError::MissingBinaries { searched } if searched == &[explicit]));

        let err = find(None, &root.path().join("none"), None).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
                && message.contains("run `scripts/test`")
                && message.contains("apt-get install --no-install-recommends postgresql"),
            "{message}"
        );
    }
}
