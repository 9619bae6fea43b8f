//! Opening the database for a long-lived process (`fogbook worker`) that waits for a
//! PostgreSQL server that does not answer yet (restarting, failing over, the host's network
//! coming up) instead of exiting: a worker started with its database is the usual case under
//! a service manager, which should not need to restart it in a loop.

use std::time::Duration;

use fogbook_state::pg::{PgError, StoreUrl};
use fogbook_state::{StateError, Store};
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

/// The first pause between two tries; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Opens (creating when missing) the database `--db` names. A PostgreSQL server that
/// refuses connections or is starting up or shutting down, or whose connection breaks
/// between the login and the schema's first read ([`PgError::is_transient`]), or that
/// does not answer within `connect_timeout`, is waited for: one line on stderr says so,
/// then it is tried again with a back-off (250ms doubling up to 5s) until it answers.
/// `stop` (SIGTERM, Ctrl-C) ends the wait with exit 0. Anything else (a bad URL, a refused
/// login, a TLS mismatch, a newer schema) fails at once, as for any command (exit 6).
pub(crate) async fn open_or_wait(cli: &Cli, stop: &CancellationToken) -> Result<Store, Exit> {
    let url = crate::database::store_url(cli)?;
    if !matches!(url, StoreUrl::Postgres(_)) {
        return crate::database::open_or_create(cli);
    }
    let mut pause = FIRST_PAUSE;
    let mut waiting = false;
    loop {
        let target = url.clone();
        let opened = tokio::task::spawn_blocking(move || Store::open_url(&target))
            .await
            .unwrap_or(Err(StateError::StoreClosed));
        match opened {
            Ok(store) => {
                // A store copied elsewhere drives nothing (`store copy`), as `open_existing`.
                crate::store_cmd::refuse_moved(cli, &store)?;
                if waiting {
                    output::always(&format!("the database at {url} answers: the worker starts"));
                }
                return Ok(store);
            }
            Err(e) if unreachable(&e) => {
                if !waiting {
                    output::always(&format!(
                        "the database at {url} does not answer yet ({}): the worker waits for it, trying again \
                         every {}s at most until it answers (Ctrl-C or SIGTERM stops it; if the host or port in \
                         the URL is wrong, stop it and fix --db or FOGBOOK_DB)",
                        causes(&e),
                        MAX_PAUSE.as_secs()
                    ));
                    waiting = true;
                }
                tracing::debug!(error = %causes(&e), pause_ms = pause.as_millis(), "store.unreachable");
                tokio::select! {
                    () = stop.cancelled() => return Err(Exit::Success),
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) => return Err(fail(e)),
        }
    }
}

/// Whether `e` says the server is not reachable now, as opposed to a connection it refuses.
fn unreachable(e: &StateError) -> bool {
    match e {
        StateError::Postgres(pg) => pg.is_transient() || matches!(pg, PgError::ConnectStalled { .. }),
        _ => false,
    }
}

/// `e` and its causes on one line.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
