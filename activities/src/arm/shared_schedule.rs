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
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::limiter::Bucket;

/// One bucket: tokens left (negative: turns already promised) at `at_ms` (Unix ms), and
/// when the next overdue request may go ahead of them.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Stored {
    tokens: f64,
    at_ms: f64,
    /// A file written before overdue requests had their lane: the lane is free.
    #[serde(default)]
    overdue_ms: f64,
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
        lock_briefly(&file)?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        // An unreadable file (a crash in the middle of a write) starts the buckets afresh.
        let mut buckets: BTreeMap<String, Stored> = serde_json::from_str(&text).unwrap_or_default();
        let stored = buckets.entry(format!("{}|{key}", self.principal)).or_insert(Stored {
            tokens: burst,
            at_ms: now_ms,
            overdue_ms: now_ms,
        });
        let mut b = Bucket {
            tokens: stored.tokens,
            at_ms: stored.at_ms,
            overdue_ms: stored.overdue_ms,
        };
        let out = f(&mut b);
        *stored = Stored {
            tokens: b.tokens,
            at_ms: b.at_ms,
            overdue_ms: b.overdue_ms,
        };
        let text = serde_json::to_string(&buckets).map_err(std::io::Error::other)?;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(text.as_bytes())?;
        // Closing the file releases the lock.
        Ok(out)
    }
}

/// How long a request waits for another process's turn on the file before pacing alone.
/// A turn holds the lock for a read and a write of a few hundred bytes; one held longer
/// belongs to a process that was stopped (SIGSTOP, a debugger, a VM pause) while holding
/// it, and waiting for it without bound would stop every other process of the database
/// with it — including the one taking over the stopped process's runs.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Takes the file's exclusive lock, waiting at most [`LOCK_WAIT`]; past that, an error (the
/// caller then paces in this process only).
fn lock_briefly(file: &std::fs::File) -> std::io::Result<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the shared ARM schedule is held by another process past its turn (stopped?)",
                ));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A process stopped while holding the schedule's lock does not stop the others: a
    /// request gives up on the shared file within [`LOCK_WAIT`] (and paces alone).
    #[test]
    fn a_lock_held_past_its_turn_is_given_up_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-arm-schedule");
        let holder = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        holder.lock().unwrap();
        let schedule = SharedSchedule::new(path.clone(), "me");
        let started = Instant::now();
        let err = schedule.with_bucket("k", 0.0, 10.0, |_| ()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "gave up within the bound");
        holder.unlock().unwrap();
        schedule.with_bucket("k", 0.0, 10.0, |_| ()).unwrap();
    }
}
