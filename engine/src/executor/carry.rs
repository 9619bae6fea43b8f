//! The carry: ends of steps whose effects are over, committed with the next transition.

use fogbook_state::{Millis, StateError, StepFinish, StepStart, WindowKind};

use super::driver::Driver;
use crate::EngineError;
use crate::failpoint::{self, Point};

/// A step end to show once it is committed.
pub(super) enum Shown {
    Completed {
        step: String,
        elapsed: Millis,
        closes: Vec<WindowKind>,
    },
    Skipped(String),
}

impl Driver<'_> {
    /// Takes the carry out, to commit it.
    pub(super) fn take_carry(&self) -> Vec<StepFinish> {
        std::mem::take(&mut *self.carry.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Adds the end of an attempt whose effects are over to the carry.
    pub(super) fn carry_end(&self, finish: StepFinish) {
        self.carry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(finish);
    }

    /// Shows `end` once the carry is committed.
    pub(super) fn show_after_commit(&self, end: Shown) {
        self.shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(end);
    }

    /// Shows the ends that were just committed.
    pub(super) fn show_committed(&self) {
        let shown = std::mem::take(&mut *self.shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for end in shown {
            match end {
                Shown::Completed { step, elapsed, closes } => {
                    self.engine.observer.step_completed(&step, elapsed);
                    for kind in closes {
                        self.engine.observer.window(kind.as_str(), false, &step);
                    }
                }
                Shown::Skipped(step) => self.engine.observer.step_skipped(&step),
            }
        }
    }

    /// Commits the carry together with `finish` (if any) and `start` (if any).
    pub(super) async fn advance(
        &self,
        finish: Option<StepFinish>,
        start: Option<StepStart>,
    ) -> Result<(), EngineError> {
        let mut finished = self.take_carry();
        finished.extend(finish);
        if finished.is_empty() && start.is_none() {
            return Ok(());
        }
        let ended: Vec<String> = finished.iter().map(|f| f.step_id.clone()).collect();
        let result = self
            .engine
            .store
            .advance(self.run_id, self.owner(), finished, start)
            .await;
        if matches!(
            result,
            Ok(()) | Err(StateError::CancelRequested { .. } | StateError::TrailDisagrees { .. })
        ) {
            self.show_committed();
            for sid in &ended {
                failpoint::hit(Point::AfterFinish, sid);
            }
        }
        Ok(result?)
    }

    /// Commits the carry, if any, on its own.
    pub(super) async fn flush(&self) -> Result<(), EngineError> {
        self.advance(None, None).await
    }
}
