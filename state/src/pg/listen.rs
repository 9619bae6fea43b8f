//! Waking idle workers at once (issue 17): every transaction that makes work for a worker
//! (a run created or left pending, a lease released, an approval, a schedule created or its
//! cursor moved, a cancel request) also sends `NOTIFY fogbook_work`, which PostgreSQL
//! delivers when, and only if, the transaction commits; each worker listens on a dedicated
//! connection of its own and looks for work when woken, instead of at its next poll.
//!
//! The poll stays the fallback: a notification is lost while the listening connection is
//! down (it wakes the worker once it is back), and a lease that expires makes no
//! notification at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use tokio::sync::Notify;

use super::PgUrl;
use crate::sql::{Dialect, Tx, params};

/// The channel workers listen on.
pub const WORK_CHANNEL: &str = "fogbook_work";

/// The audit events whose transactions make work a worker may take up. A fire that creates
/// a run also writes `run.created`; a fire that only moves the cursor (skipped, queued) may
/// let a queued fire go next.
const WORK_EVENTS: &[&str] = &[
    "run.created",
    "run.pending",
    "run.repinned",
    "run.cancel_requested",
    "lease.released",
    "step.approved",
    "step.skipped",
    "step.retry_requested",
    "schedule.created",
    "schedule.updated",
    "schedule.resumed",
    "schedule.fired",
    "schedule.skipped",
    "schedule.queued",
    "fleet.created",
    "fleet.lease_released",
    "fleet.wave_approved",
    "fleet.cancel_requested",
];

/// How long the listening thread waits for a notification before it looks whether its
/// listener was dropped.
const WAKE_CHECK: Duration = Duration::from_millis(500);

/// How long the listening thread waits before connecting again after a failure.
const RECONNECT: Duration = Duration::from_secs(1);

/// Notifies the workers' channel in `tx` when an event of `kind` makes work (PostgreSQL
/// only; delivered at commit, and several in one transaction arrive as one).
pub(crate) fn wake_workers(tx: &dyn Tx, kind: &str) -> crate::sql::Result<()> {
    if tx.dialect() == Dialect::Postgres && WORK_EVENTS.contains(&kind) {
        tx.execute("SELECT pg_notify(?1, '')", params![WORK_CHANNEL])?;
    }
    Ok(())
}

/// A worker's wake-up: a thread holding one connection that `LISTEN`s on
/// [`WORK_CHANNEL`]. The thread ends soon after this is dropped.
#[derive(Debug)]
pub struct WorkListener {
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
}

impl WorkListener {
    /// Starts listening on `url` (the connection is made, and remade after a loss, by the
    /// listening thread; until it is up the worker only polls).
    pub(crate) fn start(url: &PgUrl) -> std::io::Result<Self> {
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (url, thread_wake, thread_stop) = (url.clone(), wake.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fogbook-pg-listen".to_owned())
            .spawn(move || listen(&url, &thread_wake, &thread_stop))?;
        Ok(Self { wake, stop })
    }

    /// Returns once work may have been made since the last return (at once if a
    /// notification arrived meanwhile: one is kept).
    pub async fn notified(&self) {
        self.wake.notified().await;
    }
}

impl Drop for WorkListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn listen(url: &PgUrl, wake: &Notify, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut client = match super::connect(url) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "worker: cannot listen for work; polling only until connected");
                pause(RECONNECT, stop);
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {WORK_CHANNEL}")) {
            tracing::warn!(error = %e, "worker: cannot listen for work; polling only until it can");
            pause(RECONNECT, stop);
            continue;
        }
        // Work made while no connection listened was not notified: look once.
        wake.notify_one();
        while !stop.load(Ordering::Relaxed) {
            let next = client.notifications().timeout_iter(WAKE_CHECK).next();
            match next {
                Ok(Some(_)) => wake.notify_one(),
                Ok(None) if !client.is_closed() => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "worker: the connection listening for work was lost; connecting again");
                    break;
                }
            }
        }
    }
}

/// Waits `d` in short steps, ending early once `stop` is set.
fn pause(d: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(step.min(left));
        left = left.saturating_sub(step);
    }
}
