//! Stopping at a safe point on SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

use crate::output;

/// Cancels `stop` on SIGTERM or SIGINT (Ctrl-C). The handlers are installed before this
/// returns, so a signal sent right after cannot kill the process half-way.
pub(crate) fn spawn_signal_handler(stop: CancellationToken, quiet: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(int) => {}
        }
        output::note(quiet, "stopping at the next safe point (the run stays resumable)…");
        stop.cancel();
    });
}
