//! The engine's lease heartbeat: one task per engine renews the leases of all the runs it
//! drives in one store transaction, and stops each driver whose lease is lost or whose run
//! an operator asked to cancel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
    lost: Mutex<Option<String>>,
    /// The store refused the renewal: it was copied away (`fogbook store copy`).
    moved: Mutex<Option<StateError>>,
    /// Why the lease could not be renewed before it expired (the store failed), with causes.
    unrenewed: Mutex<Option<String>>,
}

impl Beat {
    pub(super) fn lost_to(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn lose(&self, owner: String) {
        *self.lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(owner);
    }

    /// Why the lease ran out unrenewed, when the store failed the renewals until it expired.
    pub(super) fn take_unrenewed(&self) -> Option<String> {
        self.unrenewed.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// The store's refusal, when it was copied away while the run was driven.
    pub(super) fn take_moved(&self) -> Option<StateError> {
        self.moved.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// A run whose lease the engine's heartbeat keeps renewed.
#[derive(Clone)]
pub(super) struct Member {
    /// Cancelled when the lease is lost or an operator asks to cancel: the driver stops.
    pub(super) token: CancellationToken,
    pub(super) beat: Arc<Beat>,
    pub(super) lease: Arc<LeaseClock>,
    /// The runbook limits how long a window stays open (checked on each beat).
    pub(super) window_limit: bool,
}

/// The runs an engine drives, and its heartbeat task (running while there are any).
#[derive(Default)]
pub(crate) struct Heartbeats {
    inner: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    runs: HashMap<String, Member>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Heartbeats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Members> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes its run from the heartbeat when dropped, so a lease is never renewed for a run
/// this process no longer drives.
pub(super) struct Membership {
    heartbeats: Arc<Heartbeats>,
    run_id: String,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.heartbeats.lock().runs.remove(&self.run_id);
    }
}

impl Engine {
    /// Adds `run_id` to this engine's heartbeat (starting the heartbeat task if it is not
    /// running) until the returned membership is dropped.
    pub(super) fn join_heartbeat(&self, run_id: &str, member: Member) -> Membership {
        let mut members = self.heartbeats.lock();
        members.runs.insert(run_id.to_owned(), member);
        if members.task.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            members.task = Some(tokio::spawn(heartbeat(self.clone())));
        }
        Membership {
            heartbeats: self.heartbeats.clone(),
            run_id: run_id.to_owned(),
        }
    }
}

/// Every third of the lease, renews the leases of all the engine's runs in one store
/// transaction. Stops a run's driver (cancels its token) when its lease is lost, when it
/// could not be renewed before it would expire (the driver fences itself: another process
/// may take the run over from then on), or when an operator asks to cancel it. Also
/// reports windows open longer than their runbook's limit. Ends when no run is left.
async fn heartbeat(engine: Engine) {
    let ttl = engine.config.lease_ttl;
    let every = (ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let runs: Vec<(String, Member)> = {
            let mut members = engine.heartbeats.lock();
            members.runs.retain(|_, m| !m.token.is_cancelled());
            if members.runs.is_empty() {
                members.task = None;
                return;
            }
            members.runs.iter().map(|(id, m)| (id.clone(), m.clone())).collect()
        };
        let ids: Vec<String> = runs.iter().map(|(id, _)| id.clone()).collect();
        // Each deadline counts from when the renewal was sent, on the monotonic clock.
        let sent = engine.clock.monotonic();
        let now = engine.clock.now_ms();
        match engine.store.renew_leases(engine.owner.as_str(), &ids, ttl, now).await {
            Ok(outcomes) => {
                for ((run_id, m), outcome) in runs.iter().zip(outcomes) {
                    renewed(run_id, m, outcome, sent, every);
                }
            }
            Err(e) => {
                for (run_id, m) in &runs {
                    not_renewed(run_id, m, &e, every);
                }
            }
        }
        for (run_id, m) in &runs {
            if m.window_limit && !m.token.is_cancelled() {
                check_window_limits(&engine, run_id, &m.lease).await;
            }
        }
    }
}

/// Tells one driver what its renewal found.
fn renewed(run_id: &str, m: &Member, outcome: Result<bool, StateError>, sent: Duration, every: Duration) {
    match outcome {
        Ok(cancel) => {
            m.lease.renewed(sent);
            if cancel {
                tracing::info!(%run_id, "cancellation requested; stopping at the next safe point");
                m.beat.cancel_requested.store(true, Ordering::SeqCst);
                m.token.cancel();
            }
        }
        Err(StateError::LeaseLost { owner, .. }) => {
            if owner.starts_with("nobody") {
                // Nobody holds it now: whether another process took the run over meanwhile
                // (and let it go again) is for the driver to find out, in the audit trail.
                tracing::warn!(%run_id, "lost the lease: it expired while this process was stopped or stalled; stopping");
            } else {
                tracing::warn!(%run_id, new_owner = %owner, "lost the lease; stopping");
            }
            m.lease.lost();
            m.beat.lose(owner);
            m.token.cancel();
        }
        // The store was copied away: its runs are driven in the target now. Stop as a driver
        // whose lease was lost: nothing more is sent from here.
        Err(moved @ StateError::StoreMoved { .. }) => {
            tracing::error!(%run_id, "the lease was not renewed: {moved}; stopping");
            m.lease.lost();
            *m.beat.moved.lock().unwrap_or_else(PoisonError::into_inner) = Some(moved);
            m.token.cancel();
        }
        Err(e) => not_renewed(run_id, m, &e, every),
    }
}

/// A renewal failed for want of the store: the driver stops once its lease would expire
/// before the next beat.
fn not_renewed(run_id: &str, m: &Member, e: &StateError, every: Duration) {
    // With its causes: "the database could not commit" alone does not say that the
    // connection to it was lost, nor why.
    let cause = crate::error::with_causes(e);
    tracing::warn!(%run_id, error = %cause, "could not renew the lease");
    if m.lease.remaining() <= every {
        tracing::error!(%run_id, "the lease could not be renewed before it expires; stopping");
        m.lease.lost();
        *m.beat.unrenewed.lock().unwrap_or_else(PoisonError::into_inner) = Some(cause);
        m.beat
            .lose("nobody (the lease expired before it could be renewed)".to_owned());
        m.token.cancel();
    }
}
