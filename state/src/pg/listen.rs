//! Waking idle workers at once (issue 17): every transaction that makes work for a worker
//! (a run created or left pending, a lease released, an approval, a schedule created or its
//! cursor moved, a cancel request) also sends `NOTIFY fogbook_work`, which PostgreSQL
//! delivers when, and only if, the transaction commits; each worker listens on a dedicated
//! connection of its own and looks for work when woken, instead of at its next poll.
//!
//! The poll stays the fallback: a notification is lost while the listening connection is
//! down (it wakes the worker once it is back), and a lease that expires makes no
//! notification at all. The listening connection is a [`Session`] like the store's others
//! (keepalives, a deadline on every round trip, named in `pg_stat_activity`), and, as it
//! only receives, it asks the server for an answer after a deadline of silence: a silent
//! database is noticed on it too, and it connects again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::PgUrl;
use super::session::{Limits, Session};
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

/// How long the listening thread waits before connecting again after a first failure; the
/// pause doubles with each failure that follows, up to [`RECONNECT_MAX`] (as a worker waiting
/// for its database at startup).
const RECONNECT: Duration = Duration::from_millis(250);

/// The longest pause between two tries to listen again.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Notifies the workers' channel in `tx` when an event of `kind` makes work (PostgreSQL
/// only; delivered at commit, and several in one transaction arrive as one).
pub(crate) fn wake_workers(tx: &dyn Tx, kind: &str) -> crate::sql::Result<()> {
    if tx.dialect() == Dialect::Postgres && WORK_EVENTS.contains(&kind) {
        tx.execute_later("SELECT pg_notify(?1, '')", params![WORK_CHANNEL])?;
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
    /// listening thread; until it is up the worker only polls), with the limits the
    /// environment sets ([`Limits::from_env`], as the store's other connections).
    pub(crate) fn start(url: &PgUrl) -> std::io::Result<Self> {
        // The store was opened with the same environment, so its limits were valid then.
        Self::start_with(url, Limits::from_env().unwrap_or_default())
    }

    /// As [`WorkListener::start`], with `limits`.
    pub(crate) fn start_with(url: &PgUrl, limits: Limits) -> std::io::Result<Self> {
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (url, thread_wake, thread_stop) = (url.clone(), wake.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fogbook-pg-listen".to_owned())
            .spawn(move || listen(&url, limits, &thread_wake, &thread_stop))?;
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

/// The listening thread: a [`Session`] like the store's others (named `listen` in
/// `pg_stat_activity`, keepalives, a deadline on every round trip). A listening connection
/// only receives, so a silent database would go unnoticed on it: after `limits.deadline`
/// without a notification it asks the server for an answer (within the deadline), and on a
/// loss connects again and wakes the worker once (a notification may have been missed).
fn listen(url: &PgUrl, limits: Limits, wake: &Notify, stop: &AtomicBool) {
    // While listening fails, it is said once (with its causes), retried with a back-off
    // quietly, and said once more when listening works again: a database outage of minutes
    // makes two lines, not one a second.
    let mut failing: Option<Instant> = None;
    let mut pause = RECONNECT;
    while !stop.load(Ordering::Relaxed) {
        let listening = Session::open_listening(url, "listen", limits)
            .map_err(Failure::from)
            .and_then(|(mut session, notifications)| {
                session.batch_execute(&format!("LISTEN {WORK_CHANNEL}"))?;
                Ok((session, notifications))
            });
        let (mut session, mut notifications) = match listening {
            Ok(listening) => listening,
            Err(e) => {
                if failing.is_none() {
                    tracing::warn!(
                        error = %causes(&*e),
                        "worker: cannot listen for work; it looks for work at every poll meanwhile, and tries to listen \
                         again every {}s at most (a line says when it listens again)",
                        RECONNECT_MAX.as_secs()
                    );
                    failing = Some(Instant::now());
                } else {
                    tracing::debug!(error = %causes(&*e), pause_ms = pause.as_millis(), "worker.listen_failed");
                }
                pause_for(pause, stop);
                pause = (pause * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        if let Some(since) = failing.take() {
            tracing::warn!(
                "worker: listening for work again (it could not for {}s)",
                since.elapsed().as_secs()
            );
        }
        pause = RECONNECT;
        // Work made while no connection listened was not notified: look once.
        wake.notify_one();
        let mut heard = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let lost = match session.next_notification(&mut notifications, WAKE_CHECK.min(limits.deadline)) {
                Ok(Some(_)) => {
                    wake.notify_one();
                    heard = Instant::now();
                    None
                }
                Ok(None) if heard.elapsed() >= limits.deadline => {
                    heard = Instant::now();
                    session.batch_execute("SELECT 1").err()
                }
                Ok(None) => None,
                Err(e) => Some(e),
            };
            if let Some(e) = lost {
                tracing::warn!(
                    error = %causes(&e),
                    "worker: the connection listening for work was lost; it looks for work at every poll meanwhile, \
                     and a line says when it listens again"
                );
                failing = Some(Instant::now());
                break;
            }
        }
    }
}

/// Why listening failed: connecting, or the `LISTEN` itself.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// `e` and its causes on one line (a bare "cannot connect" says nothing of why).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Waits `d` in short steps, ending early once `stop` is set.
fn pause_for(d: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(step.min(left));
        left = left.saturating_sub(step);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::str::FromStr;

    use fogbook_testpg::{TestPostgres, TestProxy};

    use super::*;
    use crate::pg::StoreUrl;

    fn pg_url(text: &str) -> PgUrl {
        let StoreUrl::Postgres(url) = StoreUrl::from_str(text).unwrap() else {
            panic!("not a PostgreSQL URL");
        };
        url
    }

    /// Waits (up to `limit`, checking every 50 ms) until `done` holds.
    fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(Instant::now() < deadline, "{what} within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Issue 17: the workers' listening connection is named like the store's others, notices
    /// a database gone silent (a proxy that stops forwarding, no reset) within its deadline
    /// and connects again; once the network is back it listens again and wakes the worker
    /// once, as a notification may have been missed meanwhile.
    #[test]
    fn the_listening_connection_notices_a_silent_database_and_listens_again() {
        let server = TestPostgres::start();
        let proxy = TestProxy::start(server.port());
        let through = pg_url(&proxy.url(&format!("{}&connect_timeout=1", server.url())));
        let limits = Limits {
            readers: 1,
            deadline: Duration::from_millis(500),
        };
        let mut direct = crate::pg::connect(&pg_url(&server.url())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let woken = |listener: &WorkListener, what: &str| {
            runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), listener.notified()).await })
                .unwrap_or_else(|_| panic!("{what}"));
        };

        let listener = WorkListener::start_with(&through, limits).unwrap();
        woken(&listener, "the worker is woken once listening starts");
        let name = application_name_prefix();
        let named: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        assert_eq!(named, 1, "one connection named {name}");
        direct.batch_execute(&format!("NOTIFY {WORK_CHANNEL}")).unwrap();
        woken(&listener, "a notification wakes the worker");

        let accepted = proxy.accepted();
        proxy.black_hole();
        wait_until(
            "the listener noticed the silence and connected again",
            Duration::from_secs(30),
            || proxy.accepted() > accepted,
        );
        proxy.heal();
        woken(&listener, "the worker is woken once listening again");
        direct.batch_execute(&format!("NOTIFY {WORK_CHANNEL}")).unwrap();
        woken(&listener, "a notification wakes the worker after the reconnection");
    }

    /// `application_name` of this process's listening connections, as a `LIKE` pattern.
    fn application_name_prefix() -> String {
        let name = crate::pg::session::application_name("listen");
        format!("{}%", name.replace('%', "\\%").replace('_', "\\_"))
    }
}
