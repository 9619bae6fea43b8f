//! Kill -9 at every step boundary and at random moments, then resume, counting the calls of
//! the `command` steps from outside (an append-only log: one line per call, never
//! deduplicated). The guarantees, asserted exactly:
//!
//! - a completed step runs exactly once;
//! - an `on_ambiguous: fail` command (`fragile`) runs at most once: interrupted while it ran,
//!   the run stops for an operator instead of running it again;
//! - an `on_ambiguous: rerun` command runs once more for each kill that hit it after it was
//!   called and before its end was committed: a kill at its `before-finish`, or at the
//!   `before-start` of the next step (the end of a step is committed with the next start),
//!   and for no other kill point;
//! - the audit trail verifies.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use fogbook_testpg::TestPostgres;

use crate::common::{Sandbox, code, fixture, stderr};
use crate::pg_backend::{Backend, Db};

const STEPS: &[&str] = &[
    "first", "pause", "gate", "second", "settle", "third", "fragile", "check",
];
const POINTS: &[&str] = &[
    "before-start",
    "after-start",
    "after-progress",
    "before-finish",
    "after-finish",
];
/// The `command` steps, in order: each call appends `STEP ENGINE-PID` to the log.
const COMMANDS: &[&str] = &["first", "second", "third", "fragile"];
/// The commands with `on_ambiguous: rerun` (`fragile` has the default, `fail`).
const RERUN: &[&str] = &["first", "second", "third"];
const LOG: &str = "effects.txt";

fn start_args(sb: &Sandbox) -> Vec<String> {
    vec![
        "run".into(),
        fixture("kill-matrix.yaml").display().to_string(),
        "--set".into(),
        format!("out={}", sb.path(LOG).display()),
        "--auto-approve".into(),
    ]
}

/// The call log: (step, pid of the engine process that ran it), in the order written.
fn calls(sb: &Sandbox) -> Vec<(String, u32)> {
    sb.lines_of(LOG)
        .iter()
        .map(|line| {
            let (step, pid) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("unreadable call log line {line:?}"));
            assert!(COMMANDS.contains(&step), "unknown call {line:?}");
            (
                step.to_owned(),
                pid.parse().unwrap_or_else(|_| panic!("bad pid in {line:?}")),
            )
        })
        .collect()
}

fn steps_called(calls: &[(String, u32)]) -> Vec<&str> {
    calls.iter().map(|(s, _)| s.as_str()).collect()
}

/// The step before `step` in the runbook.
fn previous(step: &str) -> Option<&'static str> {
    let i = STEPS.iter().position(|s| *s == step)?;
    i.checked_sub(1).map(|i| STEPS[i])
}

/// The calls a run killed once at `point:step` and resumed makes, in order: every command
/// once, and a `rerun` command twice when the kill came after its call and before its end
/// was committed (its own `before-finish`, or the next step's `before-start`).
fn expected_calls(step: &str, point: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for &c in COMMANDS {
        out.push(c);
        let hit = (point == "before-finish" && step == c) || (point == "before-start" && previous(step) == Some(c));
        if hit && RERUN.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// No engine process calls a step twice: a re-run is always the next process's.
fn assert_no_process_repeats(failpoint: &str, calls: &[(String, u32)]) {
    for (i, call) in calls.iter().enumerate() {
        assert!(
            !calls[..i].contains(call),
            "{failpoint}: process {} called `{}` twice: {calls:?}",
            call.1,
            call.0
        );
    }
}

/// Runs the kill-matrix runbook with a failpoint, checks the process died by SIGKILL,
/// resumes, and checks the calls and the trail.
fn trial(db: &Db, step: &str, point: &str) {
    let sb = &db.sb;
    let args = start_args(sb);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let failpoint = format!("{point}:{step}");
    let first = db.run_env(&args, &[("FOGBOOK_FAILPOINTS", &failpoint)]);
    assert_eq!(
        first.status.signal(),
        Some(9),
        "{failpoint}: the run should have been killed, got {:?}: {}",
        first.status,
        stderr(&first)
    );
    let run = db.last_run_id();
    let resumed = db.run(&["resume", &run]);
    // The end of a step is committed with the start of the next (one transition), so a kill
    // before `check` starts is a kill before the end of `fragile` is committed.
    let ambiguous = (step == "fragile" && (point == "after-progress" || point == "before-finish"))
        || (step == "check" && point == "before-start");
    if ambiguous {
        assert_eq!(code(&resumed), 1, "{failpoint}: {}", stderr(&resumed));
        let err = stderr(&resumed);
        assert!(err.contains("may or may not"), "{failpoint}: unclear message: {err}");
        assert!(err.contains("on_ambiguous: fail"), "{failpoint}: {err}");
        // At most once: called before the kill (its progress is saved before the call, so
        // not at `after-progress`), never again by the resume.
        let mut expected = vec!["first", "second", "third"];
        if point != "after-progress" {
            expected.push("fragile");
        }
        let got = calls(sb);
        assert_eq!(
            steps_called(&got),
            expected,
            "{failpoint}: the fragile command must not run twice"
        );
        assert_no_process_repeats(&failpoint, &got);
        assert_eq!(db.run_status(&run), "failed");
        if point == "after-progress" {
            // The operator checked that nothing happened and asks for a fresh attempt.
            let retried = db.run(&["resume", &run, "--retry-failed"]);
            assert_eq!(code(&retried), 0, "{failpoint}: {}", stderr(&retried));
            assert_eq!(steps_called(&calls(sb)), COMMANDS, "{failpoint}: each call once");
        }
    } else if step == "check" && point == "after-finish" {
        // The last step's end and the run's are one transition: the run was over when it died.
        assert_eq!(code(&resumed), 2, "{failpoint}: {}", stderr(&resumed));
        assert!(
            stderr(&resumed).contains("already succeeded"),
            "{failpoint}: {}",
            stderr(&resumed)
        );
        assert_eq!(db.run_status(&run), "succeeded");
        assert_eq!(
            steps_called(&calls(sb)),
            COMMANDS,
            "{failpoint}: each command exactly once"
        );
    } else {
        assert_eq!(code(&resumed), 0, "{failpoint}: resume failed: {}", stderr(&resumed));
        assert_eq!(db.run_status(&run), "succeeded");
        let got = calls(sb);
        assert_eq!(
            steps_called(&got),
            expected_calls(step, point),
            "{failpoint}: each command exactly once, plus one re-run of a `rerun` command the kill interrupted"
        );
        assert_no_process_repeats(&failpoint, &got);
        // The window opened by `second` and closed by `third` survived the crash.
        let windows = db.ints(
            "SELECT count(*), count(closed_at) FROM windows WHERE run_id = ?1 AND kind = 'unprotected'",
            &[&run],
        );
        let (open, closed) = (windows[0], windows[1]);
        assert_eq!((open, closed), (1, 1), "{failpoint}: one window, closed");
    }
    db.assert_audit_ok();
}

#[test]
fn the_expected_calls_name_exactly_the_interrupted_rerun_command() {
    assert_eq!(expected_calls("first", "after-finish"), COMMANDS);
    assert_eq!(expected_calls("first", "after-start"), COMMANDS);
    assert_eq!(expected_calls("first", "before-start"), COMMANDS);
    assert_eq!(
        expected_calls("first", "before-finish"),
        ["first", "first", "second", "third", "fragile"]
    );
    assert_eq!(
        expected_calls("pause", "before-start"),
        ["first", "first", "second", "third", "fragile"]
    );
    assert_eq!(
        expected_calls("settle", "before-start"),
        ["first", "second", "second", "third", "fragile"]
    );
    assert_eq!(
        expected_calls("fragile", "before-start"),
        ["first", "second", "third", "third", "fragile"]
    );
    assert_eq!(expected_calls("gate", "before-start"), COMMANDS);
}

/// The five kill points of every step, less `after-progress` for `assert` (no progress),
/// each trial on a state of its own (on PostgreSQL, a database of its own on one server).
fn all_points_of(backend: Backend, step: &str) {
    assert!(STEPS.contains(&step));
    let server = (backend == Backend::Postgres).then(TestPostgres::start);
    for point in POINTS {
        // `assert` saves no progress, so it has no after-progress point.
        if step == "check" && *point == "after-progress" {
            continue;
        }
        let db = Db::new(backend, server.as_ref(), &format!("{step}_{point}").replace('-', "_"));
        trial(&db, step, point);
    }
}

#[test]
fn kill_points_of_first() {
    all_points_of(Backend::Sqlite, "first");
}
#[test]
fn kill_points_of_first_on_postgres() {
    all_points_of(Backend::Postgres, "first");
}
#[test]
fn kill_points_of_pause() {
    all_points_of(Backend::Sqlite, "pause");
}
#[test]
fn kill_points_of_pause_on_postgres() {
    all_points_of(Backend::Postgres, "pause");
}
#[test]
fn kill_points_of_gate() {
    all_points_of(Backend::Sqlite, "gate");
}
#[test]
fn kill_points_of_gate_on_postgres() {
    all_points_of(Backend::Postgres, "gate");
}
#[test]
fn kill_points_of_second() {
    all_points_of(Backend::Sqlite, "second");
}
#[test]
fn kill_points_of_second_on_postgres() {
    all_points_of(Backend::Postgres, "second");
}
#[test]
fn kill_points_of_settle() {
    all_points_of(Backend::Sqlite, "settle");
}
#[test]
fn kill_points_of_settle_on_postgres() {
    all_points_of(Backend::Postgres, "settle");
}
#[test]
fn kill_points_of_third() {
    all_points_of(Backend::Sqlite, "third");
}
#[test]
fn kill_points_of_third_on_postgres() {
    all_points_of(Backend::Postgres, "third");
}
#[test]
fn kill_points_of_fragile() {
    all_points_of(Backend::Sqlite, "fragile");
}
#[test]
fn kill_points_of_fragile_on_postgres() {
    all_points_of(Backend::Postgres, "fragile");
}
#[test]
fn kill_points_of_check() {
    all_points_of(Backend::Sqlite, "check");
}
#[test]
fn kill_points_of_check_on_postgres() {
    all_points_of(Backend::Postgres, "check");
}

/// A command logs `$PPID`, read when its shell starts: if the engine was killed between
/// spawning it and that moment, the shell was already re-parented and logs another pid (1,
/// or a subreaper's). Processes run one after another, so such a call belongs to the first
/// *killed* process at or after the one that made the call logged just before it; a call
/// that no killed process can explain fails.
fn attribute_orphans(trial: usize, calls: &[(String, u32)], processes: &[(u32, bool)]) -> Vec<(String, u32)> {
    let position = |pid: u32| processes.iter().position(|(p, _)| *p == pid);
    let mut out: Vec<(String, u32)> = Vec::with_capacity(calls.len());
    for (step, pid) in calls {
        if position(*pid).is_some() {
            out.push((step.clone(), *pid));
            continue;
        }
        let from = out.last().and_then(|(_, p)| position(*p)).unwrap_or(0);
        let engine = processes[from..].iter().find(|(_, killed)| *killed).map(|(p, _)| *p);
        let Some(engine) = engine else {
            panic!("trial {trial}: a call by {pid}, which no process the test started or killed explains: {calls:?}");
        };
        out.push((step.clone(), engine));
    }
    out
}

/// Checks the call log of a run driven by `processes` (pids in spawn order, and whether the
/// test killed each): every process calls consecutive commands in order, none twice; a
/// command is called again only by a later process, when the process that called it last
/// was killed (one re-run per kill at most), and never for `fragile` (`on_ambiguous: fail`).
/// Returns the number of re-runs.
fn check_random_calls(trial: usize, calls: &[(String, u32)], processes: &[(u32, bool)]) -> usize {
    let index = |step: &str| COMMANDS.iter().position(|c| *c == step).unwrap();
    let calls = attribute_orphans(trial, calls, processes);
    let calls = calls.as_slice();
    let mut last: Option<(usize, bool)> = None; // (command, whether its caller was killed)
    let mut reruns = 0;
    for (pid, killed) in processes {
        let mine: Vec<usize> = calls.iter().filter(|(_, p)| p == pid).map(|(s, _)| index(s)).collect();
        for (k, &c) in mine.iter().enumerate() {
            let allowed = match (k, last) {
                (0, None) => c == 0,
                (0, Some((prev, prev_killed))) => {
                    let again = c == prev && prev_killed && RERUN.contains(&COMMANDS[c]);
                    reruns += usize::from(again);
                    c == prev + 1 || again
                }
                _ => c == mine[k - 1] + 1,
            };
            assert!(
                allowed,
                "trial {trial}: process {pid} called `{}` out of turn (processes {processes:?}): {calls:?}",
                COMMANDS[c]
            );
        }
        if let Some(&c) = mine.last() {
            last = Some((c, *killed));
        }
    }
    reruns
}

/// SIGKILL from outside at seeded random moments, possibly several times per run.
#[test]
fn random_kills_from_outside() {
    random_kills(Backend::Sqlite);
}

/// The same, on PostgreSQL (a database per trial on one server).
#[test]
fn random_kills_from_outside_on_postgres() {
    random_kills(Backend::Postgres);
}

fn random_kills(backend: Backend) {
    let server = (backend == Backend::Postgres).then(TestPostgres::start);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0f06_b00c);
    for trial in 0..8 {
        let db = Db::new(backend, server.as_ref(), &format!("random_{trial}"));
        let sb = &db.sb;
        let mut args = start_args(sb);
        let mut run: Option<String> = None;
        let mut processes: Vec<(u32, bool)> = Vec::new();
        let mut kills = 0;
        let out = loop {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut child = db.spawn(&argv, &[]);
            // Places the fault; the assertions below wait on nothing.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..700)));
            let killed = kills < 3 && child.try_wait().unwrap().is_none();
            if killed {
                child.kill().unwrap();
                kills += 1;
            }
            processes.push((child.id(), killed));
            let out = child.wait_with_output().unwrap();
            if run.is_none() && db.exists() {
                run = db
                    .try_query("SELECT id FROM runs LIMIT 1", &[])
                    .ok()
                    .and_then(|rows| rows.into_iter().next())
                    .and_then(|row| row.into_iter().next())
                    .and_then(|cell| match cell {
                        crate::pg_backend::Cell::Text(id) => id,
                        crate::pg_backend::Cell::Int(_) => None,
                    });
            }
            match (&run, killed) {
                // Killed before the run was created: start it again.
                (None, _) => continue,
                // Killed after the run's last commit, on its way out: nothing to resume.
                (Some(id), true) if db.run_status(id) == "succeeded" => break out,
                (Some(id), true) => args = vec!["resume".to_owned(), id.clone()],
                (Some(_), false) => break out,
            }
        };
        let id = run.expect("run created");
        let got = calls(sb);
        let reruns = check_random_calls(trial, &got, &processes);
        assert!(reruns <= kills, "trial {trial}: {reruns} re-runs from {kills} kills");
        let called = steps_called(&got);
        assert!(
            called.iter().filter(|s| **s == "fragile").count() <= 1,
            "trial {trial}: fragile (on_ambiguous: fail) ran twice: {got:?}"
        );
        match db.run_status(&id).as_str() {
            "failed" => {
                // Killed while the non-idempotent command ran: the run stops for a human.
                let error = db
                    .text(
                        "SELECT error FROM steps WHERE run_id = ?1 AND step_id = 'fragile'",
                        &[&id],
                    )
                    .unwrap();
                assert!(error.contains("may or may not"), "trial {trial}: {error}");
                assert_ne!(code(&out), 0, "trial {trial}");
            }
            "succeeded" => {
                // Every command called, exactly once plus the re-runs the kills explain.
                assert_eq!(
                    called.len(),
                    COMMANDS.len() + reruns,
                    "trial {trial}: {got:?}: {}",
                    stderr(&out)
                );
                assert_eq!(called.last(), Some(&"fragile"), "trial {trial}: {got:?}");
            }
            other => panic!("trial {trial}: the run ended {other}: {}", stderr(&out)),
        }
        db.assert_audit_ok();
    }
}

#[test]
fn the_random_kill_judge_refuses_a_re_run_no_kill_explains() {
    let c = |s: &str, p: u32| (s.to_owned(), p);
    let ok = [
        c("first", 1),
        c("second", 1),
        c("second", 2),
        c("third", 2),
        c("fragile", 2),
    ];
    assert_eq!(check_random_calls(0, &ok, &[(1, true), (2, false)]), 1);
    // `second` logged by a shell re-parented to pid 99 (its engine, 1, was killed before the
    // shell started) is the killed engine's call.
    let orphan = [
        c("first", 1),
        c("second", 99),
        c("second", 2),
        c("third", 2),
        c("fragile", 2),
    ];
    assert_eq!(check_random_calls(0, &orphan, &[(1, true), (2, false)]), 1);
    for (bad, processes) in [
        // A re-parented call that no killed process explains.
        (orphan.to_vec(), vec![(1, false), (2, false)]),
        // The second process re-ran `second`, but the first was not killed.
        (ok.to_vec(), vec![(1, false), (2, false)]),
        // One process called a step twice.
        (
            vec![
                c("first", 1),
                c("first", 1),
                c("second", 1),
                c("third", 1),
                c("fragile", 1),
            ],
            vec![(1, false)],
        ),
        // `fragile` re-run after a kill.
        (
            vec![
                c("first", 1),
                c("second", 1),
                c("third", 1),
                c("fragile", 1),
                c("fragile", 2),
            ],
            vec![(1, true), (2, false)],
        ),
    ] {
        let judged = std::panic::catch_unwind(|| check_random_calls(0, &bad, &processes));
        assert!(judged.is_err(), "accepted {bad:?} from {processes:?}");
    }
}
