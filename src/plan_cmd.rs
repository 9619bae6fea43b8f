//! `fogbook plan`: what a run would do, without a database and without a single mutating
//! request.

use fogbook_engine::plan::{Plan, PlannedStep};

use crate::cli::{BenchArgs, Cli, Format, PlanArgs};
use crate::commands::{read_params, read_runbook};
use crate::{Exit, output};

pub(crate) async fn plan(cli: &Cli, args: &PlanArgs) -> Exit {
    let (_, rb) = match read_runbook(&args.file) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let params = match read_params(&rb, args.params.as_deref(), &args.set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let sim = match crate::arm::start_sim(&args.sim, cli.quiet).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let env = match crate::arm::env(cli, sim.as_ref(), crate::arm::uses_azure(&rb)).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let plan = fogbook_engine::plan::plan(&rb, &params, &env).await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    if cli.format == Format::Json {
        output::json("plan", &plan);
    } else {
        output::data(&render(&plan));
    }
    Exit::Success
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

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

fn render(plan: &Plan) -> String {
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
    if !plan.warnings.is_empty() {
        out.push_str("\nwarnings:\n");
        for w in &plan.warnings {
            out.push_str(&format!("  {w}\n"));
        }
    }
    out
}

/// `fogbook bench`: step overhead beside the floor, printed as a table (or JSON).
pub(crate) async fn bench(cli: &Cli, args: &BenchArgs) -> Exit {
    let config = fogbook_engine::bench::BenchConfig {
        floor_commits: args.floor_commits.max(1),
        sequential_steps: args.steps.max(1),
        concurrent_runs: args.runs.max(1),
        steps_per_run: args.steps_per_run.max(1),
    };
    output::note(cli.quiet, &format!("benchmarking in {} …", args.dir.display()));
    match fogbook_engine::bench::run_bench(&args.dir, config).await {
        Ok(r) => {
            if cli.format == Format::Json {
                output::json("bench", &r);
            } else {
                output::data(&format!(
                    "{:<44} {:>12} {:>10} {:>16}\n\
                     {:<44} {:>12.0} {:>10} {:>16}\n\
                     {:<44} {:>12.0} {:>9.2}x {:>16.2}\n\
                     {:<44} {:>12.0} {:>9.2}x {:>16.2}",
                    "measure",
                    "per second",
                    "x floor",
                    "commits per step",
                    "floor: durable SQLite commits (same disk)",
                    r.floor_commits_per_s,
                    "1.00x",
                    "-",
                    format!("sequential: one run of {} no-op steps", config.sequential_steps),
                    r.sequential_steps_per_s,
                    r.sequential_ratio,
                    r.sequential_commits_per_step,
                    format!(
                        "concurrent: {} runs x {} steps",
                        config.concurrent_runs, config.steps_per_run
                    ),
                    r.concurrent_steps_per_s,
                    r.concurrent_ratio,
                    r.concurrent_commits_per_step,
                ));
            }
            Exit::Success
        }
        Err(e) => {
            output::error_chain(&e, None);
            Exit::BadInput
        }
    }
}
