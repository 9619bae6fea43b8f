#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Store faults: a write that fails before its commit, or commits while its caller sees an
//! error, SQLITE_BUSY, a full disk. Whatever fails, the engine never performs a side effect
//! whose start was not durably committed, never performs a completed one again, and the run
//! stays resumable.

use std::path::{Path, PathBuf};

use fogbook_engine::{CreateRun, Engine, EngineConfig, RunOutcome, runbook};
use fogbook_state::pg::StoreUrl;
use fogbook_state::{RunStatus, StepStatus, Store, StoreFault};
use tokio_util::sync::CancellationToken;

fn runbook_text(out: &Path) -> String {
    format!(
        r#"
runbook: faults
version: 1
steps:
  - id: effect
    uses: command
    with:
      program: sh
      args: ["-c", "echo effect >> {}"]
"#,
        out.display()
    )
}

/// Which backend a test body runs on (each body runs on both: `sqlite::NAME` and
/// `postgres::NAME`, the latter on a throwaway server of its own).
#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Case {
    _dir: tempfile::TempDir,
    _server: Option<fogbook_testpg::TestPostgres>,
    out: PathBuf,
    store: Store,
    engine: Engine,
    run: String,
}

async fn case(backend: Backend) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("effects.txt");
    let (server, url) = match backend {
        Backend::Sqlite => (None, StoreUrl::Sqlite(dir.path().join("s.db"))),
        Backend::Postgres => {
            let server = fogbook_testpg::TestPostgres::start();
            let url = server.url().parse().unwrap();
            (Some(server), url)
        }
    };
    let store = Store::open_url(&url).unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let text = runbook_text(&out);
    let rb = runbook::parse(&text, "faults.yaml").unwrap();
    let run = engine.create_run(CreateRun::new(&rb, &text)).await.unwrap();
    Case {
        _dir: dir,
        _server: server,
        out,
        store,
        engine,
        run,
    }
}

fn effects(c: &Case) -> usize {
    std::fs::read_to_string(&c.out).unwrap_or_default().lines().count()
}

async fn step_status(c: &Case) -> StepStatus {
    c.store.load_run(&c.run).await.unwrap().steps[0].status
}

/// The writes of one drive, in order: 0 takes the lease, 1 commits the step's start, 2 the
/// intent the command saves, 3 the step's outcome with the run's success (the last step's
/// end and the run's are one transition), 4 the lease release.
const START: u64 = 1;
const INTENT: u64 = 2;
const OUTCOME: u64 = 3;

async fn a_start_that_was_not_committed_has_no_effect(backend: Backend) {
    for fault in [StoreFault::FailBeforeCommit, StoreFault::Busy, StoreFault::DiskFull] {
        let c = case(backend).await;
        c.store.inject_fault(START, fault);
        let err = c.engine.drive(&c.run, CancellationToken::new()).await.unwrap_err();
        assert!(
            err.to_string().contains("could not commit") || format!("{err:?}").contains("injected"),
            "{fault:?}: {err}"
        );
        assert_eq!(
            effects(&c),
            0,
            "{fault:?}: the command ran although its start was not committed"
        );
        assert_eq!(step_status(&c).await, StepStatus::Pending);
        // The fault is gone; the run resumes and the effect happens once.
        assert_eq!(
            c.engine.drive(&c.run, CancellationToken::new()).await.unwrap(),
            RunOutcome::Succeeded
        );
        assert_eq!(effects(&c), 1, "{fault:?}");
    }
}

async fn a_lost_acknowledgement_of_the_start_is_resumed_without_a_double_effect(backend: Backend) {
    let c = case(backend).await;
    c.store.inject_fault(START, StoreFault::CommitThenFail);
    assert!(c.engine.drive(&c.run, CancellationToken::new()).await.is_err());
    assert_eq!(effects(&c), 0, "the engine stops when it cannot trust the store");
    assert_eq!(step_status(&c).await, StepStatus::Running, "the start was committed");
    assert_eq!(
        c.engine.drive(&c.run, CancellationToken::new()).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(effects(&c), 1);
}

async fn an_intent_that_was_not_committed_stops_before_the_effect(backend: Backend) {
    let c = case(backend).await;
    c.store.inject_fault(INTENT, StoreFault::FailBeforeCommit);
    assert!(c.engine.drive(&c.run, CancellationToken::new()).await.is_err());
    assert_eq!(effects(&c), 0, "no program runs before its intent is durable");
    assert_eq!(
        c.engine.drive(&c.run, CancellationToken::new()).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(effects(&c), 1);
}

async fn a_lost_acknowledgement_of_the_intent_runs_the_program_once_on_resume(backend: Backend) {
    let c = case(backend).await;
    // The intent is committed but the driver is told it was not (a connection lost during
    // the COMMIT): it starts nothing, and records that it started nothing.
    c.store.inject_fault(INTENT, StoreFault::CommitThenFail);
    assert!(c.engine.drive(&c.run, CancellationToken::new()).await.is_err());
    assert_eq!(effects(&c), 0, "no program runs after a failed save of its intent");
    let snap = c.store.load_run(&c.run).await.unwrap();
    let progress = snap.steps[0].progress.clone().unwrap_or_default();
    assert_eq!(progress["phase"], "not_started", "{progress}");
    // So the next drive runs it, instead of stopping as ambiguous.
    assert_eq!(
        c.engine.drive(&c.run, CancellationToken::new()).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(effects(&c), 1);
    assert!(c.store.verify_audit(None).await.unwrap().failure.is_none());
}

async fn a_lost_acknowledgement_of_the_outcome_never_repeats_the_effect(backend: Backend) {
    let c = case(backend).await;
    c.store.inject_fault(OUTCOME, StoreFault::CommitThenFail);
    assert!(c.engine.drive(&c.run, CancellationToken::new()).await.is_err());
    assert_eq!(effects(&c), 1);
    assert_eq!(
        step_status(&c).await,
        StepStatus::Completed,
        "the outcome was committed"
    );
    let snap = c.store.load_run(&c.run).await.unwrap();
    assert_eq!(snap.run.status, RunStatus::Succeeded, "with the run's end");
    let again = c.engine.drive(&c.run, CancellationToken::new()).await.unwrap_err();
    assert!(again.to_string().contains("already succeeded"), "{again}");
    assert_eq!(effects(&c), 1, "a completed step never runs again");
}

async fn an_outcome_that_was_not_committed_stops_the_run_for_an_operator(backend: Backend) {
    let c = case(backend).await;
    c.store.inject_fault(OUTCOME, StoreFault::DiskFull);
    assert!(c.engine.drive(&c.run, CancellationToken::new()).await.is_err());
    assert_eq!(effects(&c), 1);
    // The program ran but its result was not recorded: with on_ambiguous: fail (the default)
    // the run stops instead of running it twice.
    match c.engine.drive(&c.run, CancellationToken::new()).await.unwrap() {
        RunOutcome::Failed { code, .. } => assert_eq!(code, "AmbiguousInterruption"),
        other => panic!("{other:?}"),
    }
    assert_eq!(effects(&c), 1);
    assert!(c.store.verify_audit(None).await.unwrap().failure.is_none());
}

mod sqlite {
    #[tokio::test]
    async fn a_start_that_was_not_committed_has_no_effect() {
        super::a_start_that_was_not_committed_has_no_effect(super::Backend::Sqlite).await;
    }
    #[tokio::test]
    async fn a_lost_acknowledgement_of_the_start_is_resumed_without_a_double_effect() {
        super::a_lost_acknowledgement_of_the_start_is_resumed_without_a_double_effect(super::Backend::Sqlite).await;
    }
    #[tokio::test]
    async fn an_intent_that_was_not_committed_stops_before_the_effect() {
        super::an_intent_that_was_not_committed_stops_before_the_effect(super::Backend::Sqlite).await;
    }
    #[tokio::test]
    async fn a_lost_acknowledgement_of_the_intent_runs_the_program_once_on_resume() {
        super::a_lost_acknowledgement_of_the_intent_runs_the_program_once_on_resume(super::Backend::Sqlite).await;
    }
    #[tokio::test]
    async fn a_lost_acknowledgement_of_the_outcome_never_repeats_the_effect() {
        super::a_lost_acknowledgement_of_the_outcome_never_repeats_the_effect(super::Backend::Sqlite).await;
    }
    #[tokio::test]
    async fn an_outcome_that_was_not_committed_stops_the_run_for_an_operator() {
        super::an_outcome_that_was_not_committed_stops_the_run_for_an_operator(super::Backend::Sqlite).await;
    }
}

mod postgres {
    #[tokio::test]
    async fn a_start_that_was_not_committed_has_no_effect() {
        super::a_start_that_was_not_committed_has_no_effect(super::Backend::Postgres).await;
    }
    #[tokio::test]
    async fn a_lost_acknowledgement_of_the_start_is_resumed_without_a_double_effect() {
        super::a_lost_acknowledgement_of_the_start_is_resumed_without_a_double_effect(super::Backend::Postgres).await;
    }
    #[tokio::test]
    async fn an_intent_that_was_not_committed_stops_before_the_effect() {
        super::an_intent_that_was_not_committed_stops_before_the_effect(super::Backend::Postgres).await;
    }
    #[tokio::test]
    async fn a_lost_acknowledgement_of_the_intent_runs_the_program_once_on_resume() {
        super::a_lost_acknowledgement_of_the_intent_runs_the_program_once_on_resume(super::Backend::Postgres).await;
    }
    #[tokio::test]
    async fn a_lost_acknowledgement_of_the_outcome_never_repeats_the_effect() {
        super::a_lost_acknowledgement_of_the_outcome_never_repeats_the_effect(super::Backend::Postgres).await;
    }
    #[tokio::test]
    async fn an_outcome_that_was_not_committed_stops_the_run_for_an_operator() {
        super::an_outcome_that_was_not_committed_stops_the_run_for_an_operator(super::Backend::Postgres).await;
    }
}
