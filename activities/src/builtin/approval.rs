//! The `approval` activity: a step that waits for an operator's `fogbook approve`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{DurationText, parse_rfc3339, rfc3339};
use crate::{ActivityCtx, ActivityError};

/// How often a blocking approval step looks for `fogbook approve` in the store.
const APPROVAL_POLL: Duration = Duration::from_millis(500);

/// `approval`: waits until an operator runs `fogbook approve RUN STEP --by NAME`, or until
/// `timeout` (stored, so it survives restarts). With `--auto-approve` the step passes at
/// once and the audit trail says it was automatic.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Approval {
    /// What the operator is asked to confirm.
    message: String,
    /// Fail the step when nobody approved within this time.
    #[serde(default)]
    timeout: Option<DurationText>,
    /// Only these names may approve (`fogbook approve` refuses any other).
    #[serde(default)]
    #[allow(dead_code)] // Checked by `fogbook approve` against the pinned runbook.
    approvers: Vec<String>,
    /// The person who started the run may not approve it.
    #[serde(default)]
    #[allow(dead_code)] // Checked by `fogbook approve` against the run's starter.
    distinct_from_starter: bool,
}

impl Approval {
    pub(crate) async fn run(self, ctx: &ActivityCtx) -> Result<serde_json::Value, ActivityError> {
        let progress = ctx.progress();
        let expires_at = match progress.as_ref() {
            Some(p) => parse_rfc3339(p.get("expires_at")),
            None => {
                let expires_at = self.timeout.map(|t| ctx.now() + t.0);
                let mut p = json!({ "requested_at": rfc3339(ctx.now()), "message": self.message });
                if let Some(t) = expires_at {
                    p["expires_at"] = json!(rfc3339(t));
                }
                ctx.save_progress(p).await?;
                expires_at
            }
        };
        loop {
            if let Some(record) = ctx.host().approval().await? {
                return Ok(serde_json::to_value(record).unwrap_or_default());
            }
            if let Some(t) = expires_at
                && ctx.now() >= t
            {
                return Err(ActivityError::failed(
                    "ApprovalTimedOut",
                    format!("nobody approved before {}", rfc3339(t)),
                ));
            }
            if ctx.auto_approve() {
                let record = ctx.host().auto_approve().await?;
                return Ok(serde_json::to_value(record).unwrap_or_default());
            }
            if !ctx.wait_for_approval() {
                return Err(ActivityError::AwaitingApproval { message: self.message });
            }
            ctx.sleep(APPROVAL_POLL).await?;
        }
    }
}
