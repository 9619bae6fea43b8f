//! Progress on stderr: one line per lifecycle event, and on a terminal a ticking line
//! during long steps (step, elapsed time, open window age). Quiet in pipes except for the
//! lifecycle lines, and silent with `-q`.

#![allow(clippy::print_stderr)]

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use fogbook_engine::{Observer, RunOutcome};
use fogbook_state::Millis;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tokio_util::sync::CancellationToken;

fn human(ms: Millis) -> String {
    let d = Duration::from_millis(ms.max(0).unsigned_abs());
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    fogbook_activities::duration::format(Duration::from_secs(d.as_secs()))
}

/// `text` in `style` (the codes are stripped on the way out when colour is off: `--color`,
/// `NO_COLOR`, not a terminal).
fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

const DONE: Style = AnsiColor::Green.on_default();
const FAILED: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default();
const STARTED: Style = Style::new().bold();
const QUIET: Style = Style::new().dimmed();

#[derive(Default)]
struct Live {
    step: Option<(String, Instant)>,
    windows: Vec<(String, Instant)>,
    /// The ticking line of the step that runs (indicatif draws it only on a terminal).
    bar: Option<ProgressBar>,
    /// Whether a driver asked for the ticking line ([`Progress::spawn_ticker`]).
    ticking: bool,
}

impl Live {
    /// The ticking line's text: step, elapsed time, the age of each open window.
    fn text(&self) -> String {
        let Some((step, since)) = &self.step else {
            return String::new();
        };
        let mut text = format!("{step}: {} elapsed", human(ms(since.elapsed())));
        for (kind, opened) in &self.windows {
            text.push_str(&format!(" · {kind} window open {}", human(ms(opened.elapsed()))));
        }
        text
    }
}

/// Prints progress to stderr: every lifecycle event as a line (kept in pipes and logs), and
/// on a terminal a ticking line under them while a step runs, drawn by indicatif. indicatif
/// draws only the live line; the lines themselves are the checkpoints an operator reads
/// back, so they are written whether or not a terminal is there.
pub(crate) struct Progress {
    quiet: bool,
    live: Arc<Mutex<Live>>,
    /// The run a `--wait` driver holds at its approval steps: they print how to decide.
    waits_for_approval_of: Mutex<Option<String>>,
    /// The run whose lines these are, named on each of them (a worker drives several at
    /// once); `None`: the process drives one run.
    run: Option<String>,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Arc<Self> {
        Arc::new(Self {
            quiet,
            live: Arc::new(Mutex::new(Live::default())),
            waits_for_approval_of: Mutex::new(None),
            run: None,
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
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let write = || {
            let _ = match &self.run {
                Some(run) => writeln!(anstream::stderr().lock(), "[{run}] {text}"),
                None => writeln!(anstream::stderr().lock(), "{text}"),
            };
        };
        match &live.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Shows the ticking line while a step runs (on a terminal, not with `-q`) until `stop`.
    pub(crate) fn spawn_ticker(self: &Arc<Self>, stop: CancellationToken) {
        if self.quiet {
            return;
        }
        self.live.lock().unwrap_or_else(PoisonError::into_inner).ticking = true;
        let me = self.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            let mut live = me.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.ticking = false;
            if let Some(bar) = live.bar.take() {
                bar.finish_and_clear();
            }
        });
    }

    /// Starts the ticking line of the step that just started.
    fn start_bar(&self, live: &mut Live) {
        if let Some(old) = live.bar.take() {
            old.finish_and_clear();
        }
        if !live.ticking {
            return;
        }
        let shared = self.live.clone();
        let style = ProgressStyle::with_template("  {spinner} {live}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key("live", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                // The line is drawn from indicatif's own thread: never while `line` holds the
                // lock (try_lock), so drawing cannot wait on printing.
                if let Ok(live) = shared.try_lock() {
                    let _ = w.write_str(&live.text());
                }
            });
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
        bar.enable_steady_tick(Duration::from_secs(1));
        live.bar = Some(bar);
    }

    /// Ends the ticking line of the step that ended.
    fn stop_bar(live: &mut Live) {
        live.step = None;
        if let Some(bar) = live.bar.take() {
            bar.finish_and_clear();
        }
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
        self.line(&format!("{} {step} [{uses}]{how}", paint(STARTED, "▶")));
        let waiting = self
            .waits_for_approval_of
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let (Some(run), "approval") = (waiting, uses) {
            self.line(&format!(
                "  waiting here for a decision: {fb} approve {run} {step} --by NAME, or {fb} reject {run} {step} --by NAME --reason TEXT", fb = crate::output::fogbook()
            ));
        }
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.step = Some((step.to_owned(), Instant::now()));
        self.start_bar(&mut live);
    }

    fn step_completed(&self, step: &str, elapsed_ms: Millis) {
        Self::stop_bar(&mut self.live.lock().unwrap_or_else(PoisonError::into_inner));
        self.line(&paint(DONE, &format!("✓ {step} completed ({})", human(elapsed_ms))));
    }

    fn step_skipped(&self, step: &str) {
        self.line(&paint(QUIET, &format!("↷ {step} skipped (its `when` is false)")));
    }

    fn retry_scheduled(&self, step: &str, attempt: u32, error: &str, delay_ms: Millis) {
        self.line(&paint(
            WARN,
            &format!(
                "↻ {step} attempt {attempt} failed: {error}; retrying in {}",
                human(delay_ms)
            ),
        ));
    }

    fn step_failed(&self, step: &str, error: &str) {
        Self::stop_bar(&mut self.live.lock().unwrap_or_else(PoisonError::into_inner));
        // The code only: the message is printed once, in the run's final line.
        let code = error.split_once(':').map_or(error, |(code, _)| code);
        self.line(&paint(FAILED, &format!("✗ {step} failed ({code})")));
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
        self.line(&paint(WARN, &format!("! {kind} window {verb} {step}")));
    }

    fn window_limit_exceeded(&self, kind: &str, age_ms: Millis, limit: &str) {
        self.line(&paint(
            FAILED,
            &format!("! {kind} window has been open {} (limit {limit})", human(age_ms)),
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

    fn for_run(&self, run_id: &str) -> Option<Arc<dyn Observer>> {
        Some(Arc::new(Self {
            quiet: self.quiet,
            live: self.live.clone(),
            waits_for_approval_of: Mutex::new(None),
            run: Some(run_id.to_owned()),
        }))
    }

    fn run_driven(&self, run_id: &str, outcome: &RunOutcome) {
        let (style, what) = match outcome {
            RunOutcome::Succeeded => (DONE, "succeeded".to_owned()),
            RunOutcome::Failed { step, code, .. } => (FAILED, format!("failed at step {step} ({code})")),
            RunOutcome::Waiting { step, .. } => (QUIET, format!("waits for a decision at step {step}")),
            RunOutcome::OutsideWindow { step, window } => {
                (QUIET, format!("waits before step {step} for its window ({window})"))
            }
            RunOutcome::Interrupted => (QUIET, "stopped at a safe point (resumable)".to_owned()),
            RunOutcome::Cancelled => (WARN, "cancelled".to_owned()),
        };
        // A run's own observer names it at the start of the line already.
        let run = if self.run.is_some() {
            String::new()
        } else {
            format!(" {run_id}")
        };
        self.line(&paint(style, &format!("■ run{run} {what}")));
    }

    fn run_left_to(&self, run_id: &str, owner: &str) {
        self.line(&format!(
            "  run {run_id} is driven by {owner}, who took its lease first"
        ));
    }
}
