//! [`ArmClient`]: one reqwest client, the bearer token, correlation ids, transient-fault
//! retries (backon, honouring `Retry-After`) and the per-subscription limiter.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use url::Url;

use super::config::{ArmConfig, ArmSetupError};
use super::credential::TokenSource;
use super::limiter::{Limiter, OpClass, Priority, Turn};
use super::pacer::{Pacer, PauseReason, TokioPacer};
use crate::{ActivityCtx, ActivityError};

/// The ARM client shared by all Azure activities of a process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Each request's time limit (the process's one HTTP client serves every limit).
    request_timeout: Duration,
    endpoint: Url,
    tokens: TokenSource,
    limiter: Arc<Limiter>,
    pacer: Arc<dyn Pacer>,
    max_retries: usize,
}

/// Whether a request may be sent again after it may have reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// GET, convergent PUT/PATCH, DELETE: re-sending is harmless.
    Safe,
    /// A POST action (failover): re-sent only when the server said it did not process it
    /// (429) or the connection was never made.
    Unsafe,
}

/// One request.
#[derive(Debug)]
pub(crate) struct ArmRequest {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<serde_json::Value>,
    /// The subscription whose limits the request counts against.
    pub(crate) subscription: String,
    pub(crate) replay: Replay,
    /// Sent as `x-ms-correlation-request-id`, so ARM ties all requests of a step together.
    pub(crate) correlation_id: Option<String>,
    /// Its class in the subscription's budget.
    pub(crate) priority: Priority,
}

/// The correlation ids of one answered request, kept in step outputs for support cases.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub(crate) method: String,
    /// The URL path (no query).
    pub(crate) path: String,
    pub(crate) status: u16,
    /// Our `x-ms-client-request-id`.
    pub(crate) client_request_id: String,
    /// ARM's `x-ms-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
    /// ARM's `x-ms-correlation-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) correlation_id: Option<String>,
}

/// An answer that was not a transient fault (2xx, or a 4xx for the caller to interpret).
#[derive(Debug)]
pub(crate) struct ArmResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The JSON body, or `Null` when empty or not JSON.
    pub(crate) body: serde_json::Value,
    pub(crate) receipt: Receipt,
}

impl ArmResponse {
    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The answer as an error: ARM's `error.code` and `error.message`, unchanged.
    pub(crate) fn into_error(self) -> ActivityError {
        let (code, message) = arm_error(self.status, &self.body);
        ActivityError::Failed {
            code,
            message,
            output: Some(serde_json::json!({ "http_status": self.status.as_u16(), "arm_request": self.receipt })),
        }
    }

    /// `Ok(self)` for 2xx, else [`ArmResponse::into_error`].
    pub(crate) fn success(self) -> Result<Self, ActivityError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.into_error())
        }
    }
}

/// ARM's error code and message from an error body, or a code made from the status.
pub(crate) fn arm_error(status: StatusCode, body: &serde_json::Value) -> (String, String) {
    let error = body.get("error").unwrap_or(body);
    let code = error.get("code").and_then(|c| c.as_str()).map(str::to_owned);
    let message = error.get("message").and_then(|c| c.as_str()).map(str::to_owned);
    (
        code.unwrap_or_else(|| format!("Http{}", status.as_u16())),
        message.unwrap_or_else(|| status.canonical_reason().unwrap_or("unexpected answer").to_owned()),
    )
}

/// A failed attempt, and whether to try again.
#[derive(Debug)]
struct AttemptError {
    retry: bool,
    retry_after: Option<Duration>,
    error: ActivityError,
    /// The server certainly did not process the request (429, no connection, no token).
    unprocessed: bool,
}

impl ArmClient {
    /// Builds the client: the credential named by `cfg.auth` (the HTTP client is the
    /// process's one, built at the first request). No request is sent; a credential that cannot give a token fails the first step that
    /// needs one, with code `CredentialUnavailable`.
    pub async fn new(cfg: ArmConfig) -> Result<Self, ArmSetupError> {
        let endpoint = cfg.endpoint.clone();
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(ArmSetupError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason: "not an http(s) URL with a host".into(),
            });
        }
        if endpoint.query().is_some() || endpoint.fragment().is_some() {
            return Err(ArmSetupError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason: "has a query or fragment".into(),
            });
        }
        let tokens = TokenSource::from_config(&cfg)?;
        tracing::info!(endpoint = %endpoint, credential = tokens.kind().name(), "arm.client_ready");
        let limiter = Arc::new(match &cfg.shared_schedule {
            // One budget per subscription and principal (endpoint and credential).
            Some(path) => Limiter::shared(
                cfg.rates,
                super::shared_schedule::SharedSchedule::new(
                    path.clone(),
                    &format!("{}|{}", cfg.endpoint, tokens.kind().name()),
                ),
            ),
            None => Limiter::new(cfg.rates),
        });
        Ok(Self {
            inner: Arc::new(Inner {
                request_timeout: cfg.request_timeout,
                endpoint,
                tokens,
                limiter,
                pacer: Arc::new(TokioPacer),
                max_retries: cfg.max_retries,
            }),
        })
    }

    /// The kind of credential in use (`token`, `developer-tools`, `managed-identity`,
    /// `workload-identity`, `client-secret`), for the audit trail. Never the token.
    pub fn credential_kind(&self) -> &str {
        self.inner.tokens.kind().name()
    }

    /// Asks the credential for a token now (sending nothing to ARM), so a command can refuse
    /// to start a run that could not authenticate. `CredentialUnavailable` says why not.
    pub async fn check_credential(&self) -> Result<(), ActivityError> {
        self.inner.tokens.token().await.map(drop)
    }

    /// The ARM endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// The same client waiting through `pacer` (tests advance a simulated clock with it).
    pub fn with_pacer(&self, pacer: Arc<dyn Pacer>) -> Self {
        let i = &self.inner;
        Self {
            inner: Arc::new(Inner {
                request_timeout: i.request_timeout,
                endpoint: i.endpoint.clone(),
                tokens: i.tokens.clone(),
                limiter: i.limiter.clone(),
                pacer,
                max_retries: i.max_retries,
            }),
        }
    }

    pub(crate) fn pacer(&self) -> &dyn Pacer {
        self.inner.pacer.as_ref()
    }

    /// The URL of `path` (already encoded) with `api-version`.
    pub(crate) fn url(&self, path: &str, api_version: &str) -> Result<Url, ActivityError> {
        let base = self.inner.endpoint.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{path}"))
            .map_err(|e| ActivityError::invalid(format!("cannot build a URL for `{path}`: {e}")))?;
        url.query_pairs_mut().append_pair("api-version", api_version);
        Ok(url)
    }

    /// A URL given by the server (a polling URL), accepted only on the endpoint's origin so
    /// that the token is never sent elsewhere.
    pub(crate) fn server_url(&self, text: &str) -> Result<Url, ActivityError> {
        let url = self.inner.endpoint.join(text).map_err(|e| {
            ActivityError::failed(
                "InvalidPollingUrl",
                format!("the server gave an invalid polling URL: {e}"),
            )
        })?;
        if url.origin() != self.inner.endpoint.origin() {
            return Err(ActivityError::failed(
                "InvalidPollingUrl",
                format!(
                    "the polling URL is on {} and not on the ARM endpoint {}; refusing to send the token there",
                    url.origin().ascii_serialization(),
                    self.inner.endpoint.origin().ascii_serialization()
                ),
            ));
        }
        Ok(url)
    }

    /// Sends `req`, retrying transient faults with exponential back-off and jitter (at least
    /// `Retry-After`). Answers that are not transient (2xx and other 4xx) are returned for
    /// the caller to interpret; a transient fault that outlasts the retries is an
    /// [`ActivityError::Transient`].
    ///
    /// On failure it also tells whether the server certainly did not process the request
    /// (`true`: throttled, never connected, fenced) or may have (`false`).
    ///
    /// Fencing: every try (the first and each retry) asks `ctx` whether the driver still
    /// holds the run's lease immediately before the request is handed to the connection;
    /// when it does not, nothing is sent and the error is [`ActivityError::LeaseExpired`].
    pub(crate) async fn send(&self, req: &ArmRequest, ctx: &ActivityCtx) -> Result<ArmResponse, (ActivityError, bool)> {
        // The back-off policy is backon's (exponential, jittered, bounded); the loop is
        // written out instead of using `Retryable`, whose combinator future trips rustc's
        // higher-ranked `Send` check when the engine spawns a run (rust-lang/rust#110338).
        // `when` is `AttemptError::retry`, `adjust` is the `Retry-After` floor below.
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.inner.max_retries)
            .build();
        loop {
            let e = match self.attempt(req, ctx).await {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            let delay = if e.retry { backoff.next() } else { None };
            let Some(delay) = delay else {
                return Err((e.error, e.unprocessed));
            };
            let delay = e.retry_after.map_or(delay, |ra| ra.max(delay));
            tracing::info!(
                code = e.error.code(),
                delay_ms = delay.as_millis() as u64,
                "arm.retry_scheduled"
            );
            self.inner.pacer.pause(PauseReason::Retry, delay).await;
        }
    }

    async fn attempt(&self, req: &ArmRequest, ctx: &ActivityCtx) -> Result<ArmResponse, AttemptError> {
        let class = OpClass::of(&req.method);
        // A lower class asks again while the budget is short; it takes no turn meanwhile,
        // so the requests above it keep theirs, until the limiter finds it overdue (it
        // counts from the first ask) and gives it a turn ahead of them. After
        // `MAX_DEFERRALS` waits it is overdue whatever the limiter's clock says (a pacer
        // that does not sleep, such as a test's simulated clock, cannot make it spin).
        const MAX_DEFERRALS: u32 = 8;
        let limiter = &self.inner.limiter;
        let first_ask = limiter.now_ms();
        let mut deferrals = 0;
        loop {
            let since = if deferrals < MAX_DEFERRALS {
                first_ask
            } else {
                f64::NEG_INFINITY
            };
            deferrals += 1;
            let turn = limiter
                .reserve_async(&req.subscription, class, req.priority, Some(since))
                .await;
            let (wait, go) = match turn {
                Turn::Go(wait) => (wait, true),
                Turn::Later(wait) => (Some(wait), false),
            };
            if let Some(delay) = wait {
                tracing::debug!(delay_ms = delay.as_millis() as u64, priority = ?req.priority, "arm.limiter_pause");
                self.inner.pacer.pause(PauseReason::Limiter, delay).await;
            }
            if go {
                break;
            }
        }
        // The turn is in flight until this attempt ends, however it ends.
        let _in_flight = InFlight {
            limiter: &self.inner.limiter,
            subscription: &req.subscription,
            class,
        };
        let token = self.inner.tokens.token().await.map_err(|error| AttemptError {
            retry: false,
            retry_after: None,
            error,
            unprocessed: true,
        })?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| AttemptError {
            retry: false,
            retry_after: None,
            error: ActivityError::failed("CredentialUnavailable", "the token is not a valid header value"),
            unprocessed: true,
        })?;
        auth.set_sensitive(true);
        let client_request_id = uuid::Uuid::now_v7().to_string();
        let mut builder = super::http::arm()
            .request(req.method.clone(), req.url.clone())
            .timeout(self.inner.request_timeout)
            .header(AUTHORIZATION, auth)
            .header("x-ms-client-request-id", &client_request_id)
            .header("x-ms-return-client-request-id", "true");
        if let Some(id) = &req.correlation_id {
            builder = builder.header("x-ms-correlation-request-id", id);
        }
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let path = req.url.path().to_owned();
        // The last thing before the request leaves: a driver that lost its lease (frozen
        // during a Retry-After wait, starved, its clock stepped) sends nothing. Everything
        // slow (the limiter's turn, the token) is done above, so the window between this
        // check and the send is as short as the process lets it be (docs/RELIABILITY.md).
        if let Err(error) = ctx.fence().await {
            tracing::warn!(method = %req.method, path = %path, "arm.fenced: not sent, the lease is not held");
            return Err(AttemptError {
                retry: false,
                retry_after: None,
                error,
                unprocessed: true,
            });
        }
        let sent = builder.send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                // A refused connection never reached the server; anything later may have.
                let never_sent = e.is_connect();
                let code = if e.is_timeout() {
                    "Timeout"
                } else if never_sent {
                    "ConnectionFailed"
                } else {
                    "ConnectionDropped"
                };
                tracing::debug!(method = %req.method, path = %path, code, "arm.http_error");
                return Err(AttemptError {
                    retry: req.replay == Replay::Safe || never_sent,
                    unprocessed: never_sent,
                    retry_after: None,
                    error: ActivityError::Transient {
                        code: code.to_owned(),
                        message: format!("{} {path}: {}", req.method, e.without_url()),
                        retry_after: None,
                    },
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        // A 429's header says the bucket is empty; `throttled` below takes it into account.
        if status != StatusCode::TOO_MANY_REQUESTS {
            self.inner.limiter.observe(&req.subscription, class, &headers);
        }
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                return Err(AttemptError {
                    retry: req.replay == Replay::Safe,
                    unprocessed: false,
                    retry_after: None,
                    error: ActivityError::Transient {
                        code: "ConnectionDropped".into(),
                        message: format!("{} {path}: reading the answer failed: {}", req.method, e.without_url()),
                        retry_after: None,
                    },
                });
            }
        };
        let body = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let receipt = Receipt {
            method: req.method.to_string(),
            path: path.clone(),
            status: status.as_u16(),
            client_request_id,
            request_id: header("x-ms-request-id"),
            correlation_id: header("x-ms-correlation-request-id"),
        };
        tracing::debug!(
            method = %req.method,
            path = %path,
            status = status.as_u16(),
            request_id = receipt.request_id.as_deref().unwrap_or(""),
            "arm.http"
        );
        let retry_after = retry_after(&headers);
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Every request of this bucket waits, not only this one's retry.
            self.inner
                .limiter
                .throttled_async(&req.subscription, class, retry_after.unwrap_or(Duration::from_secs(1)))
                .await;
        }
        let transient = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
            || (status.is_client_error() && retry_after.is_some() && status != StatusCode::CONFLICT);
        if transient {
            let (code, message) = arm_error(status, &body);
            // 429 means "not processed"; other transient answers may follow processing.
            let retry = req.replay == Replay::Safe || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(AttemptError {
                retry,
                unprocessed: status == StatusCode::TOO_MANY_REQUESTS,
                retry_after,
                error: ActivityError::Transient {
                    code,
                    message,
                    retry_after,
                },
            });
        }
        Ok(ArmResponse {
            status,
            headers,
            body,
            receipt,
        })
    }
}

/// A request's turn in the limiter, counted in flight until dropped (its answer came back,
/// or it failed without one).
struct InFlight<'a> {
    limiter: &'a Limiter,
    subscription: &'a str,
    class: OpClass,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.limiter.settle(self.subscription, self.class);
    }
}

/// `Retry-After` (seconds), or `retry-after-ms` / `x-ms-retry-after-ms`.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms")
        .or_else(|| get("x-ms-retry-after-ms"))
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    get("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_errors_keep_code_and_message() {
        let body = serde_json::json!({"error": {"code": "GeoDrSecondaryInstanceNotEmpty", "message": "has dbs"}});
        assert_eq!(
            arm_error(StatusCode::BAD_REQUEST, &body),
            ("GeoDrSecondaryInstanceNotEmpty".to_owned(), "has dbs".to_owned())
        );
        assert_eq!(
            arm_error(StatusCode::BAD_GATEWAY, &serde_json::Value::Null).0,
            "Http502"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("x-ms-retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }
}
