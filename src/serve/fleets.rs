//! The fleet pages of `fogbook serve`: `/fleets` (every fleet) and `/fleets/{id}` (its
//! targets, their runs and unprotected windows, its rate control and why it stopped or
//! waits). The data is `fleet report`'s ([`crate::fleet_cmd::load_report`]).

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use fogbook_state::format_ms;

use super::{RunQuery, Shared, fragment, now_ms, page, problem, url_encode};
use crate::html::{esc, human, short};

/// A fleet's status with the reason it stopped or waits, as `fleet report` says it.
fn fleet_status(f: &fogbook_state::FleetRow) -> String {
    format!(
        "<span class=\"status status-{0}\">{0}</span>{1}",
        esc(&f.status),
        f.reason
            .as_deref()
            .map(|r| format!(" <span class=\"reason\">— {}</span>", esc(&crate::output::commands(r))))
            .unwrap_or_default()
    )
}

pub(super) async fn fleets_page(State(app): State<Shared>, Query(q): Query<RunQuery>) -> Response {
    let fleets = match app.store.list_fleets().await {
        Ok(f) => f,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "check --db"),
    };
    let mut body = String::from("<h1>Fleets</h1>");
    if fleets.is_empty() {
        body.push_str("<p id=\"no-fleets\">None: `fogbook fleet run FLEET.yaml` starts one.</p>");
    } else {
        body.push_str(
            "<table id=\"fleets\"><thead><tr><th>fleet</th><th>name</th><th>runbook</th><th>status</th>\
             <th>succeeded</th><th>failed</th><th>running</th><th>waiting</th><th>not started</th><th>started</th></tr></thead><tbody>",
        );
        for f in &fleets {
            let snap = match app.store.load_fleet(&f.id).await {
                Ok(s) => s,
                Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "check --db"),
            };
            let n = |s: &str| crate::fleet_cmd::count(&snap, s);
            let _ = write!(
                body,
                "<tr class=\"fleet\" data-fleet=\"{}\" data-status=\"{}\"><td><a href=\"/fleets/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&f.id),
                esc(&f.status),
                esc(&url_encode(&f.id)),
                short(&f.id, 13),
                esc(&f.name),
                esc(&f.runbook_name),
                fleet_status(f),
                n("succeeded"),
                n("failed"),
                n("running"),
                n("waiting"),
                n("pending"),
                format_ms(f.created_at)
            );
        }
        body.push_str("</tbody></table>");
    }
    if q.fragment.is_some() {
        return fragment(body);
    }
    page("Fleets", "/fleets?fragment=1", &body, &app)
}

pub(super) async fn fleet_page(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    let now = now_ms();
    let (snap, lines) = match crate::fleet_cmd::load_report(&app.store, &id).await {
        Ok(x) => x,
        Err(e @ fogbook_state::StateError::UnknownFleet { .. }) => {
            return problem(
                StatusCode::NOT_FOUND,
                &e.to_string(),
                "the fleets list (/fleets) shows the fleets of this database",
            );
        }
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "check --db"),
    };
    let f = &snap.fleet;
    let n = |s: &str| crate::fleet_cmd::count(&snap, s);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Fleet {} <span class=\"meta\">{}</span></h1>\
         <dl id=\"fleet-summary\"><dt>runbook</dt><dd>{}</dd><dt>status</dt><dd id=\"fleet-status\">{}</dd>\
         <dt>targets</dt><dd>{} — {} succeeded, {} failed, {} running, {} waiting, {} cancelled, {} not started</dd>\
         <dt>rate control</dt><dd id=\"fleet-rate\">{}</dd><dt>created</dt><dd>{}</dd>{}</dl>",
        esc(&f.name),
        esc(&f.id),
        esc(&f.runbook_name),
        fleet_status(f),
        snap.targets.len(),
        n("succeeded"),
        n("failed"),
        n("running"),
        n("waiting"),
        n("cancelled"),
        n("pending"),
        esc(&crate::fleet_cmd::describe_rate(&f.spec["rate"], snap.targets.len())),
        format_ms(f.created_at),
        f.lease_owner
            .as_deref()
            .map(|o| format!(
                "<dt>driven by</dt><dd>{} (lease until {})</dd>",
                esc(o),
                f.lease_expires_at.map(format_ms).unwrap_or_default()
            ))
            .unwrap_or_default()
    );
    body.push_str(
        "<h2>Targets</h2><table id=\"targets\"><thead><tr><th>target</th><th>wave</th><th>status</th><th>run</th>\
         <th>started</th><th>ended</th><th>unprotected windows</th></tr></thead><tbody>",
    );
    for l in &lines {
        let windows = if l.windows.is_empty() {
            "-".to_owned()
        } else {
            l.windows
                .iter()
                .map(|(opened, closed)| match closed {
                    Some(c) => format!("<div class=\"window closed\">closed after {}</div>", human(c - opened)),
                    None => format!(
                        "<div class=\"window open-window\">OPEN for {}</div>",
                        human(now - opened)
                    ),
                })
                .collect()
        };
        let _ = write!(
            body,
            "<tr class=\"target\" data-target=\"{}\" data-status=\"{}\"><td>{}</td><td class=\"num\">{}</td>\
             <td><span class=\"status status-{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{windows}</td></tr>",
            esc(&l.name),
            esc(&l.status),
            esc(&l.name),
            l.wave,
            esc(&l.status),
            esc(&l.status),
            l.run
                .as_deref()
                .map(|r| format!("<a href=\"/runs/{}\">{}</a>", esc(&url_encode(r)), short(r, 13)))
                .unwrap_or_else(|| "-".to_owned()),
            l.started.map(format_ms).unwrap_or_else(|| "-".to_owned()),
            l.ended.map(format_ms).unwrap_or_else(|| "-".to_owned()),
        );
    }
    body.push_str("</tbody></table>");
    if q.fragment.is_some() {
        return fragment(body);
    }
    page(
        &format!("fleet {}", f.name),
        &format!("/fleets/{}?fragment=1", url_encode(&id)),
        &body,
        &app,
    )
}
