//! The emulator's shared state: one mutex around the world, the clock, the journal, the
//! throttle buckets and the faults. The lock is never held across an `.await`.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::clock::{SimClock, SimTime};
use crate::error::SimError;
use crate::faults::Faults;
use crate::journal::Journal;
use crate::lro;
use crate::persist;
use crate::requests::RequestLog;
use crate::throttle::Throttle;
use crate::world::World;

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) token: Option<String>,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) scheme: &'static str,
}

/// Everything that changes.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) world: World,
    pub(crate) initial: World,
    pub(crate) journal: Journal,
    pub(crate) clock: SimClock,
    pub(crate) throttle: Throttle,
    pub(crate) faults: Faults,
}

impl Core {
    /// The simulated time now.
    pub(crate) fn now(&self) -> SimTime {
        self.clock.now()
    }

    /// Completes the operations that are due; returns whether anything changed.
    pub(crate) fn tick(&mut self) -> bool {
        let now = self.clock.now();
        lro::complete_due(&mut self.world, now)
    }
}

/// The shared state.
#[derive(Debug)]
pub(crate) struct Emulator {
    pub(crate) settings: Settings,
    core: Mutex<Core>,
    /// What was received (counts and the observer); outside `core`, so counting never waits
    /// for the world's lock.
    pub(crate) requests: RequestLog,
}

impl Emulator {
    /// Wraps the initial state.
    pub(crate) fn new(settings: Settings, core: Core, requests: RequestLog) -> Emulator {
        Emulator {
            settings,
            core: Mutex::new(core),
            requests,
        }
    }

    /// Locks the core. A panic while holding the lock cannot leave the world half-changed in a
    /// way later requests would trip on more than the panic did, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Saves the state when a state file is configured.
    pub(crate) fn persist(&self, core: &Core) -> Result<(), SimError> {
        match &self.settings.state_file {
            Some(path) => persist::save(
                path,
                core.now(),
                core.clock.scale(),
                &core.world,
                &core.initial,
                &core.journal,
            ),
            None => Ok(()),
        }
    }

    /// Saves, logging instead of failing: the request was already applied in memory.
    pub(crate) fn persist_or_log(&self, core: &Core) {
        if let Err(error) = self.persist(core) {
            tracing::error!(error = %error, "sim.persist_failed");
        }
    }
}
