//! `fogbook plan`: what a run would do, without a database and without a single mutating
//! request.

use fogbook_engine::plan::{Plan, PlannedStep};

use crate::bench_cloud::{MemoryReport, ResumeLatency};
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
        output::json("plan", &doc);
    } else {
        output::data(&render(&plan, &totals));
    }
    Exit::Success
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

/// `fogbook bench`: step overhead beside the floor, then resume latency and memory per waiting
/// run against the ARM emulator, printed as a table (or JSON).
pub(crate) async fn bench(cli: &Cli, args: &BenchArgs) -> Exit {
    let config = fogbook_engine::bench::BenchConfig {
        floor_commits: args.floor_commits.max(1),
        sequential_steps: args.steps.max(1),
        concurrent_runs: args.runs.max(1),
        steps_per_run: args.steps_per_run.max(1),
    };
    if args.waiting_only {
        let window = std::time::Duration::from_secs(args.waiting_secs);
        return match crate::bench_cloud::memory(&args.dir, args.waiting_runs.max(1), window).await {
            Ok(m) => {
                output::json("bench_waiting", &m);
                Exit::Success
            }
            Err(e) => {
                output::error_chain(&e, None);
                Exit::BadInput
            }
        };
    }
    output::note(cli.quiet, &format!("benchmarking in {} …", args.dir.display()));
    let engine = match fogbook_engine::bench::run_bench(&args.dir, config).await {
        Ok(r) => r,
        Err(e) => {
            output::error_chain(&e, None);
            return Exit::BadInput;
        }
    };
    let resume = if args.resume_trials > 0 {
        output::note(
            cli.quiet,
            &format!(
                "resume latency: {} resumes of a run killed during seeding …",
                args.resume_trials
            ),
        );
        match crate::bench_cloud::resume_latency(&args.dir, args.resume_trials).await {
            Ok(r) => Some(r),
            Err(e) => {
                output::error_chain(&e, None);
                return Exit::BadInput;
            }
        }
    } else {
        None
    };
    // Last, so that the disk writes of 1,000 runs do not slow the floor, and in a fresh
    // process: memory the phases above freed would be handed to the waiting runs without
    // growing the RSS, hiding what they cost.
    let memory = if args.waiting_runs > 0 {
        output::note(
            cli.quiet,
            &format!(
                "memory: {} runs waiting on ARM operations, polls counted for {} s …",
                args.waiting_runs, args.waiting_secs
            ),
        );
        match crate::bench_cloud::memory_in_child(&args.dir, args.waiting_runs, args.waiting_secs).await {
            Ok(m) => Some(m),
            Err(e) => {
                output::error_chain(&e, None);
                return Exit::BadInput;
            }
        }
    } else {
        None
    };
    let fleet = match crate::bench_fleet::run_phase(cli, args).await {
        Ok(f) => f,
        Err(code) => return code,
    };
    if cli.format == Format::Json {
        output::json(
            "bench",
            &BenchOut {
                engine: &engine,
                resume_latency_ms: resume.as_ref(),
                memory: memory.as_ref(),
                fleet: fleet.as_ref(),
            },
        );
    } else {
        output::data(&render_bench(&engine, &config, resume.as_ref(), memory.as_ref()));
        if let Some(f) = &fleet {
            output::data(&crate::bench_fleet::render(f));
        }
    }
    Exit::Success
}

/// The JSON of `fogbook bench`: the engine's figures, then the two measured here.
#[derive(serde::Serialize)]
struct BenchOut<'a> {
    #[serde(flatten)]
    engine: &'a fogbook_engine::bench::BenchReport,
    resume_latency_ms: Option<&'a ResumeLatency>,
    memory: Option<&'a MemoryReport>,
    fleet: Option<&'a crate::bench_fleet::FleetFigure>,
}

fn render_bench(
    r: &fogbook_engine::bench::BenchReport,
    config: &fogbook_engine::bench::BenchConfig,
    resume: Option<&ResumeLatency>,
    memory: Option<&MemoryReport>,
) -> String {
    let mut out = format!(
        "{:<44} {:>12} {:>10} {:>16}\n\
         {:<44} {:>12.0} {:>10} {:>16}\n\
         {:<44} {:>12.0} {:>9.2}x {:>16.2}\n\
         {:<44} {:>12.0} {:>9.2}x {:>16.2}\n",
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
    );
    let samples: Vec<String> = r.floor_samples.iter().map(|f| format!("{f:.0}")).collect();
    out.push_str(&format!(
        "  (floor: median of {} measured before, between and after the runs: {})\n",
        samples.len(),
        samples.join(", ")
    ));
    if let Some(l) = resume {
        out.push_str(&format!(
            "\n{:<44} {:>12} {:>10} {:>16}\n\
             {:<44} {:>12.1} {:>10.1} {:>16.1}\n\
             {:<44} {:>12.1} {:>10} {:>16}\n\
             {:<44} {:>12.1} {:>10} {:>16}\n",
            format!("resume latency, {} trials (target < 100 ms)", l.trials),
            "median ms",
            "p95 ms",
            "max ms",
            "  process start to first poll (at emulator)",
            l.median,
            l.p95,
            l.max,
            "  process start to first request",
            l.first_request_median,
            "",
            "",
            "  `fogbook --version` start to exit",
            l.exec_floor_median,
            "",
            "",
        ));
        out.push_str("  one trial with debug logs, ms from process start:\n");
        for m in &l.breakdown {
            out.push_str(&format!("    {:>8.1}  {}\n", m.at_ms, m.what));
        }
    }
    if let Some(m) = memory {
        out.push_str(&format!(
            "\nmemory, {} runs waiting on ARM operations (target <= 64 KiB per run)\n\
             \x20 RSS before / waiting / after the window   {} / {} / {} KiB\n\
             \x20 per waiting run                           {:.1} KiB\n\
             \x20 all runs waiting after                    {:.1} s\n\
             \x20 open sockets (pooled HTTP connections)    {}\n",
            m.runs,
            m.rss_before_kib,
            m.rss_waiting_kib,
            m.rss_after_window_kib,
            m.kib_per_run,
            m.start_s,
            m.sockets_waiting,
        ));
        if let (Some(p), Some(a), Some(t)) = (m.polls_per_s, m.polls_answered_per_s, m.throttled_per_s) {
            out.push_str(&format!(
                "  polls at the emulator over {:.0} s          {p:.1}/s ({a:.1}/s answered, {t:.1}/s throttled)\n\
                 \x20 against ARM's read refill                 {:.0}/s (Retry-After {:.0} s)\n",
                m.window_s, m.read_refill_per_s, m.retry_after_s,
            ));
        }
        out.push_str(&format!(
            "  runs that ended while waiting            {}\n\
             \x20 stopped after the cancellation in        {:.1} s ({} not within the grace, aborted)\n",
            m.runs_ended, m.stop_s, m.runs_not_stopped
        ));
    }
    out
}
