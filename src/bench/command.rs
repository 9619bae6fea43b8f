//! `fogbook bench`: the engine's step overhead beside the durable-commit floor, then the
//! emulator measurements of [`crate::bench::cloud`], printed as a table (or JSON).

use fogbook_state::pg::StoreUrl;

use crate::bench::cloud::ResumeLatency;
use crate::bench::memory::MemoryReport;
use crate::cli::{BenchArgs, Cli, Format};
use crate::exit::Exit;
use crate::output;

/// `fogbook bench`: step overhead beside the floor, then resume latency and memory per waiting
/// run against the ARM emulator, printed as a table (or JSON).
pub(crate) async fn bench(cli: &Cli, args: &BenchArgs) -> Exit {
    // `--db postgres://…` (or FOGBOOK_DB): the PostgreSQL store beside that server's floor.
    let raw = cli.db.to_string_lossy().into_owned();
    if let Ok(StoreUrl::Postgres(url)) = raw.parse::<StoreUrl>() {
        return super::pg::bench(cli, args, &raw, url).await;
    }
    let config = config_of(args);
    if args.waiting_only {
        if let Err(why) = waiting_only_allowed(fogbook_engine::TEST_HOOKS) {
            output::error(
                why,
                Some("run `fogbook bench` itself; it starts this phase in a child process"),
            );
            return Exit::BadInput;
        }
        let window = std::time::Duration::from_secs(args.waiting_secs);
        let measured = tokio::select! {
            m = crate::bench::memory::memory(&args.dir, args.waiting_runs.max(1), window) => m,
            // Dropping the measurement kills its emulator (`kill_on_drop`) and aborts the runs.
            () = crate::bench::memory::until_parent_gone() => {
                output::error("the `fogbook bench` that started this measurement is gone; stopped", None);
                return Exit::Interrupted;
            }
        };
        return match measured {
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
        match crate::bench::cloud::resume_latency(&args.dir, args.resume_trials).await {
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
        match crate::bench::memory::memory_in_child(&args.dir, args.waiting_runs, args.waiting_secs).await {
            Ok(m) => Some(m),
            Err(e) => {
                output::error_chain(&e, None);
                return Exit::BadInput;
            }
        }
    } else {
        None
    };
    let fleet = match super::fleet::run_phase(cli, args).await {
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
            output::data(&super::fleet::render(f));
        }
    }
    Exit::Success
}

/// The engine's benchmark as the options ask for it.
pub(super) fn config_of(args: &BenchArgs) -> fogbook_engine::bench::BenchConfig {
    fogbook_engine::bench::BenchConfig {
        floor_commits: args.floor_commits.max(1),
        sequential_steps: args.steps.max(1),
        concurrent_runs: args.runs.max(1),
        steps_per_run: args.steps_per_run.max(1),
    }
}

/// The JSON of `fogbook bench`: the engine's figures, then the two measured here.
#[derive(serde::Serialize)]
struct BenchOut<'a> {
    #[serde(flatten)]
    engine: &'a fogbook_engine::bench::BenchReport,
    resume_latency_ms: Option<&'a ResumeLatency>,
    memory: Option<&'a MemoryReport>,
    fleet: Option<&'a super::fleet::FleetFigure>,
}

fn render_bench(
    r: &fogbook_engine::bench::BenchReport,
    config: &fogbook_engine::bench::BenchConfig,
    resume: Option<&ResumeLatency>,
    memory: Option<&MemoryReport>,
) -> String {
    let mut out = render_engine(r, config, "floor: durable SQLite commits (same disk)");
    render_cloud(&mut out, resume, memory);
    out
}

/// The engine's figures, each beside the floor named `floor_label`.
pub(super) fn render_engine(
    r: &fogbook_engine::bench::BenchReport,
    config: &fogbook_engine::bench::BenchConfig,
    floor_label: &str,
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
        floor_label,
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
    out
}

/// The emulator phases' figures, appended to `out`.
fn render_cloud(out: &mut String, resume: Option<&ResumeLatency>, memory: Option<&MemoryReport>) {
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
}

/// `--waiting-only` is the switch by which `bench` measures memory in a fresh child process:
/// a test switch, read only by a build with the feature `test-hooks` (as `bench` is built,
/// docs/PERFORMANCE.md).
pub(crate) fn waiting_only_allowed(test_hooks: bool) -> Result<(), &'static str> {
    if test_hooks {
        Ok(())
    } else {
        Err(
            "--waiting-only is a test switch of `fogbook bench`, left out of this build (built without the feature test-hooks)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_only_needs_the_test_hooks() {
        assert!(waiting_only_allowed(false).is_err());
        assert!(waiting_only_allowed(true).is_ok());
    }
}
