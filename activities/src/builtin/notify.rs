//! The `notify` activity, and the webhook POST the engine's own events share with it.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::{ActivityCtx, ActivityError, Env};

/// `notify`: POSTs a JSON event to a webhook. A 5xx, 429 or connection error is transient
/// (retried by the step's policy); another 4xx fails the step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Notify {
    /// The webhook URL (http or https).
    url: String,
    /// The event name put in the body.
    #[serde(default = "default_event")]
    event: String,
    /// Free JSON put in the body as `data`.
    #[serde(default)]
    data: serde_json::Value,
}

fn default_event() -> String {
    "notify".to_owned()
}

impl Notify {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        let body = json!({
            "event": self.event,
            "run_id": ctx.run_id(),
            "step_id": ctx.step_id(),
            "data": self.data,
        });
        // Sent only while the driver holds the run's lease, as a cloud request is.
        ctx.fence().await?;
        let status = post_json(env, &self.url, &body).await?;
        Ok(json!({ "status": status }))
    }
}

/// POSTs `body` to `url` and classifies the answer; shared with the engine's own
/// notifications (windows, limits), which go through [`crate::execute`]'s `notify` too.
pub(crate) async fn post_json(_env: &Env, url: &str, body: &serde_json::Value) -> Result<u16, ActivityError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ActivityError::invalid(format!(
            "webhook url `{url}` must start with http:// or https://"
        )));
    }
    let response = crate::arm::http::webhooks()
        .post(url)
        .timeout(std::time::Duration::from_secs(30))
        .json(body)
        .send()
        .await
        .map_err(|e| ActivityError::Transient {
            code: "WebhookUnreachable".to_owned(),
            message: format!("could not deliver to webhook: {e}"),
            retry_after: None,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Err(ActivityError::Transient {
            code: format!("Http{}", status.as_u16()),
            message: format!("webhook answered {status}"),
            retry_after,
        })
    } else {
        Err(ActivityError::failed(
            format!("Http{}", status.as_u16()),
            format!("webhook answered {status}"),
        ))
    }
}
