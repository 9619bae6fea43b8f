//! [`CliError`]: every error a command reports, kept typed from the store to here (the
//! engine's and the store's errors are its sources, not strings), and the one place that
//! decides its exit code ([`CliError::exit_code`]) and how it is printed.

use std::sync::atomic::{AtomicBool, Ordering};

use fogbook_engine::{EngineError, ErrorKind};
use fogbook_state::StateError;

use crate::exit::Exit;
use crate::output;

/// An error that ends a command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The engine refused or failed (its source chain reaches the store's error, if any).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The command was used wrongly (arguments, a path that is not what it must be, an
    /// action refused in the run's state): bad input, said where it was found.
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do instead, when there is something to say.
        hint: Option<String>,
    },
    /// An input the command was given cannot be used (an estate or faults file, the
    /// emulator's saved state, an ARM endpoint): bad input, with its cause chain.
    #[error("{source}")]
    Input {
        /// What is wrong with it.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
        /// What to do instead.
        hint: Option<String>,
    },
    /// Another process holds what the command needs (a run's driver, the emulator address of
    /// a rehearsal): busy, with who holds it and what to do.
    #[error("{message}")]
    Busy {
        /// What is held, and by whom.
        message: String,
        /// When it is free again, and how to free it.
        hint: String,
    },
    /// The process could not start its async runtime.
    #[error("cannot start the async runtime")]
    Runtime {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<StateError> for CliError {
    /// Through [`EngineError`], which names lock and lease refusals as the engine does.
    fn from(e: StateError) -> Self {
        Self::Engine(EngineError::from(e))
    }
}

impl CliError {
    /// Bad input with a cause chain (`source`), and what to do (exit 2).
    pub(crate) fn input(source: impl std::error::Error + Send + Sync + 'static, hint: Option<&str>) -> Self {
        Self::Input {
            source: Box::new(source),
            hint: hint.map(str::to_owned),
        }
    }

    /// A usage refusal: `message` says what is wrong, `hint` what to do (exit 2).
    pub(crate) fn usage(message: impl Into<String>, hint: Option<&str>) -> Self {
        Self::Usage {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    /// The exit code of this error: the one mapping from errors to [`Exit`] (README "Exit
    /// codes", `src/exit.rs`).
    pub(crate) fn exit_code(&self) -> Exit {
        let e = match self {
            Self::Engine(e) => e,
            Self::Usage { .. } | Self::Input { .. } => return Exit::BadInput,
            Self::Busy { .. } => return Exit::Busy,
            Self::Runtime { .. } => return Exit::Internal,
        };
        // The engine classifies its errors (a store error by the `StateError` inside it).
        match e.kind() {
            ErrorKind::BadInput => Exit::BadInput,
            ErrorKind::Busy => Exit::Busy,
            ErrorKind::Store => Exit::StoreFailed,
            // `Internal`, and a kind this build does not name yet.
            _ => Exit::Internal,
        }
    }

    /// Prints the error (what happened, its causes, what to do next) and returns its exit code.
    pub(crate) fn report(&self) -> Exit {
        match self {
            Self::Usage { message, hint } => output::error(message, hint.as_deref()),
            Self::Busy { message, hint } => output::error(message, Some(hint)),
            Self::Input { source, hint } => output::error_chain(source.as_ref(), hint.as_deref()),
            Self::Engine(EngineError::Invalid(d)) => crate::input::print_diagnostics(d),
            // A store copied away after this process opened it: it stopped taking on work
            // (a worker) or driving (its lease was not renewed there).
            Self::Engine(EngineError::State(e @ StateError::StoreMoved { mark })) => output::error(
                &format!("stopped: {e}; nothing more is sent or written from this process"),
                Some(&crate::store_cmd::moved_hint(mark, crate::output::fogbook())),
            ),
            Self::Engine(EngineError::State(StateError::LockHeld {
                key,
                holder,
                holder_status,
            })) => output::error(
                &format!("`{key}` is locked by run {holder} ({holder_status}); one run at a time may touch it"),
                Some(&format!(
                    "see `{fb} status {holder}`; a failed run keeps its locks until `{fb} resume {holder} --retry-failed` or `{fb} cancel {holder}`",
                    fb = crate::output::fogbook()
                )),
            ),
            Self::Engine(EngineError::State(StateError::LeaseHeld {
                run_id,
                owner,
                expires_at,
            })) => output::error(
                &format!(
                    "run {run_id} is being driven by {owner} ({}; lease valid until {expires_at})",
                    process_of(owner)
                ),
                Some(&format!(
                    "only one process drives a run: let that one go on; if it is gone or frozen, the run can be taken over once its lease expires (`{fb} status {run_id}` then shows it stalled, and `{fb} resume {run_id}` takes it over)",
                    fb = crate::output::fogbook()
                )),
            ),
            // The renewals failed for want of the store: the hint is the store's (exit 4: this
            // process lost the lease and stopped without sending anything more).
            Self::Engine(e @ EngineError::LeaseUnrenewed { .. }) => {
                let hint = if store_is_postgres() {
                    postgres_store_hint(e)
                } else {
                    format!(
                        "the state database (--db) could not be used; fix the cause named above (permissions, disk space), then `{fb} status RUN` shows whether another process took the run over, and `{fb} resume RUN` continues it",
                        fb = crate::output::fogbook()
                    )
                };
                output::error(&e.to_string(), Some(&hint));
            }
            Self::Engine(EngineError::State(StateError::LeaseLost { run_id, owner }))
                if owner.starts_with("nobody") =>
            {
                output::error(
                    &format!(
                        "stopped driving run {run_id}: its lease expired while this process was stopped or stalled"
                    ),
                    Some(&format!(
                        "no other process took the run over, and nothing more was sent or written by this one; `{fb} resume {run_id}` continues it",
                        fb = crate::output::fogbook()
                    )),
                );
            }
            Self::Engine(EngineError::State(StateError::LeaseLost { run_id, owner })) => output::error(
                &format!("stopped driving run {run_id}: its lease is now held by {owner}"),
                Some(&format!(
                    "another process took the run over (this one stalled past its lease); nothing more was written by this process; `{fb} status {run_id}` shows who drives it",
                    fb = crate::output::fogbook()
                )),
            ),
            Self::Engine(
                e @ EngineError::TakenOver {
                    run_id, holder, status, ..
                },
            ) => {
                let fb = crate::output::fogbook();
                let next = if status.is_terminal() {
                    format!(
                        "the run has since {} there; nothing is left for this process to do (`{fb} status {run_id}` shows how it ended)",
                        status.as_str()
                    )
                } else if let Some(holder) = holder {
                    format!("{holder} drives it now: let it go on (`{fb} status {run_id}` shows where it is)")
                } else {
                    format!(
                        "nobody drives it now (status {}): `{fb} status {run_id}` shows where it is, and `{fb} resume {run_id}` continues it",
                        status.as_str()
                    )
                };
                output::error(
                    &e.to_string(),
                    Some(&format!("nothing more was sent or written by this process; {next}")),
                );
            }
            Self::Engine(EngineError::Fenced {
                run_id,
                step_id,
                message,
            }) => output::error(
                &format!("stopped driving run {run_id} at step `{step_id}`: {message}"),
                Some(&format!(
                    "nothing was sent to Azure by this process after its lease ran out; `{fb} status {run_id}` shows who drives the run, and `{fb} resume {run_id}` continues it if nobody does",
                    fb = crate::output::fogbook()
                )),
            ),
            Self::Engine(EngineError::State(StateError::UnknownRun { run_id })) => output::error(
                &format!("no run `{run_id}` in this database"),
                Some(&format!(
                    "`{fb} runs` lists the runs in this database",
                    fb = crate::output::fogbook()
                )),
            ),
            Self::Engine(EngineError::State(StateError::InvalidTransition { message })) => {
                output::error(message, None);
            }
            other => {
                let hint = (other.exit_code() == Exit::StoreFailed).then(|| {
                    let role = STORE_ROLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    if let Some(role) = role {
                        copy_store_hint(&role)
                    } else if store_is_postgres() {
                        postgres_store_hint(other)
                    } else {
                        "the state database (--db) could not be used; fix the cause named above (a file that is not a fogbook database, permissions, disk space) or pass another --db".to_owned()
                    }
                });
                output::error_chain(other, hint.as_deref());
            }
        }
        self.exit_code()
    }
}

/// Whether this process's store (`--db`, `FOGBOOK_DB`) is a PostgreSQL server: its
/// failures have other causes than a file's, so the hint for them differs.
static STORE_IS_POSTGRES: AtomicBool = AtomicBool::new(false);

/// The hint for a PostgreSQL store that failed (exit 6): a server that answered and refused
/// the login (a wrong password, user or database) is not one to wait for.
fn postgres_store_hint(err: &(dyn std::error::Error + 'static)) -> String {
    let fb = crate::output::fogbook();
    if let Some(code) = fogbook_state::pg::refused_login(err) {
        return format!(
            "the PostgreSQL server answered and refused this connection ({code}): check the user, the password and the database name in the URL (--db or FOGBOOK_DB; a password holding `@`, `:`, `/` or `%` must be percent-encoded, e.g. `@` as `%40`) and that the role may connect to that database; nothing was changed"
        );
    }
    format!(
        "the PostgreSQL state store (--db) could not be used; check the cause named above: is the server running and reachable from this host (address, port, firewall, sslmode)? if it answers slowly, raise FOGBOOK_PG_TIMEOUT (10s by default); what was committed stays: once the database answers, `{fb} runs` shows where each run is and `{fb} resume RUN` continues one"
    )
}

/// Which store `store copy` was using when it failed (its source or its target), when that
/// is not `--db`: the hint then names that store, not `--db`.
static STORE_ROLE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records that `store copy` now works on `url`, its `role` (such as "the copy's target
/// (--to / FOGBOOK_COPY_TO)"): a store failure's hint names that store.
pub(crate) fn note_copy_store(role: &str, url: &fogbook_state::pg::StoreUrl) {
    note_store(url);
    *STORE_ROLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(role.to_owned());
}

fn copy_store_hint(role: &str) -> String {
    if store_is_postgres() {
        format!(
            "{role}, a PostgreSQL database, could not be used; check the cause named above: is the server running and reachable from this host (address, port, firewall, sslmode)? are the user, password and database in the URL right? if it answers slowly, raise FOGBOOK_PG_TIMEOUT (10s by default); nothing was copied"
        )
    } else {
        format!(
            "{role}, a SQLite file, could not be used; fix the cause named above (a file that is not a fogbook database, permissions, disk space) or name another file"
        )
    }
}

/// Records which kind of store this process uses (called where `--db` is read).
pub(crate) fn note_store(url: &fogbook_state::pg::StoreUrl) {
    let postgres = matches!(url, fogbook_state::pg::StoreUrl::Postgres(_));
    STORE_IS_POSTGRES.store(postgres, Ordering::Relaxed);
}

fn store_is_postgres() -> bool {
    STORE_IS_POSTGRES.load(Ordering::Relaxed)
}

/// The process a lease owner id (`host:pid:start[:tag]`) names, in words.
pub(crate) fn process_of(owner: &str) -> String {
    let mut parts = owner.split(':');
    match (parts.next(), parts.next()) {
        (Some(host), Some(pid)) if !pid.is_empty() => format!("process {pid} on host {host}"),
        _ => format!("lease owner {owner}"),
    }
}

/// The resource key and the run holding it, when `err` is a refusal over a held lock.
pub(crate) fn held_lock(err: &EngineError) -> Option<(&str, &str)> {
    match err {
        EngineError::State(StateError::LockHeld { key, holder, .. }) => Some((key, holder)),
        _ => None,
    }
}

/// Reports `err` and returns its exit code: what every failing command site calls.
pub(crate) fn fail(err: impl Into<CliError>) -> Exit {
    err.into().report()
}
