//! One driver per run (lease) and one run per resource (lock).

use std::os::unix::process::ExitStatusExt;

use crate::common::{Sandbox, assert_audit_ok, code, fixture, stderr};

#[test]
fn two_resumes_at_once_exactly_one_drives() {
    let sb = Sandbox::new();
    let first = sb.run_env(
        &[
            "run",
            &fixture("long-wait.yaml").display().to_string(),
            "--set",
            "duration=2s",
        ],
        &[("FOGBOOK_FAILPOINTS", "after-start:nap")],
    );
    assert_eq!(first.status.signal(), Some(9));
    let run = sb.last_run_id();
    let a = sb.spawn(&["resume", &run], &[]);
    let b = sb.spawn(&["resume", &run], &[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [code(&a), code(&b)];
    assert!(
        codes.contains(&0) && codes.contains(&4),
        "one drives, one is refused: {codes:?}"
    );
    let refused = if code(&a) == 4 { &a } else { &b };
    let err = stderr(refused);
    assert!(err.contains("is being driven by"), "{err}");
    let owner: String = sb
        .sql()
        .query_row(
            "SELECT json_extract(data, '$.owner') FROM events WHERE run_id = ?1 AND kind = 'lease.taken_over'",
            [&run],
            |r| r.get(0),
        )
        .expect("the takeover from the killed process is audited");
    assert!(err.contains(&owner), "the refusal names the owner {owner}: {err}");
    assert_eq!(sb.run_status(&run), "succeeded");
    assert_audit_ok(&sb);
}

#[test]
fn a_second_run_on_the_same_group_is_refused_naming_the_holder() {
    let sb = Sandbox::new();
    let out = sb.path("out.txt").display().to_string();
    let gated = fixture("gated.yaml").display().to_string();
    let first = sb.run(&["run", &gated, "--set", &format!("out={out}")]);
    assert_eq!(code(&first), 3, "{}", stderr(&first));
    let holder = sb.last_run_id();
    let second = sb.run(&["run", &gated, "--set", &format!("out={out}")]);
    assert_eq!(code(&second), 4, "{}", stderr(&second));
    let err = stderr(&second);
    assert!(err.contains("fog/fog-one") && err.contains(&holder), "{err}");
    let runs: i64 = sb
        .sql()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 1, "the refused run was not created");

    // Another group is free.
    let other = sb.run(&[
        "run",
        &gated,
        "--set",
        &format!("out={out}"),
        "--set",
        "group=fog-two",
        "--auto-approve",
    ]);
    assert_eq!(code(&other), 0, "{}", stderr(&other));

    // Cancelling the holder releases the lock.
    let cancel = sb.run(&["cancel", &holder]);
    assert_eq!(code(&cancel), 0, "{}", stderr(&cancel));
    let again = sb.run(&["run", &gated, "--set", &format!("out={out}"), "--auto-approve"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_audit_ok(&sb);
}

#[test]
fn an_approval_can_be_waited_for_in_the_foreground() {
    let sb = Sandbox::new();
    let out = sb.path("out.txt").display().to_string();
    let child = sb.spawn(
        &[
            "run",
            &fixture("gated.yaml").display().to_string(),
            "--set",
            &format!("out={out}"),
            "--wait",
        ],
        &[],
    );
    sb.wait_for(
        "the approval to be requested",
        std::time::Duration::from_secs(10),
        |sb| {
            sb.sql()
                .query_row("SELECT progress FROM steps WHERE step_id = 'confirm'", [], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .ok()
                .flatten()
                .is_some()
        },
    );
    let run = sb.last_run_id();
    let approve = sb.run(&["approve", &run, "confirm", "--by", "bob"]);
    assert_eq!(code(&approve), 0, "{}", stderr(&approve));
    let done = child.wait_with_output().unwrap();
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    assert_eq!(sb.lines_of("out.txt"), vec!["version-one"]);
}
