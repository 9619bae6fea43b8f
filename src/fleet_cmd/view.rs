//! `fleet report` and `fleet status`: a fleet's targets, their runs and unprotected windows,
//! as a table or JSON; the web page's fleet views (`src/serve/fleets.rs`) read the same data.

use std::time::Duration;

use fogbook_state::{FleetSnapshot, Millis, StateError, Store, WindowKind, format_ms};
use serde_json::json;

use crate::cli::{Cli, Format};
use crate::error::fail;
use crate::exit::Exit;
use crate::output;
use crate::report::{Drive, set_stall_json};

use super::resolve;

fn now_ms() -> Millis {
    fogbook_engine::Clock::now_ms(&*crate::schedule_cmd::clock())
}

/// One target of a fleet as `fleet report` and the web page (`/fleets/{id}`) show it.
pub(crate) struct TargetLine {
    pub(crate) name: String,
    pub(crate) wave: u32,
    /// Its run's status once the run has ended (what ENDED is the time of), else the one the
    /// fleet last recorded (`pending` before its run starts, `waiting`, `running`).
    pub(crate) status: String,
    pub(crate) run: Option<String>,
    /// When its run was created (wall clock).
    pub(crate) started: Option<Millis>,
    /// When its run ended (wall clock, the run's own record): not when the fleet noticed,
    /// which is later when the run was continued outside the fleet (`resume`, a worker).
    pub(crate) ended: Option<Millis>,
    /// The total time of its run's closed unprotected windows.
    pub(crate) unprotected_ms: Millis,
    /// How many of its run's unprotected windows are open.
    pub(crate) open_windows: usize,
    /// Its run's unprotected windows: opened, and closed unless open.
    pub(crate) windows: Vec<(Millis, Option<Millis>)>,
}

/// A fleet and its targets' lines (what `fleet report` and `/fleets/{id}` show).
pub(crate) async fn load_report(store: &Store, id: &str) -> Result<(FleetSnapshot, Vec<TargetLine>), StateError> {
    let snap = store.load_fleet(id).await?;
    let lines = lines(store, &snap).await?;
    Ok((snap, lines))
}

async fn lines(store: &Store, snap: &FleetSnapshot) -> Result<Vec<TargetLine>, StateError> {
    let mut out = Vec::new();
    for t in &snap.targets {
        let (mut unprotected_ms, mut open_windows, mut windows) = (0, 0, Vec::new());
        let (mut started, mut ended, mut status) = (t.started_at, t.ended_at, t.status.clone());
        if let Some(run) = &t.run_id {
            let run = store.load_run(run).await?;
            started = Some(run.run.created_at);
            ended = run.run.finished_at.or(ended);
            // A run continued outside the fleet (`resume`, a worker) ended before the fleet
            // noticed: the row says how it ended, not what the fleet last saw.
            if run.run.status.is_terminal() {
                status = run.run.status.as_str().to_owned();
            }
            for w in run.windows.iter().filter(|w| w.kind == WindowKind::Unprotected) {
                match w.closed_at {
                    Some(c) => unprotected_ms += c - w.opened_at,
                    None => open_windows += 1,
                }
                windows.push((w.opened_at, w.closed_at));
            }
        }
        out.push(TargetLine {
            name: t.name.clone(),
            wave: t.wave,
            status,
            run: t.run_id.clone(),
            started,
            ended,
            unprotected_ms,
            open_windows,
            windows,
        });
    }
    Ok(out)
}

/// How many targets have the status (`pending` is a target not started yet).
pub(crate) fn count(snap: &FleetSnapshot, status: &str) -> usize {
    snap.targets.iter().filter(|t| t.status == status).count()
}

/// Whether anybody drives a `running` fleet, as [`crate::report::drive_of_run`] decides it for a
/// run: a driver killed or stopped past its lease leaves the fleet `running` in its row,
/// shown as `stalled` with the way to continue it.
pub(crate) fn fleet_drive(f: &fogbook_state::FleetRow, now: Millis, lease_ttl: Duration) -> Drive {
    if f.status != "running" {
        return Drive::Idle;
    }
    let ttl = i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX);
    match (&f.lease_owner, f.lease_expires_at) {
        (Some(owner), Some(until)) if fogbook_engine::owner::is_dead(owner) => Drive::Stalled {
            since: until.saturating_sub(ttl).max(f.updated_at).min(now),
            why: format!("its driver {owner} has exited"),
        },
        (Some(owner), Some(until)) if until > now => Drive::Running {
            owner: owner.clone(),
            until,
        },
        (Some(owner), Some(until)) => Drive::Stalled {
            since: until.saturating_sub(ttl).max(f.updated_at).min(until),
            why: format!("the lease of {owner} expired at {}", format_ms(until)),
        },
        _ => Drive::Stalled {
            since: f.updated_at,
            why: "no process holds its lease".to_owned(),
        },
    }
}

/// The fleet's status as shown: `stalled` for a `running` fleet nobody drives.
fn shown_status(f: &fogbook_state::FleetRow, drive: &Drive) -> String {
    match drive {
        Drive::Stalled { .. } => "stalled".to_owned(),
        _ => f.status.clone(),
    }
}

fn header(snap: &FleetSnapshot, drive: &Drive) -> String {
    let f = &snap.fleet;
    let mut text = format!(
        "fleet {} ({}), runbook `{}`, created {}\nstatus: {}{}\ntargets: {} — {} succeeded, {} failed, {} running, {} waiting, {} cancelled, {} not started\nrate: {}",
        f.id,
        f.name,
        f.runbook_name,
        format_ms(f.created_at),
        shown_status(f, drive),
        f.reason
            .as_deref()
            .map(|r| format!(" — {}", crate::output::commands(r)))
            .unwrap_or_default(),
        snap.targets.len(),
        count(snap, "succeeded"),
        count(snap, "failed"),
        count(snap, "running"),
        count(snap, "waiting"),
        count(snap, "cancelled"),
        count(snap, "pending"),
        describe_rate(&f.spec["rate"], snap.targets.len()),
    );
    match drive {
        Drive::Running { owner, until } => {
            text.push_str(&format!("\ndriven by {owner} (lease until {})", format_ms(*until)));
        }
        Drive::Stalled { since, why } => text.push_str(&format!(
            "\nstalled: nobody drives this fleet since {} ({why}); continue it: `{fb} fleet resume {}`",
            format_ms(*since),
            f.id,
            fb = crate::output::fogbook()
        )),
        Drive::Idle => {}
    }
    text
}

/// Rate control in words, from the stored spec.
pub(crate) fn describe_rate(rate: &serde_json::Value, targets: usize) -> String {
    let Ok(rate) = serde_json::from_value::<fogbook_engine::fleet::RateControl>(rate.clone()) else {
        return rate.to_string();
    };
    let errors = match rate.max_errors {
        fogbook_engine::fleet::MaxErrors::Count(n) => format!("{n}"),
        fogbook_engine::fleet::MaxErrors::Percent(p) => {
            format!("{p}% ({})", rate.max_errors.threshold(targets))
        }
    };
    let mut text = format!(
        "at most {} at once; no new start after {errors} failed",
        rate.max_concurrency
    );
    if rate.canary > 0 {
        text.push_str(&format!("; a canary wave of {}", rate.canary));
    }
    match rate.wave_size {
        Some(n) => text.push_str(&format!("; waves of {n}")),
        None => text.push_str("; the rest in one wave"),
    }
    if rate.approval {
        text.push_str("; an approval before each wave");
    }
    text
}

fn table(lines: &[TargetLine]) -> String {
    let mut rows = vec![[
        "TARGET".to_owned(),
        "WAVE".to_owned(),
        "STATUS".to_owned(),
        "RUN".to_owned(),
        "STARTED".to_owned(),
        "ENDED".to_owned(),
        "UNPROTECTED".to_owned(),
    ]];
    for l in lines {
        let unprotected = match (l.unprotected_ms, l.open_windows) {
            (0, 0) => "-".to_owned(),
            (ms, 0) => fogbook_activities::duration::format(Duration::from_millis(ms.max(0).unsigned_abs())),
            (ms, n) => format!(
                "{} + {n} OPEN",
                fogbook_activities::duration::format(Duration::from_millis(ms.max(0).unsigned_abs()))
            ),
        };
        rows.push([
            l.name.clone(),
            l.wave.to_string(),
            l.status.clone(),
            l.run.clone().unwrap_or_else(|| "-".to_owned()),
            l.started.map(format_ms).unwrap_or_else(|| "-".to_owned()),
            l.ended.map(format_ms).unwrap_or_else(|| "-".to_owned()),
            unprotected,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn json_doc(snap: &FleetSnapshot, lines: &[TargetLine], drive: &Drive) -> serde_json::Value {
    let f = &snap.fleet;
    let mut doc = json!({
        "fleet_id": f.id,
        "name": f.name,
        "runbook": f.runbook_name,
        "status": f.status,
        "reason": f.reason,
        "rate": f.spec["rate"],
        "created_at": format_ms(f.created_at),
        "lease_owner": f.lease_owner,
        "targets": lines.iter().map(|l| json!({
            "name": l.name,
            "wave": l.wave,
            "status": l.status,
            "run_id": l.run,
            "started_at": l.started.map(format_ms),
            "ended_at": l.ended.map(format_ms),
            "unprotected_ms": l.unprotected_ms,
            "open_unprotected_windows": l.open_windows,
        })).collect::<Vec<_>>(),
    });
    doc["state"] = json!(shown_status(f, drive));
    set_stall_json(&mut doc, drive);
    doc
}

async fn show(cli: &Cli, store: Store, arg: String, kind: &str) -> Exit {
    let id = match resolve(&store, &arg).await {
        Ok(id) => id,
        Err(code) => return code,
    };
    let (snap, lines) = match load_report(&store, &id).await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    // Leases are judged by the clock they are written by (the database's on PostgreSQL).
    let lease_now = match store.lease_now(now_ms()).await {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let drive = fleet_drive(&snap.fleet, lease_now, cli.lease_ttl);
    if cli.format == Format::Json {
        output::json(kind, &json_doc(&snap, &lines, &drive));
    } else {
        output::data(&format!("{}\n\n{}", header(&snap, &drive), table(&lines)));
    }
    Exit::Success
}

pub(super) async fn report(cli: &Cli, store: Store, arg: String) -> Exit {
    show(cli, store, arg, "fleet_report").await
}

pub(super) async fn status(cli: &Cli, store: Store, arg: Option<String>) -> Exit {
    if let Some(arg) = arg {
        return show(cli, store, arg, "fleet_status").await;
    }
    // Leases are judged by the clock they are written by (the database's on PostgreSQL).
    let now = match store.lease_now(now_ms()).await {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let fleets = match store.list_fleets().await {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    if cli.format == Format::Json {
        let list: Vec<_> = fleets
            .iter()
            .map(|f| {
                let drive = fleet_drive(f, now, cli.lease_ttl);
                let mut v = json!({ "fleet_id": f.id, "name": f.name, "status": f.status, "state": shown_status(f, &drive), "reason": f.reason, "created_at": format_ms(f.created_at) });
                set_stall_json(&mut v, &drive);
                v
            })
            .collect();
        output::json("fleets", &json!({ "fleets": list }));
    } else if fleets.is_empty() {
        output::data("no fleets");
    } else {
        for f in &fleets {
            let drive = fleet_drive(f, now, cli.lease_ttl);
            let mut line = format!(
                "{}  {}  {}  {}",
                f.id,
                format_ms(f.created_at),
                shown_status(f, &drive),
                f.name
            );
            if matches!(drive, Drive::Stalled { .. }) {
                line.push_str(&format!(
                    "  (nobody drives it: `{} fleet resume {}`)",
                    crate::output::fogbook(),
                    f.id
                ));
            }
            output::data(&line);
        }
    }
    Exit::Success
}
