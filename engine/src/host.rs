//! The engine's side of [`StepHost`]: progress and approvals go to the store.

use std::sync::Arc;

use fogbook_activities::{ActivityError, ApprovalRecord, BoxFuture, StepHost};
use fogbook_state::{ApprovalRow, Store, format_ms};

use crate::clock::{Clock, to_datetime};
use crate::failpoint::{self, Point};
use crate::lease::LeaseClock;

pub(crate) struct Host {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) run_id: String,
    pub(crate) step_id: String,
    pub(crate) attempt: u32,
    pub(crate) owner: String,
    /// The driver's lease deadline, checked before every cloud request.
    pub(crate) lease: Option<Arc<LeaseClock>>,
}

fn record(row: ApprovalRow) -> ApprovalRecord {
    ApprovalRecord {
        by: row.by,
        comment: row.comment,
        at: format_ms(row.at),
        auto: row.auto,
    }
}

impl StepHost for Host {
    fn save_progress(&self, progress: serde_json::Value) -> BoxFuture<'_, Result<(), ActivityError>> {
        Box::pin(async move {
            self.store
                .save_progress(
                    &self.run_id,
                    &self.owner,
                    &self.step_id,
                    self.attempt,
                    // Saved progress holds no secret the process knows.
                    fogbook_activities::secrets::redact_json(progress),
                    self.clock.now_ms(),
                )
                .await
                .map_err(ActivityError::store)?;
            failpoint::hit(Point::AfterProgress, &self.step_id);
            Ok(())
        })
    }

    fn approval(&self) -> BoxFuture<'_, Result<Option<ApprovalRecord>, ActivityError>> {
        Box::pin(async move {
            self.store
                .approval(&self.run_id, &self.step_id)
                .await
                .map(|r| r.map(record))
                .map_err(ActivityError::store)
        })
    }

    fn auto_approve(&self) -> BoxFuture<'_, Result<ApprovalRecord, ActivityError>> {
        Box::pin(async move {
            self.store
                .approve(
                    &self.run_id,
                    &self.step_id,
                    "auto-approve",
                    None,
                    true,
                    self.clock.now_ms(),
                )
                .await
                .map(record)
                .map_err(ActivityError::store)
        })
    }

    fn now(&self) -> time::OffsetDateTime {
        to_datetime(self.clock.now_ms())
    }

    fn fence(&self) -> BoxFuture<'_, Result<(), ActivityError>> {
        Box::pin(async move {
            match &self.lease {
                Some(lease) => lease.fence(&self.step_id).await,
                None => Ok(()),
            }
        })
    }
}
