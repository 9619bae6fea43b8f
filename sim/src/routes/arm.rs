//! The pipeline every ARM request goes through: authentication, path and api-version,
//! throttling, faults, then the resource logic under the lock, the journal and the state file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::context::Ctx;
use super::path::{ArmPath, Provider};
use super::response::ArmResponse;
use super::{DropConnection, RequestIds, network, operations, sql};
use crate::arm_error::ArmError;
use crate::emulator::{Emulator, Settings};
use crate::journal::{JournalEntry, sha256_hex};
use crate::requests::SeenRequest;
use crate::throttle::OpClass;

/// Api-versions accepted for Microsoft.Sql: those of the spec (Azure/azure-rest-api-specs,
/// `specification/sql/resource-manager/Microsoft.Sql/{stable,preview}`) whose folder has both
/// `ManagedInstances.json` and `InstanceFailoverGroups.json`. The first is the default for
/// polling URLs without one.
const SQL_API_VERSIONS: &[&str] = &[
    "2025-01-01",
    "2021-11-01",
    "2023-08-01",
    "2021-11-01-preview",
    "2022-02-01-preview",
    "2022-05-01-preview",
    "2022-08-01-preview",
    "2022-11-01-preview",
    "2023-02-01-preview",
    "2023-05-01-preview",
    "2023-08-01-preview",
    "2024-05-01-preview",
    "2024-11-01-preview",
    "2025-02-01-preview",
    "2025-08-01-preview",
];

/// Turns an error into its response.
pub(crate) fn error_response(error: &ArmError) -> Response {
    let mut response = (error.status, axum::Json(error.body())).into_response();
    if error.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static(
                "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\"",
            ),
        );
    }
    response
}

fn into_response(arm: ArmResponse) -> Response {
    let mut response = match arm.body {
        Some(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
        None => Response::new(Body::empty()),
    };
    *response.status_mut() = arm.status;
    for (name, value) in arm.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Checks the bearer token; returns it (it names the principal).
fn authenticate(settings: &Settings, headers: &HeaderMap) -> Result<String, ArmError> {
    let unauthorized = |code: &str, message: &str| ArmError::new(StatusCode::UNAUTHORIZED, code, message);
    let Some(value) = headers.get("authorization") else {
        return Err(unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let value = value.to_str().unwrap_or_default();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("Bearer") && !token.trim().is_empty() => token.trim(),
        _ => {
            return Err(unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            ));
        }
    };
    match &settings.token {
        Some(expected) if expected != token => Err(unauthorized(
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        )),
        _ => Ok(token.to_owned()),
    }
}

fn api_version(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case("api-version")
            .then(|| super::path::percent_decode(v))
    })
}

/// The Resource Manager (subscriptions) api-versions served.
const RESOURCES_API_VERSIONS: &[&str] = &["2020-01-01", "2021-01-01", "2022-12-01"];

/// The Azure Monitor metrics api-versions served.
const INSIGHTS_API_VERSIONS: &[&str] = &["2018-01-01", "2023-10-01", "2024-02-01"];

fn check_api_version(provider: Provider, version: Option<&str>) -> Result<String, ArmError> {
    let Some(version) = version else {
        if provider == Provider::Polling {
            return Ok(SQL_API_VERSIONS[0].to_owned());
        }
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let ok = match provider {
        Provider::Sql => SQL_API_VERSIONS.contains(&version),
        Provider::Network | Provider::Authorization => {
            let since = if provider == Provider::Network { 2023 } else { 2015 };
            let date = version.strip_suffix("-preview").unwrap_or(version);
            date.len() == 10
                && date
                    .get(..4)
                    .and_then(|y| y.parse::<u32>().ok())
                    .is_some_and(|y| y >= since)
        }
        Provider::Polling => true,
        Provider::Insights => INSIGHTS_API_VERSIONS.contains(&version),
        Provider::Resources => RESOURCES_API_VERSIONS.contains(&version),
    };
    if ok {
        Ok(version.to_owned())
    } else {
        Err(ArmError::bad_request(
            "NoRegisteredProviderFound",
            format!("No registered resource provider found for api version '{version}'."),
        ))
    }
}

fn base_url(settings: &Settings, headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("{}://{host}", settings.scheme)
}

fn injected(status: u16) -> Response {
    let (status, code) = match status {
        429 => (StatusCode::TOO_MANY_REQUESTS, "SubscriptionRequestsThrottled"),
        502 => (StatusCode::BAD_GATEWAY, "BadGateway"),
        503 => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        504 => (StatusCode::GATEWAY_TIMEOUT, "GatewayTimeout"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
    };
    let mut response = error_response(&ArmError::new(
        status,
        code,
        "An injected fault: the request was not processed.",
    ));
    if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

fn dropped() -> Response {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(DropConnection);
    response
}

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v.to_string())
        .unwrap_or_default();
    sha256_hex(format!("{method} {} {canonical}", path.to_ascii_lowercase()).as_bytes())
}

/// The axum handler for every path outside `/_sim/`.
pub(crate) async fn handle(
    State(emu): State<Arc<Emulator>>,
    Extension(ids): Extension<RequestIds>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Instant::now();
    let response = match pipeline(&emu, &ids, &method, &uri, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    };
    let status = if response.extensions().get::<DropConnection>().is_some() {
        0
    } else {
        response.status().as_u16()
    };
    emu.requests.record(SeenRequest {
        received,
        operation: ArmPath::parse(uri.path()).and_then(|p| p.operation_id(&method)),
        method: method.to_string(),
        path: uri.path().to_owned(),
        status,
    });
    response
}

async fn pipeline(
    emu: &Emulator,
    ids: &RequestIds,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ArmError> {
    let token = authenticate(&emu.settings, headers)?;
    let path = ArmPath::parse(uri.path()).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!("The resource type for path '{}' could not be found.", uri.path()),
        )
    })?;
    let operation = path.operation_id(method).ok_or_else(|| {
        ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The method '{method}' is not allowed on '{}'.", uri.path()),
        )
    })?;
    let api_version = check_api_version(path.provider(), api_version(uri).as_deref())?;
    let class = OpClass::of(method);
    let action = super::authz::required_action(&path, method);
    let (remaining, decision) = {
        let mut core = emu.lock();
        if let Some(action) = &action {
            super::authz::authorize(&core.world, &token, uri.path(), action)?;
        }
        let limits = core.world.throttling;
        let remaining = core.throttle.take(path.subscription(), class, &limits, Instant::now());
        match remaining {
            Ok(remaining) => (remaining, core.faults.decide(operation)),
            Err(throttled) => {
                let mut response = error_response(&ArmError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "SubscriptionRequestsThrottled",
                    format!(
                        "Number of {class:?} requests for subscription '{}' exceeded the limit; retry after {} seconds.",
                        path.subscription(),
                        throttled.retry_after
                    ),
                ));
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(throttled.retry_after));
                response.headers_mut().insert(class.header(), HeaderValue::from(0u64));
                return Ok(response);
            }
        }
    };
    if decision.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
    }
    if let Some(status) = decision.error_status {
        return Ok(injected(status));
    }
    if decision.drop_before {
        return Ok(dropped());
    }
    let mutating = *method != Method::GET && *method != Method::HEAD;
    let base_url = base_url(&emu.settings, headers);
    let arm = {
        let mut core = emu.lock();
        let ticked = core.tick();
        let now = core.now();
        let mut ctx = Ctx {
            core: &mut core,
            now,
            base_url: &base_url,
            api_version: &api_version,
            fingerprint: fingerprint(method, uri.path(), body),
            fail_operation: decision.fail_operation,
        };
        let result = match &path {
            ArmPath::Permissions { scope, .. } => super::authz::permissions(ctx.world(), &token, scope),
            _ => dispatch(&mut ctx, method, &path, body),
        };
        let arm = result.unwrap_or_else(|error| ArmResponse {
            status: error.status,
            headers: Vec::new(),
            body: serde_json::to_vec(&error.body()).ok(),
            operation_id: None,
        });
        if mutating {
            let epoch = core.world.epoch;
            core.journal.push(JournalEntry {
                seq: 0,
                real_time: time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                sim_time: now.rfc3339(epoch),
                method: method.to_string(),
                path: uri
                    .path_and_query()
                    .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
                body_sha256: sha256_hex(body),
                operation_id: arm.operation_id.clone(),
                status: arm.status.as_u16(),
                applied: arm.status.is_success(),
                connection_dropped: decision.apply_then_drop,
                request_id: ids.request_id.clone(),
                client_request_id: ids.client_request_id.clone(),
            });
        }
        if mutating || ticked {
            emu.persist_or_log(&core);
        }
        arm
    };
    if decision.apply_then_drop {
        return Ok(dropped());
    }
    let mut response = into_response(arm);
    response
        .headers_mut()
        .insert(class.header(), HeaderValue::from(remaining));
    Ok(response)
}

fn dispatch(ctx: &mut Ctx<'_>, method: &Method, path: &ArmPath, body: &[u8]) -> Result<ArmResponse, ArmError> {
    use ArmPath as P;
    match (path, method.as_str()) {
        (P::Subscription { sub }, _) => super::subscription::get_subscription(ctx, sub),
        (P::InstanceListAll { sub }, _) => sql::list_all_instances(ctx, sub),
        (P::Permissions { .. }, _) => Err(ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Permissions are answered before dispatch.",
        )),
        (P::Capabilities { sub, location }, _) => super::capabilities::location(ctx, sub, location),
        (P::VnetListAll { sub }, _) => network::list_vnets(ctx, sub, None),
        (P::VnetList { sub, rg }, _) => network::list_vnets(ctx, sub, Some(rg)),
        (P::SubnetList { sub, rg, vnet }, _) => network::list_subnets(ctx, sub, rg, vnet),
        (P::NsgListAll { sub }, _) => network::list_nsgs(ctx, sub, None),
        (P::NsgList { sub, rg }, _) => network::list_nsgs(ctx, sub, Some(rg)),
        (P::InstanceList { sub, rg }, _) => sql::list_instances(ctx, sub, rg),
        (P::Instance { sub, rg, name }, "GET") => sql::get_instance(ctx, sub, rg, name),
        (P::Instance { sub, rg, name }, "PUT") => sql::put_instance(ctx, sub, rg, name, body),
        (P::Instance { sub, rg, name }, "PATCH") => sql::patch_instance(ctx, sub, rg, name, body),
        (P::Instance { sub, rg, name }, _) => sql::delete_instance(ctx, sub, rg, name),
        (P::DatabaseList { sub, rg, instance }, _) => sql::list_databases(ctx, sub, rg, instance),
        (P::InstanceMetrics { sub, rg, instance }, _) => sql::instance_metrics(ctx, sub, rg, instance),
        (
            P::Database {
                sub,
                rg,
                instance,
                name,
            },
            "GET",
        ) => sql::get_database(ctx, sub, rg, instance, name),
        (
            P::Database {
                sub,
                rg,
                instance,
                name,
            },
            "PUT",
        ) => sql::put_database(ctx, sub, rg, instance, name, body),
        (
            P::Database {
                sub,
                rg,
                instance,
                name,
            },
            _,
        ) => sql::delete_database(ctx, sub, rg, instance, name),
        (P::GroupList { sub, rg, location }, _) => sql::list_groups(ctx, sub, rg, location),
        (
            P::Group {
                sub,
                rg,
                location,
                name,
            },
            "GET",
        ) => sql::get_group(ctx, sub, rg, location, name),
        (
            P::Group {
                sub,
                rg,
                location,
                name,
            },
            "PUT",
        ) => sql::put_group(ctx, sub, rg, location, name, body),
        (
            P::Group {
                sub,
                rg,
                location,
                name,
            },
            _,
        ) => sql::delete_group(ctx, sub, rg, location, name),
        (
            P::GroupFailover {
                sub,
                rg,
                location,
                name,
                forced,
            },
            _,
        ) => sql::failover_group(ctx, sub, rg, location, name, *forced),
        (P::OperationStatus { sub, id }, _) => operations::status(ctx, sub, id),
        (P::OperationResult { sub, id }, _) => operations::result(ctx, sub, id),
        (P::Vnet { sub, rg, name }, "GET") => network::get_vnet(ctx, sub, rg, name),
        (P::Vnet { sub, rg, name }, "PUT") => network::put_vnet(ctx, sub, rg, name, body),
        (P::Vnet { sub, rg, name }, _) => network::delete_vnet(ctx, sub, rg, name),
        (P::Subnet { sub, rg, vnet, name }, "GET") => network::get_subnet(ctx, sub, rg, vnet, name),
        (P::Subnet { sub, rg, vnet, name }, "PUT") => network::put_subnet(ctx, sub, rg, vnet, name, body),
        (P::Subnet { sub, rg, vnet, name }, _) => network::delete_subnet(ctx, sub, rg, vnet, name),
        (P::PeeringList { sub, rg, vnet }, _) => network::list_peerings(ctx, sub, rg, vnet),
        (P::Peering { sub, rg, vnet, name }, "GET") => network::get_peering(ctx, sub, rg, vnet, name),
        (P::Peering { sub, rg, vnet, name }, "PUT") => network::put_peering(ctx, sub, rg, vnet, name, body),
        (P::Peering { sub, rg, vnet, name }, _) => network::delete_peering(ctx, sub, rg, vnet, name),
        (P::Nsg { sub, rg, name }, "GET") => network::get_nsg(ctx, sub, rg, name),
        (P::Nsg { sub, rg, name }, "PUT") => network::put_nsg(ctx, sub, rg, name, body),
        (P::Nsg { sub, rg, name }, _) => network::delete_nsg(ctx, sub, rg, name),
        (P::RuleList { sub, rg, nsg }, _) => network::list_rules(ctx, sub, rg, nsg),
        (P::Rule { sub, rg, nsg, name }, "GET") => network::get_rule(ctx, sub, rg, nsg, name),
        (P::Rule { sub, rg, nsg, name }, "PUT") => network::put_rule(ctx, sub, rg, nsg, name, body),
        (P::Rule { sub, rg, nsg, name }, _) => network::delete_rule(ctx, sub, rg, nsg, name),
    }
}
