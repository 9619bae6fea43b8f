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

/// The output of `child` once it exits by itself within `limit`; past it, the child is
/// killed and its output is the error.
fn exited_within(mut child: std::process::Child, limit: std::time::Duration) -> Result<Output, Output> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return Ok(child.wait_with_output().unwrap());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(child.wait_with_output().unwrap());
        }
        // A poll interval while waiting on the process's exit (as `Sandbox::wait_for`).
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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
    let Ok(out) = exited_within(worker, std::time::Duration::from_secs(60)) else {
        panic!("the worker did not exit on the moved store: it drove it");
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

/// `status` on a moved store names the command that continues a run where it is driven
/// now (`fogbook --db TARGET resume RUN`), not a `resume` on this store, which is refused.
#[test]
fn status_on_a_moved_store_says_to_continue_the_run_on_the_target() {
    let sim = start_sim(&demo_estate(), None);
    let sb = Sandbox::new();
    let db = sb.db().display().to_string();
    let mut args = runbook_args();
    args.push("--detach".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = on(&sb, &sim, &db, &args);
    assert_eq!(code(&out), 0, "run --detach: {}", stderr(&out));
    let run = sb.last_run_id();
    let target = sb.path("target.db").display().to_string();
    let copy = on(&sb, &sim, &db, &["store", "copy", "--from", &db, "--to", &target]);
    assert_eq!(code(&copy), 0, "store copy: {}{}", stdout(&copy), stderr(&copy));

    let status = stdout(&on(&sb, &sim, &db, &["status", &run]));
    assert!(
        status.contains(&format!("continue it: `fogbook --db {target} resume {run}`")),
        "{status}"
    );
    // What it names works on the target, where `resume` continues the run.
    let out = on(&sb, &sim, &target, &["resume", &run]);
    assert_eq!(code(&out), 3, "the run reaches its approval there: {}", stderr(&out));
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

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

fn real_now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Steps the clock of every process started with `FOGBOOK_TEST_CLOCK_FILE` so that it reads
/// `at` (ms since the epoch) now.
fn set_clock(sb: &Sandbox, at: i64) {
    // Written whole, then renamed: a process never reads half an offset.
    std::fs::write(sb.path("clock.tmp"), (at - real_now_ms()).to_string()).unwrap();
    std::fs::rename(sb.path("clock.tmp"), sb.path("clock")).unwrap();
}

/// A worker that had the SQLite store open before `store copy` moved it to PostgreSQL: it
/// stops at its next poll, says where the runs went, and exits 2; the failover its schedule
/// would fire after the copy is not fired, and no Microsoft.Sql request reaches the
/// emulator. Time is stepped, not waited for (`FOGBOOK_TEST_CLOCK_FILE`).
#[test]
fn a_worker_started_before_the_copy_stops_driving_and_says_why() {
    let server = TestPostgres::start();
    let sim = start_sim(&demo_estate(), None);
    let sb = Sandbox::new();
    let db = sb.db().display().to_string();
    let clock = sb.path("clock").display().to_string();
    // Tomorrow, 09:59:58 UTC: `warmup` fires at 09:59:59 (a run with no cloud effect, which
    // shows the worker has the store open), `failover` at 11:00:00.
    let day = (real_now_ms() / DAY_MS + 1) * DAY_MS;
    set_clock(&sb, day + 10 * HOUR_MS - 2_000);
    let env = |c: &mut std::process::Command| {
        c.env("FOGBOOK_TEST_CLOCK_FILE", &clock)
            .env("FOGBOOK_ARM_ENDPOINT", &sim.url)
            .env("FOGBOOK_ARM_TOKEN", "t");
    };
    let effects = sb.path("effects.txt").display().to_string();
    let schedules: [Vec<String>; 2] = [
        vec![
            "--name".into(),
            "warmup".into(),
            "--cron".into(),
            "59 59 9 * * *".into(),
            crate::common::fixture("job.yaml").display().to_string(),
            "--set".into(),
            format!("out={effects}"),
            "--set".into(),
            "pause=10ms".into(),
        ],
        vec![
            "--name".into(),
            "failover".into(),
            "--cron".into(),
            "0 0 11 * * *".into(),
            root().join("runbooks/change-primary-region.yaml").display().to_string(),
            "--params".into(),
            root().join("examples/change-primary-region.yaml").display().to_string(),
            "--auto-approve".into(),
        ],
    ];
    for args in schedules {
        let mut c = fogbook(
            &sb,
            &db,
            &[&["schedule".to_owned(), "add".to_owned()][..], &args].concat(),
        );
        env(&mut c);
        let out = c.output().unwrap();
        assert_eq!(code(&out), 0, "schedule add: {}", stderr(&out));
    }
    let mut c = fogbook(&sb, &db, &["worker".to_owned(), "--poll".to_owned(), "50ms".to_owned()]);
    env(&mut c);
    let worker = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sb.wait_for(
        "the worker to fire and finish the warm-up run",
        std::time::Duration::from_secs(60),
        |sb| {
            sb.sql()
                .query_row(
                    "SELECT count(*) FROM runs WHERE schedule_name = 'warmup' AND status = 'succeeded'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
                == 1
        },
    );

    let pg = server.url();
    let pg_shown = pg.parse::<fogbook_state::pg::StoreUrl>().unwrap().to_string();
    let copy = on(&sb, &sim, &db, &["store", "copy", "--from", &db, "--to", &pg]);
    assert_eq!(code(&copy), 0, "store copy: {}{}", stdout(&copy), stderr(&copy));
    let before = crate::seed_runbooks::sql_mutations(&sim.journal());
    // The failover is due now: a worker that did not see the mark would fire and drive it.
    set_clock(&sb, day + 11 * HOUR_MS + 1_000);

    let out = match exited_within(worker, std::time::Duration::from_secs(60)) {
        Ok(out) => out,
        Err(out) => panic!(
            "the worker went on with the moved store; Microsoft.Sql requests since the copy: {:?}\n{}",
            &crate::seed_runbooks::sql_mutations(&sim.journal())[before.len()..],
            stderr(&out)
        ),
    };
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "the worker on the moved store: {err}");
    assert!(
        err.contains("was moved to") && err.contains(&pg_shown) && err.contains("--db"),
        "the worker says where the runs went and what to do: {err}"
    );
    assert!(!err.contains(server.password()), "{err}");
    assert_eq!(
        crate::seed_runbooks::sql_mutations(&sim.journal()),
        before,
        "no Microsoft.Sql request after the copy"
    );
    let fired: i64 = sb
        .sql()
        .query_row("SELECT count(*) FROM runs WHERE schedule_name = 'failover'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fired, 0, "the moved store fired no failover");
}

/// `store unmark` is an event of the store's own audit stream (`store:moves`), with who and
/// why: `history store:moves` shows it, `audit verify` passes, and an edit of it is caught.
#[test]
fn unmark_is_in_the_audit_chain() {
    let server = TestPostgres::start();
    let sim = start_sim(&demo_estate(), None);
    let sb = Sandbox::new();
    let db = sb.db().display().to_string();
    let fixture = crate::common::fixture("long-wait.yaml").display().to_string();
    let out = on(&sb, &sim, &db, &["run", &fixture, "--set", "duration=10ms"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let pg = server.url();
    let out = on(&sb, &sim, &db, &["store", "copy", "--from", &db, "--to", &pg]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = on(
        &sb,
        &sim,
        &db,
        &["store", "unmark", "--by", "tester", "--reason", "copy abandoned"],
    );
    assert_eq!(code(&out), 0, "unmark: {}", stderr(&out));

    let out = on(&sb, &sim, &db, &["history", "store:moves", "--format", "json"]);
    assert_eq!(code(&out), 0, "history: {}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = doc["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{doc}");
    assert_eq!(events[0]["kind"], "store.unmarked");
    assert_eq!(events[0]["data"]["by"], "tester");
    assert_eq!(events[0]["data"]["reason"], "copy abandoned");
    let shown = pg.parse::<fogbook_state::pg::StoreUrl>().unwrap().to_string();
    assert_eq!(events[0]["data"]["target"], shown.as_str());
    let out = on(&sb, &sim, &db, &["history", "store:moves"]);
    assert!(
        stdout(&out).contains("store.unmarked") && stdout(&out).contains("tester"),
        "{}",
        stdout(&out)
    );
    let out = on(&sb, &sim, &db, &["audit", "verify"]);
    assert_eq!(code(&out), 0, "audit verify: {}{}", stdout(&out), stderr(&out));

    // The reason rewritten afterwards (by someone who dropped the append-only trigger): the
    // chain no longer verifies, and names the event.
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    conn.execute_batch("DROP TRIGGER events_no_update;").unwrap();
    let changed = conn
        .execute(
            "UPDATE events SET data = replace(data, 'copy abandoned', 'routine') WHERE run_id = 'store:moves'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let out = on(&sb, &sim, &db, &["audit", "verify"]);
    assert_ne!(code(&out), 0, "an edited unmark is caught: {}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("store:moves") && said.contains("altered"), "{said}");
}
