//! The state file: the world, the initial estate, the journal and the simulated time, saved
//! atomically (temporary file, fsync, rename) after every accepted mutation.
//!
//! The format is our own JSON with a `version`; it is not the estate format.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::clock::SimTime;
use crate::error::SimError;
use crate::journal::Journal;
use crate::world::World;

/// Version of the state file format.
const STATE_VERSION: u32 = 1;

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    sim_now: SimTime,
    saved_at_unix_ms: i64,
    time_scale: f64,
    world: &'a World,
    initial: &'a World,
    journal: &'a Journal,
}

/// A loaded state file.
#[derive(Debug, Deserialize)]
pub(crate) struct Snapshot {
    version: u32,
    pub(crate) sim_now: SimTime,
    /// The wall-clock time of the save (absent in files written before it was recorded).
    #[serde(default)]
    pub(crate) saved_at_unix_ms: Option<i64>,
    /// The clock's scale at the save.
    #[serde(default)]
    pub(crate) time_scale: Option<f64>,
    pub(crate) world: World,
    pub(crate) initial: World,
    pub(crate) journal: Journal,
}

/// Writes the state atomically.
pub(crate) fn save(
    path: &Path,
    sim_now: SimTime,
    time_scale: f64,
    world: &World,
    initial: &World,
    journal: &Journal,
) -> Result<(), SimError> {
    let snapshot = SnapshotRef {
        version: STATE_VERSION,
        sim_now,
        saved_at_unix_ms: unix_ms_now(),
        time_scale,
        world,
        initial,
        journal,
    };
    let write_error = |source| SimError::WriteState {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec(&snapshot).map_err(|e| write_error(std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // Owner only (0600), as the state database: the estate and journal of a rehearsal.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(write_error)?;
    file.write_all(&bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(write_error)?;
    Ok(())
}

/// The wall-clock time in milliseconds since the Unix epoch.
pub(crate) fn unix_ms_now() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl Snapshot {
    /// The simulated time to resume at: the saved time, plus, when `clock_ran` and the save
    /// recorded its wall-clock time, the real time since then at the saved scale (or
    /// `default_scale` for a file that did not record one).
    pub(crate) fn resume_at(&self, clock_ran: bool, default_scale: f64) -> SimTime {
        match (clock_ran, self.saved_at_unix_ms) {
            (true, Some(saved_at)) => {
                let real_secs = (unix_ms_now() - saved_at).max(0) as f64 / 1000.0;
                self.sim_now
                    .plus_secs(real_secs * self.time_scale.unwrap_or(default_scale))
            }
            _ => self.sim_now,
        }
    }
}

/// Reads the state file, or `None` when it does not exist yet.
pub(crate) fn load(path: &Path) -> Result<Option<Snapshot>, SimError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SimError::ReadFile {
                path: path.to_owned(),
                source,
            });
        }
    };
    let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|source| SimError::ParseState {
        path: path.to_owned(),
        source,
    })?;
    if snapshot.version != STATE_VERSION {
        return Err(SimError::ParseState {
            path: path.to_owned(),
            source: serde::de::Error::custom(format!("unsupported state version {}", snapshot.version)),
        });
    }
    Ok(Some(snapshot))
}

/// The user databases of each instance of the estate a state file started from (instance
/// name → database names, in order): what a rehearsal's report names when a window leaves
/// an instance's databases without a geo-replica.
pub fn saved_databases(path: &Path) -> Result<std::collections::BTreeMap<String, Vec<String>>, SimError> {
    let Some(snapshot) = load(path)? else {
        return Ok(std::collections::BTreeMap::new());
    };
    Ok(snapshot
        .initial
        .instances
        .values()
        .map(|i| (i.name.clone(), i.databases.iter().map(|d| d.name.clone()).collect()))
        .collect())
}
