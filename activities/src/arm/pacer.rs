//! How the client waits: between retries, between polls, and when the limiter slows down.

use std::fmt;
use std::time::Duration;

use crate::BoxFuture;

/// Why the client is pausing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseReason {
    /// Back-off before retrying a transient fault (honouring `Retry-After`).
    Retry,
    /// Waiting before the next poll of a long-running operation.
    Poll,
    /// The per-subscription limiter slows down before ARM throttles.
    Limiter,
}

/// Waits for a duration. The default, [`TokioPacer`], sleeps on the tokio timer; tests use
/// one that advances the emulator's simulated clock and records each pause, so no test sleeps.
pub trait Pacer: Send + Sync + fmt::Debug {
    /// Waits `delay` for `reason`.
    fn pause(&self, reason: PauseReason, delay: Duration) -> BoxFuture<'_, ()>;
}

/// Sleeps on the tokio timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioPacer;

impl Pacer for TokioPacer {
    fn pause(&self, _reason: PauseReason, delay: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(delay))
    }
}
