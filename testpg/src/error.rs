//! Why a throwaway server could not be had.

use std::fmt;
use std::path::PathBuf;

/// What went wrong starting, restarting or using a [`crate::TestPostgres`].
#[derive(Debug)]
#[non_exhaustive]
pub enum TestPgError {
    /// No `initdb`/`pg_ctl` was found where the Debian package puts them.
    MissingBinaries {
        /// The places that were searched.
        searched: Vec<PathBuf>,
    },
    /// Running as root, but there is no unprivileged user to run the server as.
    NoServerUser,
    /// A server program could not be run at all, or exited with a failure.
    Command {
        /// What was being done, e.g. `initdb`.
        what: String,
        /// The program's exit status and output (or the spawn error), and the server log's
        /// tail where there is one.
        detail: String,
    },
    /// Preparing the temp dir failed.
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl fmt::Display for TestPgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingBinaries { searched } => {
                let searched: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "the PostgreSQL server binaries (initdb, pg_ctl) are not installed (searched {}); \
                     the PostgreSQL tests start their own throwaway server from them: run `scripts/test` \
                     (it installs them as root), or install the Debian package yourself: \
                     `sudo apt-get install --no-install-recommends postgresql`",
                    searched.join(", ")
                )
            }
            Self::NoServerUser => write!(
                f,
                "running as root, but there is no `postgres` user to run the test server as (initdb \
                 refuses root); install the Debian package `postgresql` (it creates that user) or run \
                 the tests as an ordinary user"
            ),
            Self::Command { what, detail } => write!(f, "{what} failed: {detail}"),
            Self::Io { what, .. } => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for TestPgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
