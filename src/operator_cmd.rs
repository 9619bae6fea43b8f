// Over 600 lines on purpose: the operator's actions share their refusal checks (the run and its runbook, the step, cloud operations in flight, open windows), which split by action would be imported back and forth.
//! Operator actions on a run in trouble: approvals (list, approve, reject), cancel, skip,
//! complete, window close. Each is one store transition with one audited event (who, why,
//! what changed), refused where it could repeat an effect or hide an open window.

use fogbook_engine::runbook::{self, Runbook, Step, WithValue};
use fogbook_state::{Actor, CancelKind, Millis, RunSnapshot, RunStatus, StepStatus, Store, WindowKind, format_ms};
use serde_json::json;

use crate::cli::{
    ApproveArgs, CancelArgs, Cli, CompleteArgs, Format, RejectArgs, RepinArgs, RetryFromArgs, SkipArgs, WindowCloseArgs,
};
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::output;
use crate::report::{Drive, drive_of_run};

fn now() -> Millis {
    fogbook_engine::Clock::now_ms(&fogbook_engine::SystemClock)
}

/// The time a run's lease is judged by, as `status` judges it ([`crate::report::lease_clock_now`]:
/// the database server's clock on PostgreSQL, this host's on SQLite). It only words what
/// happens next: when the database does not answer, this host's clock stands in (the action
/// itself is recorded already, or refused for another reason).
async fn lease_now(store: &Store) -> Millis {
    match crate::report::lease_clock_now(store).await {
        Ok(at) => at,
        Err(_) => {
            tracing::warn!("could not read the database's clock; judging the run's lease by this host's");
            fogbook_engine::Clock::now_ms(&*crate::schedule_cmd::clock())
        }
    }
}

async fn load(store: &Store, run_id: &str) -> Result<(RunSnapshot, Runbook), Exit> {
    let snap = store.load_run(run_id).await.map_err(fail)?;
    let origin = format!("runbook pinned to run {run_id}");
    let rb = runbook::parse(&snap.run.runbook_text, &origin).map_err(|d| {
        output::always(&d.to_string());
        fail(CliError::usage(
            format!("the runbook pinned to run {run_id} does not parse"),
            None,
        ))
    })?;
    Ok((snap, rb))
}

/// The step `id` of the pinned runbook, or an error listing the steps.
fn step_of<'a>(rb: &'a Runbook, run_id: &str, id: &str, only_approvals: bool) -> Result<&'a Step, Exit> {
    match rb.step(id) {
        Some(s) if only_approvals && s.uses != "approval" => Err(fail(CliError::usage(
            format!("step `{id}` is a `{}` step, not an approval", s.uses),
            None,
        ))),
        Some(s) => Ok(s),
        None => {
            let names: Vec<&str> = rb
                .steps
                .iter()
                .filter(|s| !only_approvals || s.uses == "approval")
                .map(|s| s.id.as_str())
                .collect();
            let what = if only_approvals {
                "its approval steps"
            } else {
                "its steps"
            };
            Err(fail(CliError::usage(
                format!("run {run_id} has no step `{id}`"),
                Some(format!("{what}: {}", names.join(", ")).as_str()),
            )))
        }
    }
}

/// The person who started the run, as recorded when it was created.
async fn starter(store: &Store, run_id: &str) -> Option<String> {
    let events = store.events(run_id).await.ok()?;
    let created = events.iter().find(|e| e.kind == "run.created")?;
    created.data["by"]["user"].as_str().map(str::to_owned)
}

/// Who may approve step `s`: the names it lists (`approvers`), and whether the starter is
/// excluded (`distinct_from_starter`).
fn approvers(s: &Step) -> (Vec<String>, bool) {
    let names = match s.with.get("approvers") {
        Some(WithValue::List(items)) => items
            .iter()
            .filter_map(|v| match v {
                WithValue::Template(t) => Some(t.as_literal().unwrap_or(t.source()).to_owned()),
                WithValue::Literal(v) => Some(v.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let distinct = matches!(s.with.get("distinct_from_starter"), Some(WithValue::Literal(v)) if v == &json!(true));
    (names, distinct)
}

fn may_approve_text(names: &[String], distinct: bool, starter: Option<&str>) -> String {
    let mut text = if names.is_empty() {
        "anyone".to_owned()
    } else {
        names.join(", ")
    };
    if distinct {
        text.push_str(&format!(" except the starter ({})", starter.unwrap_or("unknown")));
    }
    text
}

/// What happens next after an approval: the run's driver continues it, or the command to
/// continue it.
/// `lease_now`: the lease clock ([`lease_now`]).
fn next_after_decision(snap: &RunSnapshot, cli: &Cli, lease_now: Millis) -> String {
    let id = &snap.run.id;
    match drive_of_run(snap, lease_now, cli.lease_ttl) {
        Drive::Running { owner, .. } => format!("run {id} is driven by {owner}; it continues by itself"),
        Drive::Stalled { since, .. } => format!(
            "nobody drives run {id} since {}; continue it: {fb} resume {id}",
            fogbook_state::format_ms(since),
            fb = crate::output::fogbook()
        ),
        _ => format!(
            "continue the run: {fb} resume {id} (or a running `{fb} worker` picks it up)",
            fb = crate::output::fogbook()
        ),
    }
}

pub(crate) async fn approvals(cli: &Cli, store: Store) -> Exit {
    let filter = fogbook_state::RunFilter {
        statuses: vec![RunStatus::Pending, RunStatus::Running, RunStatus::Waiting],
        limit: None,
    };
    let runs = match store.list_runs(filter).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut pending = Vec::new();
    for r in runs {
        let Ok((snap, rb)) = load(&store, &r.id).await else {
            continue;
        };
        let Some(cur) = snap.steps.iter().find(|s| !s.status.is_done()) else {
            continue;
        };
        let Some(step) = rb.step(&cur.step_id).filter(|s| s.uses == "approval") else {
            continue;
        };
        if cur.status != StepStatus::Running || snap.approvals.iter().any(|a| a.step_id == cur.step_id) {
            continue;
        }
        let progress = cur.progress.clone().unwrap_or_default();
        let (names, distinct) = approvers(step);
        let start = starter(&store, &snap.run.id).await;
        pending.push(json!({
            "run_id": snap.run.id,
            "runbook": snap.run.runbook_name,
            "step": cur.step_id,
            "message": progress["message"],
            "since": progress["requested_at"].as_str().map_or_else(|| cur.started_at.map(format_ms), |s| Some(s.to_owned())),
            "approvers": names,
            "distinct_from_starter": distinct,
            "starter": start,
            "may_approve": may_approve_text(&names, distinct, start.as_deref()),
        }));
    }
    if cli.format == Format::Json {
        output::json("approvals", &json!({ "approvals": pending }));
        return Exit::Success;
    }
    if pending.is_empty() {
        output::data("no pending approvals");
        return Exit::Success;
    }
    let mut out = format!(
        "{:<36}  {:<20} {:<24} {:<24} MESSAGE\n",
        "RUN", "STEP", "SINCE", "MAY APPROVE"
    );
    for p in &pending {
        out.push_str(&format!(
            "{:<36}  {:<20} {:<24} {:<24} {}\n",
            p["run_id"].as_str().unwrap_or(""),
            p["step"].as_str().unwrap_or(""),
            p["since"].as_str().unwrap_or("-"),
            p["may_approve"].as_str().unwrap_or(""),
            p["message"].as_str().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "approve: {fb} approve RUN STEP --by NAME; reject: {fb} reject RUN STEP --by NAME --reason TEXT",
        fb = crate::output::fogbook()
    ));
    output::data(&out);
    Exit::Success
}

pub(crate) async fn approve(cli: &Cli, store: Store, args: &ApproveArgs) -> Exit {
    let (_, rb) = match load(&store, &args.run_id).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let step = match step_of(&rb, &args.run_id, &args.step, true) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let actor = args.who.actor();
    let (names, distinct) = approvers(step);
    let start = starter(&store, &args.run_id).await;
    if !names.is_empty() && !names.iter().any(|n| n == &actor.name) {
        return fail(CliError::usage(
            format!(
                "{} may not approve step `{}` of run {}",
                actor.name, args.step, args.run_id
            ),
            Some(format!("the step names who may approve: {}", names.join(", ")).as_str()),
        ));
    }
    if distinct && start.as_deref() == Some(actor.name.as_str()) {
        return fail(CliError::usage(
            format!(
                "{} started run {} and step `{}` needs an approver other than the starter",
                actor.name, args.run_id, args.step
            ),
            Some(
                format!(
                    "ask someone else: {}",
                    may_approve_text(&names, distinct, start.as_deref())
                )
                .as_str(),
            ),
        ));
    }
    let extra = json!({ "by_source": actor.source, "reason": actor.reason });
    match store
        .approve_with(
            &args.run_id,
            &args.step,
            &actor.name,
            actor.reason.clone(),
            false,
            extra,
            now(),
        )
        .await
    {
        Ok(row) => {
            let next = match store.load_run(&args.run_id).await {
                Ok(s) => next_after_decision(&s, cli, lease_now(&store).await),
                Err(_) => String::new(),
            };
            if cli.format == Format::Json {
                output::json(
                    "approval",
                    &json!({ "run_id": args.run_id, "step": args.step, "by": row.by, "by_source": actor.source,
                             "at": format_ms(row.at), "next": next }),
                );
            } else {
                output::data(&format!(
                    "approved step `{}` of run {} as {}",
                    args.step, args.run_id, row.by
                ));
                output::note(cli.quiet, &next);
            }
            Exit::Success
        }
        Err(e) => fail(e),
    }
}

pub(crate) async fn reject(cli: &Cli, store: Store, args: &RejectArgs) -> Exit {
    let (snap, rb) = match load(&store, &args.run_id).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Err(code) = step_of(&rb, &args.run_id, &args.step, true) {
        return code;
    }
    let actor = args.who.actor();
    if actor.reason.is_none() {
        return fail(CliError::usage(
            "a rejection needs a reason",
            Some(
                format!(
                    "{fb} reject {} {} --reason TEXT (it is recorded in the audit trail)",
                    args.run_id,
                    args.step,
                    fb = crate::output::fogbook()
                )
                .as_str(),
            ),
        ));
    }
    // The approval step has no effect to abandon, but a window opened earlier stays open
    // in the cloud: the rejection says so, and the window is shown `abandoned open`.
    let abandoned = open_windows(&snap);
    let abandoned = if abandoned.is_empty() {
        serde_json::Value::Null
    } else {
        json!({ "windows": abandoned })
    };
    let dead = dead_owner(&snap);
    let kind = CancelKind::Reject {
        step: args.step.clone(),
    };
    match store
        .operator_cancel(&args.run_id, &actor, kind, abandoned.clone(), dead, now())
        .await
    {
        Ok(over) => {
            if cli.format == Format::Json {
                output::json(
                    "reject",
                    &json!({ "run_id": args.run_id, "step": args.step, "by": actor.name, "cancelled": over, "abandoned": abandoned }),
                );
            } else if over {
                output::data(&format!(
                    "rejected step `{}` of run {} as {}; the run is cancelled and its locks are released",
                    args.step, args.run_id, actor.name
                ));
            } else {
                output::data(&format!(
                    "rejected step `{}` of run {} as {}; its driver stops it at the next safe point and it ends cancelled",
                    args.step, args.run_id, actor.name
                ));
            }
            warn_windows(cli, &args.run_id, &abandoned);
            Exit::Success
        }
        Err(e) => fail(e),
    }
}

fn dead_owner(snap: &RunSnapshot) -> Option<String> {
    snap.run
        .lease_owner
        .clone()
        .filter(|o| fogbook_engine::owner::is_dead(o))
}

/// The open windows of a run, for the record of a cancel that leaves them.
/// The run's open windows, as a cancel or rejection records them when it abandons them.
pub(crate) fn open_windows(snap: &RunSnapshot) -> Vec<serde_json::Value> {
    snap.windows
        .iter()
        .filter(|w| w.closed_at.is_none())
        .map(|w| json!({ "window": w.id, "kind": w.kind, "opened_by": w.opened_step, "opened_at": format_ms(w.opened_at) }))
        .collect()
}

/// Steps of a run with a cloud operation that may be in flight: a started step of a
/// mutating Azure activity that has not finished.
fn in_flight(snap: &RunSnapshot, rb: &Runbook) -> Vec<serde_json::Value> {
    snap.steps
        .iter()
        .filter(|s| matches!(s.status, StepStatus::Running | StepStatus::RetryWait))
        .filter_map(|s| {
            let step = rb.step(&s.step_id)?;
            let azure = fogbook_activities::needs_arm(&step.uses) && !fogbook_activities::is_read_only(&step.uses);
            azure.then(|| {
                json!({
                    "step": s.step_id, "uses": step.uses, "attempt": s.attempt,
                    "since": s.started_at.map(format_ms),
                    "operation": s.progress.as_ref().and_then(|p| p.get("operation").or_else(|| p.get("url")).cloned()),
                    "progress": s.progress,
                })
            })
        })
        .collect()
}

fn warn_windows(cli: &Cli, run_id: &str, abandoned: &serde_json::Value) {
    for w in abandoned["windows"].as_array().into_iter().flatten() {
        output::note(
            cli.quiet,
            &format!(
                "window {} ({}) opened by `{}` at {} is left ABANDONED OPEN; once you know it closed: {fb} window close {run_id} {} --reason TEXT",
                w["window"],
                w["kind"].as_str().unwrap_or("?"),
                w["opened_by"].as_str().unwrap_or("?"),
                w["opened_at"].as_str().unwrap_or("?"),
                w["window"],
                fb = crate::output::fogbook()
            ),
        );
    }
}

/// What to do instead of cancelling, fitting the reasons (an operation in flight, an open
/// unprotected window) and the way the run goes on (a live driver, a failed step to retry,
/// an approval to give, nobody driving it). `lease_now`: the lease clock ([`lease_now`]).
fn cancel_refusal_hint(cli: &Cli, snap: &RunSnapshot, ops: bool, windows: bool, lease_now: Millis) -> String {
    let run_id = &snap.run.id;
    let fb = crate::output::fogbook();
    let until = match (ops, windows) {
        (true, true) => "until its cloud operation has ended and its unprotected window has closed",
        (true, false) => "until its cloud operation has ended",
        _ => "until the step that closes its unprotected window has run",
    };
    // A run waiting for its maintenance window records it (see `report::waits_for`).
    let maintenance_window = snap
        .run
        .error
        .as_ref()
        .filter(|e| e.get("waiting_for").is_some())
        .map(|e| e["window"].as_str().unwrap_or("").to_owned());
    let go_on = match (
        drive_of_run(snap, lease_now, cli.lease_ttl),
        snap.run.status,
        maintenance_window,
    ) {
        (Drive::Running { owner, .. }, _, _) => format!("its driver {owner} carries it on"),
        (_, RunStatus::Failed, _) => {
            format!("it has failed: `{fb} resume {run_id} --retry-failed` retries its failed step")
        }
        (_, RunStatus::Waiting, Some(window)) => {
            format!("it waits for its maintenance window {window}: a worker resumes it when the window opens")
        }
        (_, RunStatus::Waiting, None) => {
            format!("it waits for an approval: give it (`{fb} approvals` lists it) and `{fb} resume {run_id}`")
        }
        _ => format!("nobody drives it: `{fb} resume {run_id}` continues it"),
    };
    format!(
        "let the run go on {until} ({go_on}); or cancel anyway, recording what is abandoned: {fb} cancel {run_id} --force --reason TEXT"
    )
}

pub(crate) async fn cancel(cli: &Cli, store: Store, args: &CancelArgs) -> Exit {
    let (snap, rb) = match load(&store, &args.run_id).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let run_id = &args.run_id;
    let ops = in_flight(&snap, &rb);
    let windows: Vec<_> = open_windows(&snap)
        .into_iter()
        .filter(|w| w["kind"] == json!(WindowKind::Unprotected))
        .collect();
    let finished = matches!(snap.run.status, RunStatus::Succeeded | RunStatus::Cancelled);
    if !args.force && (!ops.is_empty() || !windows.is_empty()) && !finished {
        let mut why = Vec::new();
        for o in &ops {
            why.push(format!(
                "step `{}` ({}) has a cloud operation in flight since {}: cancelling now abandons it, and Azure finishes it (or not) without fogbook watching",
                o["step"].as_str().unwrap_or("?"),
                o["uses"].as_str().unwrap_or("?"),
                o["since"].as_str().unwrap_or("?"),
            ));
        }
        for w in &windows {
            why.push(format!(
                "an unprotected window (databases without a geo-replica) is open since {}, opened by `{}`: cancelling leaves it open with no step left to close it",
                w["opened_at"].as_str().unwrap_or("?"),
                w["opened_by"].as_str().unwrap_or("?"),
            ));
        }
        return fail(CliError::usage(
            format!("refusing to cancel run {run_id}:\n  - {}", why.join("\n  - ")),
            Some(&cancel_refusal_hint(
                cli,
                &snap,
                !ops.is_empty(),
                !windows.is_empty(),
                lease_now(&store).await,
            )),
        ));
    }
    let actor = args.who.actor();
    let abandoned = if ops.is_empty() && windows.is_empty() {
        serde_json::Value::Null
    } else {
        json!({ "operations": ops, "windows": windows, "at": format_ms(now()) })
    };
    match store
        .operator_cancel(
            run_id,
            &actor,
            CancelKind::Cancel,
            abandoned.clone(),
            dead_owner(&snap),
            now(),
        )
        .await
    {
        Ok(over) => {
            if cli.format == Format::Json {
                output::json(
                    "cancel",
                    &json!({ "run_id": run_id, "cancelled": over, "requested": !over, "by": actor.name,
                             "by_source": actor.source, "reason": actor.reason,
                             // A live driver abandons nothing now: what was in flight or open
                             // when the cancel was asked.
                             "abandoned": if over { abandoned.clone() } else { serde_json::Value::Null },
                             "in_flight_when_asked": if over { serde_json::Value::Null } else { abandoned.clone() } }),
                );
            } else if over {
                output::data(&format!(
                    "run {run_id} cancelled by {}; its locks are released",
                    actor.name
                ));
            } else {
                output::data(&format!(
                    "run {run_id} is being driven; it will stop at its next safe point and be cancelled"
                ));
            }
            if !over {
                // A live driver stops only at a safe point: it abandons nothing now, and
                // whatever is still in flight or open when it stops, `status` shows then.
                let in_flight: Vec<String> = abandoned["operations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| format!("`{}`", o["step"].as_str().unwrap_or("?")))
                    .collect();
                if !in_flight.is_empty() || !abandoned["windows"].as_array().is_none_or(Vec::is_empty) {
                    let step = if in_flight.is_empty() {
                        String::new()
                    } else {
                        format!(" (step {} is in flight)", in_flight.join(", "))
                    };
                    output::note(
                        cli.quiet,
                        &format!(
                            "nothing is abandoned yet: its driver goes on until its next safe point{step}, then stops and cancels the run; then `{fb} status {run_id}` shows any cloud operation left in flight or window left open",
                            fb = crate::output::fogbook()
                        ),
                    );
                }
                return Exit::Success;
            }
            // A rehearsal's operations ran on its emulator, not in Azure.
            let place = match crate::rehearsal::target_of(&store, run_id).await {
                Ok(crate::rehearsal::Target::Rehearsal(r)) => {
                    format!("in the emulator (its state file {})", r.state_file.display())
                }
                _ => "in Azure".to_owned(),
            };
            for o in abandoned["operations"].as_array().into_iter().flatten() {
                output::note(
                    cli.quiet,
                    &format!(
                        "abandoned the cloud operation of step `{}` ({}); check its outcome {place}",
                        o["step"].as_str().unwrap_or("?"),
                        o["uses"].as_str().unwrap_or("?")
                    ),
                );
            }
            warn_windows(cli, run_id, &abandoned);
            Exit::Success
        }
        Err(e) => fail(e),
    }
}

/// Common checks of `skip` and `complete`: the step exists, is not done, and has no
/// operation in flight unless forced.
async fn repairable(store: &Store, run_id: &str, step_id: &str, force: bool) -> Result<(RunSnapshot, Runbook), Exit> {
    let (snap, rb) = load(store, run_id).await?;
    let step = step_of(&rb, run_id, step_id, false)?;
    // An approval is decided by `approve` or `reject`, with their checks of who may decide.
    if step.uses == "approval" {
        return Err(fail(CliError::usage(format!("step `{step_id}` of run {run_id} is an approval: it is not skipped or completed by hand"), Some(format!(
                "{fb} approve {run_id} {step_id} --by NAME, or {fb} reject {run_id} {step_id} --by NAME --reason TEXT",
                fb = crate::output::fogbook()
            ).as_str()))));
    }
    let ops = in_flight(&snap, &rb);
    if !force && ops.iter().any(|o| o["step"] == json!(step_id)) {
        return Err(fail(CliError::usage(
            format!("step `{step_id}` of run {run_id} has a cloud operation that may still be in flight"),
            Some("resume the run so the step reads back what happened; or, knowing its outcome, repeat with --force"),
        )));
    }
    Ok((snap, rb))
}

async fn finish_step(
    cli: &Cli,
    store: &Store,
    run_id: &str,
    step_id: &str,
    output: Option<serde_json::Value>,
    actor: &Actor,
) -> Exit {
    // A failed run whose locks were released takes them again before it can go on.
    if let Err(e) = crate::run_cmd::retake_released_locks(store, run_id, now()).await {
        return fail(e);
    }
    let what = if output.is_some() { "completed" } else { "skipped" };
    match store.operator_finish_step(run_id, step_id, output, actor, now()).await {
        Ok(()) => {
            if cli.format == Format::Json {
                output::json(what, &json!({ "run_id": run_id, "step": step_id, "by": actor.name }));
            } else {
                output::data(&format!(
                    "step `{step_id}` of run {run_id} marked {what} by {}",
                    actor.name
                ));
                output::note(
                    cli.quiet,
                    &format!("continue the run: {fb} resume {run_id}", fb = crate::output::fogbook()),
                );
            }
            Exit::Success
        }
        Err(e) => fail(e),
    }
}

pub(crate) async fn skip(cli: &Cli, store: Store, args: &SkipArgs) -> Exit {
    if let Err(code) = repairable(&store, &args.run_id, &args.step, args.force).await {
        return code;
    }
    finish_step(cli, &store, &args.run_id, &args.step, None, &args.who.actor()).await
}

pub(crate) async fn complete(cli: &Cli, store: Store, args: &CompleteArgs) -> Exit {
    let (_, rb) = match repairable(&store, &args.run_id, &args.step, args.force).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let origin = args.output.display().to_string();
    let text = match std::fs::read_to_string(&args.output) {
        Ok(t) => t,
        Err(e) => {
            return fail(CliError::usage(format!("cannot read output file {origin}: {e}"), None));
        }
    };
    let value = match runbook::parse_params(&text, &origin) {
        Ok(m) => serde_json::Value::Object(m),
        Err(d) => {
            output::always(&d.to_string());
            return fail(CliError::usage(
                format!("{origin}: the output must be a JSON or YAML object"),
                None,
            ));
        }
    };
    let uses = rb.step(&args.step).map(|s| s.uses.clone()).unwrap_or_default();
    if let Some(fields) = fogbook_activities::output_fields(&uses) {
        let missing: Vec<&str> = fields.iter().copied().filter(|f| value.get(*f).is_none()).collect();
        if !missing.is_empty() {
            return fail(CliError::usage(
                format!(
                    "{origin} lacks output field{} {} of step `{}` ({uses})",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", "),
                    args.step
                ),
                Some(format!("a `{uses}` step outputs: {}", fields.join(", ")).as_str()),
            ));
        }
    }
    finish_step(cli, &store, &args.run_id, &args.step, Some(value), &args.who.actor()).await
}

pub(crate) async fn window_close(cli: &Cli, store: Store, args: &WindowCloseArgs) -> Exit {
    let snap = match store.load_run(&args.run_id).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let actor = args.who.actor();
    if actor.reason.is_none() {
        return fail(CliError::usage(
            "closing a window needs a reason (how you know it closed)",
            Some(
                format!(
                    "{fb} window close {} {} --reason TEXT",
                    args.run_id,
                    args.window,
                    fb = crate::output::fogbook()
                )
                .as_str(),
            ),
        ));
    }
    let open: Vec<_> = snap.windows.iter().filter(|w| w.closed_at.is_none()).collect();
    let id = match args.window.parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => {
            let matching: Vec<_> = open.iter().filter(|w| w.kind.as_str() == args.window).collect();
            (matching.len() == 1).then(|| matching[0].id)
        }
    };
    let Some(id) = id else {
        let list: Vec<String> = open.iter().map(|w| format!("{} ({})", w.id, w.kind.as_str())).collect();
        return fail(CliError::usage(
            format!("run {} has no single open window `{}`", args.run_id, args.window),
            Some(
                if list.is_empty() {
                    "it has no open window".to_owned()
                } else {
                    format!("its open windows: {}", list.join(", "))
                }
                .as_str(),
            ),
        ));
    };
    match store.operator_close_window(&args.run_id, id, &actor, now()).await {
        Ok(kind) => {
            if cli.format == Format::Json {
                output::json(
                    "window",
                    &json!({ "run_id": args.run_id, "window": id, "kind": kind, "closed_by": actor.name }),
                );
            } else {
                output::data(&format!(
                    "window {id} ({kind}) of run {} closed by {}",
                    args.run_id, actor.name
                ));
            }
            Exit::Success
        }
        Err(e) => fail(e),
    }
}

/// Whether a step of activity `uses` may change something outside fogbook.
fn mutates(uses: &str) -> bool {
    !(fogbook_activities::is_read_only(uses) || matches!(uses, "approval" | "wait" | "notify"))
}

pub(crate) async fn retry_from(cli: &Cli, store: Store, args: &RetryFromArgs) -> Exit {
    let (snap, rb) = match load(&store, &args.run_id).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Err(code) = step_of(&rb, &args.run_id, &args.step, false) {
        return code;
    }
    let Some(from) = rb.steps.iter().position(|s| s.id.as_str() == args.step) else {
        return Exit::BadInput;
    };
    let range: Vec<&Step> = rb.steps[from..].iter().collect();
    let repeats: Vec<String> = range
        .iter()
        .filter(|s| mutates(&s.uses))
        .filter(|s| {
            snap.step(s.id.as_str())
                .is_some_and(|r| r.status == StepStatus::Completed)
        })
        .map(|s| format!("`{}` ({})", s.id.as_str(), s.uses))
        .collect();
    if !repeats.is_empty() && !args.force {
        return fail(CliError::usage(format!(
                "re-running run {} from `{}` would run completed steps that change something again: {}",
                args.run_id,
                args.step,
                repeats.join(", ")
            ), Some(format!(
                "start later, or confirm with --force: each then reads back what it already did (its saved intent or operation) before acting: {fb} retry-from {} {} --force --reason TEXT",
                args.run_id,
                args.step,
                fb = crate::output::fogbook()
            ).as_str())));
    }
    if let Err(e) = crate::run_cmd::retake_released_locks(&store, &args.run_id, now()).await {
        return fail(e);
    }
    let ids: Vec<String> = range.iter().map(|s| s.id.as_str().to_owned()).collect();
    let actor = args.who.actor();
    match store.operator_retry_from(&args.run_id, ids, &actor, now()).await {
        Ok(()) => {
            if cli.format == Format::Json {
                output::json(
                    "retry_from",
                    &json!({ "run_id": args.run_id, "from": args.step, "by": actor.name, "forced": repeats }),
                );
            } else {
                output::data(&format!(
                    "run {} re-runs from step `{}` (asked by {})",
                    args.run_id, args.step, actor.name
                ));
                output::note(
                    cli.quiet,
                    &format!(
                        "continue the run: {fb} resume {}",
                        args.run_id,
                        fb = crate::output::fogbook()
                    ),
                );
            }
            Exit::Success
        }
        Err(e) => fail(e),
    }
}

/// `steps.ID.outputs.FIELD` references in a text (a template's source).
fn output_refs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("steps.") {
        rest = &rest[i + "steps.".len()..];
        let ident = |s: &str| -> usize {
            s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(s.len())
        };
        let n = ident(rest);
        let step = &rest[..n];
        let Some(after) = rest[n..].strip_prefix(".outputs.") else {
            continue;
        };
        let m = ident(after);
        out.push((step.to_owned(), after[..m].to_owned()));
    }
    out
}

fn with_sources(v: &WithValue, out: &mut String) {
    match v {
        WithValue::Template(t) => {
            out.push_str(t.source());
            out.push('\n');
        }
        WithValue::List(items) => items.iter().for_each(|i| with_sources(i, out)),
        WithValue::Map(m) => m.values().for_each(|i| with_sources(i, out)),
        WithValue::Literal(_) => {}
    }
}

pub(crate) async fn repin(cli: &Cli, store: Store, args: &RepinArgs) -> Exit {
    let (snap, old) = match load(&store, &args.run_id).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let (text, new) = match crate::input::read_runbook(&args.runbook) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let run_id = &args.run_id;
    const STARTED: &str = "a step that started must keep its id, activity and inputs; edit only the steps that did not start (and the failed one)";
    let refuse_because = |why: String, hint: &str| {
        fail(CliError::usage(
            format!("refusing to re-pin run {run_id} to {}: {why}", args.runbook.display()),
            Some(hint),
        ))
    };
    let refuse = |why: String| refuse_because(why, STARTED);
    // The parameters the run was created with must still satisfy the new runbook.
    let given = snap.run.params.as_object().cloned().unwrap_or_default();
    if let Err(d) = runbook::resolve_params(&new, given, "the run's parameters") {
        output::always(&d.to_string());
        return refuse_because(
            "the run's parameters do not fit the new runbook".to_owned(),
            "the run keeps the parameters it was created with (errors above): make the new runbook accept them (same names and types, no new required parameter without a default)",
        );
    }
    for row in snap.steps.iter().filter(|r| r.status != StepStatus::Pending) {
        // A failed step is what an operator re-pins to fix: it may change.
        if row.status == StepStatus::Failed {
            continue;
        }
        let Some(before) = old.step(&row.step_id) else {
            continue;
        };
        let Some(after) = new.step(&row.step_id) else {
            return refuse(format!(
                "step `{}` is {} and the new runbook has no such step",
                row.step_id, row.status
            ));
        };
        if before.uses != after.uses {
            return refuse(format!(
                "step `{}` is {} with activity `{}`; the new runbook gives it `{}`",
                row.step_id, row.status, before.uses, after.uses
            ));
        }
        if format!("{:?}", before.with) != format!("{:?}", after.with) {
            return refuse(format!(
                "step `{}` is {} and the new runbook changes its inputs (`with`)",
                row.step_id, row.status
            ));
        }
    }
    // The steps still to run may refer only to outputs the completed steps recorded.
    for step in new.steps.iter().filter(|s| {
        snap.step(s.id.as_str())
            .is_none_or(|r| !r.status.is_done() || r.status == StepStatus::Failed)
    }) {
        let mut src = String::new();
        step.with.values().for_each(|v| with_sources(v, &mut src));
        if let Some(w) = &step.when {
            src.push_str(w.source());
        }
        for (id, field) in output_refs(&src) {
            let Some(output) = snap
                .step(&id)
                .filter(|r| r.status == StepStatus::Completed)
                .and_then(|r| r.output.as_ref())
            else {
                continue;
            };
            if output.get(&field).is_none() {
                let fields: Vec<&String> = output.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                return refuse_because(
                    format!(
                        "step `{}` refers to steps.{id}.outputs.{field}, but `{id}` recorded no `{field}` (its output fields: {})",
                        step.id.as_str(),
                        fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    "a step still to run may use only the output fields a completed step recorded: refer to one of those",
                );
            }
        }
    }
    let pin = fogbook_state::NewPin {
        sha256: fogbook_engine::sha256_hex(&text),
        text,
        name: new.name.clone(),
        version: new.version,
        steps: new.steps.iter().map(|s| s.id.as_str().to_owned()).collect(),
    };
    let actor = args.who.actor();
    match store.operator_repin(run_id, pin, &actor, now()).await {
        Ok(()) => {
            if cli.format == Format::Json {
                output::json(
                    "repin",
                    &json!({ "run_id": run_id, "runbook": new.name, "version": new.version, "by": actor.name }),
                );
            } else {
                output::data(&format!(
                    "run {run_id} is re-pinned to {} ({} v{}) by {}",
                    args.runbook.display(),
                    new.name,
                    new.version,
                    actor.name
                ));
                let hint = if snap.run.status == RunStatus::Failed {
                    format!(
                        "continue the run, retrying its failed step: {fb} resume {run_id} --retry-failed",
                        fb = crate::output::fogbook()
                    )
                } else {
                    format!("continue the run: {fb} resume {run_id}", fb = crate::output::fogbook())
                };
                output::note(cli.quiet, &hint);
            }
            Exit::Success
        }
        Err(e) => fail(e),
    }
}
