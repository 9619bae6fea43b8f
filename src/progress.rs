//! Progress on stderr: one line per lifecycle event, and on a terminal a ticking line
//! during long steps (step, elapsed time, open window age). Quiet in pipes except for the
//! lifecycle lines, and silent with `-q`.

#![allow(clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fogbook_engine::Observer;
use fogbook_state::Millis;
use tokio_util::sync::CancellationToken;

fn human(ms: Millis) -> String {
    let d = Duration::from_millis(ms.max(0).unsigned_abs());
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    fogbook_activities::duration::format(Duration::from_secs(d.as_secs()))
}

#[derive(Default)]
struct Live {
    step: Option<(String, Instant)>,
    windows: Vec<(String, Instant)>,
    ticking: bool,
}

/// Prints progress to stderr.
pub(crate) struct Progress {
    quiet: bool,
    tty: bool,
    live: Mutex<Live>,
    /// The run a `--wait` driver holds at its approval steps: they print how to decide.
    waits_for_approval_of: Mutex<Option<String>>,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Arc<Self> {
        Arc::new(Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
            live: Mutex::new(Live::default()),
            waits_for_approval_of: Mutex::new(None),
        })
    }

    /// This process waits at the approval steps of `run_id` (`--wait`): say so when one starts.
    pub(crate) fn wait_at_approvals(&self, run_id: &str) {
        *self
            .waits_for_approval_of
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(run_id.to_owned());
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let mut err = std::io::stderr().lock();
        if live.ticking {
            let _ = write!(err, "\r\x1b[2K");
            live.ticking = false;
        }
        let _ = writeln!(err, "{text}");
    }

    /// Redraws the ticking line every second on a terminal until `stop`.
    pub(crate) fn spawn_ticker(self: &Arc<Self>, stop: CancellationToken) {
        if self.quiet || !self.tty {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return,
                }
                let mut live = me.live.lock().unwrap_or_else(PoisonError::into_inner);
                let Some((step, since)) = live.step.clone() else {
                    continue;
                };
                let mut text = format!("  … {step}: {} elapsed", human(ms(since.elapsed())));
                for (kind, opened) in &live.windows {
                    text.push_str(&format!(" · {kind} window open {}", human(ms(opened.elapsed()))));
                }
                let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{text}");
                live.ticking = true;
            }
        });
    }
}

fn ms(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Observer for Progress {
    fn step_started(&self, step: &str, uses: &str, attempt: u32, reentered: bool) {
        let how = if reentered {
            format!(" (re-entered attempt {attempt} after a restart)")
        } else if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        };
        self.line(&format!("▶ {step} [{uses}]{how}"));
        let waiting = self
            .waits_for_approval_of
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let (Some(run), "approval") = (waiting, uses) {
            self.line(&format!(
                "  waiting here for a decision: fogbook approve {run} {step} --by NAME, or fogbook reject {run} {step} --by NAME --reason TEXT"
            ));
        }
        self.live.lock().unwrap_or_else(PoisonError::into_inner).step = Some((step.to_owned(), Instant::now()));
    }

    fn step_completed(&self, step: &str, elapsed_ms: Millis) {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).step = None;
        self.line(&format!("✓ {step} completed ({})", human(elapsed_ms)));
    }

    fn step_skipped(&self, step: &str) {
        self.line(&format!("↷ {step} skipped (its `when` is false)"));
    }

    fn retry_scheduled(&self, step: &str, attempt: u32, error: &str, delay_ms: Millis) {
        self.line(&format!(
            "↻ {step} attempt {attempt} failed: {error}; retrying in {}",
            human(delay_ms)
        ));
    }

    fn step_failed(&self, step: &str, error: &str) {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).step = None;
        // The code only: the message is printed once, in the run's final line.
        let code = error.split_once(':').map_or(error, |(code, _)| code);
        self.line(&format!("✗ {step} failed ({code})"));
    }

    fn window(&self, kind: &str, opened: bool, step: &str) {
        {
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            if opened {
                live.windows.push((kind.to_owned(), Instant::now()));
            } else {
                live.windows.retain(|(k, _)| k != kind);
            }
        }
        let verb = if opened { "opened by" } else { "closed by" };
        self.line(&format!("! {kind} window {verb} {step}"));
    }

    fn window_limit_exceeded(&self, kind: &str, age_ms: Millis, limit: &str) {
        self.line(&format!(
            "! {kind} window has been open {} (limit {limit})",
            human(age_ms)
        ));
    }

    fn took_over(&self, from: &str) {
        self.line(&format!("took the run over from {from}"));
    }

    fn runbook_file_changed(&self, path: &str) {
        // Always shown: the operator may believe an edit is in effect.
        eprintln!(
            "warning: {path} changed since this run started; the run continues with the runbook text it started with"
        );
    }

    fn schedule_fired(&self, schedule: &str, fire_at: Millis, run_id: &str, runbook: &str) {
        self.line(&format!(
            "⏰ schedule {schedule}: fired {} as run {run_id} (runbook {runbook})",
            fogbook_state::format_ms(fire_at)
        ));
    }

    fn schedule_skipped(&self, schedule: &str, fire_at: Millis, reason: &str) {
        self.line(&format!(
            "⏰ schedule {schedule}: skipped fire time {}: {reason}",
            fogbook_state::format_ms(fire_at)
        ));
    }

    fn schedule_queued(&self, schedule: &str, fire_at: Millis) {
        self.line(&format!(
            "⏰ schedule {schedule}: queued fire time {} behind its unfinished run",
            fogbook_state::format_ms(fire_at)
        ));
    }

    fn run_picked_up(&self, run_id: &str, runbook: &str, schedule: Option<&str>) {
        let from = schedule.map(|s| format!(", schedule {s}")).unwrap_or_default();
        self.line(&format!("→ driving run {run_id} (runbook {runbook}{from})"));
    }

    fn run_left_to(&self, run_id: &str, owner: &str) {
        self.line(&format!(
            "  run {run_id} is driven by {owner}, who took its lease first"
        ));
    }
}
