//! Whether the worker's state database answers: an outage is said once (with its cause)
//! and its end once, instead of an error from every job of every poll (reading the moved
//! mark, firing schedules, listing and claiming runs and fleets) while it lasts.

use std::time::Duration;

use fogbook_state::pg::PgError;

use crate::EngineError;
use crate::error::with_causes;

/// What the worker knows of its database across polls.
pub(super) struct Health {
    poll: Duration,
    /// Since when the database has not answered (`None`: it answers).
    down_since: Option<tokio::time::Instant>,
    /// Whether a job failed to reach the database in the current poll.
    failed_this_poll: bool,
}

impl Health {
    pub(super) fn new(poll: Duration) -> Self {
        Self {
            poll,
            down_since: None,
            failed_this_poll: false,
        }
    }

    /// `job` (e.g. "fire schedules") failed with `e`. A failure to reach the database is
    /// logged once per outage; any other failure is logged as it happens.
    pub(super) fn failed(&mut self, job: &str, e: &EngineError) {
        if !unreachable(e) {
            tracing::error!(error = %with_causes(e), "worker: cannot {job}; trying again at the next poll");
            return;
        }
        self.failed_this_poll = true;
        if self.down_since.is_none() {
            self.down_since = Some(tokio::time::Instant::now());
            tracing::error!(
                error = %with_causes(e),
                "worker: the state database does not answer; the worker keeps trying at every poll (every {:?}) and \
                 says so when it answers again; the runs it drives stop when their leases cannot be renewed, and are \
                 taken over once it answers",
                self.poll
            );
        } else {
            tracing::debug!(job, error = %with_causes(e), "worker.database_unreachable");
        }
    }

    /// A poll ended: if no job failed to reach the database in it after an outage, the
    /// database answers again.
    pub(super) fn poll_ended(&mut self) {
        if !std::mem::take(&mut self.failed_this_poll)
            && let Some(since) = self.down_since.take()
        {
            tracing::warn!(
                "worker: the state database answers again (it did not for {}s); the worker takes on work again",
                since.elapsed().as_secs()
            );
        }
    }
}

/// Whether `e` says the database could not be reached (refused, reset, silent, a lost
/// connection), as opposed to an answer it gave (a refused statement, a row that does not
/// read), which is a real error to show each time.
fn unreachable(e: &EngineError) -> bool {
    let Some(state) = e.state() else {
        return false;
    };
    std::iter::successors(Some(state as &(dyn std::error::Error + 'static)), |e| e.source()).any(|e| {
        e.is::<std::io::Error>()
            || e.downcast_ref::<PgError>().is_some_and(|pg| {
                pg.is_transient()
                    || matches!(
                        pg,
                        PgError::ConnectStalled { .. }
                            | PgError::ConnectionLost { .. }
                            | PgError::CommitUnanswered { .. }
                    )
            })
    })
}

#[cfg(test)]
mod tests {
    use fogbook_state::StateError;

    use super::*;

    #[test]
    fn a_lost_connection_is_an_outage_and_a_refused_statement_is_not() {
        let lost = EngineError::State(StateError::Postgres(PgError::ConnectionLost {
            target: "postgres://fogbook:***@db:5432/fogbook".into(),
            reason: "connection closed".into(),
        }));
        assert!(unreachable(&lost));
        let refused = EngineError::State(StateError::Database {
            operation: "list runs",
            source: std::sync::Arc::new(std::fmt::Error),
        });
        assert!(!unreachable(&refused));
        assert!(!unreachable(&EngineError::State(StateError::StoreClosed)));
    }
}
