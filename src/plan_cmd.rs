//! `fogbook plan`: what a run would do, without a database and without a single mutating
//! request.

use fogbook_engine::plan::{Plan, PlannedStep};

use crate::cli::{Cli, Format, PlanArgs};
use crate::exit::Exit;
use crate::input::{read_params, read_runbook};
use crate::output;

pub(crate) async fn plan(cli: &Cli, args: &PlanArgs) -> Exit {
    let (_, rb) = match read_runbook(&args.file) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let params = match read_params(&rb, args.params.as_deref(), &args.set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let sim = match crate::arm::start_sim(&args.sim, None, cli.quiet).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let env = match crate::arm::env_read_only(cli, sim.as_ref(), crate::arm::uses_azure(&rb)).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let plan = fogbook_engine::plan::plan(&rb, &params, &env).await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    let totals = Totals::of(&plan, rb.limits.max_unprotected);
    if cli.format == Format::Json {
        let mut doc = serde_json::to_value(&plan).unwrap_or_default();
        doc["expected_hours"] = totals.hours.into();
        doc["unestimated_steps"] = totals.unestimated.into();
        doc["max_unprotected_hours"] = totals.limit_hours.into();
        doc["limit_exceeded"] = totals.exceeded.clone().into();
        doc["would_stop_at"] = match first_failure(&plan) {
            Some(stop) => serde_json::json!({ "step": stop.step.id, "before_any_change": stop.untouched }),
            None => serde_json::Value::Null,
        };
        output::json("plan", &doc);
    } else {
        output::data(&render(&plan, &totals));
    }
    // A run started now would fail before its first change: say it in the exit code too, so
    // `fogbook plan … && fogbook run …` never starts it.
    if first_failure(&plan).is_some_and(|stop| stop.untouched) {
        Exit::RunFailed
    } else {
        Exit::Success
    }
}

/// The whole run's expected duration and the check of `limits.max_unprotected` against the
/// predicted unprotected windows.
struct Totals {
    /// Sum of the estimates of the steps that will run.
    hours: f64,
    /// Steps that will run and have no estimate (quick, or unknown until run time).
    unestimated: usize,
    /// `limits.max_unprotected`, in hours.
    limit_hours: Option<f64>,
    /// One line per predicted unprotected window longer than the limit.
    exceeded: Vec<String>,
}

impl Totals {
    fn of(plan: &Plan, limit: Option<std::time::Duration>) -> Totals {
        let running = plan.steps.iter().filter(|s| s.decision != "skip");
        let (mut hours, mut unestimated) = (0.0, 0);
        for s in running {
            match &s.estimate {
                Some(e) => hours += e.hours,
                None => unestimated += 1,
            }
        }
        let limit_hours = limit.map(|d| d.as_secs_f64() / 3600.0);
        let exceeded = match limit_hours {
            Some(max) => plan
                .windows
                .iter()
                .filter(|w| w.kind == "unprotected" && (w.closed_by.is_none() || w.estimated_hours > max))
                .map(|w| {
                    format!(
                        "the unprotected window from {} to {} is predicted to last up to {:.1}h, over limits.max_unprotected ({:.1}h)",
                        w.opened_by,
                        w.closed_by.as_deref().unwrap_or("the end (it stays open)"),
                        w.estimated_hours,
                        max
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        Totals {
            hours,
            unestimated,
            limit_hours,
            exceeded,
        }
    }
}

fn summary(s: &PlannedStep) -> String {
    if let Some(e) = &s.error {
        return format!("WOULD FAIL NOW: {e}");
    }
    if let Some(out) = &s.output {
        if let Some(table) = out.get("table").and_then(|t| t.as_str()) {
            return format!("checked:\n{}", indent(table, 8));
        }
        if let Some(tier) = out.get("sku_name").and_then(|t| t.as_str()) {
            return format!(
                "now: {tier}, {} vCores, {} GB, {}",
                out["v_cores"],
                out["storage_gb"],
                out["database_format"].as_str().unwrap_or("?")
            );
        }
        if let Some(role) = out.get("role").and_then(|t| t.as_str()) {
            return format!("the group exists; this view's role: {role}");
        }
        if let Some(found) = out.get("found").and_then(|t| t.as_str()) {
            return found.to_owned();
        }
        return "ok".to_owned();
    }
    if fogbook_activities::is_read_only(&s.uses) && s.decision != "skip" {
        return "checks at run time, after the changes above".to_owned();
    }
    match (s.decision.as_str(), &s.estimate) {
        ("skip", _) => "skipped: its `when` is false".to_owned(),
        ("decided at run time", _) => "runs or not depending on earlier steps".to_owned(),
        (_, Some(e)) => format!("will run, {}", e.text),
        (_, None) if s.input.is_none() => "will run (inputs depend on earlier steps)".to_owned(),
        _ => "will run".to_owned(),
    }
}

/// The first read that fails now: a run would stop there.
pub(crate) struct Stop<'p> {
    step: &'p PlannedStep,
    /// Every step before it only reads (or is skipped): the run would stop before changing
    /// anything (a mistyped name, a missing group).
    pub(crate) untouched: bool,
}

pub(crate) fn first_failure(plan: &Plan) -> Option<Stop<'_>> {
    let at = plan.steps.iter().position(|s| s.error.is_some())?;
    let untouched = plan.steps[..at]
        .iter()
        .all(|s| s.decision == "skip" || fogbook_activities::is_read_only(&s.uses));
    Some(Stop {
        step: &plan.steps[at],
        untouched,
    })
}

impl Stop<'_> {
    /// The stop said plainly.
    fn text(&self) -> String {
        format!(
            "\nA RUN WOULD STOP AT STEP {} ({}){}: {}\n",
            self.step.id,
            self.step.uses,
            if self.untouched {
                ", before changing anything"
            } else {
                ""
            },
            self.step.error.as_deref().unwrap_or_default()
        )
    }
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

fn render(plan: &Plan, totals: &Totals) -> String {
    let mut out = format!(
        "plan of {} ({} steps); nothing was changed: only reads ran\n\n",
        plan.runbook,
        plan.steps.len()
    );
    for (i, s) in plan.steps.iter().enumerate() {
        let mut marks = Vec::new();
        if s.disruptive {
            marks.push("disruptive".to_owned());
        }
        marks.extend(s.opens.iter().map(|k| format!("opens {k}")));
        marks.extend(s.closes.iter().map(|k| format!("closes {k}")));
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!(" [{}]", marks.join(", "))
        };
        out.push_str(&format!(
            "{:>3}. {:<30} {:<26}{marks}\n     {}\n",
            i + 1,
            s.id,
            s.uses,
            summary(s)
        ));
    }
    if let Some(stop) = first_failure(plan) {
        out.push_str(&stop.text());
    }
    out.push_str("\nwindows:\n");
    if plan.windows.is_empty() {
        out.push_str("  none: the databases keep their geo-replica throughout\n");
    }
    for w in &plan.windows {
        out.push_str(&format!(
            "  {}: opened by {}, closed by {} (estimated at most {:.1}h)\n",
            w.kind,
            w.opened_by,
            w.closed_by.as_deref().unwrap_or("nothing: it stays open"),
            w.estimated_hours
        ));
    }
    out.push_str(&format!(
        "\nexpected duration: about {:.1}h in all{}\n",
        totals.hours,
        if totals.unestimated > 0 {
            format!(
                ", plus {} quick or run-time-dependent steps (approvals wait for people)",
                totals.unestimated
            )
        } else {
            String::new()
        }
    ));
    match (totals.limit_hours, totals.exceeded.is_empty()) {
        (Some(max), true) => out.push_str(&format!(
            "limits.max_unprotected ({max:.1}h): every predicted unprotected window is within it\n"
        )),
        (Some(_), false) => {
            for e in &totals.exceeded {
                out.push_str(&format!("OVER THE LIMIT: {e}\n"));
            }
        }
        (None, _) => {}
    }
    if !plan.warnings.is_empty() {
        out.push_str("\nwarnings:\n");
        for w in &plan.warnings {
            out.push_str(&format!("  {w}\n"));
        }
    }
    out
}
