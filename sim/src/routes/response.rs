//! What a resource handler answers, and the headers of a long-running operation.

use axum::http::StatusCode;
use serde::Serialize;

use crate::arm_error::ArmError;
use crate::clock::SimClock;
use crate::clock::SimTime;
use crate::lro::{Operation, PollKind};

/// A handler's answer before the common headers are added.
#[derive(Debug)]
pub(crate) struct ArmResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Option<Vec<u8>>,
    /// The operation the request started or re-attached to.
    pub(crate) operation_id: Option<String>,
}

impl ArmResponse {
    /// A JSON answer.
    pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Result<ArmResponse, ArmError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ArmError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", e.to_string()))?;
        Ok(ArmResponse {
            status,
            headers: Vec::new(),
            body: Some(bytes),
            operation_id: None,
        })
    }

    /// An answer without a body.
    pub(crate) fn empty(status: StatusCode) -> ArmResponse {
        ArmResponse {
            status,
            headers: Vec::new(),
            body: None,
            operation_id: None,
        }
    }

    /// Adds a header.
    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> ArmResponse {
        self.headers.push((name, value));
        self
    }
}

/// The two polling URLs of an operation.
pub(crate) fn polling_urls(base_url: &str, op: &Operation) -> (String, String) {
    let (ns, status, result) = match op.poll {
        PollKind::ManagedInstance => (
            "Microsoft.Sql",
            "managedInstanceAzureAsyncOperation",
            "managedInstanceOperationResults",
        ),
        PollKind::FailoverGroup => (
            "Microsoft.Sql",
            "instanceFailoverGroupAzureAsyncOperation",
            "instanceFailoverGroupOperationResults",
        ),
        PollKind::Network => ("Microsoft.Network", "operations", "operationResults"),
    };
    let prefix = format!(
        "{base_url}/subscriptions/{}/providers/{ns}/locations/{}",
        op.subscription, op.location
    );
    (
        format!("{prefix}/{status}/{}?api-version={}", op.id, op.api_version),
        format!("{prefix}/{result}/{}?api-version={}", op.id, op.api_version),
    )
}

/// Real seconds a client should wait before polling again: at most a simulated minute (or
/// what is left), converted with the time scale, never less than 1.
pub(crate) fn retry_after(op: &Operation, now: SimTime, clock: &SimClock) -> u64 {
    let sim = op.remaining_secs(now).clamp(1.0, 60.0);
    let real = clock.real_secs(sim).ceil();
    if real.is_finite() { (real as u64).max(1) } else { 1 }
}

/// The same wait in milliseconds, for clients that read `retry-after-ms` (azure-core does):
/// at a high time scale the whole-second `Retry-After` would make every poll cost a second.
/// Never less than 50 ms.
pub(crate) fn retry_after_ms(op: &Operation, now: SimTime, clock: &SimClock) -> u64 {
    let sim = op.remaining_secs(now).clamp(1.0, 60.0);
    let real = (clock.real_secs(sim) * 1000.0).ceil();
    if real.is_finite() { (real as u64).max(50) } else { 1000 }
}

impl ArmResponse {
    /// Adds `Retry-After` (whole seconds, at least 1) and `retry-after-ms` for a running
    /// operation.
    pub(crate) fn with_retry_after(self, op: &Operation, now: SimTime, clock: &SimClock) -> ArmResponse {
        self.with_header("retry-after", retry_after(op, now, clock).to_string())
            .with_header("retry-after-ms", retry_after_ms(op, now, clock).to_string())
    }
}

/// `202 Accepted` with `Location`, `Azure-AsyncOperation` and `Retry-After`.
pub(crate) fn accepted(base_url: &str, op: &Operation, now: SimTime, clock: &SimClock) -> ArmResponse {
    let (status_url, result_url) = polling_urls(base_url, op);
    let mut response = ArmResponse::empty(StatusCode::ACCEPTED)
        .with_header("azure-asyncoperation", status_url)
        .with_header("location", result_url)
        .with_retry_after(op, now, clock);
    response.operation_id = Some(op.id.clone());
    response
}
