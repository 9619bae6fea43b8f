//! How an engine or store error is reported and which exit code it gives.

use fogbook_engine::EngineError;
use fogbook_state::StateError;

use crate::exit::Exit;
use crate::input::print_diagnostics;
use crate::output;

pub(crate) fn engine_error(e: &EngineError) -> Exit {
    match e {
        EngineError::Invalid(d) => {
            print_diagnostics(d);
            Exit::BadInput
        }
        EngineError::Locked {
            key,
            holder,
            holder_status,
        } => {
            output::error(
                &format!("`{key}` is locked by run {holder} ({holder_status}); one run at a time may touch it"),
                Some(&format!(
                    "see `fogbook status {holder}`; a failed run keeps its locks until `fogbook resume {holder} --retry-failed` or `fogbook cancel {holder}`"
                )),
            );
            Exit::Busy
        }
        EngineError::Busy {
            run_id,
            owner,
            expires_at,
        } => {
            output::error(
                &format!("run {run_id} is being driven by {owner} (lease valid until {expires_at})"),
                Some(
                    "only one process drives a run; another may take over once that lease expires or its process is gone",
                ),
            );
            Exit::Busy
        }
        EngineError::LeaseLost { run_id, owner } => {
            output::error(
                &format!("stopped driving run {run_id}: its lease is now held by {owner}"),
                Some(
                    "another process took the run over (this one stalled past its lease); nothing more was written by this process",
                ),
            );
            Exit::Busy
        }
        EngineError::Fenced {
            run_id,
            step_id,
            message,
        } => {
            output::error(
                &format!("stopped driving run {run_id} at step `{step_id}`: {message}"),
                Some(&format!(
                    "nothing was sent to Azure by this process after its lease ran out; `fogbook status {run_id}` shows who drives the run, and `fogbook resume {run_id}` continues it if nobody does"
                )),
            );
            Exit::Busy
        }
        EngineError::State(StateError::UnknownRun { run_id }) => {
            output::error(
                &format!("no run `{run_id}` in this database"),
                Some("`fogbook runs` lists the runs"),
            );
            Exit::BadInput
        }
        EngineError::State(StateError::InvalidTransition { message }) => {
            output::error(message, None);
            Exit::BadInput
        }
        other => {
            output::error_chain(other, None);
            Exit::BadInput
        }
    }
}
