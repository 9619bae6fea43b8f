use fogbook_state::StateError;

use crate::runbook::Diagnostics;

/// Errors of the engine (as opposed to a run that fails, which is a [`crate::RunOutcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The runbook or its parameters are invalid; nothing was created.
    #[error("invalid runbook or parameters")]
    Invalid(#[source] Diagnostics),
    /// Another run holds a resource this run needs.
    #[error("`{key}` is locked by run {holder} ({holder_status})")]
    Locked {
        /// The contested resource key.
        key: String,
        /// The run holding it.
        holder: String,
        /// That run's status.
        holder_status: String,
    },
    /// Another live process drives the run.
    #[error("run {run_id} is being driven by {owner} (lease valid until {expires_at})")]
    Busy {
        /// The run.
        run_id: String,
        /// Who drives it.
        owner: String,
        /// Lease expiry, RFC 3339.
        expires_at: String,
    },
    /// This process lost the run's lease while driving it (another process took it over,
    /// or it could not be renewed in time); it stopped without writing anything further.
    #[error("lost the lease on run {run_id}: it is now held by {owner}")]
    LeaseLost {
        /// The run.
        run_id: String,
        /// Who holds it now.
        owner: String,
    },
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
    /// The stored runbook of a run no longer parses (a newer format?).
    #[error("the runbook stored with run {run_id} does not parse")]
    StoredRunbook {
        /// The run.
        run_id: String,
        /// Why.
        #[source]
        source: Diagnostics,
    },
    /// The state store failed.
    #[error(transparent)]
    State(StateError),
}

impl From<StateError> for EngineError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::LockHeld {
                key,
                holder,
                holder_status,
            } => Self::Locked {
                key,
                holder,
                holder_status,
            },
            StateError::LeaseHeld {
                run_id,
                owner,
                expires_at,
            } => Self::Busy {
                run_id,
                owner,
                expires_at,
            },
            other => Self::State(other),
        }
    }
}
