//! The lease heartbeat: renews the lease while a run is driven and stops the driver when it is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fogbook_state::StateError;
use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use super::window_limits::check_window_limits;
use crate::lease::LeaseClock;

/// What the heartbeat learned while the run was driven.
#[derive(Default)]
pub(super) struct Beat {
    /// An operator asked to cancel the run.
    pub(super) cancel_requested: AtomicBool,
    /// The lease was lost (to whom), or could not be renewed in time.
    lost: std::sync::Mutex<Option<String>>,
}

impl Beat {
    pub(super) fn lost_to(&self) -> Option<String> {
        self.lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn lose(&self, owner: String) {
        *self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(owner);
    }
}

/// Aborts a task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease every third of its lifetime; cancels `token` when the lease is lost,
/// when it could not be renewed before it would expire (the driver fences itself: another
/// process may take the run over from then on), or when an operator asks to cancel. Also
/// reports windows open longer than the runbook's limit.
pub(super) async fn heartbeat(
    engine: Engine,
    run_id: String,
    token: CancellationToken,
    beat: Arc<Beat>,
    lease: Arc<LeaseClock>,
) {
    let ttl = engine.config.lease_ttl;
    let every = (ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = token.cancelled() => return,
        }
        // The deadline counts from when the renewal was sent, on the monotonic clock.
        let sent = lease.now();
        let now = engine.clock.now_ms();
        match engine.store.renew_lease(&run_id, engine.owner.as_str(), ttl, now).await {
            Ok(cancel) => {
                lease.renewed(sent);
                if cancel {
                    tracing::info!("cancellation requested; stopping at the next safe point");
                    beat.cancel_requested.store(true, Ordering::SeqCst);
                    token.cancel();
                    return;
                }
            }
            Err(StateError::LeaseLost { owner, .. }) => {
                tracing::error!(%owner, "lost the lease; stopping");
                lease.lost();
                beat.lose(owner);
                token.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the lease");
                if lease.remaining() <= every {
                    tracing::error!("the lease could not be renewed before it expires; stopping");
                    lease.lost();
                    beat.lose("nobody (the lease expired before it could be renewed)".to_owned());
                    token.cancel();
                    return;
                }
            }
        }
        check_window_limits(&engine, &run_id).await;
    }
}
