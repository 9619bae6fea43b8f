// Over 600 lines on purpose: the router, its pages and the one action route share the app state and the page frame; the HTML of the sections is in `src/html/`.
//! `fogbook serve`: a small web status page over the state database.
//!
//! Read-only by default: every page only reads the store (SQLite in WAL mode, where readers
//! never block the writers that drive runs). With `--allow-actions` and an access token in
//! `FOGBOOK_SERVE_TOKEN`, approval steps can be approved or rejected from the page; the
//! token is typed into the page by the operator, never rendered, and is the only credential
//! (no cookie), so a forged cross-site form cannot act. The `Host` header must name this
//! server (no DNS rebinding), and a browser's `Origin` must be this server.
//!
//! Pages refresh their `<main>` every second from `?fragment=1` (a small script served at
//! `/app.js`, the only script; the Content-Security-Policy allows no other). The refresh
//! pauses while the operator is typing into a form inside it.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use fogbook_engine::schedule::CronSchedule;
use fogbook_state::{Millis, RunFilter, RunRow, RunStatus, Store, format_ms};
use serde::Deserialize;

use crate::cli::{Cli, ServeArgs};
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::html::{CSS, PageClock, RunView, compact, esc, human, run_sections, short, shown_status, waiting_reason};
use crate::output;

mod fleets;

/// The environment variable holding the access token of `--allow-actions`.
const TOKEN_ENV: &str = "FOGBOOK_SERVE_TOKEN";

struct App {
    store: Store,
    /// The access token when actions are allowed.
    token: Option<String>,
    /// `Host` header values that name this server.
    hosts: Vec<String>,
    /// The lease period (`--lease-ttl`), with which a run is shown `stalled` as `status` shows it.
    lease_ttl: std::time::Duration,
}

type Shared = Arc<App>;

/// This host's clock (shifted by `FOGBOOK_TEST_CLOCK_FILE` in tests, as `status`'s).
fn now_ms() -> Millis {
    fogbook_engine::Clock::now_ms(&*crate::schedule_cmd::clock())
}

/// The clocks a page is read at: this host's and the lease clock (the database's on
/// PostgreSQL), or the problem page when the database does not answer.
async fn page_clock(app: &App) -> Result<PageClock, Response> {
    PageClock::read(&app.store, now_ms(), app.lease_ttl)
        .await
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "check --db"))
}

pub(crate) async fn serve(cli: &Cli, args: &ServeArgs) -> Exit {
    let token = if args.allow_actions {
        match std::env::var(TOKEN_ENV) {
            Ok(t) if t.trim().len() >= 8 => Some(t.trim().to_owned()),
            _ => {
                return fail(CliError::usage(format!("--allow-actions needs an access token of at least 8 characters in {TOKEN_ENV}"), Some(format!(
                        "export {TOKEN_ENV}=$(head -c 24 /dev/urandom | base64) and give it to the approvers; or serve read-only without --allow-actions"
                    ).as_str())));
            }
        }
    } else {
        None
    };
    let store = match crate::database::open_existing(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    crate::signals::spawn_signal_handler(stop.clone(), true);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            store.close().await;
            return fail(CliError::usage(
                format!("cannot listen on {}: {e}", args.listen),
                Some("pick another address with --listen (port 0 picks a free port)"),
            ));
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    if !addr.ip().is_loopback() {
        output::always(&format!(
            "warning: serving on {addr}, which is not a loopback address: anyone who can reach it sees every run"
        ));
    }
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        hosts.push(format!("localhost:{}", addr.port()));
    }
    let app = Arc::new(App {
        store: store.clone(),
        token,
        hosts,
        lease_ttl: cli.lease_ttl,
    });
    output::data(&format!("http://{addr}/"));
    output::note(
        cli.quiet,
        if app.token.is_some() {
            "serving; approvals from the page are allowed with the access token (Ctrl-C stops)"
        } else {
            "serving read-only (Ctrl-C stops)"
        },
    );
    let result = axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    store.close().await;
    match result {
        Ok(()) => Exit::Success,
        Err(e) => {
            output::error(&format!("the web server stopped: {e}"), None);
            Exit::BadInput
        }
    }
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/decide", post(decide))
        .route("/schedules", get(schedules_page))
        .route("/fleets", get(fleets::fleets_page))
        .route("/fleets/{id}", get(fleets::fleet_page))
        .route("/app.js", get(script))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Refuses requests whose `Host` does not name this server and adds the security headers.
async fn guard(State(app): State<Shared>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !app.hosts.iter().any(|h| h == host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "unknown Host: open the URL fogbook serve printed\n",
        )
            .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

const SCRIPT: &str = r#"(function () {
  var main = document.getElementById('live');
  if (!main) return;
  var src = main.getAttribute('data-src');
  function busy() {
    var a = document.activeElement;
    if (a && main.contains(a) && (a.tagName === 'INPUT' || a.tagName === 'BUTTON')) return true;
    var inputs = main.querySelectorAll('input[type=text], input[type=password]');
    for (var i = 0; i < inputs.length; i++) { if (inputs[i].value) return true; }
    return false;
  }
  function tick() {
    if (busy()) { setTimeout(tick, 1000); return; }
    fetch(src, { cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (t) {
        if (t !== null && !busy()) {
          main.innerHTML = t;
          document.body.setAttribute('data-refreshed', String(Date.now()));
        }
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, 1000); });
  }
  setTimeout(tick, 1000);
})();
"#;

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

fn page(title: &str, live_src: &str, body: &str, app: &App) -> Response {
    let mode = if app.token.is_some() {
        "approvals allowed with the access token"
    } else {
        "read-only"
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · fogbook</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style></head>\
         <body><nav><a href=\"/\">Runs</a><a href=\"/schedules\">Schedules</a><a href=\"/fleets\">Fleets</a><span class=\"meta\">fogbook serve · {mode} · \
         <span class=\"live-note\">updates every second</span></span></nav>\
         <main id=\"live\" data-src=\"{}\">{body}</main><script src=\"/app.js\"></script></body></html>\n",
        esc(title),
        esc(live_src),
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn fragment(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn problem(status: StatusCode, what: &str, next: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head>\
         <body><main><h1 id=\"problem\">{}</h1><p>{}</p><p><a href=\"/\">back to the runs</a></p></main></body></html>\n",
        status.as_u16(),
        esc(what),
        esc(next)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    runbook: String,
    #[serde(default)]
    fragment: Option<String>,
}

/// The steps of non-terminal runs that wait for an approval nobody gave yet.
struct Pending {
    run_id: String,
    step: String,
    message: String,
    since: Option<Millis>,
}

fn pending_of(view: &RunView) -> Option<Pending> {
    if view.snap.run.status.is_terminal() {
        return None;
    }
    let step = view.snap.steps.iter().find(|s| !s.status.is_done())?;
    if view.uses(&step.step_id) != "approval" || view.snap.approvals.iter().any(|a| a.step_id == step.step_id) {
        return None;
    }
    // The step must have asked (started); a pending approval step not reached is not pending.
    step.started_at?;
    Some(Pending {
        run_id: view.snap.run.id.clone(),
        step: step.step_id.clone(),
        message: step
            .progress
            .as_ref()
            .and_then(|p| p.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_owned(),
        since: step.started_at,
    })
}

fn approval_form(app: &App, p: &Pending) -> String {
    if app.token.is_none() {
        return format!(
            "<span class=\"meta\">read-only page: approve with <code>{} approve {} {} --by NAME</code></span>",
            esc(crate::output::fogbook()),
            esc(&p.run_id),
            esc(&p.step)
        );
    }
    format!(
        "<form class=\"inline approval\" method=\"post\" action=\"/runs/{}/decide\">\
         <input type=\"hidden\" name=\"step\" value=\"{}\">\
         <label>your name <input type=\"text\" name=\"name\" required maxlength=\"100\" autocomplete=\"name\"></label>\
         <label>access token <input type=\"password\" name=\"token\" required autocomplete=\"off\"></label>\
         <button type=\"submit\" name=\"decision\" value=\"approve\" class=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"reject\" class=\"reject\">Reject (ends the run as rejected)</button></form>",
        esc(&p.run_id),
        esc(&p.step)
    )
}

fn pending_table(app: &App, pending: &[Pending], now: Millis) -> String {
    let mut s = String::from("<h2>Pending approvals</h2>");
    if pending.is_empty() {
        s.push_str("<p id=\"no-approvals\">None.</p>");
        return s;
    }
    s.push_str("<table id=\"approvals\"><thead><tr><th>run</th><th>step</th><th>asks</th><th>waiting for</th><th>decision</th></tr></thead><tbody>");
    for p in pending {
        let _ = write!(
            s,
            "<tr class=\"pending\" data-run=\"{}\" data-step=\"{}\"><td><a href=\"/runs/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.run_id),
            esc(&p.step),
            esc(&p.run_id),
            short(&p.run_id, 13),
            esc(&p.step),
            esc(&p.message),
            p.since.map(|t| human(now - t)).unwrap_or_default(),
            approval_form(app, p)
        );
    }
    s.push_str("</tbody></table>");
    s
}

async fn runs_page(State(app): State<Shared>, Query(q): Query<ListQuery>) -> Response {
    let clock = match page_clock(&app).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let now = clock.now;
    let statuses: Vec<RunStatus> = match q.status.as_str() {
        "" | "stalled" => Vec::new(),
        s => match s.parse() {
            Ok(st) => vec![st],
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    &e,
                    "statuses: pending, running, stalled, waiting, succeeded, failed, cancelled",
                );
            }
        },
    };
    let runs = match app
        .store
        .list_runs(RunFilter {
            statuses,
            limit: Some(200),
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "check --db"),
    };
    let mut listed: Vec<(RunRow, Option<RunView>, &'static str)> = Vec::new();
    for r in runs
        .into_iter()
        .filter(|r| q.runbook.is_empty() || r.runbook_name.contains(q.runbook.as_str()))
    {
        // A finished run is never stalled; an unfinished one is judged from its snapshot, as
        // `status` judges it (a stopped run with an open window is stalled).
        let view = if r.status.is_terminal() {
            None
        } else {
            RunView::load_summary(&app.store, &r.id, clock).await.ok()
        };
        let status = view
            .as_ref()
            .map_or(r.status.as_str(), |v| shown_status(&v.snap, &clock));
        if q.status != "stalled" || status == "stalled" {
            listed.push((r, view, status));
        }
    }
    let mut body = String::from("<h1>Runs</h1>");
    let mut rows = String::new();
    let mut pending = Vec::new();
    for (r, view, status) in &listed {
        let current = view
            .as_ref()
            .and_then(|v| v.snap.steps.iter().find(|s| !s.status.is_done()))
            .map(|s| format!("{} (attempt {})", s.step_id, s.attempt))
            .unwrap_or_default();
        let mut open = String::new();
        for w in view
            .iter()
            .flat_map(|v| v.snap.windows.iter())
            .filter(|w| w.closed_at.is_none())
        {
            let _ = write!(
                open,
                "<div class=\"open-window\">{} {}{}</div>",
                w.kind.as_str(),
                human(now - w.opened_at),
                w.subject
                    .as_deref()
                    .map(|s| format!(" · databases of {}", esc(s)))
                    .unwrap_or_default()
            );
        }
        let reason = view.as_ref().and_then(waiting_reason).unwrap_or_default();
        if let Some(p) = view.as_ref().and_then(pending_of) {
            pending.push(p);
        }
        let _ = write!(
            rows,
            "<tr class=\"run\" data-run=\"{}\" data-status=\"{status}\"><td><a href=\"/runs/{}\">{}</a></td><td>{}</td>\
             <td><span class=\"status status-{status}\">{status}</span></td><td>{}</td><td class=\"num\">{}</td><td>{open}</td><td>{}</td></tr>",
            esc(&r.id),
            esc(&r.id),
            short(&r.id, 13),
            esc(&r.runbook_name),
            esc(&current),
            human(now - r.created_at),
            esc(&reason)
        );
    }
    body.push_str(&pending_table(&app, &pending, now));
    let _ = write!(
        body,
        "<h2>Runs ({})</h2><form class=\"inline filters\" method=\"get\" action=\"/\"><label>status <select name=\"status\">{}</select></label>\
         <label>runbook <input type=\"search\" name=\"runbook\" value=\"{}\"></label><button type=\"submit\">Filter</button></form>\
         <table id=\"runs\"><thead><tr><th>run</th><th>runbook</th><th>status</th><th>current step</th><th>age</th>\
         <th>open windows</th><th>waiting</th></tr></thead><tbody>{rows}</tbody></table>",
        listed.len(),
        [
            "",
            "pending",
            "running",
            "stalled",
            "waiting",
            "succeeded",
            "failed",
            "cancelled"
        ]
        .iter()
        .map(|s| format!(
            "<option value=\"{s}\"{}>{}</option>",
            if *s == q.status { " selected" } else { "" },
            if s.is_empty() { "any" } else { s }
        ))
        .collect::<String>(),
        esc(&q.runbook)
    );
    if q.fragment.is_some() {
        return fragment(body);
    }
    let src = format!(
        "/?fragment=1&status={}&runbook={}",
        url_encode(&q.status),
        url_encode(&q.runbook)
    );
    page("Runs", &src, &body, &app)
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    #[serde(default)]
    fragment: Option<String>,
}

async fn run_page(State(app): State<Shared>, Path(id): Path<String>, Query(q): Query<RunQuery>) -> Response {
    let clock = match page_clock(&app).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let now = clock.now;
    let view = match RunView::load(&app.store, &id, clock).await {
        Ok(v) => v,
        Err(e @ fogbook_state::StateError::UnknownRun { .. }) => {
            return problem(
                StatusCode::NOT_FOUND,
                &e.to_string(),
                "the runs list shows the runs of this database",
            );
        }
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "check --db"),
    };
    let mut body = String::new();
    if let Some(p) = pending_of(&view) {
        body.push_str(&pending_table(&app, &[p], now));
    }
    body.push_str(&run_sections(&view));
    if q.fragment.is_some() {
        return fragment(body);
    }
    page(
        &format!("run {}", view.snap.run.id),
        &format!("/runs/{}?fragment=1", url_encode(&id)),
        &body,
        &app,
    )
}

async fn schedules_page(State(app): State<Shared>, Query(q): Query<RunQuery>) -> Response {
    let now = now_ms();
    let schedules = match app.store.schedules().await {
        Ok(s) => s,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "check --db"),
    };
    let mut body = String::from("<h1>Schedules</h1>");
    if schedules.is_empty() {
        body.push_str("<p>None: `fogbook schedule add` creates one.</p>");
    } else {
        body.push_str(
            "<table id=\"schedules\"><thead><tr><th>name</th><th>runbook</th><th>cron</th><th>zone</th><th>state</th>\
             <th>next fire times</th><th>maintenance window</th><th>active run</th></tr></thead><tbody>",
        );
        for s in &schedules {
            let next = match CronSchedule::parse(&s.cron, &s.tz) {
                Ok(c) => c
                    .next(now, 3)
                    .into_iter()
                    .map(format_ms)
                    .collect::<Vec<_>>()
                    .join("<br>"),
                Err(e) => format!("invalid: {}", esc(&e.to_string())),
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{next}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                esc(&s.runbook_name),
                esc(&s.cron),
                esc(&s.tz),
                if s.paused { "paused" } else { "active" },
                s.window
                    .as_ref()
                    .map(|w| esc(&compact(w, 200)))
                    .unwrap_or_else(|| "-".to_owned()),
                s.active_run
                    .as_deref()
                    .map(|r| format!("<a href=\"/runs/{}\">{}</a>", esc(r), short(r, 13)))
                    .unwrap_or_else(|| "-".to_owned())
            );
        }
        body.push_str("</tbody></table>");
    }
    if q.fragment.is_some() {
        return fragment(body);
    }
    page("Schedules", "/schedules?fragment=1", &body, &app)
}

#[derive(Deserialize)]
struct Decision {
    step: String,
    name: String,
    token: String,
    decision: String,
}

/// Compares without stopping at the first difference (the token's length is not secret).
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn decide(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Decision>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(expected) = app.token.as_deref() else {
        return problem(
            StatusCode::FORBIDDEN,
            "this page is read-only: approvals from the web are not allowed",
            &format!(
                "approve with `{fb} approve RUN STEP --by NAME`, or restart `{fb} serve` with --allow-actions and FOGBOOK_SERVE_TOKEN",
                fb = crate::output::fogbook()
            ),
        );
    };
    // A browser names the page a form came from; it must be this server. (The pages send
    // `Referrer-Policy: same-origin`: under `no-referrer` a browser sends `Origin: null`.)
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if let Some(origin) = headers.get(header::ORIGIN) {
        if origin.to_str().ok() != Some(format!("http://{host}").as_str()) {
            return problem(
                StatusCode::FORBIDDEN,
                "refused: the form was not sent from this server's page (cross-site request)",
                "open the run's page from the URL fogbook serve printed and decide there",
            );
        }
    } else if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return problem(
            StatusCode::FORBIDDEN,
            "refused: the form was not sent from this server's page (cross-site request)",
            "open the run's page from the URL fogbook serve printed and decide there",
        );
    }
    let Ok(Form(d)) = form else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the decision form is incomplete (step, name, token and decision are needed)",
            "use the buttons on the run's page",
        );
    };
    if !same_token(d.token.trim(), expected) {
        tracing::warn!(run_id = %id, "serve.bad_token");
        return problem(
            StatusCode::FORBIDDEN,
            "refused: wrong access token",
            "ask whoever started fogbook serve for the token in FOGBOOK_SERVE_TOKEN",
        );
    }
    let name = d.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return problem(
            StatusCode::BAD_REQUEST,
            "your name is needed (1 to 100 characters): it is recorded in the audit trail",
            "go back and type your name",
        );
    }
    let clock = match page_clock(&app).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let now = clock.now;
    let view = match RunView::load(&app.store, &id, clock).await {
        Ok(v) => v,
        Err(e) => {
            return problem(
                StatusCode::NOT_FOUND,
                &e.to_string(),
                "the runs list shows the runs of this database",
            );
        }
    };
    match pending_of(&view) {
        Some(p) if p.step == d.step => {}
        _ => {
            return problem(
                StatusCode::CONFLICT,
                &format!(
                    "step `{}` of run {id} is not waiting for an approval (any more)",
                    d.step
                ),
                "reload the run's page to see where it is",
            );
        }
    }
    let result = match d.decision.as_str() {
        "approve" => app
            .store
            .approve(
                &id,
                &d.step,
                name,
                Some("via the web (fogbook serve)".to_owned()),
                false,
                now,
            )
            .await
            .map(|_| ()),
        "reject" => {
            let dead = view
                .snap
                .run
                .lease_owner
                .clone()
                .filter(|o| fogbook_engine::owner::is_dead(o));
            // The same transition as `fogbook reject`: the run ends cancelled as rejected,
            // with the name typed in the page, and open windows are left `abandoned open`.
            let abandoned = crate::operator_cmd::open_windows(&view.snap);
            let abandoned = if abandoned.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!({ "windows": abandoned })
            };
            let actor = fogbook_state::Actor {
                name: name.to_owned(),
                source: "web page (fogbook serve)".to_owned(),
                reason: Some("rejected via the web (fogbook serve)".to_owned()),
            };
            let kind = fogbook_state::CancelKind::Reject { step: d.step.clone() };
            app.store
                .operator_cancel(&id, &actor, kind, abandoned, dead, now)
                .await
                .map(|_| ())
        }
        other => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("unknown decision `{other}`"),
                "use the Approve or Reject button",
            );
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(run_id = %id, step = %d.step, decision = %d.decision, by = %name, "serve.decided");
            Redirect::to(&format!("/runs/{}", url_encode(&id))).into_response()
        }
        Err(e) => problem(
            StatusCode::CONFLICT,
            &e.to_string(),
            "reload the run's page to see where it is",
        ),
    }
}
