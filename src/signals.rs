//! Stopping at a safe point on SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

use crate::output;

/// Cancels `stop` on SIGTERM or SIGINT (Ctrl-C). The handlers are installed before this
/// returns, so a signal sent right after cannot kill the process half-way.
pub(crate) fn spawn_signal_handler(stop: CancellationToken, quiet: bool) {
    spawn_signal_handler_saying(
        stop,
        quiet,
        || "stopping at the next safe point (the run stays resumable)…",
    );
}

/// As [`spawn_signal_handler`], saying `say()` (asked when the signal arrives: e.g. a
/// worker still waiting for its database drives no run) instead of the driver's note.
pub(crate) fn spawn_signal_handler_saying(
    stop: CancellationToken,
    quiet: bool,
    say: impl Fn() -> &'static str + Send + 'static,
) {
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
        output::note(quiet, say());
        stop.cancel();
    });
}
