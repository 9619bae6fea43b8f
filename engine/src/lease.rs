//! A driver's own view of its lease, on the monotonic clock: the fence of its cloud calls.
//!
//! The store's lease expires at `renewal + ttl` (the driver's wall time when it sent the
//! renewal). The driver keeps a local deadline `sent + ttl - margin`, where `sent` is the
//! monotonic instant it sent the renewal, and refuses to send a cloud request after it.
//! Where less than `margin` remains, it first renews the lease in the store. Another process
//! takes an expired lease over only `margin` after its expiry ([`crate::Engine::drive`]), so
//! a request passes the fence at least two margins before anyone else may drive the run.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fogbook_activities::ActivityError;
use fogbook_state::{StateError, Store};

use crate::clock::Clock;

/// The message of a driver that finds its lease gone before a cloud request.
pub(crate) const FENCED: &str =
    "this process was frozen or starved past its lease; another process may drive the run now; no request was sent";

/// A driver's lease deadline, renewed by the heartbeat and checked before every cloud
/// request.
#[derive(Debug)]
pub(crate) struct LeaseClock {
    clock: Arc<dyn Clock>,
    store: Store,
    run_id: String,
    owner: String,
    ttl: Duration,
    margin: Duration,
    /// The monotonic instant after which this driver no longer counts on its lease.
    deadline: Mutex<Duration>,
    /// The step whose cloud request was refused because the lease was not held.
    refused: Mutex<Option<String>>,
}

impl LeaseClock {
    /// A lease whose renewal (or acquisition) was sent at monotonic instant `sent`.
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        store: Store,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        margin: Duration,
        sent: Duration,
    ) -> Self {
        Self {
            clock,
            store,
            run_id: run_id.to_owned(),
            owner: owner.to_owned(),
            ttl,
            margin,
            deadline: Mutex::new(deadline(sent, ttl, margin)),
            refused: Mutex::new(None),
        }
    }

    /// Now, on the monotonic clock (what `sent` of a renewal is read from).
    pub(crate) fn now(&self) -> Duration {
        self.clock.monotonic()
    }

    /// The store accepted a renewal sent at `sent`.
    pub(crate) fn renewed(&self, sent: Duration) {
        let mut d = self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        *d = (*d).max(deadline(sent, self.ttl, self.margin));
    }

    /// The time left before the local deadline (zero once it has passed).
    pub(crate) fn remaining(&self) -> Duration {
        let d = *self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        d.saturating_sub(self.now())
    }

    /// The step whose cloud request was refused for want of the lease, if any.
    pub(crate) fn refused_step(&self) -> Option<String> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Succeeds while the lease is held: the local deadline has not passed and, where less
    /// than the margin remains, the store has just renewed it.
    pub(crate) async fn fence(&self, step_id: &str) -> Result<(), ActivityError> {
        if self.remaining().is_zero() {
            return Err(self.refuse(step_id, "its lease deadline passed"));
        }
        if self.remaining() >= self.margin {
            return Ok(());
        }
        // Thin: confirm with the store (a renewal, so the next requests find room again).
        let sent = self.now();
        match self
            .store
            .renew_lease(&self.run_id, &self.owner, self.ttl, self.clock.now_ms())
            .await
        {
            Ok(_) => self.renewed(sent),
            Err(StateError::LeaseLost { owner, .. }) => {
                return Err(self.refuse(step_id, &format!("the store says the lease is held by {owner}")));
            }
            // The store could not answer: the local deadline alone decides.
            Err(e) => tracing::warn!(error = %e, "could not confirm the lease with the store"),
        }
        if self.remaining().is_zero() {
            return Err(self.refuse(step_id, "its lease deadline passed"));
        }
        Ok(())
    }

    fn refuse(&self, step_id: &str, why: &str) -> ActivityError {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(step_id.to_owned());
        tracing::error!(run_id = %self.run_id, step_id, why, "fenced: {FENCED}");
        ActivityError::LeaseExpired {
            message: format!("{FENCED} ({why})"),
        }
    }
}

fn deadline(sent: Duration, ttl: Duration, margin: Duration) -> Duration {
    (sent + ttl).saturating_sub(margin)
}

/// The safety margin of a lease of `ttl`: `configured`, or a quarter of the lease, at most
/// half of it (so that a heartbeat every third of the lease keeps the deadline ahead).
pub(crate) fn margin(ttl: Duration, configured: Option<Duration>) -> Duration {
    configured.unwrap_or(ttl / 4).min(ttl / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_defaults_to_a_quarter_and_is_at_most_half_the_lease() {
        let ttl = Duration::from_secs(2);
        assert_eq!(margin(ttl, None), Duration::from_millis(500));
        assert_eq!(
            margin(ttl, Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
        assert_eq!(margin(ttl, Some(Duration::from_secs(5))), Duration::from_secs(1));
        assert_eq!(
            deadline(Duration::from_secs(10), ttl, Duration::from_millis(500)),
            Duration::from_millis(11_500)
        );
    }
}
