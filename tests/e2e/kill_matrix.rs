//! Kill -9 at every step boundary and at random moments, then resume: every effect happens
//! exactly once, an ambiguous `command` stops the run instead of running twice, and the
//! audit trail verifies.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr};

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
const EXPECTED: &[&str] = &["first", "second", "third", "fragile"];

fn start_args(sb: &Sandbox) -> Vec<String> {
    vec![
        "run".into(),
        fixture("kill-matrix.yaml").display().to_string(),
        "--set".into(),
        format!("out={}", sb.path("effects.txt").display()),
        "--auto-approve".into(),
    ]
}

/// Runs the kill-matrix runbook with a failpoint, checks the process died by SIGKILL,
/// resumes, and checks the effects and the trail.
fn trial(step: &str, point: &str) {
    let sb = Sandbox::new();
    let args = start_args(&sb);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let failpoint = format!("{point}:{step}");
    let first = sb.run_env(&args, &[("FOGBOOK_FAILPOINTS", &failpoint)]);
    assert_eq!(
        first.status.signal(),
        Some(9),
        "{failpoint}: the run should have been killed, got {:?}: {}",
        first.status,
        stderr(&first)
    );
    let run = sb.last_run_id();
    let resumed = sb.run(&["resume", &run]);
    // The end of a step is committed with the start of the next (one transition), so a kill
    // before `check` starts is a kill before the end of `fragile` is committed.
    let ambiguous = (step == "fragile" && (point == "after-progress" || point == "before-finish"))
        || (step == "check" && point == "before-start");
    if ambiguous {
        assert_eq!(code(&resumed), 1, "{failpoint}: {}", stderr(&resumed));
        let err = stderr(&resumed);
        assert!(err.contains("may or may not"), "{failpoint}: unclear message: {err}");
        assert!(err.contains("on_ambiguous: fail"), "{failpoint}: {err}");
        let fragile = sb.lines_of("effects.txt").iter().filter(|l| *l == "fragile").count();
        let expected = usize::from(point != "after-progress");
        assert_eq!(fragile, expected, "{failpoint}: the fragile command must not run twice");
        assert_eq!(sb.run_status(&run), "failed");
        if point == "after-progress" {
            // The operator checked that nothing happened and asks for a fresh attempt.
            let retried = sb.run(&["resume", &run, "--retry-failed"]);
            assert_eq!(code(&retried), 0, "{failpoint}: {}", stderr(&retried));
            assert_eq!(sb.lines_of("effects.txt"), EXPECTED, "{failpoint}");
        }
    } else if step == "check" && point == "after-finish" {
        // The last step's end and the run's are one transition: the run was over when it died.
        assert_eq!(code(&resumed), 2, "{failpoint}: {}", stderr(&resumed));
        assert!(
            stderr(&resumed).contains("already succeeded"),
            "{failpoint}: {}",
            stderr(&resumed)
        );
        assert_eq!(sb.run_status(&run), "succeeded");
        assert_eq!(
            sb.lines_of("effects.txt"),
            EXPECTED,
            "{failpoint}: each effect exactly once"
        );
    } else {
        assert_eq!(code(&resumed), 0, "{failpoint}: resume failed: {}", stderr(&resumed));
        assert_eq!(sb.run_status(&run), "succeeded");
        assert_eq!(
            sb.lines_of("effects.txt"),
            EXPECTED,
            "{failpoint}: each effect exactly once"
        );
        // The window opened by `second` and closed by `third` survived the crash.
        let (open, closed): (i64, i64) = sb
            .sql()
            .query_row(
                "SELECT count(*), count(closed_at) FROM windows WHERE run_id = ?1 AND kind = 'unprotected'",
                [&run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((open, closed), (1, 1), "{failpoint}: one window, closed");
    }
    assert_audit_ok(&sb);
}

/// The five kill points of every step, less `after-progress` for `assert` (no progress).
fn all_points_of(step: &str) {
    assert!(STEPS.contains(&step));
    for point in POINTS {
        // `assert` saves no progress, so it has no after-progress point.
        if step == "check" && *point == "after-progress" {
            continue;
        }
        trial(step, point);
    }
}

#[test]
fn kill_points_of_first() {
    all_points_of("first");
}
#[test]
fn kill_points_of_pause() {
    all_points_of("pause");
}
#[test]
fn kill_points_of_gate() {
    all_points_of("gate");
}
#[test]
fn kill_points_of_second() {
    all_points_of("second");
}
#[test]
fn kill_points_of_settle() {
    all_points_of("settle");
}
#[test]
fn kill_points_of_third() {
    all_points_of("third");
}
#[test]
fn kill_points_of_fragile() {
    all_points_of("fragile");
}
#[test]
fn kill_points_of_check() {
    all_points_of("check");
}

/// SIGKILL from outside at seeded random moments, possibly several times per run.
#[test]
fn random_kills_from_outside() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0f06_b00c);
    for trial in 0..8 {
        let sb = Sandbox::new();
        let mut args = start_args(&sb);
        let mut run: Option<String> = None;
        let mut kills = 0;
        let out = loop {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut child = sb.spawn(&argv, &[]);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..700)));
            let killed = kills < 3 && child.try_wait().unwrap().is_none();
            if killed {
                child.kill().unwrap();
                kills += 1;
            }
            let out = child.wait_with_output().unwrap();
            if run.is_none() && sb.db().exists() {
                run = sb
                    .sql()
                    .query_row("SELECT id FROM runs LIMIT 1", [], |r| r.get::<_, String>(0))
                    .ok();
            }
            match (&run, killed) {
                // Killed before the run was created: start it again.
                (None, _) => continue,
                // Killed after the run's last commit, on its way out: nothing to resume.
                (Some(id), true) if sb.run_status(id) == "succeeded" => break out,
                (Some(id), true) => args = vec!["resume".to_owned(), id.clone()],
                (Some(_), false) => break out,
            }
        };
        let id = run.expect("run created");
        let lines = sb.lines_of("effects.txt");
        for effect in EXPECTED {
            let n = lines.iter().filter(|l| l == effect).count();
            assert!(n <= 1, "trial {trial}: {effect} happened {n} times");
        }
        match sb.run_status(&id).as_str() {
            "failed" => {
                // Killed while the non-idempotent command ran: the run stops for a human.
                let error: String = sb
                    .sql()
                    .query_row(
                        "SELECT error FROM steps WHERE run_id = ?1 AND step_id = 'fragile'",
                        [&id],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert!(error.contains("may or may not"), "trial {trial}: {error}");
                assert_ne!(code(&out), 0, "trial {trial}");
            }
            "succeeded" => assert_eq!(lines, EXPECTED, "trial {trial}: {}", stderr(&out)),
            other => panic!("trial {trial}: the run ended {other}: {}", stderr(&out)),
        }
        assert_audit_ok(&sb);
    }
}
