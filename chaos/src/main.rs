//! fogbook-chaos: the chaos runner. N seeded trials, each a shipped runbook on a fresh
//! emulator (`fogbook sim serve`, a separate process with a state file); during the trial it
//! SIGKILLs the engine at random moments, sometimes kills and restarts the emulator, freezes
//! the driver past its lease while another process takes over, signals the engine's whole
//! process group, starts competing `resume`/`run` processes, injects emulator faults at low
//! rates, and resumes the run until it ends. After each trial it
//! checks global invariants from outside, with the emulator's journal as the independent
//! effect counter (see docs/RELIABILITY.md). It depends on no fogbook crate: it drives the
//! binary through processes and HTTP only.

// A command-line tool: its output is the point.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod check;
mod pgcheck;
mod pghosts;
mod pgtrial;
mod plan;
mod proc;
mod proxy;
mod runbooks;
mod stage;
mod trial;
mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use plan::{FAULT_KINDS, Plan};
use proc::Env;
use trial::{Limits, Outcome, Trial};

const USAGE: &str = "\
usage: fogbook-chaos [--trials N] [--seed S] [--fogbook PATH] [--jobs J] [--keep]
                     [--only-trial K] [--runbooks a,b] [--trial-timeout SECS]
                     [--break MODE] [--root DIR] [--quiet] [--db sqlite|postgres]

  --trials N          number of trials (default 20)
  --seed S            seed of the whole run (default: from the clock; printed)
  --fogbook PATH      the fogbook binary under test, built with the feature
                      test-hooks (`cargo build --release -p fogbook --features
                      test-hooks`; default: target/release/fogbook next to this binary)
  --jobs J            trials run in parallel (default 2)
  --keep              keep every trial's directory (failing trials are always kept)
  --only-trial K      replay trial K (1-based) of --seed S alone
  --runbooks a,b      only these runbooks (names of examples/<name>.yaml)
  --trial-timeout S   a run that has not ended after S seconds is stuck (default 90)
  --break MODE        set FOGBOOK_CHAOS_BREAK=MODE for the engine (a deliberately
                      broken build, to prove the harness fails: expect violations;
                      a fogbook built without test-hooks ignores it)
  --db KIND           sqlite (default: each trial's state in its own file) or
                      postgres: the runner starts a throwaway PostgreSQL server
                      (initdb + pg_ctl, the Debian `postgresql` binaries), each
                      trial in its own database on it, its run driven by 2-3
                      `fogbook worker` processes (\"hosts\", each behind a TCP
                      proxy of the runner's) besides `run`/`resume`; faults add
                      SIGKILL of workers (started again), `pg_ctl restart -m
                      immediate`, and the driving worker cut off from the
                      database past its lease (its proxy stops forwarding), then
                      let back: it must write nothing (fenced)
  --root DIR          the repository (default: the one this runner was built from)
  --quiet             no line per trial, only failures and the figure line
  --list-plans        print the plan of every trial and exit (to pick one to replay)
  --pause-on-fault OP every trial also answers the first request of operation OP
                      (e.g. InstanceFailoverGroups_Delete) with 429 and freezes the
                      driver while it waits to retry, past its lease, while another
                      process resumes (explores one scenario; not for the figures)

Exit: 0 no invariant violation; 3 invariant violations (each printed as
`violation: ...` under its trial); 2 usage or setup error (bad arguments, a
baseline that failed, an emulator that did not start); anything else: the
runner itself failed.";

/// Exit status when the trials ran and found invariant violations: distinct from a usage
/// or setup error (2) and from the 1 of a generic failure, so that a script can tell "the
/// harness caught something" from "the harness did not run".
const EXIT_VIOLATIONS: u8 = 3;

#[derive(Debug)]
struct Args {
    trials: usize,
    seed: u64,
    fogbook: Option<PathBuf>,
    jobs: usize,
    keep: bool,
    only_trial: Option<usize>,
    runbooks: Vec<String>,
    trial_timeout: Duration,
    break_mode: Option<String>,
    root: PathBuf,
    quiet: bool,
    list_plans: bool,
    pause_on_fault: Option<String>,
    postgres: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        trials: 20,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        fogbook: None,
        jobs: 2,
        keep: false,
        only_trial: None,
        runbooks: Vec::new(),
        trial_timeout: Duration::from_secs(90),
        break_mode: None,
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), PathBuf::from),
        quiet: false,
        list_plans: false,
        pause_on_fault: None,
        postgres: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| v.parse::<u64>().map_err(|e| format!("{name} {v}: {e}"));
        match arg.as_str() {
            "--trials" => {
                a.trials = usize::try_from(num("--trials", value("--trials")?)?).map_err(|e| e.to_string())?
            }
            "--seed" => a.seed = num("--seed", value("--seed")?)?,
            "--fogbook" => a.fogbook = Some(PathBuf::from(value("--fogbook")?)),
            "--jobs" => a.jobs = usize::try_from(num("--jobs", value("--jobs")?)?.max(1)).map_err(|e| e.to_string())?,
            "--keep" => a.keep = true,
            "--only-trial" => {
                a.only_trial =
                    Some(usize::try_from(num("--only-trial", value("--only-trial")?)?).map_err(|e| e.to_string())?);
            }
            "--runbooks" => {
                a.runbooks = value("--runbooks")?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--trial-timeout" => {
                a.trial_timeout = Duration::from_secs(num("--trial-timeout", value("--trial-timeout")?)?)
            }
            "--break" => a.break_mode = Some(value("--break")?),
            "--root" => a.root = PathBuf::from(value("--root")?),
            "--quiet" => a.quiet = true,
            "--list-plans" => a.list_plans = true,
            "--pause-on-fault" => a.pause_on_fault = Some(value("--pause-on-fault")?),
            "--db" => {
                a.postgres = match value("--db")?.as_str() {
                    "sqlite" => false,
                    "postgres" => true,
                    other => return Err(format!("--db {other:?}: expected sqlite or postgres")),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.only_trial == Some(0) {
        return Err("--only-trial counts from 1".to_owned());
    }
    Ok(a)
}

fn default_fogbook() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("fogbook")))
        .unwrap_or_else(|| PathBuf::from("target/release/fogbook"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fogbook-chaos: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_VIOLATIONS),
        Err(e) => {
            eprintln!("fogbook-chaos: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let started = Instant::now();
    let fogbook = args.fogbook.clone().unwrap_or_else(default_fogbook);
    let fogbook = std::fs::canonicalize(&fogbook).map_err(|e| format!("{}: {e}", fogbook.display()))?;
    let root = std::fs::canonicalize(&args.root).map_err(|e| format!("{}: {e}", args.root.display()))?;
    if args.list_plans {
        let runbooks = runbooks::discover(&root, &args.runbooks)?;
        for k in 1..=args.trials {
            println!(
                "trial {k:>4}: {}",
                Plan::draw(args.seed, k, &runbooks, args.postgres).describe(&runbooks)
            );
        }
        return Ok(true);
    }
    let runbooks = runbooks::discover(&root, &args.runbooks)?;
    let work = tempfile::Builder::new()
        .prefix("fogbook-chaos-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let pg = if args.postgres {
        Some(pghosts::PgServer::start()?)
    } else {
        None
    };
    let local = work.path().join("local");
    std::fs::create_dir_all(&local).map_err(|e| format!("{}: {e}", local.display()))?;
    let env = Env {
        fogbook,
        root: root.clone(),
        break_mode: args.break_mode.clone(),
        local_dir: args.postgres.then_some(local),
    };
    eprintln!(
        "chaos: seed {} trials {} jobs {} db {} binary {}{}",
        args.seed,
        args.trials,
        args.jobs,
        if args.postgres { "postgres" } else { "sqlite" },
        env.fogbook.display(),
        args.break_mode
            .as_ref()
            .map_or(String::new(), |b| format!(" FOGBOOK_CHAOS_BREAK={b}"))
    );

    // Uninterrupted runs: the expected estate, effects and windows of each runbook.
    let mut baselines = Vec::new();
    for rb in &runbooks {
        let dir = work.path().join(format!("baseline-{}", rb.name));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let url = match &pg {
            Some(pg) => Some(pg.database(&format!("chaos_baseline_{}", rb.name.replace('-', "_")))?),
            None => None,
        };
        let b = trial::baseline(&env, rb, &dir, url.as_deref().map(std::path::Path::new))?;
        eprintln!(
            "chaos: baseline {:<26} {:>5} ms, {} Microsoft.Sql effect(s), {} window(s)",
            rb.name,
            b.duration_ms,
            b.sql_ops.values().sum::<usize>(),
            b.windows.len()
        );
        baselines.push(b);
    }

    let indices: Vec<usize> = match args.only_trial {
        Some(k) => vec![k],
        None => (1..=args.trials).collect(),
    };
    let focus: Option<&'static str> = match &args.pause_on_fault {
        None => None,
        Some(op) => Some(plan::operation(op).ok_or_else(|| format!("--pause-on-fault: unknown operation {op:?}"))?),
    };
    let plans: Vec<Plan> = indices
        .iter()
        .map(|&k| {
            let mut plan = Plan::draw(args.seed, k, &runbooks, args.postgres);
            if let Some(op) = focus {
                plan.focus_pause_on_fault(op);
            }
            plan
        })
        .collect();
    let limits = Limits {
        trial_timeout: args.trial_timeout,
        // Room for the refused resumes (exit 4) while a frozen driver's lease runs out.
        max_processes: 24,
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let shared = Arc::new((env, runbooks, baselines));
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(plans.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = plans.get(i) else { break };
                    let (env, runbooks, baselines) = &*shared;
                    let rb = &runbooks[plan.runbook];
                    let dir = work.path().join(format!("trial-{:04}", plan.index));
                    let t = Trial {
                        env,
                        plan,
                        rb,
                        base: &baselines[plan.runbook],
                        dir: &dir,
                        limits,
                    };
                    let mut outcome = match std::fs::create_dir_all(&dir) {
                        Ok(()) => match &pg {
                            Some(pg) => pgtrial::execute(t, pg),
                            None => trial::execute(t),
                        },
                        Err(e) => Outcome {
                            index: plan.index,
                            runbook: rb.name.clone(),
                            ending: "violation".to_owned(),
                            violations: vec![format!("trial directory: {e}")],
                            ..Outcome::default()
                        },
                    };
                    let failed = !outcome.violations.is_empty();
                    if failed || args.keep {
                        outcome.dir = Some(dir.clone());
                    } else {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    if !args.quiet || failed {
                        let pg_counts = if plan.pg.is_some() {
                            format!(
                                " worker-kills {} pg-restarts {} black-holes {}",
                                outcome.worker_kills, outcome.pg_restarts, outcome.black_holes
                            )
                        } else {
                            String::new()
                        };
                        eprintln!(
                            "trial {:>4}: {:<32} {:>6} ms  kills {} sim-restarts {}{pg_counts}  {}  [{}]",
                            plan.index,
                            outcome.ending,
                            outcome.elapsed.as_millis(),
                            outcome.engine_kills,
                            outcome.sim_restarts,
                            if failed { "VIOLATION" } else { "ok" },
                            plan.describe(runbooks)
                        );
                        for v in &outcome.violations {
                            eprintln!("    violation: {v}");
                        }
                        if let Some(d) = &outcome.dir {
                            eprintln!("    kept: {}", d.display());
                        }
                    }
                    results.lock().unwrap_or_else(PoisonError::into_inner).push(outcome);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    results.sort_by_key(|o| o.index);
    let any_kept = results.iter().any(|o| o.dir.is_some());
    if any_kept {
        // Keep the trial directories (the baselines too) for inspection.
        let path = work.keep();
        eprintln!("chaos: trial directories kept under {}", path.display());
    }

    // The figures.
    let mut endings: BTreeMap<String, usize> = BTreeMap::new();
    let mut faults: BTreeMap<String, u32> = FAULT_KINDS.iter().map(|k| ((*k).to_owned(), 0)).collect();
    let (mut kills, mut restarts, mut retries, mut dropped, mut violations) = (0, 0, 0, 0, 0);
    let (mut pauses, mut group_signals, mut competitors) = (0, 0, 0);
    let (mut worker_kills, mut pg_restarts, mut black_holes, mut worker_exits) = (0, 0, 0, 0);
    let mut by_runbook: BTreeMap<String, usize> = BTreeMap::new();
    for o in &results {
        *endings.entry(o.ending.clone()).or_default() += 1;
        *by_runbook.entry(o.runbook.clone()).or_default() += 1;
        for (k, n) in &o.faults {
            *faults.entry(k.clone()).or_default() += n;
        }
        kills += o.engine_kills;
        restarts += o.sim_restarts;
        retries += o.operator_retries;
        dropped += o.applied_but_dropped;
        pauses += o.pauses;
        group_signals += o.group_signals;
        competitors += o.competitors;
        worker_kills += o.worker_kills;
        pg_restarts += o.pg_restarts;
        black_holes += o.black_holes;
        worker_exits += o.worker_exits;
        violations += o.violations.len();
    }
    let failing: Vec<usize> = results
        .iter()
        .filter(|o| !o.violations.is_empty())
        .map(|o| o.index)
        .collect();
    let join = |m: &BTreeMap<String, usize>| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    eprintln!("chaos: trials by runbook: {}", join(&by_runbook));
    eprintln!("chaos: endings: {}", join(&endings));
    let pg_figures = if args.postgres {
        let mut starts: BTreeMap<String, usize> = BTreeMap::new();
        let mut workers = 0;
        for p in &plans {
            if let Some(pg) = &p.pg {
                *starts.entry(format!("{:?}", pg.start).to_lowercase()).or_default() += 1;
                workers += pg.workers;
            }
        }
        format!(
            " db=postgres workers={workers} starts{{{}}} worker_kills={worker_kills} pg_restarts={pg_restarts} black_holes={black_holes} worker_self_exits={worker_exits}",
            starts
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    } else {
        String::new()
    };
    println!(
        "chaos: trials={} succeeded={} expected_failures={} engine_kills={} emulator_restarts={} pauses={} group_signals={} competitors={} faults{{{}}} applied_but_dropped_seen={} operator_retries={} violations={} failing_trials={} seed={} elapsed={:.0}s{pg_figures}",
        results.len(),
        endings.get("succeeded").copied().unwrap_or(0),
        results
            .iter()
            .filter(|o| o.violations.is_empty() && o.ending != "succeeded")
            .count(),
        kills,
        restarts,
        pauses,
        group_signals,
        competitors,
        faults
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        dropped,
        retries,
        violations,
        failing.len(),
        args.seed,
        started.elapsed().as_secs_f64()
    );
    if let Some(k) = failing.first() {
        let mut replay = format!(
            "cargo run -p fogbook-chaos --release -- --seed {} --trials {} --only-trial {k} --fogbook {}",
            args.seed,
            args.trials,
            shared.0.fogbook.display()
        );
        if args.postgres {
            replay.push_str(" --db postgres");
        }
        if let Some(b) = &args.break_mode {
            replay.push_str(&format!(" --break {b}"));
        }
        if !args.runbooks.is_empty() {
            replay.push_str(&format!(" --runbooks {}", args.runbooks.join(",")));
        }
        eprintln!("chaos: replay a failing trial (failing: {failing:?}): {replay}");
    }
    Ok(violations == 0)
}
