//! HTTP routes: the admin API under `/_sim/` and every ARM path through one pipeline.

mod admin;
mod arm;
mod authz;
mod capabilities;
mod context;
mod network;
mod operations;
mod path;
mod render;
mod response;
mod sql;
mod subscription;
mod tsql;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::emulator::Emulator;

/// Marks a response whose connection must be closed without sending it (an injected drop).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// The correlation ids of one request.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    pub(crate) request_id: String,
    pub(crate) correlation_id: String,
    pub(crate) client_request_id: Option<String>,
}

/// The router of the whole emulator.
pub(crate) fn router(emu: Arc<Emulator>) -> Router {
    Router::new()
        .route("/_sim/journal", get(admin::journal))
        .route("/_sim/state", get(admin::state))
        .route("/_sim/faults", get(admin::faults).put(admin::put_faults))
        .route("/_sim/clock", get(admin::clock))
        .route("/_sim/clock/advance", post(admin::advance))
        .route("/_sim/throttling", get(admin::throttling).put(admin::put_throttling))
        .route("/_sim/reset", post(admin::reset))
        .route("/_sim/requests", get(admin::requests))
        .route("/_sim/sql/rename-database", post(tsql::rename_database))
        .fallback(arm::handle)
        .layer(middleware::from_fn(correlation))
        .with_state(emu)
}

/// Adds `x-ms-request-id`, `x-ms-correlation-request-id` and the echoed
/// `x-ms-client-request-id` to every response.
async fn correlation(mut request: Request, next: Next) -> Response {
    let ids = {
        let headers = request.headers();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let request_id = uuid::Uuid::now_v7().to_string();
        RequestIds {
            correlation_id: header("x-ms-correlation-request-id").unwrap_or_else(|| request_id.clone()),
            client_request_id: header("x-ms-client-request-id"),
            request_id,
        }
    };
    tracing::debug!(method = %request.method(), path = %request.uri().path(), request_id = %ids.request_id, "sim.request");
    request.extensions_mut().insert(ids.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ms-request-id", Some(&ids.request_id)),
        ("x-ms-correlation-request-id", Some(&ids.correlation_id)),
        ("x-ms-client-request-id", ids.client_request_id.as_ref()),
        ("x-ms-routing-request-id", Some(&format!("LOCAL:{}", ids.request_id))),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    response
}
