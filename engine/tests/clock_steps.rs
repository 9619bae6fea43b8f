#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 20, item 5 (clocks): steps of the machine's wall clock, made through an injected
//! time source (not the machine's clock), while a driver holds a run's lease in an approval
//! step. A step back records the window's real length (never negative, never closed before
//! it opened); a step forward is not mistaken for an expired or taken-over lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use fogbook_engine::{CreateRun, Engine, EngineConfig, MachineTime, RunOutcome, SteadyClock, TimeSource, runbook};
use fogbook_state::{StepStatus, Store};
use tokio_util::sync::CancellationToken;

/// The machine's clocks, plus steps the test makes: `wall` moves only the wall clock, `mono`
/// is time that passes (both clocks move).
#[derive(Debug, Default)]
struct Machine {
    wall: AtomicI64,
    mono: AtomicI64,
}

impl Machine {
    /// `passed` elapses, then the wall clock is stepped by `step` (negative: back).
    fn elapse_then_step(&self, passed: Duration, step_ms: i64) {
        let passed = i64::try_from(passed.as_millis()).unwrap();
        self.mono.fetch_add(passed, Ordering::SeqCst);
        self.wall.fetch_add(passed + step_ms, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
struct Stepped(Arc<Machine>);

impl TimeSource for Stepped {
    fn wall_ms(&self) -> i64 {
        MachineTime.wall_ms() + self.0.wall.load(Ordering::SeqCst)
    }
    fn monotonic(&self) -> Duration {
        MachineTime.monotonic() + Duration::from_millis(self.0.mono.load(Ordering::SeqCst).unsigned_abs())
    }
}

const RUNBOOK: &str = r#"
runbook: stepped
version: 1
steps:
  - id: delete-group
    uses: assert
    unprotected: opens
    with: { that: true, message: never }
  - id: gate
    uses: approval
    with: { message: go on? }
  - id: create-group
    uses: assert
    unprotected: closes
    with: { that: true, message: never }
"#;

struct Case {
    _dir: tempfile::TempDir,
    store: Store,
    engine: Engine,
    machine: Arc<Machine>,
    run: String,
}

async fn case(lease_ttl: Duration) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let machine = Arc::new(Machine::default());
    let clock = Arc::new(SteadyClock::new(Stepped(machine.clone())));
    let config = EngineConfig {
        lease_ttl,
        // The driver waits in the approval step, holding its lease.
        wait_for_approval: true,
        ..EngineConfig::default()
    };
    let engine = Engine::new(store.clone(), config).with_clock(clock);
    let rb = runbook::parse(RUNBOOK, "stepped.yaml").unwrap();
    let run = engine.create_run(CreateRun::new(&rb, RUNBOOK)).await.unwrap();
    Case {
        _dir: dir,
        store,
        engine,
        machine,
        run,
    }
}

/// Drives the run; once the approval step runs (the window is open, the lease held), the
/// machine's clocks move as `step` says; then the approval is given and the drive ends.
async fn drive_with_a_step(c: &Case, step: impl FnOnce(&Machine)) -> Result<RunOutcome, fogbook_engine::EngineError> {
    let engine = c.engine.clone();
    let run = c.run.clone();
    let drive = tokio::spawn(async move { engine.drive(&run, CancellationToken::new()).await });
    loop {
        let snap = c.store.load_run(&c.run).await.unwrap();
        if snap.step("gate").unwrap().status == StepStatus::Running {
            break;
        }
        assert!(!drive.is_finished(), "the drive ended before the approval step");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    step(&c.machine);
    c.store
        .approve(&c.run, "gate", "tester", None, false, c.engine.now_ms())
        .await
        .unwrap();
    drive.await.unwrap()
}

#[tokio::test]
async fn a_wall_clock_step_back_records_the_windows_real_length() {
    // A lease longer than the 6 s that pass at once in this test (no renewal can happen).
    let c = case(Duration::from_secs(30)).await;
    // 6 s pass inside the window, then the wall clock goes back a minute.
    let outcome = drive_with_a_step(&c, |m| m.elapse_then_step(Duration::from_secs(6), -60_000)).await;
    assert_eq!(outcome.unwrap(), RunOutcome::Succeeded);
    let snap = c.store.load_run(&c.run).await.unwrap();
    let w = &snap.windows[0];
    let closed = w.closed_at.expect("the window closed");
    let length = closed - w.opened_at;
    assert!(
        (6_000..16_000).contains(&length),
        "the window lasted 6 s (plus the test's own time), recorded {length} ms"
    );
    assert!(c.store.verify_audit(Some(&c.run)).await.unwrap().failure.is_none());
}

#[tokio::test]
async fn a_wall_clock_step_forward_does_not_stop_a_live_driver() {
    let c = case(Duration::from_secs(2)).await;
    // Ten minutes forward, far beyond the 2 s lease, while the driver lives.
    let outcome = drive_with_a_step(&c, |m| m.elapse_then_step(Duration::ZERO, 600_000)).await;
    assert_eq!(
        outcome.unwrap(),
        RunOutcome::Succeeded,
        "the driver kept its lease and drove on"
    );
    let events = c.store.events(&c.run).await.unwrap();
    assert!(
        events.iter().all(|e| e.kind != "lease.taken_over"),
        "nobody took the run over"
    );
    let snap = c.store.load_run(&c.run).await.unwrap();
    assert!(snap.steps.iter().all(|s| s.status == StepStatus::Completed));
}
