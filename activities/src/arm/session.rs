//! [`Session`]: the ARM client as one step attempt uses it — with the step's context for
//! cancellable waits and durable progress, and a record of the correlation ids of the
//! requests it made (for the step output).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::client::{ArmClient, ArmRequest, ArmResponse, Receipt, Replay};
use super::limiter::Priority;
use super::pacer::PauseReason;
use crate::{ActivityCtx, ActivityError};

/// The client, the step context, and the receipts of the requests made so far.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    pub(crate) client: &'a ArmClient,
    pub(crate) ctx: &'a ActivityCtx,
    /// One `x-ms-correlation-request-id` for every request of this attempt.
    pub(crate) correlation_id: String,
    receipts: Mutex<Vec<Receipt>>,
    /// Whether the last POST was certainly refused (a 4xx answer, or not processed).
    post_refused: Mutex<Option<bool>>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(client: &'a ArmClient, ctx: &'a ActivityCtx) -> Self {
        Self {
            client,
            ctx,
            correlation_id: uuid::Uuid::now_v7().to_string(),
            receipts: Mutex::new(Vec::new()),
            post_refused: Mutex::new(None),
        }
    }

    /// The receipts of the mutating requests and operation polls that ended them.
    pub(crate) fn receipts(&self) -> Vec<Receipt> {
        self.receipts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn record(&self, receipt: &Receipt) {
        self.receipts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(receipt.clone());
    }

    /// Whether the last POST of this session was certainly refused by the server (so it
    /// changed nothing): a 4xx answer, a throttled request, or no connection.
    pub(crate) fn post_refused(&self) -> bool {
        self.post_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or(false)
    }

    /// Waits `delay` through the client's pacer; a shutdown ends the wait with
    /// [`ActivityError::Interrupted`].
    pub(crate) async fn pause(&self, delay: Duration) -> Result<(), ActivityError> {
        if self.ctx.is_cancelled() {
            return Err(ActivityError::Interrupted);
        }
        tokio::select! {
            () = self.client.pacer().pause(PauseReason::Poll, delay) => Ok(()),
            r = self.ctx.sleep(Duration::from_secs(365 * 86_400)) => r.and(Err(ActivityError::Interrupted)),
        }
    }

    fn request(
        &self,
        method: Method,
        url: url::Url,
        subscription: &str,
        body: Option<serde_json::Value>,
        priority: Priority,
    ) -> ArmRequest {
        let replay = if method == Method::POST {
            Replay::Unsafe
        } else {
            Replay::Safe
        };
        ArmRequest {
            method,
            url,
            body,
            subscription: subscription.to_owned(),
            replay,
            correlation_id: Some(self.correlation_id.clone()),
            priority,
        }
    }

    /// GETs a URL that polls an operation in flight (or reads its result): the most urgent
    /// class of the subscription's budget.
    pub(crate) async fn poll_url(&self, subscription: &str, url: url::Url) -> Result<ArmResponse, ActivityError> {
        self.send_with(Method::GET, subscription, url, None, Priority::Poll)
            .await
    }

    /// Sends a request to `path` (encoded) with `api_version`; non-transient answers are
    /// returned as they are.
    pub(crate) async fn send(
        &self,
        method: Method,
        subscription: &str,
        path: &str,
        api_version: &str,
        body: Option<serde_json::Value>,
    ) -> Result<ArmResponse, ActivityError> {
        let url = self.client.url(path, api_version)?;
        self.send_url(method, subscription, url, body).await
    }

    /// Sends a request to a full URL (the endpoint's origin).
    pub(crate) async fn send_url(
        &self,
        method: Method,
        subscription: &str,
        url: url::Url,
        body: Option<serde_json::Value>,
    ) -> Result<ArmResponse, ActivityError> {
        self.send_with(method, subscription, url, body, self.ctx.priority())
            .await
    }

    async fn send_with(
        &self,
        method: Method,
        subscription: &str,
        url: url::Url,
        body: Option<serde_json::Value>,
        priority: Priority,
    ) -> Result<ArmResponse, ActivityError> {
        let mutating = method != Method::GET;
        let post = method == Method::POST;
        let req = self.request(method, url, subscription, body, priority);
        let result = if mutating {
            self.client.send(&req, self.ctx).await
        } else {
            // A read can be abandoned at any moment: a shutdown does not wait for its turn in
            // the schedule, its retries or its answer.
            tokio::select! {
                r = self.client.send(&req, self.ctx) => r,
                r = self.ctx.sleep(Duration::from_secs(365 * 86_400)) => return r.and(Err(ActivityError::Interrupted)),
            }
        };
        if post {
            let refused = match &result {
                Ok(r) => r.status.is_client_error(),
                Err((_, unprocessed)) => *unprocessed,
            };
            *self.post_refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(refused);
        }
        let response = result.map_err(|(e, _)| e)?;
        if mutating {
            self.record(&response.receipt);
        }
        Ok(response)
    }

    /// GETs a resource; 404 is `None`.
    pub(crate) async fn get_opt(
        &self,
        subscription: &str,
        path: &str,
        api_version: &str,
    ) -> Result<Option<serde_json::Value>, ActivityError> {
        let r = self.send(Method::GET, subscription, path, api_version, None).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(r.success()?.body))
    }

    /// GETs a resource that must exist.
    pub(crate) async fn get(
        &self,
        subscription: &str,
        path: &str,
        api_version: &str,
    ) -> Result<serde_json::Value, ActivityError> {
        Ok(self
            .send(Method::GET, subscription, path, api_version, None)
            .await?
            .success()?
            .body)
    }

    /// GETs every page of a list (`value` + `nextLink`).
    pub(crate) async fn list(
        &self,
        subscription: &str,
        path: &str,
        api_version: &str,
    ) -> Result<Vec<serde_json::Value>, ActivityError> {
        let mut items = Vec::new();
        let mut url = self.client.url(path, api_version)?;
        for _ in 0..1000 {
            let page = self
                .send_url(Method::GET, subscription, url, None)
                .await?
                .success()?
                .body;
            if let Some(values) = page.get("value").and_then(|v| v.as_array()) {
                items.extend(values.iter().cloned());
            }
            match page.get("nextLink").and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
                Some(next) => url = self.client.server_url(next)?,
                None => return Ok(items),
            }
        }
        Err(ActivityError::failed(
            "TooManyPages",
            format!("listing {path} returned more than 1000 pages"),
        ))
    }
}
