//! Crash points for the durability tests.
//!
//! `FOGBOOK_FAILPOINTS=after-start:step-a,before-finish:step-b` makes the process SIGKILL
//! itself when it reaches that point for that step, exactly as `kill -9` would: no
//! destructor, no flush, no lease release. Unset (the normal case), a failpoint is one
//! environment lookup at startup.
//!
//! `signal-after-create:SIGINT` (or `SIGTERM`) instead sends that signal right after a run
//! is created (committed, before its id is printed), as a Ctrl-C in the first milliseconds
//! would: to the process group when this process leads it, else to this process alone.

use std::sync::OnceLock;

/// Where a step can be interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Point {
    /// Before the start of an attempt is committed.
    BeforeStart,
    /// After the start is committed, before the activity runs.
    AfterStart,
    /// Right after the activity saved progress.
    AfterProgress,
    /// After the activity returned, before its outcome is committed.
    BeforeFinish,
    /// After the outcome is committed.
    AfterFinish,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Self::BeforeStart => "before-start",
            Self::AfterStart => "after-start",
            Self::AfterProgress => "after-progress",
            Self::BeforeFinish => "before-finish",
            Self::AfterFinish => "after-finish",
        }
    }
}

fn configured() -> &'static Vec<(String, String)> {
    static POINTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("FOGBOOK_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.split_once(':'))
            .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
            .collect()
    })
}

/// Kills this process with SIGKILL when `point` is configured for `step`.
pub(crate) fn hit(point: Point, step: &str) {
    if configured().iter().any(|(p, s)| p == point.name() && s == step) {
        tracing::warn!(point = point.name(), step, "failpoint: killing this process");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught; this line is never reached.
        std::process::abort();
    }
}

/// Sends the configured `signal-after-create` signal (see the module docs), if any.
pub(crate) fn after_create() {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::{Pid, getpgrp};
    let Some(signal) = configured()
        .iter()
        .filter(|(p, _)| p == "signal-after-create")
        .find_map(|(_, s)| s.parse::<Signal>().ok())
    else {
        return;
    };
    tracing::warn!(%signal, "failpoint: signalling this process right after the run's creation");
    let _ = if getpgrp() == Pid::this() {
        killpg(getpgrp(), signal)
    } else {
        kill(Pid::this(), signal)
    };
}

/// Kills this process with SIGKILL when `name:at` is configured (the fleet driver's points:
/// `fleet-before-start`, `fleet-after-start`, `fleet-after-finish`, each with a target name).
pub(crate) fn hit_named(name: &str, at: &str) {
    if configured().iter().any(|(p, s)| p == name && s == at) {
        tracing::warn!(point = name, at, "failpoint: killing this process");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}
