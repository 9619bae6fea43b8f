//! The long-running-operation protocol against a scripted loopback server: `Location`-only
//! polling, `provisioningState` polling, legacy 200 + `Azure-AsyncOperation`, failed
//! operations, POST results, foreign polling URLs and re-entry.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap as AxumHeaders, Method as AxumMethod, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::arm::{ArmClient, ArmConfig, Pacer, PauseReason, Rates, Secret};
use crate::{ApprovalRecord, BoxFuture, StepHost};

type Answer = (u16, Vec<(&'static str, String)>, Value);

/// Answers each `METHOD path` with the next scripted answer (the last one repeats) and logs
/// every request with its headers.
#[derive(Default)]
struct Script {
    answers: Mutex<HashMap<String, VecDeque<Answer>>>,
    log: Mutex<Vec<(String, AxumHeaders)>>,
}

impl Script {
    fn on(&self, method: &str, path: &str, answers: Vec<Answer>) {
        self.answers
            .lock()
            .unwrap()
            .insert(format!("{method} {path}"), answers.into());
    }

    fn count(&self, key: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|(k, _)| k == key).count()
    }
}

async fn serve(script: Arc<Script>) -> String {
    let app = axum::Router::new().fallback(move |method: AxumMethod, uri: Uri, headers: AxumHeaders| {
        let script = script.clone();
        async move {
            let key = format!("{method} {}", uri.path());
            script.log.lock().unwrap().push((key.clone(), headers));
            let mut answers = script.answers.lock().unwrap();
            let Some(queue) = answers.get_mut(&key) else {
                return (
                    AxumStatus::NOT_FOUND,
                    axum::Json(json!({"error": {"code": "NotScripted", "message": key}})),
                )
                    .into_response();
            };
            let (status, headers, body) = if queue.len() > 1 {
                queue.pop_front().unwrap()
            } else {
                queue[0].clone()
            };
            let mut response: Response = if body.is_null() {
                AxumStatus::from_u16(status).unwrap().into_response()
            } else {
                (AxumStatus::from_u16(status).unwrap(), axum::Json(body)).into_response()
            };
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<(PauseReason, Duration)>>);

impl Pacer for Recorder {
    fn pause(&self, reason: PauseReason, delay: Duration) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push((reason, delay));
        Box::pin(async {})
    }
}

#[derive(Debug, Default)]
struct Host(Mutex<Vec<Value>>);

impl StepHost for Host {
    fn save_progress(&self, progress: Value) -> BoxFuture<'_, Result<(), ActivityError>> {
        self.0.lock().unwrap().push(progress);
        Box::pin(async { Ok(()) })
    }
    fn approval(&self) -> BoxFuture<'_, Result<Option<ApprovalRecord>, ActivityError>> {
        Box::pin(async { Ok(None) })
    }
    fn auto_approve(&self) -> BoxFuture<'_, Result<ApprovalRecord, ActivityError>> {
        Box::pin(async { Err(ActivityError::invalid("none")) })
    }
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

struct Fixture {
    base: String,
    script: Arc<Script>,
    client: ArmClient,
    pacer: Arc<Recorder>,
    host: Arc<Host>,
}

const RES: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi";

async fn fixture() -> Fixture {
    let script = Arc::new(Script::default());
    let base = serve(script.clone()).await;
    let pacer = Arc::new(Recorder::default());
    let cfg = ArmConfig::with_token(base.parse().unwrap(), Secret::new("tok"));
    let client = ArmClient::new(cfg).await.unwrap().with_pacer(pacer.clone());
    Fixture {
        base,
        script,
        client,
        pacer,
        host: Arc::new(Host::default()),
    }
}

impl Fixture {
    async fn run(&self, method: Method, progress: Option<Value>) -> Result<Value, ActivityError> {
        let ctx = ActivityCtx::new("r", "s", 1, progress, self.host.clone(), CancellationToken::new());
        let s = Session::new(&self.client, &ctx);
        let mut p = Progress::load(&ctx);
        let url = self.client.url(RES, "2025-01-01").unwrap();
        let body = (method != Method::DELETE && method != Method::POST).then(|| json!({"properties": {}}));
        run(&s, &mut p, "op", "s", method, url, body).await
    }

    fn polls(&self) -> Vec<Duration> {
        self.pacer
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| *r == PauseReason::Poll)
            .map(|(_, d)| *d)
            .collect()
    }
}

fn done_resource() -> Answer {
    (
        200,
        vec![],
        json!({"name": "mi", "properties": {"provisioningState": "Succeeded"}}),
    )
}

#[tokio::test]
async fn location_only_is_polled_until_done_then_the_resource_is_read() {
    let f = fixture().await;
    let loc = format!("{}/op/1", f.base);
    f.script.on(
        "PUT",
        RES,
        vec![(
            202,
            vec![("location", loc.clone()), ("retry-after", "3".into())],
            Value::Null,
        )],
    );
    f.script.on(
        "GET",
        "/op/1",
        vec![
            (202, vec![("retry-after", "5".into())], Value::Null),
            (202, vec![], Value::Null),
            (200, vec![], Value::Null),
        ],
    );
    f.script.on("GET", RES, vec![done_resource()]);
    let out = f.run(Method::PUT, None).await.unwrap();
    assert_eq!(out["properties"]["provisioningState"], "Succeeded");
    assert_eq!(f.script.count("GET /op/1"), 3);
    assert_eq!(
        f.polls(),
        vec![Duration::from_secs(3), Duration::from_secs(5), Duration::from_secs(10)]
    );
    let saved = f.host.0.lock().unwrap().clone();
    assert_eq!(saved.len(), 1, "saved once, before the first poll");
    assert_eq!(saved[0]["ops"]["op"]["via"], "location");
    // Every request carried the bearer token, a fresh client request id and the step's correlation id.
    let log = f.script.log.lock().unwrap();
    let ids: Vec<&str> = log
        .iter()
        .map(|(_, h)| h["x-ms-client-request-id"].to_str().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] != w[1]));
    assert!(log.iter().all(|(_, h)| h["authorization"] == "Bearer tok"));
    let corr: Vec<&str> = log
        .iter()
        .map(|(_, h)| h["x-ms-correlation-request-id"].to_str().unwrap())
        .collect();
    assert!(corr.windows(2).all(|w| w[0] == w[1]));
    assert!(log[0].0.starts_with("PUT"));
}

#[tokio::test]
async fn a_created_resource_without_headers_is_followed_by_its_provisioning_state() {
    let f = fixture().await;
    f.script.on(
        "PUT",
        RES,
        vec![(201, vec![], json!({"properties": {"provisioningState": "Creating"}}))],
    );
    f.script.on(
        "GET",
        RES,
        vec![
            (200, vec![], json!({"properties": {"provisioningState": "Creating"}})),
            done_resource(),
        ],
    );
    let out = f.run(Method::PUT, None).await.unwrap();
    assert_eq!(out["name"], "mi");
    assert_eq!(f.host.0.lock().unwrap()[0]["ops"]["op"]["via"], "provisioning-state");
}

#[tokio::test]
async fn legacy_200_with_azure_async_operation_means_still_running() {
    let f = fixture().await;
    let status = format!("{}/status/1", f.base);
    f.script.on(
        "PUT",
        RES,
        vec![(200, vec![("azure-asyncoperation", status)], json!({}))],
    );
    f.script.on(
        "GET",
        "/status/1",
        vec![
            (200, vec![], json!({"status": "InProgress"})),
            (200, vec![], json!({"status": "Succeeded"})),
        ],
    );
    f.script.on("GET", RES, vec![done_resource()]);
    assert_eq!(f.run(Method::PUT, None).await.unwrap()["name"], "mi");
    assert_eq!(f.script.count("GET /status/1"), 2);
}

#[tokio::test]
async fn a_failed_operation_fails_with_its_error_code() {
    let f = fixture().await;
    let status = format!("{}/status/2", f.base);
    f.script.on(
        "PATCH",
        RES,
        vec![(202, vec![("azure-asyncoperation", status)], Value::Null)],
    );
    f.script.on(
        "GET",
        "/status/2",
        vec![(
            200,
            vec![],
            json!({"status": "Failed", "error": {"code": "OperationTimedOut", "message": "rolled back"}}),
        )],
    );
    let err = f.run(Method::PATCH, None).await.unwrap_err();
    assert_eq!(err.code(), "OperationTimedOut");
    assert!(err.to_string().contains("rolled back"));
}

#[tokio::test]
async fn a_post_ends_with_the_body_of_its_location() {
    let f = fixture().await;
    let status = format!("{}/status/3", f.base);
    let result = format!("{}/result/3", f.base);
    f.script.on(
        "POST",
        RES,
        vec![(
            202,
            vec![("azure-asyncoperation", status), ("location", result)],
            Value::Null,
        )],
    );
    f.script
        .on("GET", "/status/3", vec![(200, vec![], json!({"status": "Succeeded"}))]);
    f.script.on(
        "GET",
        "/result/3",
        vec![(200, vec![], json!({"properties": {"replicationRole": "Primary"}}))],
    );
    let out = f.run(Method::POST, None).await.unwrap();
    assert_eq!(out["properties"]["replicationRole"], "Primary");
}

#[tokio::test]
async fn a_delete_of_nothing_is_done_at_once() {
    let f = fixture().await;
    f.script.on("DELETE", RES, vec![(204, vec![], Value::Null)]);
    assert_eq!(f.run(Method::DELETE, None).await.unwrap(), Value::Null);
    assert!(f.host.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_polling_url_on_another_origin_is_refused_and_never_saved() {
    let f = fixture().await;
    f.script.on(
        "PUT",
        RES,
        vec![(
            202,
            vec![("azure-asyncoperation", "https://evil.example/status".into())],
            Value::Null,
        )],
    );
    let err = f.run(Method::PUT, None).await.unwrap_err();
    assert_eq!(err.code(), "InvalidPollingUrl");
    assert!(f.host.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn re_entry_with_a_saved_operation_polls_it_and_never_resends() {
    let f = fixture().await;
    let status = format!("{}/status/4", f.base);
    f.script
        .on("GET", "/status/4", vec![(200, vec![], json!({"status": "Succeeded"}))]);
    f.script.on("GET", RES, vec![done_resource()]);
    let saved = json!({"version": 1, "ops": {"op": {
        "method": "PUT", "resource": format!("{}{RES}?api-version=2025-01-01", f.base),
        "via": "azure-async-operation", "url": status, "accepted_at": "2026-11-26T10:00:00Z"}}});
    assert_eq!(f.run(Method::PUT, Some(saved)).await.unwrap()["name"], "mi");
    assert_eq!(f.script.count(&format!("PUT {RES}")), 0);
}

/// A read waiting for its turn in the client's schedule (here: one read per 1,000 s after
/// the first) ends at once when the run is stopped, instead of holding a shutdown.
#[tokio::test]
async fn a_read_waiting_for_its_turn_ends_at_once_on_shutdown() {
    let script = Arc::new(Script::default());
    let base = serve(script.clone()).await;
    script.on("GET", RES, vec![done_resource()]);
    let mut cfg = ArmConfig::with_token(base.parse().unwrap(), Secret::new("tok"));
    cfg.rates = Rates {
        reads_per_s: 0.001,
        reads_burst: 1.0,
        ..Rates::default()
    };
    // The real pacer: the wait is a real timer.
    let client = ArmClient::new(cfg).await.unwrap();
    let stop = CancellationToken::new();
    let ctx = ActivityCtx::new("r", "s", 1, None, Arc::new(Host::default()), stop.clone());
    let s = Session::new(&client, &ctx);
    assert!(
        s.get_opt("s", RES, "2025-01-01").await.unwrap().is_some(),
        "the burst's one turn"
    );
    let waiting = s.get_opt("s", RES, "2025-01-01");
    let stopper = async {
        tokio::task::yield_now().await;
        stop.cancel();
    };
    let (second, ()) = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(waiting, stopper) })
        .await
        .expect("the wait for the next turn must end with the stop");
    assert!(matches!(second, Err(ActivityError::Interrupted)), "{second:?}");
    assert_eq!(script.count(&format!("GET {RES}")), 1, "the second read was never sent");
}

/// Status reads throttled past the client's own retries (another client of the
/// subscription uses ARM's reads) do not fail the step: the operation goes on in the cloud,
/// so the poll waits and reads again, and the step ends when the operation does.
#[tokio::test]
async fn a_status_read_throttled_past_the_retries_is_read_again_later() {
    let f = fixture().await;
    let status = format!("{}/status/9", f.base);
    f.script.on(
        "PATCH",
        RES,
        vec![(202, vec![("azure-asyncoperation", status)], Value::Null)],
    );
    let throttled: Answer = (
        429,
        vec![("retry-after", "20".to_owned())],
        json!({"error": {"code": "SubscriptionTooManyRequests", "message": "slow down"}}),
    );
    // Twice the client's retries (8 per call) plus one: two whole calls fail.
    let mut answers = vec![throttled; 2 * 9];
    answers.push((200, vec![], json!({"status": "Succeeded"})));
    f.script.on("GET", "/status/9", answers);
    f.script.on("GET", RES, vec![done_resource()]);
    assert_eq!(f.run(Method::PATCH, None).await.unwrap()["name"], "mi");
    assert_eq!(f.script.count("GET /status/9"), 2 * 9 + 1);
    let deferred = f.polls().iter().filter(|d| **d == Duration::from_secs(20)).count();
    assert_eq!(
        deferred,
        2,
        "each failed call waits the server's Retry-After: {:?}",
        f.polls()
    );
}

/// Issue 18: under a short budget the requests of a step inside an open unprotected window
/// reach ARM before those of new targets, even when the new targets asked first (the real
/// pacer and a real clock: the order is what the server saw).
#[tokio::test]
async fn under_a_short_budget_open_windows_go_before_new_targets() {
    let script = Arc::new(Script::default());
    let base = serve(script.clone()).await;
    for i in 0..3 {
        script.on("GET", &format!("{RES}/new{i}"), vec![done_resource()]);
        script.on("GET", &format!("{RES}/win{i}"), vec![done_resource()]);
    }
    script.on("GET", RES, vec![done_resource()]);
    let mut cfg = ArmConfig::with_token(base.parse().unwrap(), Secret::new("tok"));
    cfg.rates = Rates {
        reads_per_s: 10.0,
        reads_burst: 4.0,
        ..Rates::default()
    };
    let client = ArmClient::new(cfg).await.unwrap();
    let ctx = |p: crate::arm::Priority| {
        ActivityCtx::new("r", "s", 1, None, Arc::new(Host::default()), CancellationToken::new()).with_priority(p)
    };
    let (new_ctx, win_ctx) = (
        ctx(crate::arm::Priority::NewTarget),
        ctx(crate::arm::Priority::OpenWindow),
    );
    // The burst is spent.
    let drain = Session::new(&client, &win_ctx);
    for _ in 0..4 {
        drain.get("s", RES, "2025-01-01").await.unwrap();
    }
    let (new_s, win_s) = (Session::new(&client, &new_ctx), Session::new(&client, &win_ctx));
    let news = async {
        let paths: Vec<String> = (0..3).map(|i| format!("{RES}/new{i}")).collect();
        futures_join(paths.iter().map(|p| new_s.get("s", p, "2025-01-01")).collect()).await
    };
    let wins = async {
        // Asked after the new targets.
        tokio::task::yield_now().await;
        let paths: Vec<String> = (0..3).map(|i| format!("{RES}/win{i}")).collect();
        futures_join(paths.iter().map(|p| win_s.get("s", p, "2025-01-01")).collect()).await
    };
    let (n, w) = tokio::join!(news, wins);
    assert!(n.iter().chain(&w).all(Result::is_ok));
    let order: Vec<String> = script
        .log
        .lock()
        .unwrap()
        .iter()
        .skip(4)
        .map(|(k, _)| k.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    let last_win = order.iter().rposition(|k| k.starts_with("win")).unwrap();
    let first_new = order.iter().position(|k| k.starts_with("new")).unwrap();
    assert!(last_win < first_new, "open windows first: {order:?}");
}

/// Runs the futures at once (in this task) and returns their results in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in pinned.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
