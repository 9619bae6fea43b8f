//! `fogbook bench`, the two measurements made against the ARM emulator (docs/PERFORMANCE.md),
//! and their harness (scratch files, the admin client, percentiles):
//!
//! - **resume latency**: from the start of a `fogbook resume` process to its first poll of the
//!   seeding operation that was in flight when the previous driver was SIGKILLed. The emulator
//!   runs in this process and reports each request with the [`Instant`] it arrived, so the
//!   figure is taken at the other side of the wire, on the same clock as the spawn, never from
//!   the engine's own logs;
//! - **memory per waiting run**: in [`crate::bench::memory`], with the harness below.
//!
//! Scratch files live in a directory under `--dir`, removed afterwards.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use fogbook_sim::{Estate, SeenRequest, SimConfig};
use fogbook_state::{RunFilter, Store};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedReceiver;

/// The shipped runbook whose seeding is interrupted, its example parameters, and the estate
/// they go with (two instances not yet in a group).
pub(super) const RESUME_RUNBOOK: &str = include_str!("../../runbooks/configure-failover-group.yaml");
pub(super) const RESUME_PARAMS: &str = include_str!("../../examples/configure-failover-group.yaml");
pub(super) const RESUME_ESTATE: &str = include_str!("../../examples/estate-unpaired.yaml");
/// The step that creates the group and waits for its seeding.
pub(super) const SEEDING_STEP: &str = "create-group";
/// Real time: the seeding (about 70 simulated minutes) is still in flight after every trial.
pub(super) const RESUME_TIME_SCALE: f64 = 1.0;
/// Six simulated seconds per real second: the emulator's `Retry-After` is
/// `min(remaining, 60 s) / scale` = 10 s (the shortest interval ARM's RPC guidance allows),
/// and a one-hour scale operation stays in flight for ten real minutes.
pub(super) const WAITING_TIME_SCALE: f64 = 6.0;
/// ARM's subscription read bucket (docs/ARM.md §5), restored once every run is waiting.
pub(super) const READ_BURST: f64 = 250.0;
pub(super) const READ_REFILL_PER_S: f64 = 25.0;
pub(super) const SUBSCRIPTION: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";
/// The bearer token the emulator is given (it accepts any).
pub(super) const TOKEN: &str = "fogbook-bench";
/// How long one trial or one phase may take before the bench gives up.
pub(super) const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the waiting runs may take to stop once cancelled.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);

/// A benchmark that could not be carried out.
#[derive(Debug)]
pub(crate) struct BenchError(String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

pub(crate) fn fail(message: impl Into<String>) -> BenchError {
    BenchError(message.into())
}

/// Adds what was being done to an error.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, BenchError>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, BenchError> {
        self.map_err(|e| fail(format!("{what}: {e}")))
    }
}

/// A directory under `--dir`, removed with everything in it when dropped.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(dir: &Path, what: &str) -> Result<Self, BenchError> {
        let path = dir.join(format!("bench-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&path).context(&format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile of sorted values.
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(super) fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// `fogbook` (this executable) with a hermetic environment, pointed at the emulator.
pub(crate) fn fogbook(db: &Path, arm_url: &str) -> Result<Command, BenchError> {
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

pub(super) async fn measure_resume(
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
pub(super) async fn seeding_operation(db: &Path) -> Result<(String, String), BenchError> {
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
pub(super) struct Trial {
    spawned_at: SystemTime,
    first_request: Duration,
    poll: Duration,
    /// What the emulator received, in ms from the spawn.
    requests: Vec<(Duration, String)>,
}

/// Spawns `resume`, waits for the emulator to see it poll `poll_path`, then SIGKILLs it, so
/// the next trial finds the same situation: a seeding in flight and a dead driver's lease.
pub(super) async fn trial(
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
pub(super) const MILESTONES: &[(&str, &str)] = &[
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
pub(super) fn breakdown(log: &Path, t: &Trial) -> Vec<Milestone> {
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

/// One request to the emulator's admin API (HTTP/1.0, so the answer is never chunked).
pub(crate) async fn admin(
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
}
