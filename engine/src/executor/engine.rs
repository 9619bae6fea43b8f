//! The engine itself: its settings, its parts, and how a run can end.

use std::sync::Arc;
use std::time::Duration;

use fogbook_activities::Env;
use fogbook_state::{Millis, Store};

use super::heartbeat::Heartbeats;
use crate::clock::{Clock, SystemClock};
use crate::observer::{Observer, Silent};
use crate::owner::Owner;
use crate::runbook::{self, Runbook};

/// Settings of an [`Engine`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long a lease lasts without renewal. Renewed every third of it.
    pub lease_ttl: Duration,
    /// The safety margin of the lease's fence: a driver sends no cloud request later than
    /// `lease_ttl - margin` after its last renewal was sent (judged on the monotonic clock),
    /// and another process takes an expired lease over only `margin` after its expiry.
    /// `None`: a quarter of the lease. At most half of the lease.
    pub lease_margin: Option<Duration>,
    /// Block in approval steps until approved instead of suspending the run.
    pub wait_for_approval: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            lease_margin: None,
            wait_for_approval: false,
        }
    }
}

/// How driving a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every step completed or was skipped.
    Succeeded,
    /// A step failed for good.
    Failed {
        /// The step.
        step: String,
        /// Its error code.
        code: String,
        /// Its error message.
        message: String,
    },
    /// Suspended at an approval step.
    Waiting {
        /// The approval step.
        step: String,
        /// What the operator is asked.
        message: String,
    },
    /// Paused before a disruptive step until its maintenance window opens.
    OutsideWindow {
        /// The disruptive step.
        step: String,
        /// The window, as written (`01:00-05:00 Europe/Amsterdam`).
        window: String,
    },
    /// Stopped at a safe point on request (Ctrl-C, SIGTERM); resumable.
    Interrupted,
    /// Cancelled by an operator.
    Cancelled,
}
/// The engine: creates runs and drives them. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(super) store: Store,
    pub(super) env: Env,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) owner: Owner,
    pub(super) config: EngineConfig,
    pub(super) observer: Arc<dyn Observer>,
    pub(super) parsed: Arc<ParsedRunbooks>,
    /// The runs this engine drives, whose leases one heartbeat renews.
    pub(super) heartbeats: Arc<Heartbeats>,
}

/// Pinned runbooks already parsed, by their text: the runs of one runbook share one parsed
/// copy (parsed once, held once in memory, whatever the number of runs driven at once).
#[derive(Default)]
pub(super) struct ParsedRunbooks(std::sync::Mutex<std::collections::HashMap<String, Arc<Runbook>>>);

impl ParsedRunbooks {
    /// At most this many distinct texts are kept; beyond, the cache starts over.
    const CAPACITY: usize = 64;

    pub(super) fn get(&self, text: &str, origin: &str) -> Result<Arc<Runbook>, runbook::Diagnostics> {
        let lock = || self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rb) = lock().get(text) {
            return Ok(rb.clone());
        }
        let rb = Arc::new(runbook::parse(text, origin)?);
        let mut map = lock();
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(text.to_owned(), rb.clone());
        Ok(rb)
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `store`, owning leases as this process.
    pub fn new(store: Store, config: EngineConfig) -> Self {
        Self {
            store,
            env: Env::new(),
            clock: Arc::new(SystemClock),
            owner: Owner::this_process(None),
            config,
            observer: Arc::new(Silent),
            parsed: Arc::default(),
            heartbeats: Arc::default(),
        }
    }

    /// Replaces the activities' environment (e.g. one with an ARM client).
    pub fn with_env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.heartbeats = Arc::default();
        self
    }

    /// The observer that shows progress.
    pub(crate) fn observer(&self) -> &dyn Observer {
        self.observer.as_ref()
    }

    /// Replaces the observer that shows progress.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Replaces the lease owner id (several drivers in one process).
    pub fn with_owner(mut self, owner: Owner) -> Self {
        self.owner = owner;
        self.heartbeats = Arc::default();
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The lease owner id of this engine.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// How long a lease of this engine lasts without renewal.
    pub(crate) fn lease_ttl(&self) -> std::time::Duration {
        self.config.lease_ttl
    }

    /// Now, from the engine's clock.
    pub fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }
}
