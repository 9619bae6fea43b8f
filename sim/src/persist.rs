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
    world: &'a World,
    initial: &'a World,
    journal: &'a Journal,
}

/// A loaded state file.
#[derive(Debug, Deserialize)]
pub(crate) struct Snapshot {
    version: u32,
    pub(crate) sim_now: SimTime,
    pub(crate) world: World,
    pub(crate) initial: World,
    pub(crate) journal: Journal,
}

/// Writes the state atomically.
pub(crate) fn save(
    path: &Path,
    sim_now: SimTime,
    world: &World,
    initial: &World,
    journal: &Journal,
) -> Result<(), SimError> {
    let snapshot = SnapshotRef {
        version: STATE_VERSION,
        sim_now,
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
    let mut file = std::fs::File::create(&tmp).map_err(write_error)?;
    file.write_all(&bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(write_error)?;
    Ok(())
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
