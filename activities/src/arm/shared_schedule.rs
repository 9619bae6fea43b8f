//! The limiter's schedule shared by every process of one state database: the token
//! buckets live in a small file beside the database (`<db>-arm-schedule`), read and written
//! under an exclusive file lock for each request. So ten `fogbook` processes driving runs
//! in the same subscription, as the same principal, are paced as one client instead of ten.
//!
//! The file holds no state that matters for durability: losing it refills the buckets. It
//! is written without fsync (a turn is a promise for the next seconds, not a record).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::limiter::Bucket;

/// One bucket: tokens left (negative: turns already promised) at `at_ms` (Unix ms).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Stored {
    tokens: f64,
    at_ms: f64,
}

/// The shared schedule of one principal, in one file.
#[derive(Clone, Debug)]
pub(crate) struct SharedSchedule {
    path: PathBuf,
    principal: String,
}

impl SharedSchedule {
    /// The schedule in `path` for `principal` (who calls ARM: the credential's identity).
    pub(crate) fn new(path: PathBuf, principal: &str) -> Self {
        Self {
            path,
            principal: principal.to_owned(),
        }
    }

    /// Runs `f` on bucket `key` (a full bucket of `burst` when new) under the file's lock,
    /// and stores what it left.
    pub(crate) fn with_bucket<T>(
        &self,
        key: &str,
        now_ms: f64,
        burst: f64,
        f: impl FnOnce(&mut Bucket) -> T,
    ) -> std::io::Result<T> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        file.lock()?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        // An unreadable file (a crash in the middle of a write) starts the buckets afresh.
        let mut buckets: BTreeMap<String, Stored> = serde_json::from_str(&text).unwrap_or_default();
        let stored = buckets.entry(format!("{}|{key}", self.principal)).or_insert(Stored {
            tokens: burst,
            at_ms: now_ms,
        });
        let mut b = Bucket {
            tokens: stored.tokens,
            at_ms: stored.at_ms,
        };
        let out = f(&mut b);
        *stored = Stored {
            tokens: b.tokens,
            at_ms: b.at_ms,
        };
        let text = serde_json::to_string(&buckets).map_err(std::io::Error::other)?;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(text.as_bytes())?;
        // Closing the file releases the lock.
        Ok(out)
    }
}
