//! `fogbook bench`, the two measurements made against the ARM emulator (docs/PERFORMANCE.md):
//!
//! - **resume latency**: from the start of a `fogbook resume` process to its first poll of the
//!   seeding operation that was in flight when the previous driver was SIGKILLed. The emulator
//!   runs in this process and reports each request with the [`Instant`] it arrived, so the
//!   figure is taken at the other side of the wire, on the same clock as the spawn, never from
//!   the engine's own logs;
//! - **memory per waiting run**: one fresh process (`fogbook bench --waiting-only`) drives many
//!   runs at once, each waiting on an ARM operation, against an emulator in a child process (so
//!   its memory is not counted), and the RSS difference is divided by the number of runs; the
//!   emulator's request counts give how often the waiting runs poll against ARM's read refill.
//!
//! Scratch files live in a directory under `--dir`, removed afterwards.
//!
//! Over 600 lines: the two measurements share the emulator harness (scratch files, the admin
//! client, percentiles); each is one section below.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use fogbook_activities::Env;
use fogbook_activities::arm::{ArmClient, ArmConfig, Secret};
use fogbook_engine::{CreateRun, Engine, EngineConfig, runbook};
use fogbook_sim::{Estate, SeenRequest, SimConfig};
use fogbook_state::{RunFilter, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// The shipped runbook whose seeding is interrupted, its example parameters, and the estate
/// they go with (two instances not yet in a group).
const RESUME_RUNBOOK: &str = include_str!("../../runbooks/configure-failover-group.yaml");
const RESUME_PARAMS: &str = include_str!("../../examples/configure-failover-group.yaml");
const RESUME_ESTATE: &str = include_str!("../../examples/estate-unpaired.yaml");
/// The step that creates the group and waits for its seeding.
const SEEDING_STEP: &str = "create-group";
/// Real time: the seeding (about 70 simulated minutes) is still in flight after every trial.
const RESUME_TIME_SCALE: f64 = 1.0;
/// Six simulated seconds per real second: the emulator's `Retry-After` is
/// `min(remaining, 60 s) / scale` = 10 s (the shortest interval ARM's RPC guidance allows),
/// and a one-hour scale operation stays in flight for ten real minutes.
const WAITING_TIME_SCALE: f64 = 6.0;
/// ARM's subscription read bucket (docs/ARM.md §5), restored once every run is waiting.
const READ_BURST: f64 = 250.0;
const READ_REFILL_PER_S: f64 = 25.0;
const SUBSCRIPTION: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";
/// The bearer token the emulator is given (it accepts any).
const TOKEN: &str = "fogbook-bench";
/// How long one trial or one phase may take before the bench gives up.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the waiting runs may take to stop once cancelled.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A benchmark that could not be carried out.
#[derive(Debug)]
pub(crate) struct BenchError(String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

fn fail(message: impl Into<String>) -> BenchError {
    BenchError(message.into())
}

/// Adds what was being done to an error.
trait Context<T> {
    fn context(self, what: &str) -> Result<T, BenchError>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, BenchError> {
        self.map_err(|e| fail(format!("{what}: {e}")))
    }
}

/// A directory under `--dir`, removed with everything in it when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(dir: &Path, what: &str) -> Result<Self, BenchError> {
        let path = dir.join(format!("bench-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&path).context(&format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// `fogbook` (this executable) with a hermetic environment, pointed at the emulator.
fn fogbook(db: &Path, arm_url: &str) -> Result<Command, BenchError> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut c = Command::new(exe);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("USER", "bench")
        .env("FOGBOOK_ARM_ENDPOINT", arm_url)
        .env("FOGBOOK_ARM_TOKEN", TOKEN)
        .arg("--db")
        .arg(db)
        .arg("-q")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(c)
}

// ------------------------------------------------------------------------------------------
// Resume latency.

/// Resume latency, in milliseconds from spawning `fogbook resume` (the process start as seen
/// from outside: fork and exec included) to the emulator receiving its first poll.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ResumeLatency {
    pub(crate) trials: u32,
    pub(crate) median: f64,
    pub(crate) p95: f64,
    pub(crate) max: f64,
    pub(crate) min: f64,
    /// Median from the spawn to the first request the resumed process sent (any request: the
    /// step reads the primary instance before it re-attaches to the operation).
    pub(crate) first_request_median: f64,
    /// Median of spawning `fogbook --version` until it exits: the floor of any process.
    pub(crate) exec_floor_median: f64,
    /// One more trial with debug logs: when each milestone happened, in ms from the spawn.
    pub(crate) breakdown: Vec<Milestone>,
}

/// One point of the breakdown.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Milestone {
    pub(crate) at_ms: f64,
    pub(crate) what: String,
}

/// Measures resume latency over `trials` resumes of one run interrupted during seeding.
pub(crate) async fn resume_latency(dir: &Path, trials: u32) -> Result<ResumeLatency, BenchError> {
    if !fogbook_engine::TEST_HOOKS {
        return Err(fail(
            "the resume-latency phase stops a run inside its seeding with a failpoint, which this build leaves out: build with `cargo build --release --locked --features test-hooks`, or pass --resume-trials 0",
        ));
    }
    let scratch = Scratch::new(dir, "resume")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let estate = Estate::from_yaml_str(RESUME_ESTATE).context("the bench estate does not load")?;
    let mut config = SimConfig::new(estate);
    config.time_scale = RESUME_TIME_SCALE;
    config.observer = Some(tx);
    let sim = fogbook_sim::start(config)
        .await
        .context("cannot start the ARM emulator")?;
    let result = measure_resume(&scratch, &sim.base_url(), rx, trials).await;
    sim.shutdown().await;
    result
}

async fn measure_resume(
    scratch: &Scratch,
    url: &str,
    mut seen: UnboundedReceiver<SeenRequest>,
    trials: u32,
) -> Result<ResumeLatency, BenchError> {
    let rb = scratch.join("configure-failover-group.yaml");
    let params = scratch.join("params.yaml");
    let db = scratch.join("state.db");
    std::fs::write(&rb, RESUME_RUNBOOK).context("cannot write the runbook")?;
    std::fs::write(&params, RESUME_PARAMS).context("cannot write the parameters")?;

    // The run, SIGKILLed by its failpoint right after it saved the seeding's polling URL.
    let out = fogbook(&db, url)?
        .arg("run")
        .arg(&rb)
        .arg("--params")
        .arg(&params)
        .env("FOGBOOK_FAILPOINTS", format!("after-progress:{SEEDING_STEP}"))
        .output()
        .await
        .context("cannot start `fogbook run`")?;
    if out.status.signal() != Some(9) {
        return Err(fail(format!(
            "the run to interrupt ended with {} instead of being killed inside its seeding: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let (run_id, poll_path) = seeding_operation(&db).await?;

    let resume = |log: Option<&Path>| -> Result<Command, BenchError> {
        let mut c = fogbook(&db, url)?;
        c.args(["resume", &run_id]);
        if let Some(log) = log {
            let file = std::fs::File::create(log).context("cannot create the debug log")?;
            c.env(
                "RUST_LOG",
                "warn,fogbook=debug,fogbook_engine=info,fogbook_state=info,fogbook_activities=info",
            )
            .stderr(file);
        }
        Ok(c)
    };
    let mut polls = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..trials {
        let t = trial(resume(None)?, &poll_path, &mut seen).await?;
        polls.push(ms(t.poll));
        firsts.push(ms(t.first_request));
    }
    let log = scratch.join("resume-debug.log");
    let t = trial(resume(Some(&log))?, &poll_path, &mut seen).await?;
    let breakdown = breakdown(&log, &t);

    let mut floor = Vec::new();
    for _ in 0..5 {
        let mut c = fogbook(&db, url)?;
        c.arg("--version");
        let start = Instant::now();
        c.status().await.context("cannot start `fogbook --version`")?;
        floor.push(ms(start.elapsed()));
    }

    let polls = sorted(polls);
    Ok(ResumeLatency {
        trials,
        median: percentile(&polls, 0.5),
        p95: percentile(&polls, 0.95),
        max: polls.last().copied().unwrap_or_default(),
        min: polls.first().copied().unwrap_or_default(),
        first_request_median: percentile(&sorted(firsts), 0.5),
        exec_floor_median: percentile(&sorted(floor), 0.5),
        breakdown,
    })
}

/// The interrupted run and the path of its seeding operation's polling URL, from the store.
async fn seeding_operation(db: &Path) -> Result<(String, String), BenchError> {
    let store = Store::open(db).context("cannot open the bench database")?;
    let found = async {
        let runs = store
            .list_runs(RunFilter {
                statuses: Vec::new(),
                limit: Some(1),
            })
            .await
            .context("cannot list runs")?;
        let run = runs
            .first()
            .ok_or_else(|| fail("the interrupted run is not in the database"))?;
        let snap = store.load_run(&run.id).await.context("cannot load the run")?;
        let url = snap
            .step(SEEDING_STEP)
            .and_then(|s| s.progress.as_ref())
            .and_then(|p| p.pointer("/ops/create/url"))
            .and_then(|u| u.as_str())
            .ok_or_else(|| fail("the interrupted run saved no seeding operation"))?;
        let path = url::Url::parse(url)
            .context("the saved polling URL does not parse")?
            .path()
            .to_owned();
        Ok((run.id.clone(), path))
    }
    .await;
    store.close().await;
    found
}

/// One resume, from its spawn to its first poll.
struct Trial {
    spawned_at: SystemTime,
    first_request: Duration,
    poll: Duration,
    /// What the emulator received, in ms from the spawn.
    requests: Vec<(Duration, String)>,
}

/// Spawns `resume`, waits for the emulator to see it poll `poll_path`, then SIGKILLs it, so
/// the next trial finds the same situation: a seeding in flight and a dead driver's lease.
async fn trial(
    mut resume: Command,
    poll_path: &str,
    seen: &mut UnboundedReceiver<SeenRequest>,
) -> Result<Trial, BenchError> {
    while seen.try_recv().is_ok() {}
    let spawned_at = SystemTime::now();
    let start = Instant::now();
    let mut child = resume.spawn().context("cannot start `fogbook resume`")?;
    let mut requests = Vec::new();
    let wait_poll = async {
        while let Some(r) = seen.recv().await {
            if r.received < start {
                continue;
            }
            let at = r.received - start;
            requests.push((at, format!("{} {}", r.method, r.operation.unwrap_or("?"))));
            if r.method == "GET" && r.path == poll_path {
                return Some(at);
            }
        }
        None
    };
    let outcome = tokio::select! {
        at = wait_poll => at.ok_or_else(|| fail("the emulator stopped reporting requests")),
        status = child.wait() => Err(fail(format!(
            "`fogbook resume` ended ({}) before it polled the seeding operation",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        ))),
        () = tokio::time::sleep(TRIAL_TIMEOUT) => Err(fail("`fogbook resume` did not poll the seeding operation within 30 s")),
    };
    let _ = child.start_kill();
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr).await;
    }
    let _ = child.wait().await;
    let poll = outcome.map_err(|e| fail(format!("{e}: {}", stderr.trim())))?;
    Ok(Trial {
        spawned_at,
        first_request: requests.first().map_or(poll, |r| r.0),
        poll,
        requests,
    })
}

/// Log lines of the debug trial that mark where the time goes, and what they mean.
const MILESTONES: &[(&str, &str)] = &[
    ("cli.started", "process up: loaded, arguments parsed, logging installed"),
    ("store.opened", "database opened (runtime started)"),
    ("arm.client_ready", "ARM client built"),
    ("engine.ready", "engine and activity environment built"),
    (
        "took over the run's lease",
        "run loaded, lease taken over from the killed driver",
    ),
    ("step.started", "re-entered step's start committed"),
    ("arm.lro_reattach", "primary read, re-attaching to the saved operation"),
];

/// Where the time of the debug trial went: the milestones above, from its log, and the
/// requests the emulator received.
fn breakdown(log: &Path, t: &Trial) -> Vec<Milestone> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let spawned = time::OffsetDateTime::from(t.spawned_at);
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, what)) = MILESTONES.iter().find(|(marker, _)| line.contains(marker)) else {
            continue;
        };
        let stamp = line.split_whitespace().next().unwrap_or_default();
        let Ok(at) = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339) else {
            continue;
        };
        out.push(Milestone {
            at_ms: (at - spawned).as_seconds_f64() * 1000.0,
            what: (*what).to_owned(),
        });
    }
    for (at, what) in &t.requests {
        out.push(Milestone {
            at_ms: ms(*at),
            what: format!("emulator received {what}"),
        });
    }
    out.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    out
}

// ------------------------------------------------------------------------------------------
// Memory per waiting run.

/// Memory of runs waiting on ARM operations, and their polling.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MemoryReport {
    /// Runs driven at once by this process.
    pub(crate) runs: u32,
    /// VmRSS of this process once the runs were created, before they were driven.
    pub(crate) rss_before_kib: u64,
    /// VmRSS once every run had saved the polling URL of its operation.
    pub(crate) rss_waiting_kib: u64,
    /// `(rss_waiting_kib - rss_before_kib) / runs`.
    pub(crate) kib_per_run: f64,
    /// VmRSS at the end of the polling window.
    pub(crate) rss_after_window_kib: u64,
    /// Seconds from the first drive to the last run waiting.
    pub(crate) start_s: f64,
    /// Sockets this process had open then: the ARM client's pooled HTTP connections.
    pub(crate) sockets_waiting: u32,
    /// The polling window (seconds; 0: not measured).
    pub(crate) window_s: f64,
    /// The emulator's `Retry-After` on the operations (seconds).
    pub(crate) retry_after_s: f64,
    /// Polls the emulator received per second in the window, answered or throttled.
    pub(crate) polls_per_s: Option<f64>,
    /// Of those, answered (not throttled) per second.
    pub(crate) polls_answered_per_s: Option<f64>,
    /// ARM requests answered 429 per second in the window.
    pub(crate) throttled_per_s: Option<f64>,
    /// ARM's subscription read refill the polls are compared with.
    pub(crate) read_refill_per_s: f64,
    /// Runs that ended (failed) while they should have been waiting.
    pub(crate) runs_ended: u32,
    /// Seconds from the cancellation to the last run stopped (at most the grace).
    pub(crate) stop_s: f64,
    /// Runs that had not stopped within the grace after the cancellation (then aborted).
    pub(crate) runs_not_stopped: u32,
}

/// A one-step runbook: scale one instance (a one-hour operation at the emulator).
const WAITING_RUNBOOK: &str = r#"runbook: bench-waiting
version: 1
description: One long-running Azure step, for `fogbook bench`.
params:
  instance: { type: instance }
locks:
  - "mi/${{ params.instance.name }}"
steps:
  - id: scale
    uses: instance.scale
    with: { instance: "${{ params.instance }}", v_cores: 16 }
"#;

/// An estate of `runs` independent instances, each in its own resource group, sharing one
/// subnet. The buckets are large so that starting the runs is not throttled; ARM's read
/// limits are restored once every run waits, before the polls are counted.
fn waiting_estate(runs: u32) -> String {
    let mut text = format!(
        "epoch: 2026-11-26T08:00:00Z\n\
         throttling:\n\
         \x20 reads: {{burst: 1000000, per_second: {READ_REFILL_PER_S}}}\n\
         \x20 writes: {{burst: 1000000, per_second: 10}}\n\
         subscriptions:\n\
         \x20 - id: {SUBSCRIPTION}\n\
         \x20   resource_groups:\n\
         \x20     - name: rg-bench-net\n\
         \x20       location: eastus\n\
         \x20       virtual_networks:\n\
         \x20         - name: vnet-bench\n\
         \x20           address_prefixes: [10.0.0.0/16]\n\
         \x20           subnets:\n\
         \x20             - {{name: snet-mi, address_prefix: 10.0.0.0/24}}\n"
    );
    let subnet = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-bench-net/providers/Microsoft.Network/virtualNetworks/vnet-bench/subnets/snet-mi"
    );
    for i in 0..runs {
        text.push_str(&format!(
            "      - name: rg-bench-{i}\n\
             \x20       location: eastus\n\
             \x20       managed_instances:\n\
             \x20         - {{name: mi-bench-{i}, storage_gb: 256, subnet: {subnet}}}\n"
        ));
    }
    text
}

/// Sockets this process has open (its HTTP connections to the emulator, mostly).
fn sockets() -> u32 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let n = fds
        .filter_map(Result::ok)
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:")))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// VmRSS of this process, in KiB.
fn rss_kib() -> Result<u64, BenchError> {
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| fail("no VmRSS in /proc/self/status"))
}

/// Runs [`memory`] in a fresh `fogbook bench --waiting-only` process and reads its JSON.
pub(crate) async fn memory_in_child(dir: &Path, runs: u32, window_secs: u64) -> Result<MemoryReport, BenchError> {
    if crate::bench::command::waiting_only_allowed(fogbook_engine::TEST_HOOKS).is_err() {
        return Err(fail(
            "the memory phase runs `fogbook bench --waiting-only`, a test switch this build leaves out: build with `cargo build --release --locked --features test-hooks`, or pass --waiting-runs 0",
        ));
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let out = Command::new(exe)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .args(["--format", "json", "bench", "--waiting-only", "--dir"])
        .arg(dir)
        .args(["--waiting-runs", &runs.to_string()])
        .args(["--waiting-secs", &window_secs.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot start `fogbook bench --waiting-only`")?;
    if !out.status.success() {
        return Err(fail(format!("the memory benchmark failed ({})", out.status)));
    }
    serde_json::from_slice(&out.stdout).context("the memory benchmark printed no report")
}

/// Measures memory per waiting run with `runs` runs and counts their polls over `window`.
pub(crate) async fn memory(dir: &Path, runs: u32, window: Duration) -> Result<MemoryReport, BenchError> {
    let scratch = Scratch::new(dir, "memory")?;
    let estate = scratch.join("estate.yaml");
    std::fs::write(&estate, waiting_estate(runs)).context("cannot write the estate")?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut sim = Command::new(exe)
        .env_clear()
        .env("NO_COLOR", "1")
        .args(["-q", "sim", "serve", "--listen", "127.0.0.1:0", "--estate"])
        .arg(&estate)
        .args(["--time-scale", &WAITING_TIME_SCALE.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `fogbook sim serve`")?;
    let mut line = String::new();
    if let Some(out) = sim.stdout.take() {
        let mut out = tokio::io::BufReader::new(out);
        tokio::time::timeout(TRIAL_TIMEOUT, out.read_line(&mut line))
            .await
            .context("`fogbook sim serve` did not start")?
            .context("cannot read the emulator's URL")?;
    }
    let url = line.trim().to_owned();
    if !url.starts_with("http://") {
        return Err(fail("`fogbook sim serve` printed no URL"));
    }
    let store = Store::open(&scratch.join("state.db")).context("cannot open the bench database")?;
    let result = drive_waiting(&store, &url, runs, window).await;
    store.close().await;
    let _ = sim.start_kill();
    let _ = sim.wait().await;
    result
}

async fn drive_waiting(store: &Store, url: &str, runs: u32, window: Duration) -> Result<MemoryReport, BenchError> {
    let endpoint = url::Url::parse(url).context("the emulator's URL does not parse")?;
    let mut cfg = ArmConfig::with_token(endpoint, Secret::new(TOKEN.to_owned()));
    // The runs' 1,000 writes start at once (the emulator's buckets are raised for the start);
    // their polls keep the client's own read schedule, which is what is measured.
    cfg.rates.writes_per_s = f64::INFINITY;
    let arm = ArmClient::new(cfg).await.context("cannot build the ARM client")?;
    let engine = Engine::new(store.clone(), EngineConfig::default()).with_env(Env::with_arm(arm));
    let rb = runbook::parse(WAITING_RUNBOOK, "bench-waiting").map_err(|_| fail("the bench runbook is invalid"))?;
    let mut ids = Vec::new();
    for i in 0..runs {
        let params = json!({ "instance": {
            "subscription": SUBSCRIPTION,
            "resource_group": format!("rg-bench-{i}"),
            "name": format!("mi-bench-{i}"),
        }});
        let id = engine
            .create_run(CreateRun {
                params,
                created_by: json!("bench"),
                ..CreateRun::new(&rb, WAITING_RUNBOOK)
            })
            .await
            .context("cannot create a bench run")?;
        ids.push(id);
    }

    let rss_before = rss_kib()?;
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for id in &ids {
        let (engine, id, stop) = (engine.clone(), id.clone(), stop.clone());
        tasks.spawn(async move { engine.drive(&id, stop).await });
    }
    let measured = measure_waiting(store, url, &ids, &mut tasks, window, start).await;
    let mut ended = 0;
    while tasks.try_join_next().is_some() {
        ended += 1;
    }
    // Cancel; a run inside the ARM client's retry back-off only notices at its next poll, so
    // runs still going after STOP_GRACE are aborted (the database is scratch).
    stop.cancel();
    let stopping = Instant::now();
    let joined = tokio::time::timeout(STOP_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    let not_stopped = if joined.is_err() {
        let left = u32::try_from(tasks.len()).unwrap_or(u32::MAX);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        left
    } else {
        0
    };
    let stop_s = stopping.elapsed().as_secs_f64();
    let m = measured?;
    let kib_per_run = (m.rss_waiting as f64 - rss_before as f64) / f64::from(runs);
    Ok(MemoryReport {
        runs,
        rss_before_kib: rss_before,
        rss_waiting_kib: m.rss_waiting,
        kib_per_run,
        rss_after_window_kib: m.rss_after_window,
        start_s: m.start_s,
        sockets_waiting: m.sockets,
        window_s: window.as_secs_f64(),
        retry_after_s: (60.0 / WAITING_TIME_SCALE).ceil(),
        polls_per_s: m.polls.map(|p| p.polls),
        polls_answered_per_s: m.polls.map(|p| p.answered),
        throttled_per_s: m.polls.map(|p| p.throttled),
        read_refill_per_s: READ_REFILL_PER_S,
        runs_ended: ended,
        stop_s,
        runs_not_stopped: not_stopped,
    })
}

struct Waiting {
    rss_waiting: u64,
    rss_after_window: u64,
    start_s: f64,
    sockets: u32,
    polls: Option<PollRates>,
}

#[derive(Clone, Copy)]
struct PollRates {
    polls: f64,
    answered: f64,
    throttled: f64,
}

type Drives = tokio::task::JoinSet<Result<fogbook_engine::RunOutcome, fogbook_engine::EngineError>>;

async fn measure_waiting(
    store: &Store,
    url: &str,
    ids: &[String],
    tasks: &mut Drives,
    window: Duration,
    start: Instant,
) -> Result<Waiting, BenchError> {
    // Waiting = the step saved its operation (the polling URL) in the store.
    let mut pending: Vec<&String> = ids.iter().collect();
    let deadline = start + TRIAL_TIMEOUT + Duration::from_millis(20) * u32::try_from(ids.len()).unwrap_or(u32::MAX);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let snap = store.load_run(id).await.context("cannot load a bench run")?;
            let saved = snap
                .step("scale")
                .and_then(|s| s.progress.as_ref())
                .is_some_and(|p| p.pointer("/ops/scale/url").is_some());
            if !saved {
                still.push(id);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if let Some(done) = tasks.try_join_next() {
            let outcome = done
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            return Err(fail(format!(
                "a bench run ended before it waited on its operation: {outcome:?}"
            )));
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "{} of {} runs were not waiting on their operation in time",
                pending.len(),
                ids.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start_s = start.elapsed().as_secs_f64();
    let rss_waiting = rss_kib()?;
    let sockets = sockets();
    if window.is_zero() {
        return Ok(Waiting {
            rss_waiting,
            rss_after_window: rss_waiting,
            start_s,
            sockets,
            polls: None,
        });
    }
    // ARM's read limits from here on, then the polls the emulator sees in the window.
    let limits = json!({
        "reads": { "burst": READ_BURST, "per_second": READ_REFILL_PER_S },
        "writes": { "burst": 200.0, "per_second": 10.0 },
        "deletes": { "burst": 200.0, "per_second": 10.0 },
    });
    admin(url, "PUT", "/_sim/throttling", Some(&limits)).await?;
    let before = admin(url, "GET", "/_sim/requests", None).await?;
    tokio::time::sleep(window).await;
    let after = admin(url, "GET", "/_sim/requests", None).await?;
    let rss_after_window = rss_kib()?;
    let count = |doc: &serde_json::Value, keep: &dyn Fn(&str, u64) -> bool| -> u64 {
        doc["counts"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|e| keep(e["operation"].as_str().unwrap_or(""), e["status"].as_u64().unwrap_or(0)))
                    .filter_map(|e| e["count"].as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    let delta = |keep: &dyn Fn(&str, u64) -> bool| count(&after, keep).saturating_sub(count(&before, keep)) as f64;
    let is_poll = |op: &str| op == "AzureAsyncOperation_Get" || op == "OperationResults_Get";
    let secs = (after["elapsed_ms"].as_f64().unwrap_or(0.0) - before["elapsed_ms"].as_f64().unwrap_or(0.0)) / 1000.0;
    let secs = if secs > 0.0 { secs } else { window.as_secs_f64() };
    Ok(Waiting {
        rss_waiting,
        rss_after_window,
        start_s,
        sockets,
        polls: Some(PollRates {
            polls: delta(&|op, _| is_poll(op)) / secs,
            answered: delta(&|op, status| is_poll(op) && status != 429) / secs,
            throttled: delta(&|_, status| status == 429) / secs,
        }),
    })
}

/// One request to the emulator's admin API (HTTP/1.0, so the answer is never chunked).
async fn admin(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, BenchError> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .context("cannot reach the emulator")?;
    let body = body.map(serde_json::Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .context("cannot write to the emulator")?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .context("cannot read the emulator's answer")?;
    let ok = text.split_whitespace().nth(1).is_some_and(|s| s.starts_with('2'));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    if !ok {
        return Err(fail(format!("the emulator refused {method} {path}: {body}")));
    }
    serde_json::from_str(body).context("the emulator's answer is not JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = sorted((1..=20).rev().map(f64::from).collect());
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&v, 1.0), 20.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_waiting_estate_loads() {
        Estate::from_yaml_str(&waiting_estate(3)).expect("estate");
        runbook::parse(WAITING_RUNBOOK, "bench-waiting").expect("runbook");
    }
}
