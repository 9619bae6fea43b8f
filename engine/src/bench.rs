//! `fogbook bench`: the engine's step overhead beside the physical floor of the same disk
//! (a bare durable SQLite commit), measured in the same process; or, on PostgreSQL
//! ([`run_bench_on`]), beside a bare durable commit on that server.

use std::path::Path;
use std::time::Instant;

use fogbook_state::Store;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{CreateRun, Engine, EngineConfig, EngineError, RunOutcome, runbook};

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// Commits for the floor.
    pub floor_commits: u32,
    /// Steps of the one sequential run.
    pub sequential_steps: u32,
    /// Runs driven at once.
    pub concurrent_runs: u32,
    /// Steps of each concurrent run.
    pub steps_per_run: u32,
}

/// The figures, each beside the floor.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Durable commits per second of a bare SQLite table on this disk: the median of
    /// `floor_samples`.
    pub floor_commits_per_s: f64,
    /// The floor measured before the sequential run, between the two runs and after the
    /// concurrent one: a shared virtual disk's fsync time varies between seconds, and the
    /// spread shows how much.
    pub floor_samples: Vec<f64>,
    /// No-op steps per second of one run.
    pub sequential_steps_per_s: f64,
    /// `sequential_steps_per_s / floor_commits_per_s`.
    pub sequential_ratio: f64,
    /// Commits (fsyncs) per step in the sequential run.
    pub sequential_commits_per_step: f64,
    /// No-op steps per second over all concurrent runs.
    pub concurrent_steps_per_s: f64,
    /// `concurrent_steps_per_s / floor_commits_per_s`.
    pub concurrent_ratio: f64,
    /// Commits (fsyncs) per step with many runs at once (group commit shares them).
    pub concurrent_commits_per_step: f64,
    /// Round trips to the database server per step in the sequential run (PostgreSQL
    /// only: [`Store::round_trips`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential_round_trips_per_step: Option<f64>,
    /// Round trips to the database server per step with many runs at once (PostgreSQL
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent_round_trips_per_step: Option<f64>,
    /// The settings.
    pub config: serde_json::Value,
}

/// Round trips per step between two readings of [`Store::round_trips`] (`None` on SQLite).
#[allow(clippy::cast_precision_loss, reason = "a benchmark's ratio")]
fn per_step(before: Option<u64>, after: Option<u64>, steps: f64) -> Option<f64> {
    Some(after?.saturating_sub(before?) as f64 / steps)
}

fn noop_runbook(steps: u32) -> String {
    let mut text = String::from("runbook: bench\nversion: 1\nparams:\n  tag: { type: string, default: x }\n");
    text.push_str("steps:\n");
    for i in 0..steps {
        text.push_str(&format!(
            "  - id: s{i}\n    uses: assert\n    with: {{ that: true, message: never }}\n"
        ));
    }
    text
}

fn err(message: String) -> EngineError {
    EngineError::internal(message)
}

/// Runs the benchmark in `dir` (a scratch database there, removed afterwards).
pub async fn run_bench(dir: &Path, config: BenchConfig) -> Result<BenchReport, EngineError> {
    let db = dir.join(format!("bench-{}.db", std::process::id()));
    let store = Store::open(&db)?;
    let report = run_bench_on(store, || floor(dir, config.floor_commits), config).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    report
}

/// Runs the benchmark on `store` (an empty scratch store of any backend, closed at the end),
/// with `floor` measuring that backend's durable commits per second before, between and
/// after the two workloads.
pub async fn run_bench_on<F, Fut>(store: Store, floor: F, config: BenchConfig) -> Result<BenchReport, EngineError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<f64, EngineError>>,
{
    let mut floors = vec![floor().await?];
    let engine = Engine::new(store.clone(), EngineConfig::default());

    // Sequential: one run of many no-op steps.
    let text = noop_runbook(config.sequential_steps);
    let rb = runbook::parse(&text, "bench").map_err(EngineError::Invalid)?;
    let params = json!({ "tag": "x" });
    let id = engine.create_run(request(&rb, &text, &params)).await?;
    let before = store.commit_count();
    let trips_before = store.round_trips();
    let start = Instant::now();
    let outcome = engine.drive(&id, CancellationToken::new()).await?;
    let seq_secs = start.elapsed().as_secs_f64();
    if outcome != RunOutcome::Succeeded {
        return Err(err(format!("the sequential benchmark run ended {outcome:?}")));
    }
    let seq_commits = (store.commit_count() - before) as f64;
    let steps = f64::from(config.sequential_steps);
    let seq_trips = per_step(trips_before, store.round_trips(), steps);
    floors.push(floor().await?);

    // Concurrent: many runs at once, each driven by its own task.
    let text = noop_runbook(config.steps_per_run);
    let rb = runbook::parse(&text, "bench").map_err(EngineError::Invalid)?;
    let mut ids = Vec::new();
    for _ in 0..config.concurrent_runs {
        let mut req = request(&rb, &text, &params);
        req.take_lease = false;
        ids.push(engine.create_run(req).await?);
    }
    let before = store.commit_count();
    let trips_before = store.round_trips();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let engine = engine.clone();
        tasks.spawn(async move { engine.drive(&id, CancellationToken::new()).await });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(RunOutcome::Succeeded)) => {}
            Ok(Ok(other)) => return Err(err(format!("a concurrent benchmark run ended {other:?}"))),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(err(format!("a benchmark task failed: {e}"))),
        }
    }
    let conc_secs = start.elapsed().as_secs_f64();
    let conc_commits = (store.commit_count() - before) as f64;
    let conc_steps = f64::from(config.concurrent_runs) * f64::from(config.steps_per_run);
    let conc_trips = per_step(trips_before, store.round_trips(), conc_steps);
    floors.push(floor().await?);
    store.close().await;

    let mut sorted = floors.clone();
    sorted.sort_by(f64::total_cmp);
    let floor = sorted[sorted.len() / 2];
    let sequential = steps / seq_secs;
    let concurrent = conc_steps / conc_secs;
    Ok(BenchReport {
        floor_commits_per_s: floor,
        floor_samples: floors,
        sequential_steps_per_s: sequential,
        sequential_ratio: sequential / floor,
        sequential_commits_per_step: seq_commits / steps,
        concurrent_steps_per_s: concurrent,
        concurrent_ratio: concurrent / floor,
        concurrent_commits_per_step: conc_commits / conc_steps,
        sequential_round_trips_per_step: seq_trips,
        concurrent_round_trips_per_step: conc_trips,
        config: json!({
            "floor_commits": config.floor_commits,
            "sequential_steps": config.sequential_steps,
            "concurrent_runs": config.concurrent_runs,
            "steps_per_run": config.steps_per_run,
        }),
    })
}

/// Durable commits per second of a bare table in `dir`. The loop blocks on fsync: it runs on
/// a blocking thread, never on a runtime worker.
async fn floor(dir: &Path, commits: u32) -> Result<f64, EngineError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || fogbook_state::durable_commit_floor(&dir, commits))
        .await
        .map_err(|e| err(format!("the floor benchmark failed: {e}")))?
        .map_err(EngineError::from)
}

fn request<'a>(rb: &'a runbook::Runbook, text: &'a str, params: &serde_json::Value) -> CreateRun<'a> {
    CreateRun {
        params: params.clone(),
        take_lease: true,
        created_by: json!("bench"),
        ..CreateRun::new(rb, text)
    }
}
