//! Long-running operations (docs/ARM.md §4) and the step progress that lets a resumed step
//! re-attach to them.
//!
//! A 201/202 answer (or 200 with `Azure-AsyncOperation`) is followed by its
//! `Azure-AsyncOperation` URL, else its `Location` URL, else by reading the resource's
//! `provisioningState`. The operation is saved in the step progress **before the first
//! poll**; a step re-entered with a saved operation polls it and never re-sends the request.
//!
//! Final result: a PUT or PATCH ends with a GET of the resource (or the status body's
//! `resourceLocation`); a POST with a `Location` ends with a GET of that URL; a DELETE ends
//! at the terminal status. `Failed` and `Canceled` fail the step with the operation's
//! `error.code` and `error.message`.
//!
//! Progress JSON (one object per step, written with `ActivityCtx::save_progress`):
//!
//! ```json
//! { "version": 1,
//!   "ops": { "<key>": { "method": "PUT", "resource": "<resource URL>",
//!                       "via": "azure-async-operation" | "location" | "provisioning-state",
//!                       "url": "<polling URL>", "location": "<Location header, optional>",
//!                       "accepted_at": "<RFC 3339>", "request_id": "...", "correlation_id": "..." } },
//!   "intent": { ... activity-specific, e.g. a failover about to be POSTed;
//!               "state": "not_sent" when its commit failed and the request was not sent ... },
//!   "...": "other activity-specific keys" }
//! ```
//!
//! Nothing secret is ever saved: URLs, ids and states only.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::Session;
use super::client::{ArmResponse, arm_error, retry_after};
use crate::{ActivityCtx, ActivityError};

/// The state of a saved intent whose request this attempt did not send, because the intent's
/// own commit failed: a later attempt proceeds as if there were no intent.
pub(crate) const NOT_SENT: &str = "not_sent";

/// The shortest polling delay, even when the server asks for less (`retry-after-ms`).
const MIN_POLL: Duration = Duration::from_millis(50);
/// Polling delay when the server gives no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(10);

/// How long a poll waits after a status read that failed transiently (throttled, 5xx, no
/// connection) past the client's own retries, unless the server said how long.
const DEFERRED_POLL: Duration = Duration::from_secs(30);
/// Longest polling delay honoured.
const MAX_POLL: Duration = Duration::from_secs(600);

/// How an operation is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PollVia {
    AzureAsyncOperation,
    Location,
    ProvisioningState,
}

/// An accepted operation, as saved in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedOp {
    pub(crate) method: String,
    pub(crate) resource: String,
    pub(crate) via: PollVia,
    pub(crate) url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) location: Option<String>,
    pub(crate) accepted_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) correlation_id: Option<String>,
}

/// The step's progress object (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Progress(serde_json::Map<String, serde_json::Value>);

impl Progress {
    /// The saved progress of the step, or a fresh one.
    pub(crate) fn load(ctx: &ActivityCtx) -> Self {
        let mut map = match ctx.progress() {
            Some(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        map.entry("version").or_insert(serde_json::json!(1));
        Self(map)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    pub(crate) fn set(&mut self, key: &str, value: serde_json::Value) {
        self.0.insert(key.to_owned(), value);
    }

    /// The saved operation `key`.
    pub(crate) fn op(&self, key: &str) -> Option<SavedOp> {
        let op = self.0.get("ops")?.get(key)?;
        serde_json::from_value(op.clone()).ok()
    }

    fn set_op(&mut self, key: &str, op: &SavedOp) {
        let ops = self.0.entry("ops").or_insert_with(|| serde_json::json!({}));
        if !ops.is_object() {
            *ops = serde_json::json!({});
        }
        if let Some(map) = ops.as_object_mut() {
            map.insert(key.to_owned(), serde_json::to_value(op).unwrap_or_default());
        }
    }

    /// Commits the progress durably.
    pub(crate) async fn save(&self, ctx: &ActivityCtx) -> Result<(), ActivityError> {
        ctx.save_progress(serde_json::Value::Object(self.0.clone())).await
    }

    /// Commits the progress, whose `intent` announces a request about to be sent, before
    /// the request: the caller sends it only on `Ok`. When the commit fails (it may have
    /// applied all the same), the progress is committed again with the intent's `state`
    /// set to [`NOT_SENT`] (see `ActivityCtx::save_before_effect`), so a later attempt
    /// knows that nothing was sent instead of finding an intent it must treat as ambiguous.
    pub(crate) async fn save_intent(&self, ctx: &ActivityCtx) -> Result<(), ActivityError> {
        let mut unsent = self.0.clone();
        if let Some(serde_json::Value::Object(intent)) = unsent.get_mut("intent") {
            intent.insert("state".to_owned(), serde_json::json!(NOT_SENT));
        }
        ctx.save_before_effect(
            serde_json::Value::Object(self.0.clone()),
            serde_json::Value::Object(unsent),
        )
        .await
    }
}

/// Whether a status string is terminal, and how.
fn terminal(status: &str) -> Option<bool> {
    match status.to_ascii_lowercase().as_str() {
        "succeeded" => Some(true),
        "failed" | "canceled" | "cancelled" => Some(false),
        _ => None,
    }
}

fn poll_delay(r: &ArmResponse) -> Duration {
    retry_after(&r.headers)
        .unwrap_or(DEFAULT_POLL)
        .clamp(MIN_POLL, MAX_POLL)
}

fn rfc3339_now(ctx: &ActivityCtx) -> String {
    ctx.now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn operation_failed(body: &serde_json::Value, status: &str) -> ActivityError {
    let (code, message) = arm_error(StatusCode::OK, body);
    let code = if code.starts_with("Http") {
        format!("Operation{status}")
    } else {
        code
    };
    ActivityError::Failed {
        code,
        message,
        output: Some(serde_json::json!({ "operation_status": status })),
    }
}

/// Runs the mutating request `method` on `resource` (a URL of the endpoint) as operation
/// `key` of the step, or re-attaches to it when the progress already holds it, and returns
/// the final body (`Null` for a DELETE or an empty answer).
///
/// For a DELETE, 404 and 204 count as done (the resource is gone).
pub(crate) async fn run(
    s: &Session<'_>,
    progress: &mut Progress,
    key: &str,
    subscription: &str,
    method: Method,
    resource: url::Url,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ActivityError> {
    if let Some(op) = progress.op(key) {
        tracing::info!(key, via = ?op.via, "arm.lro_reattach");
        // Re-attaching after a restart: the operation may have ended long ago, so look at
        // once; the answer's `Retry-After` paces the polls after that.
        return poll(s, subscription, &op, Duration::ZERO).await;
    }
    let r = s.send_url(method.clone(), subscription, resource.clone(), body).await?;
    if method == Method::DELETE && (r.status == StatusCode::NOT_FOUND || r.status == StatusCode::NO_CONTENT) {
        return Ok(serde_json::Value::Null);
    }
    let r = r.success()?;
    let async_op = r.header("azure-asyncoperation").map(str::to_owned);
    let location = r.header("location").map(str::to_owned);
    let state = r
        .body
        .pointer("/properties/provisioningState")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let via = if let Some(url) = async_op.clone() {
        Some((PollVia::AzureAsyncOperation, url))
    } else if let (true, Some(url)) = (
        r.status == StatusCode::ACCEPTED || r.status == StatusCode::CREATED,
        location.clone(),
    ) {
        Some((PollVia::Location, url))
    } else if r.status == StatusCode::ACCEPTED
        || (state.as_deref().is_some_and(|st| terminal(st).is_none()) && method != Method::POST)
    {
        Some((PollVia::ProvisioningState, resource.to_string()))
    } else {
        None
    };
    if via.as_ref().is_some_and(|(v, _)| *v == PollVia::ProvisioningState) && method == Method::POST {
        return Err(ActivityError::failed(
            "NoPollingUrl",
            "the server accepted the action but gave neither Azure-AsyncOperation nor Location to follow",
        ));
    }
    let Some((via, url)) = via else {
        // Finished synchronously.
        return Ok(r.body);
    };
    // Validate the polling URL before saving it.
    s.client.server_url(&url)?;
    if let Some(l) = &location {
        s.client.server_url(l)?;
    }
    let op = SavedOp {
        method: method.to_string(),
        resource: resource.to_string(),
        via,
        url,
        location,
        accepted_at: rfc3339_now(s.ctx),
        request_id: r.receipt.request_id.clone(),
        correlation_id: r.receipt.correlation_id.clone(),
    };
    progress.set_op(key, &op);
    progress.save(s.ctx).await?;
    tracing::info!(key, via = ?op.via, "arm.lro_accepted");
    // The accepted response (and the read buffer its headers share) is not kept alive for
    // the whole wait.
    let first = poll_delay(&r);
    drop(r);
    poll(s, subscription, &op, first).await
}

/// Polls a saved operation until it ends; returns the final body.
pub(crate) async fn poll(
    s: &Session<'_>,
    subscription: &str,
    op: &SavedOp,
    first_delay: Duration,
) -> Result<serde_json::Value, ActivityError> {
    let resource = s.client.server_url(&op.resource)?;
    let mut url = s.client.server_url(&op.url)?;
    let via = op.via;
    let mut delay = first_delay;
    loop {
        s.pause(delay).await?;
        // A status read that fails transiently (ARM throttling us because other clients of
        // the subscription use its reads, a 5xx, a dropped connection) changes nothing in the
        // cloud: the operation goes on, so the poll waits and reads again instead of failing
        // a step that may have hours of work in flight. The step's timeout and a stop still
        // end the wait.
        let target = match via {
            PollVia::AzureAsyncOperation | PollVia::Location => url.clone(),
            PollVia::ProvisioningState => resource.clone(),
        };
        let r = match s.poll_url(subscription, target).await {
            Ok(r) => r,
            Err(e) if e.is_retryable() => {
                delay = e.retry_after().unwrap_or(DEFERRED_POLL).max(DEFAULT_POLL);
                tracing::warn!(
                    code = e.code(),
                    delay_ms = delay.as_millis() as u64,
                    "arm.poll_deferred"
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        match via {
            PollVia::AzureAsyncOperation => {
                let r = r.success()?;
                let status = r.body.get("status").and_then(|v| v.as_str()).unwrap_or("").to_owned();
                match terminal(&status) {
                    None => delay = poll_delay(&r),
                    Some(false) => {
                        s.record(&r.receipt);
                        return Err(operation_failed(&r.body, &status));
                    }
                    Some(true) => {
                        s.record(&r.receipt);
                        return finish(s, subscription, op, &resource, &r.body).await;
                    }
                }
            }
            PollVia::Location => {
                if r.status == StatusCode::ACCEPTED {
                    if let Some(next) = r.header("location") {
                        url = s.client.server_url(next)?;
                    }
                    delay = poll_delay(&r);
                    continue;
                }
                if op.method == "DELETE" && r.status == StatusCode::NOT_FOUND {
                    return Ok(serde_json::Value::Null);
                }
                let r = r.success()?;
                s.record(&r.receipt);
                return match op.method.as_str() {
                    "PUT" | "PATCH" => get_final(s, subscription, &resource).await,
                    "DELETE" => Ok(serde_json::Value::Null),
                    _ => Ok(r.body),
                };
            }
            PollVia::ProvisioningState => {
                if r.status == StatusCode::NOT_FOUND && op.method == "DELETE" {
                    return Ok(serde_json::Value::Null);
                }
                let r = r.success()?;
                let state = r
                    .body
                    .pointer("/properties/provisioningState")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                match terminal(state) {
                    Some(true) if op.method != "DELETE" => return Ok(r.body),
                    Some(false) => return Err(operation_failed(&r.body, state)),
                    _ => delay = poll_delay(&r).max(DEFAULT_POLL),
                }
            }
        }
    }
}

async fn finish(
    s: &Session<'_>,
    subscription: &str,
    op: &SavedOp,
    resource: &url::Url,
    status_body: &serde_json::Value,
) -> Result<serde_json::Value, ActivityError> {
    match op.method.as_str() {
        "PUT" | "PATCH" => {
            let target = match status_body.get("resourceLocation").and_then(|v| v.as_str()) {
                Some(l) => s.client.server_url(l)?,
                None => resource.clone(),
            };
            get_final(s, subscription, &target).await
        }
        "POST" => match &op.location {
            Some(l) => {
                let r = s.poll_url(subscription, s.client.server_url(l)?).await?;
                if r.status == StatusCode::ACCEPTED || r.status == StatusCode::NO_CONTENT {
                    return Ok(serde_json::Value::Null);
                }
                Ok(r.success()?.body)
            }
            None => Ok(status_body.get("properties").cloned().unwrap_or_default()),
        },
        _ => Ok(serde_json::Value::Null),
    }
}

async fn get_final(s: &Session<'_>, subscription: &str, url: &url::Url) -> Result<serde_json::Value, ActivityError> {
    Ok(s.poll_url(subscription, url.clone()).await?.success()?.body)
}

#[cfg(test)]
#[path = "lro_tests.rs"]
mod tests;
