//! The `wait` activity: a durable sleep whose wake-up time survives a restart.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{DurationText, parse_rfc3339, rfc3339};
use crate::{ActivityCtx, ActivityError};

/// `wait`: a durable sleep. The wake-up time is saved before sleeping, so a restart
/// continues for the time that remains instead of starting the wait again.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Wait {
    /// How long to wait, e.g. `10s`, `15m`.
    duration: DurationText,
}

impl Wait {
    pub(crate) async fn run(self, ctx: &ActivityCtx) -> Result<serde_json::Value, ActivityError> {
        let progress = ctx.progress();
        let wake_at = match parse_rfc3339(progress.as_ref().and_then(|p| p.get("wake_at"))) {
            Some(t) => t,
            None => {
                let t = ctx.now() + self.duration.0;
                ctx.save_progress(json!({ "wake_at": rfc3339(t) })).await?;
                t
            }
        };
        ctx.sleep_until(wake_at).await?;
        Ok(json!({ "woke_at": rfc3339(ctx.now()), "wake_at": rfc3339(wake_at) }))
    }
}
