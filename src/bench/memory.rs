//! `fogbook bench`'s memory per waiting run (docs/PERFORMANCE.md): one fresh process
//! (`fogbook bench --waiting-only`) drives many runs at once, each waiting on an ARM operation,
//! against an emulator in a child process (so its memory is not counted), and the RSS
//! difference is divided by the number of runs; the emulator's request counts give how often
//! the waiting runs poll against ARM's read refill.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fogbook_activities::Env;
use fogbook_activities::arm::{ArmClient, ArmConfig, Secret};
use fogbook_engine::{CreateRun, Engine, EngineConfig, runbook};
use fogbook_state::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::cloud::{
    BenchError, Context, READ_BURST, READ_REFILL_PER_S, STOP_GRACE, SUBSCRIPTION, Scratch, TOKEN, TRIAL_TIMEOUT,
    WAITING_TIME_SCALE, admin, fail,
};

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
///
/// The child's stdin is a pipe this process holds open until the child has exited: when this
/// process dies (killed, or ended by a signal before it could clean up), the pipe closes and
/// the child stops, taking its emulator with it ([`until_parent_gone`]).
pub(crate) async fn memory_in_child(dir: &Path, runs: u32, window_secs: u64) -> Result<MemoryReport, BenchError> {
    if crate::bench::command::waiting_only_allowed(fogbook_engine::TEST_HOOKS).is_err() {
        return Err(fail(
            "the memory phase runs `fogbook bench --waiting-only`, a test switch this build leaves out: build with `cargo build --release --locked --features test-hooks`, or pass --waiting-runs 0",
        ));
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = Command::new(exe)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .args(["--format", "json", "bench", "--waiting-only", "--dir"])
        .arg(dir)
        .args(["--waiting-runs", &runs.to_string()])
        .args(["--waiting-secs", &window_secs.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `fogbook bench --waiting-only`")?;
    // Held (not written) until the child has exited: its end is the child's sign that this
    // process is gone.
    let lifeline = child.stdin.take();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(fail("`fogbook bench --waiting-only` has no output pipes"));
    };
    let (read_out, read_err, status) =
        tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err), child.wait());
    drop(lifeline);
    let status = status.context("cannot wait for `fogbook bench --waiting-only`")?;
    read_out.context("cannot read the memory benchmark's output")?;
    read_err.context("cannot read the memory benchmark's errors")?;
    let err = String::from_utf8_lossy(&err);
    if !status.success() {
        return Err(child_failed(&status.to_string(), &out, &err));
    }
    // Its warnings, if any, are still shown.
    if !err.trim().is_empty() {
        crate::output::always(err.trim_end());
    }
    serde_json::from_slice(&out).context("the memory benchmark printed no report")
}

/// The error of a `--waiting-only` child that exited with `status`: what it said (its JSON
/// error on stdout, as `--format json` prints errors, and whatever it wrote to stderr).
pub(crate) fn child_failed(status: &str, stdout: &[u8], stderr: &str) -> BenchError {
    let mut said = Vec::new();
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(stdout)
        && doc["kind"] == "error"
    {
        let mut text = doc["error"].as_str().unwrap_or_default().to_owned();
        for d in doc["details"].as_array().into_iter().flatten() {
            text.push_str(&format!("\n  {}", d.as_str().unwrap_or_default()));
        }
        if let Some(h) = doc["hint"].as_str() {
            text.push_str(&format!("\n  hint: {h}"));
        }
        said.push(text);
    } else if !stdout.is_empty() {
        said.push(String::from_utf8_lossy(stdout).trim().to_owned());
    }
    if !stderr.trim().is_empty() {
        said.push(stderr.trim().to_owned());
    }
    let said = if said.is_empty() {
        "it printed nothing".to_owned()
    } else {
        said.join("\n")
    };
    fail(format!("the memory benchmark failed ({status}): {said}"))
}

/// Resolves when this process's parent, the `fogbook bench` that started this
/// `--waiting-only` child, is gone: its end of our stdin closed (or it wrote to it). Read on
/// a thread of its own, never joined, so that it cannot hold up this process's exit.
pub(crate) async fn until_parent_gone() {
    let (gone, rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("fogbook-lifeline".to_owned())
        .spawn(move || {
            use std::io::Read;
            let mut byte = [0u8; 1];
            // EOF, an error or a byte: all mean the parent no longer holds the pipe as agreed.
            let _ = std::io::stdin().read(&mut byte);
            let _ = gone.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = rx.await;
        }
        // Without the thread the child cannot notice; it still ends with its phase.
        Err(_) => std::future::pending::<()>().await,
    }
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

/// Whether the runs' start still moves. It is bounded by the ARM client's read schedule,
/// and not at a fixed rate: a run's first read is a new target's (`Priority::NewTarget`),
/// which yields to the polls of the runs already waiting (until it is overdue: 10 s), so
/// the later runs start more slowly the more runs poll (40 s for 1,000 runs on an idle
/// machine, more when the polls begin before every first read had its turn). A fixed deadline (it was 50 s for 1,000
/// runs) failed a start that was slow but going on; the bench gives up only when no run
/// started waiting for `timeout`.
struct Progress {
    pending: usize,
    since: Instant,
    timeout: Duration,
}

impl Progress {
    fn new(start: Instant, timeout: Duration) -> Self {
        Self {
            pending: usize::MAX,
            since: start,
            timeout,
        }
    }

    /// Whether no run started waiting for the timeout, with `pending` runs left at `now`.
    fn stalled(&mut self, pending: usize, now: Instant) -> bool {
        if pending < self.pending {
            self.pending = pending;
            self.since = now;
        }
        now.duration_since(self.since) > self.timeout
    }
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
    let mut progress = Progress::new(start, TRIAL_TIMEOUT);
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
        if progress.stalled(pending.len(), Instant::now()) {
            return Err(fail(format!(
                "{} of {} runs were not waiting on their operation, and none started waiting in the last {} s",
                pending.len(),
                ids.len(),
                TRIAL_TIMEOUT.as_secs()
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

#[cfg(test)]
mod tests {
    use fogbook_sim::Estate;

    use super::*;

    /// The start of 1,000 runs that goes on past 50 s (the fixed deadline the bench had) is
    /// not a failure; 30 s without a run starting is.
    #[test]
    fn a_slow_start_that_goes_on_is_waited_for_and_a_stalled_one_is_not() {
        let start = Instant::now();
        let mut progress = Progress::new(start, TRIAL_TIMEOUT);
        let at = |s: u64| start + Duration::from_secs(s);
        // 20 runs a second from 100 s on: slower than any deadline sized for the schedule.
        for (s, pending) in [(0, 1000), (10, 900), (50, 700), (80, 321), (100, 100), (104, 20)] {
            assert!(
                !progress.stalled(pending, at(s)),
                "{pending} left at {s} s, still starting"
            );
        }
        assert!(
            !progress.stalled(20, at(134)),
            "30 s without a start: still within the timeout"
        );
        assert!(progress.stalled(20, at(135)), "31 s without a start");
    }

    /// A child that fails says why, from its JSON error (as `--format json` prints errors)
    /// and its stderr; the parent printed only its exit status.
    #[test]
    fn a_failed_child_is_reported_with_what_it_said() {
        let stdout = br#"{"schema_version":1,"kind":"error","error":"321 of 1000 runs were not waiting","details":["caused by: x"],"hint":"try again"}"#;
        let e = child_failed("exit status: 2", stdout, "a warning\n").to_string();
        assert!(e.contains("(exit status: 2)"), "{e}");
        assert!(e.contains("321 of 1000 runs were not waiting"), "{e}");
        assert!(e.contains("caused by: x"), "{e}");
        assert!(e.contains("hint: try again"), "{e}");
        assert!(e.contains("a warning"), "{e}");
        let silent = child_failed("signal: 9 (SIGKILL)", b"", "").to_string();
        assert!(silent.contains("it printed nothing"), "{silent}");
    }

    #[test]
    fn the_waiting_estate_loads() {
        Estate::from_yaml_str(&waiting_estate(3)).expect("estate");
        runbook::parse(WAITING_RUNBOOK, "bench-waiting").expect("runbook");
    }
}
