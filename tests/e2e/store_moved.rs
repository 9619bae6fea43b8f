//! A store copied away by `fogbook store copy` is marked as moved: every command that
//! writes or drives refuses it (exit 2), naming where the runs went, and sends nothing (the
//! emulator's journal is unchanged); the reads still work and say it was moved. Copying back
//! (PostgreSQL to SQLite) marks the PostgreSQL source the same way; `store unmark` takes the
//! mark off; a copy that fails leaves its source unmarked.

use std::process::Output;

use fogbook_testpg::TestPostgres;

use crate::common::{Sandbox, code, stderr, stdout};
use crate::postgres::fogbook;
use crate::seed_runbooks::{Sim, demo_estate, root, start_sim};

/// `fogbook ARGS` on `db`, talking to the emulator `sim`.
fn on(sb: &Sandbox, sim: &Sim, db: &str, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    fogbook(sb, db, &args)
        .env("FOGBOOK_ARM_ENDPOINT", &sim.url)
        .env("FOGBOOK_ARM_TOKEN", "t")
        .output()
        .unwrap()
}

fn runbook_args() -> Vec<String> {
    vec![
        "run".to_owned(),
        root().join("runbooks/change-primary-region.yaml").display().to_string(),
        "--params".to_owned(),
        root().join("examples/change-primary-region.yaml").display().to_string(),
    ]
}

/// Every command that writes or drives, on a moved store: refused with exit 2, naming the
/// target (password masked), and no request reaches the emulator.
fn assert_refused(sb: &Sandbox, sim: &Sim, db: &str, run: &str, step: &str, target_shown: &str, password: &str) {
    let before = sim.journal().len();
    let fresh = runbook_args();
    let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
    let commands: [&[&str]; 4] = [
        &["resume", run],
        &["approve", run, step, "--by", "tester"],
        &["cancel", run, "--by", "tester"],
        &fresh,
    ];
    for args in commands {
        let out = on(sb, sim, db, args);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{args:?} on the moved store: {}{err}", stdout(&out));
        assert!(
            err.contains("was moved to") && err.contains(target_shown) && err.contains("store unmark --reason"),
            "{args:?}: {err}"
        );
        assert!(!err.contains(password), "{args:?} printed the password: {err}");
    }
    // A worker runs until stopped: it must exit at once, refused, instead of driving.
    let worker = fogbook(sb, db, &["worker".to_owned()])
        .env("FOGBOOK_ARM_ENDPOINT", &sim.url)
        .env("FOGBOOK_ARM_TOKEN", "t")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = worker.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut worker = Some(worker);
    let out = loop {
        let w = worker.as_mut().unwrap();
        if w.try_wait().unwrap().is_some() {
            break worker.take().unwrap().wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("the worker did not exit on the moved store: it drove it");
        }
        // A poll interval while waiting on the process's exit (as `Sandbox::wait_for`).
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(code(&out), 2, "worker on the moved store: {}", stderr(&out));
    assert!(stderr(&out).contains("was moved to"), "{}", stderr(&out));
    assert_eq!(sim.journal().len(), before, "a refused command sent a request");
}

/// The reads work on a moved store and say it was moved.
fn assert_reads_say_moved(sb: &Sandbox, sim: &Sim, db: &str, run: &str, target_shown: &str) {
    for args in [&["status", run][..], &["runs"], &["audit", "verify"]] {
        let out = on(sb, sim, db, args);
        assert_eq!(code(&out), 0, "{args:?}: {}{}", stdout(&out), stderr(&out));
        assert!(
            stderr(&out).contains("was moved to") && stderr(&out).contains(target_shown),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// A run stopped at its approval on SQLite, copied to PostgreSQL: the SQLite source refuses
/// `resume`, `approve`, `cancel`, `run` and `worker` and sends nothing; `status`, `runs` and
/// `audit verify` work and say where the runs went. The copy back marks PostgreSQL the same
/// way; `store unmark` on it lets it drive again.
#[test]
fn a_copied_store_refuses_to_drive_and_says_where_its_runs_went() {
    let server = TestPostgres::start();
    let sim = start_sim(&demo_estate(), None);
    let sb = Sandbox::new();
    let db = sb.db().display().to_string();
    let args = runbook_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = on(&sb, &sim, &db, &args);
    assert_eq!(code(&out), 3, "the run waits at its approval: {}", stderr(&out));
    let run = sb.last_run_id();
    // The runbook's first approval, where the run stopped.
    let step = "approve-failover-to-secondary".to_owned();
    assert_eq!(sb.run_status(&run), "waiting");

    let pg = server.url();
    let pg_shown = pg.parse::<fogbook_state::pg::StoreUrl>().unwrap().to_string();
    assert!(!pg_shown.contains(server.password()), "{pg_shown}");
    let copy = on(&sb, &sim, &db, &["store", "copy", "--from", &db, "--to", &pg]);
    assert_eq!(code(&copy), 0, "store copy: {}{}", stdout(&copy), stderr(&copy));
    assert!(stderr(&copy).contains("is marked as moved"), "{}", stderr(&copy));

    assert_refused(&sb, &sim, &db, &run, &step, &pg_shown, server.password());
    assert_reads_say_moved(&sb, &sim, &db, &run, &pg_shown);
    // A moved store is not copied again (a second live copy).
    let again = sb.path("again.db").display().to_string();
    let out = on(&sb, &sim, &db, &["store", "copy", "--from", &db, "--to", &again]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!std::path::Path::new(&again).exists(), "nothing was created");

    // The target drives the run: the approval is accepted there.
    let out = on(&sb, &sim, &pg, &["approve", &run, &step, "--by", "tester"]);
    assert_eq!(code(&out), 0, "approve on PostgreSQL: {}", stderr(&out));

    // And back: PostgreSQL is now the moved one.
    let back = sb.path("back.db").display().to_string();
    let copy = on(&sb, &sim, &pg, &["store", "copy", "--from", &pg, "--to", &back]);
    assert_eq!(code(&copy), 0, "copy back: {}{}", stdout(&copy), stderr(&copy));
    assert_refused(&sb, &sim, &pg, &run, &step, &back, server.password());
    assert_reads_say_moved(&sb, &sim, &pg, &run, &back);

    // The copy back is abandoned: the mark comes off, recorded with who and why.
    let out = on(
        &sb,
        &sim,
        &pg,
        &["store", "unmark", "--by", "tester", "--reason", "copy abandoned"],
    );
    assert_eq!(code(&out), 0, "unmark: {}", stderr(&out));
    let status = on(&sb, &sim, &pg, &["status", &run]);
    assert!(!stderr(&status).contains("was moved"), "{}", stderr(&status));
    let out = on(&sb, &sim, &pg, &["cancel", &run, "--by", "tester"]);
    assert_eq!(code(&out), 0, "cancel on the unmarked store: {}", stderr(&out));
    let out = on(&sb, &sim, &pg, &["store", "unmark", "--reason", "twice"]);
    assert_eq!(code(&out), 2, "nothing to unmark: {}", stderr(&out));
}

/// A copy refused because the target holds data leaves the source unmarked: it still
/// drives runs, and its reads say nothing of a move.
#[test]
fn a_failed_copy_leaves_the_source_unmarked() {
    let server = TestPostgres::start();
    let sim = start_sim(&demo_estate(), None);
    let pg = server.url();
    let fixture = crate::common::fixture("long-wait.yaml").display().to_string();

    let first = Sandbox::new();
    let first_db = first.db().display().to_string();
    let out = on(&first, &sim, &first_db, &["run", &fixture, "--set", "duration=10ms"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = on(
        &first,
        &sim,
        &first_db,
        &["store", "copy", "--from", &first_db, "--to", &pg],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let sb = Sandbox::new();
    let db = sb.db().display().to_string();
    let out = on(&sb, &sim, &db, &["run", &fixture, "--set", "duration=10ms"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = on(&sb, &sim, &db, &["store", "copy", "--from", &db, "--to", &pg]);
    assert_eq!(code(&out), 2, "the target holds data: {}", stderr(&out));
    assert!(stderr(&out).contains("is not marked as moved"), "{}", stderr(&out));

    let out = on(&sb, &sim, &db, &["run", &fixture, "--set", "duration=10ms"]);
    assert_eq!(code(&out), 0, "the source still drives runs: {}", stderr(&out));
    let out = on(&sb, &sim, &db, &["runs"]);
    assert_eq!(code(&out), 0);
    assert!(!stderr(&out).contains("moved"), "{}", stderr(&out));
}
