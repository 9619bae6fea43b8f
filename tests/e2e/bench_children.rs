//! `fogbook bench` ended by SIGTERM while its memory phase runs leaves no process behind: its
//! `bench --waiting-only` child and that child's `fogbook sim serve` stop with it. Checked
//! from outside, by pid in `/proc`.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::Sandbox;

/// The parent pid and state of `pid` (`None`: no such process).
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": the command may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether `pid` is a process that still runs (a zombie has ended).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, state)| state != 'Z')
}

/// The live children of `pid` whose command line contains `needle`.
fn children(pid: u32, needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat(p).is_some_and(|(ppid, state)| ppid == pid && state != 'Z'))
        .filter(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

/// Polls until `found` gives a value; panics after `limit`.
fn wait_until<T>(what: &str, limit: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bench_ended_by_sigterm_leaves_neither_its_memory_child_nor_its_emulator() {
    let sb = Sandbox::new();
    let dir = sb.path("bench");
    std::fs::create_dir(&dir).unwrap();
    let mut bench = sb.spawn(
        &[
            "bench",
            "--dir",
            dir.to_str().unwrap(),
            "--floor-commits",
            "1",
            "--steps",
            "1",
            "--runs",
            "1",
            "--steps-per-run",
            "1",
            "--resume-trials",
            "0",
            "--waiting-runs",
            "3",
            // Far longer than the test: the phase is still running when the bench is ended.
            "--waiting-secs",
            "3600",
        ],
        &[],
    );
    let child = wait_until("the memory phase's child", Duration::from_secs(120), || {
        children(bench.id(), "--waiting-only").first().copied()
    });
    let sim = wait_until("the child's emulator", Duration::from_secs(60), || {
        children(child, "sim serve").first().copied()
    });

    kill(Pid::from_raw(i32::try_from(bench.id()).unwrap()), Signal::SIGTERM).unwrap();
    bench.wait().unwrap();
    wait_until(
        "the child and its emulator to end after their parent",
        Duration::from_secs(30),
        || (!alive(child) && !alive(sim)).then_some(()),
    );
}
