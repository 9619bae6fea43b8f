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

    /// The heartbeat learned that the lease is lost (taken over, or not renewed in time):
    /// from now on nothing is sent.
    pub(crate) fn lost(&self) {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = Duration::ZERO;
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
        self.confirm().await.map_err(|why| self.refuse(step_id, &why))
    }

    /// The check of [`Self::fence`], without recording a refused step: `Err` says why the
    /// lease is not held.
    pub(crate) async fn confirm(&self) -> Result<(), String> {
        const PASSED: &str = "its lease deadline passed, or its heartbeat found the lease lost";
        if self.remaining().is_zero() {
            return Err(PASSED.to_owned());
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
                return Err(format!("the store says the lease is held by {owner}"));
            }
            Err(moved @ StateError::StoreMoved { .. }) => {
                self.lost();
                return Err(moved.to_string());
            }
            // The store could not answer: the local deadline alone decides.
            Err(e) => tracing::warn!(error = %e, "could not confirm the lease with the store"),
        }
        if self.remaining().is_zero() {
            return Err(PASSED.to_owned());
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

/// The safety margin of a lease of `ttl` (the fence's, and the wait before taking over an
/// expired lease): `configured`, or a quarter of the lease, at most
/// half of it (so that a heartbeat every third of the lease keeps the deadline ahead).
pub fn lease_margin(ttl: Duration, configured: Option<Duration>) -> Duration {
    configured.unwrap_or(ttl / 4).min(ttl / 2)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::{CreateRun, Engine, EngineConfig, Owner, runbook};

    /// Monotonic time the test moves; the wall clock follows it from a fixed start.
    #[derive(Debug, Default)]
    struct Manual(AtomicU64);

    impl Clock for Manual {
        fn now_ms(&self) -> fogbook_state::Millis {
            1_800_000_000_000 + i64::try_from(self.0.load(Ordering::SeqCst)).unwrap()
        }
        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    const RUNBOOK: &str =
        "runbook: r\nversion: 1\nsteps:\n  - id: s\n    uses: assert\n    with: { that: true, message: m }\n";

    /// A run whose lease `owner` took at monotonic 0 for 2 s, and that owner's lease clock
    /// (margin 500 ms).
    async fn leased(dir: &std::path::Path) -> (Arc<Manual>, Store, String, LeaseClock) {
        let clock = Arc::new(Manual::default());
        let store = Store::open(&dir.join("s.db")).unwrap();
        let config = EngineConfig {
            lease_ttl: Duration::from_secs(2),
            ..EngineConfig::default()
        };
        let owner = Owner::this_process(Some("a"));
        let engine = Engine::new(store.clone(), config)
            .with_clock(clock.clone())
            .with_owner(owner.clone());
        let rb = runbook::parse(RUNBOOK, "r.yaml").unwrap();
        let run = engine
            .create_run(CreateRun {
                take_lease: true,
                ..CreateRun::new(&rb, RUNBOOK)
            })
            .await
            .unwrap();
        let lease = LeaseClock::new(
            clock.clone(),
            store.clone(),
            &run,
            owner.as_str(),
            Duration::from_secs(2),
            Duration::from_millis(500),
            Duration::ZERO,
        );
        (clock, store, run, lease)
    }

    #[tokio::test]
    async fn a_thin_margin_is_confirmed_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, store, run, lease) = leased(dir.path()).await;
        assert_eq!(lease.remaining(), Duration::from_millis(1_500));
        lease.fence("s").await.unwrap();
        // 1.2 s later less than the margin remains: the store renews, the deadline moves.
        clock.0.store(1_200, Ordering::SeqCst);
        lease.fence("s").await.unwrap();
        assert_eq!(lease.remaining(), Duration::from_millis(1_500), "renewed at 1.2 s");
        let expires = store.load_run(&run).await.unwrap().run.lease_expires_at.unwrap();
        assert_eq!(expires, clock.now_ms() + 2_000, "the store's lease was renewed");
        assert_eq!(lease.refused_step(), None);

        // Another process takes the run over (as if this one were gone); where the margin
        // is thin again, the store says so and nothing may be sent.
        store
            .acquire_lease(
                &run,
                "elsewhere:1:1",
                Duration::from_secs(2),
                Some(lease.owner.clone()),
                clock.now_ms(),
            )
            .await
            .unwrap();
        clock.0.store(2_300, Ordering::SeqCst);
        let refused = lease.fence("s").await.unwrap_err();
        assert!(
            refused.to_string().contains("no request was sent") && refused.to_string().contains("elsewhere:1:1"),
            "{refused}"
        );
        assert_eq!(lease.refused_step().as_deref(), Some("s"));
    }

    #[tokio::test]
    async fn past_the_deadline_nothing_is_sent_whatever_the_store_says() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, store, run, lease) = leased(dir.path()).await;
        // Frozen for 1.5 s: the deadline (2 s - 500 ms) has passed, though the store's lease
        // (2 s) has not expired yet.
        clock.0.store(1_500, Ordering::SeqCst);
        let refused = lease.fence("s").await.unwrap_err();
        assert_eq!(refused.code(), "LeaseExpired");
        let expires = store.load_run(&run).await.unwrap().run.lease_expires_at.unwrap();
        assert_eq!(expires, clock.now_ms() + 500, "the store was not asked to renew");
    }

    #[test]
    fn the_margin_defaults_to_a_quarter_and_is_at_most_half_the_lease() {
        let ttl = Duration::from_secs(2);
        assert_eq!(lease_margin(ttl, None), Duration::from_millis(500));
        assert_eq!(
            lease_margin(ttl, Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
        assert_eq!(lease_margin(ttl, Some(Duration::from_secs(5))), Duration::from_secs(1));
        assert_eq!(
            deadline(Duration::from_secs(10), ttl, Duration::from_millis(500)),
            Duration::from_millis(11_500)
        );
    }
}
