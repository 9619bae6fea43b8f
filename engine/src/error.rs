//! The engine's error type and how its callers classify it.
//!
//! A store error keeps its type: [`EngineError::State`] holds the [`StateError`] itself (never
//! its message, never under another name), so a lost lease, a held lock and a failed commit
//! stay distinguishable up to the CLI, which maps [`EngineError::kind`] to an exit code.

use fogbook_state::StateError;

use crate::runbook::Diagnostics;

/// Errors of the engine (as opposed to a run that fails, which is a [`crate::RunOutcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The runbook or its parameters are invalid; nothing was created.
    #[error("invalid runbook or parameters")]
    Invalid(#[source] Diagnostics),
    /// This process found, immediately before a cloud request, that it no longer holds the
    /// run's lease (it was frozen or starved past it, or the store names another holder); it
    /// sent nothing and stopped. The run stays resumable by whoever holds the lease.
    #[error("stopped driving run {run_id} at step `{step_id}`: {message}")]
    Fenced {
        /// The run.
        run_id: String,
        /// The step whose cloud request was not sent.
        step_id: String,
        /// What happened.
        message: String,
    },
    /// This process lost the run's lease while it was stopped or starved, and another
    /// process took the run over (and may have finished it, or let it go since). Nothing more
    /// was sent or written by this process.
    #[error("stopped driving run {run_id}: {by} took it over while this process was stopped or stalled")]
    TakenOver {
        /// The run.
        run_id: String,
        /// The process that took the run over (per the run's audit trail).
        by: String,
        /// Who holds the run's lease now (`None`: nobody drives it).
        holder: Option<String>,
        /// The run's status now.
        status: fogbook_state::RunStatus,
    },
    /// This process could not renew the run's lease before it expired because the state
    /// database failed (unreachable, not answering, refusing writes), so it stopped driving:
    /// nothing more was sent or written by it. Whether another process has taken the run
    /// over since, only the database can say once it answers.
    #[error(
        "stopped driving run {run_id}: its lease could not be renewed before it expired, because the state database failed: {cause}"
    )]
    LeaseUnrenewed {
        /// The run.
        run_id: String,
        /// Why the last renewal failed (the store's error with its causes).
        cause: String,
    },
    /// The stored runbook of a run no longer parses (a newer format?).
    #[error("the runbook stored with run {run_id} does not parse")]
    StoredRunbook {
        /// The run.
        run_id: String,
        /// Why.
        #[source]
        source: Diagnostics,
    },
    /// The state store refused the operation (a lock or lease another run or process holds,
    /// a lost lease, an unknown run, a transition that does not fit) or failed (the database
    /// could not be read or written). [`EngineError::kind`] tells which, and
    /// [`EngineError::state`] gives the store's error itself.
    ///
    /// Transparent: a plain wrapper that adds nothing to say, so the store's message (and its
    /// own causes) are what prints, once.
    #[error(transparent)]
    State(StateError),
    /// The engine itself failed (a task it spawned panicked, a benchmark's sanity check did
    /// not hold): a bug to report, not a problem of the input or the store.
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
}

/// `error: its cause: the cause's cause…`, for a log line: a store failure's own message
/// ("the PostgreSQL state store failed") does not say why; its sources do (a refused
/// connection, a server starting up, too many clients).
pub(crate) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// What kind of failure an [`EngineError`] is, for callers that map errors to exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is wrong: an invalid runbook or parameters, an unknown run, fleet or step,
    /// a change that does not fit the run's state.
    BadInput,
    /// Someone else has what is needed: another live process holds the run's (or fleet's)
    /// lease, another run holds a resource key, this process lost the lease while driving
    /// (or fenced itself before a cloud request), or the run is being cancelled.
    Busy,
    /// The state database failed: it cannot be opened, read, written or committed, or what it
    /// holds cannot be used (a newer schema, corrupt or altered rows, an unparsable runbook).
    Store,
    /// A bug in fogbook.
    Internal,
}

impl EngineError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::BadInput,
            Self::Fenced { .. } | Self::TakenOver { .. } | Self::LeaseUnrenewed { .. } => ErrorKind::Busy,
            Self::StoredRunbook { .. } => ErrorKind::Store,
            Self::State(e) => state_kind(e),
            Self::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// The store's error, when the store refused or failed.
    pub fn state(&self) -> Option<&StateError> {
        match self {
            Self::State(e) => Some(e),
            _ => None,
        }
    }

    /// An internal error (see [`EngineError::Internal`]).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
        }
    }
}

/// What kind of failure a store error is.
fn state_kind(e: &StateError) -> ErrorKind {
    match e {
        StateError::UnknownRun { .. }
        | StateError::UnknownFleet { .. }
        | StateError::UnknownStep { .. }
        | StateError::InvalidTransition { .. }
        | StateError::StoreMoved { .. } => ErrorKind::BadInput,
        StateError::LockHeld { .. }
        | StateError::LeaseHeld { .. }
        | StateError::LeaseLost { .. }
        | StateError::FleetLeaseHeld { .. }
        | StateError::CancelRequested { .. } => ErrorKind::Busy,
        // Everything else is the database failing or holding what cannot be used; a variant
        // the state crate adds later is the same until it is sorted here.
        _ => ErrorKind::Store,
    }
}

impl From<StateError> for EngineError {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_carries_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = EngineError::State(StateError::OpenDatabase {
            path: "postgres://fogbook:***@db:5432/fogbook".into(),
            source: Box::new(io),
        });
        let line = with_causes(&e);
        assert!(line.starts_with(&e.to_string()), "{line}");
        assert!(line.ends_with(": connection refused"), "{line}");
    }

    #[test]
    fn store_errors_keep_their_kind_and_source() {
        let lost = EngineError::from(StateError::LeaseLost {
            run_id: "r".into(),
            owner: "other".into(),
        });
        assert_eq!(lost.kind(), ErrorKind::Busy);
        assert_eq!(lost.to_string(), "lost the lease on run r: it is now held by other");
        assert!(matches!(lost.state(), Some(StateError::LeaseLost { .. })));

        let held = EngineError::from(StateError::LockHeld {
            key: "k".into(),
            holder: "h".into(),
            holder_status: "running".into(),
        });
        assert_eq!(held.kind(), ErrorKind::Busy);
        assert_eq!(EngineError::from(StateError::StoreClosed).kind(), ErrorKind::Store);
        assert_eq!(
            EngineError::from(StateError::UnknownRun { run_id: "x".into() }).kind(),
            ErrorKind::BadInput
        );
    }
}
