//! Crash points for the durability tests.
//!
//! `FOGBOOK_FAILPOINTS=after-start:step-a,before-finish:step-b` makes the process SIGKILL
//! itself when it reaches that point for that step, exactly as `kill -9` would: no
//! destructor, no flush, no lease release. Unset (the normal case), a failpoint is one
//! environment lookup at startup.
//!
//! `stop-after-progress:step-a` (any point, prefixed `stop-`) instead freezes the process
//! with SIGSTOP there, as a VM pause or a suspended laptop would; it goes on when sent SIGCONT.
//!
//! `signal-after-create:SIGINT` (or `SIGTERM`) instead sends that signal right after a run
//! is created (committed, before its id is printed), as a Ctrl-C in the first milliseconds
//! would: to the process group when this process leads it, else to this process alone.
//!
//! Only a build with the feature `test-hooks` reads the variable (the tests, the chaos runner
//! and `fogbook bench` build with it); in a release build every point is a no-op.

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

/// The configured points, as `(point, step or target)`.
#[cfg(feature = "test-hooks")]
fn configured() -> &'static [(String, String)] {
    static POINTS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("FOGBOOK_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.split_once(':'))
            .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
            .collect()
    })
}

/// Without the feature `test-hooks` nothing is configured, whatever the environment says.
#[cfg(not(feature = "test-hooks"))]
fn configured() -> &'static [(String, String)] {
    &[]
}

/// Kills this process with SIGKILL when `point` is configured for `step`; stops it with
/// SIGSTOP (frozen, as a VM pause would) when `stop-POINT` is.
pub(crate) fn hit(point: Point, step: &str) {
    if configured()
        .iter()
        .any(|(p, s)| p.strip_prefix("stop-") == Some(point.name()) && s == step)
    {
        tracing::warn!(point = point.name(), step, "failpoint: freezing this process");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGSTOP);
    }
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

/// Run by `.ci/run` as `cargo nextest run -p fogbook-engine` (the engine alone, built without
/// the feature `test-hooks`; the workspace's test run builds it with the feature).
#[cfg(all(test, not(feature = "test-hooks")))]
mod tests {
    use super::*;

    /// The child: nothing is configured, and a point configured in the environment does not
    /// kill this process.
    #[test]
    fn without_test_hooks_no_failpoint_is_configured() {
        assert!(configured().is_empty(), "{:?}", configured());
        hit(Point::BeforeStart, "probe");
        hit_named("fleet-before-start", "probe");
        after_create();
    }

    /// Runs the child in a process of its own with every kind of failpoint set: a build that
    /// read the variable would kill or signal it.
    #[test]
    fn without_test_hooks_the_failpoint_variable_is_ignored() {
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "failpoint::tests::without_test_hooks_no_failpoint_is_configured",
                "--nocapture",
            ])
            .env(
                "FOGBOOK_FAILPOINTS",
                "before-start:probe,fleet-before-start:probe,signal-after-create:SIGTERM",
            )
            .output()
            .expect("the child test runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the child was stopped or failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
