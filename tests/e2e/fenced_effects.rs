//! Issue 13: the effects besides cloud requests are fenced too. A driver frozen past its
//! lease (here by a failpoint that stops the process with SIGSTOP right before the effect),
//! thawed after another process took the run over and finished it, starts no `command`
//! program and sends no webhook. The program's invocation log and a loopback webhook
//! receiver are the counters.

use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, code, stderr};
use crate::notify::webhook;

const LEASE: (&str, &str) = ("FOGBOOK_LEASE_TTL", "2s");

/// Whether the process is stopped (state `T` in `/proc/PID/stat`).
fn stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
}

/// Runs `runbook` in driver A, which freezes itself at `failpoint`; B resumes the run as soon
/// as A's lease lets it and drives it to its end; `effects` is counted; A is thawed and must
/// add none. Returns A's stderr.
fn frozen_driver_adds_no_effect(sb: &Sandbox, runbook: &str, failpoint: &str, effects: &dyn Fn() -> usize) -> String {
    let rb = sb.write("rb.yaml", runbook);
    let mut a: Child = sb.spawn(
        &["run", rb.to_str().unwrap()],
        &[LEASE, ("FOGBOOK_FAILPOINTS", failpoint)],
    );
    let start = Instant::now();
    while !stopped(a.id()) {
        assert!(
            a.try_wait().unwrap().is_none(),
            "A ended before its failpoint: {}",
            stderr(&a.wait_with_output().unwrap())
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "A never reached its failpoint"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(effects(), 0, "A froze before the effect");
    let run = sb.last_run_id();

    // B takes over once A's lease (and the margin) has passed, and finishes the run.
    let start = Instant::now();
    let b = loop {
        let out = sb.run_env(&["resume", &run], &[LEASE]);
        if code(&out) != 4 {
            break out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "B never took over: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code(&b), 0, "B drove the run to its end: {}", stderr(&b));
    assert_eq!(sb.run_status(&run), "succeeded");
    assert_eq!(effects(), 1, "B's effect, once");

    // A is thawed: it finds its lease gone and adds nothing.
    kill(Pid::from_raw(a.id() as i32), Signal::SIGCONT).unwrap();
    let out = a.wait_with_output().unwrap();
    let a_err = stderr(&out);
    assert_eq!(effects(), 1, "the thawed driver added no effect: {a_err}");
    assert_eq!(code(&out), 4, "A exits 4 (lost its lease): {a_err}");
    assert!(
        a_err.contains("this process was frozen or starved past its lease"),
        "A says why it stopped: {a_err}"
    );
    assert_eq!(sb.run_status(&run), "succeeded");
    a_err
}

#[test]
fn a_frozen_driver_starts_no_command_when_thawed() {
    let sb = Sandbox::new();
    let log = sb.path("invocations.log");
    let runbook = format!(
        r#"runbook: fenced-command
version: 1
steps:
  - id: tool
    uses: command
    with:
      on_ambiguous: rerun
      program: /bin/sh
      args: ["-c", "echo ran >> '{}'"]
"#,
        log.display()
    );
    let count = || std::fs::read_to_string(&log).map(|t| t.lines().count()).unwrap_or(0);
    // Frozen right after the step recorded that it is about to start the program.
    frozen_driver_adds_no_effect(&sb, &runbook, "stop-after-progress:tool", &count);
}

#[test]
fn a_frozen_driver_sends_no_webhook_when_thawed() {
    let sb = Sandbox::new();
    let (url, got) = webhook();
    let runbook = format!(
        r#"runbook: fenced-webhook
version: 1
steps:
  - id: hook
    uses: notify
    with: {{ url: "{url}", event: failover.started }}
"#
    );
    let count = || got.lock().unwrap().len();
    // Frozen after the step's start was committed, before the activity posts.
    frozen_driver_adds_no_effect(&sb, &runbook, "stop-after-start:hook", &count);
}
