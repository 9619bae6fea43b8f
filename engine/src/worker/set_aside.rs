//! Runs a worker could not drive, set aside with a back-off.

use std::collections::HashMap;
use std::time::Duration;

/// The longest a worker waits before it looks again at a run it could not drive.
const SET_ASIDE_MAX: Duration = Duration::from_secs(300);

/// Runs a worker could not drive, each with when it may look at it again: twice the poll
/// after the first refusal, doubling with each refusal that follows, at most
/// [`SET_ASIDE_MAX`].
pub(super) struct SetAside {
    poll: Duration,
    runs: HashMap<String, (tokio::time::Instant, u32)>,
}

impl SetAside {
    pub(super) fn new(poll: Duration) -> Self {
        Self {
            poll: poll.max(Duration::from_millis(10)),
            runs: HashMap::new(),
        }
    }

    /// Sets `run` aside once more; returns for how long.
    pub(super) fn put(&mut self, run: &str) -> Duration {
        let refusals = self.runs.get(run).map_or(0, |(_, n)| *n) + 1;
        let wait = self
            .poll
            .saturating_mul(2u32.saturating_pow(refusals.min(16)))
            .min(SET_ASIDE_MAX.max(self.poll));
        self.runs
            .insert(run.to_owned(), (tokio::time::Instant::now() + wait, refusals));
        wait
    }

    /// Whether `run` is still set aside.
    pub(super) fn holds(&self, run: &str) -> bool {
        self.runs
            .get(run)
            .is_some_and(|(until, _)| tokio::time::Instant::now() < *until)
    }

    /// `run` was driven: its next refusal starts the back-off again.
    pub(super) fn clear(&mut self, run: &str) {
        self.runs.remove(run);
    }
}
