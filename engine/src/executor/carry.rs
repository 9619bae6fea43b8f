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
    pub(super) fn carried(&self) -> Vec<StepFinish> {
        std::mem::take(&mut *self.carry.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub(super) fn defer(&self, finish: StepFinish) {
        self.carry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(finish);
    }

    /// Shows `end` once the carried ends are committed.
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

    /// Commits the carried ends together with `finish` (if any) and `start` (if any).
    pub(super) async fn advance(
        &self,
        finish: Option<StepFinish>,
        start: Option<StepStart>,
    ) -> Result<(), EngineError> {
        let mut finished = self.carried();
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

    /// Commits the carried ends, if any, on their own.
    pub(super) async fn flush(&self) -> Result<(), EngineError> {
        self.advance(None, None).await
    }
}
