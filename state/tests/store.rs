#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The store on both backends: transitions, fencing, locks, windows, the audit chain; and
//! the SQLite file: reopening, a newer schema.

mod backends;
use backends::{Backend, complete, names, open_store, run, start};

use std::time::Duration;

use fogbook_state::{NewRun, RunStatus, StateError, StepFinish, StepOutcome, StepStatus, Store, WindowKind};
use serde_json::json;

const TTL: Duration = Duration::from_secs(30);

fn new_run(id: &str, locks: &[&str], owner: Option<&str>) -> NewRun {
    NewRun {
        params: json!({ "x": 1 }),
        steps: names(&["a", "b"]),
        locks: names(locks),
        lease: owner.map(|o| (o.to_owned(), 1_000 + 30_000)),
        ..run(id)
    }
}

async fn a_run_goes_through_its_steps_with_windows_in_the_same_transitions(backend: Backend) {
    let (_d, store) = open_store(backend);
    store.create_run(new_run("r1", &["fog/a"], Some("me"))).await.unwrap();
    store
        .start_step("r1", "me", start("a", vec![WindowKind::Unprotected], 2_000))
        .await
        .unwrap();
    let snap = store.load_run("r1").await.unwrap();
    assert_eq!(snap.windows.len(), 1, "the window opens with the step's start");
    assert_eq!(snap.windows[0].opened_at, 2_000);
    store
        .save_progress("r1", "me", "a", 1, json!({ "url": "x" }), 2_500)
        .await
        .unwrap();
    store
        .finish_step("r1", "me", complete("a", vec![], 3_000))
        .await
        .unwrap();
    store.start_step("r1", "me", start("b", vec![], 4_000)).await.unwrap();
    store
        .finish_step("r1", "me", complete("b", vec![WindowKind::Unprotected], 9_000))
        .await
        .unwrap();
    store
        .set_run_status("r1", "me", RunStatus::Succeeded, None, 9_000)
        .await
        .unwrap();

    let snap = store.load_run("r1").await.unwrap();
    assert_eq!(snap.run.status, RunStatus::Succeeded);
    assert_eq!(snap.steps[0].status, StepStatus::Completed);
    assert_eq!(snap.steps[0].progress, Some(json!({ "url": "x" })));
    assert_eq!(snap.windows[0].closed_at, Some(9_000));
    assert_eq!(snap.windows[0].closed_step.as_deref(), Some("b"));
    let kinds: Vec<String> = store.events("r1").await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "run.created",
            "lease.acquired",
            "step.started",
            "window.opened",
            "step.progress",
            "step.completed",
            "step.started",
            "step.completed",
            "window.closed",
            "run.succeeded"
        ]
    );
    assert!(store.verify_audit(None).await.unwrap().failure.is_none());
    // Success released the lock.
    store.create_run(new_run("r2", &["fog/a"], None)).await.unwrap();
}

async fn a_completed_step_cannot_start_again(backend: Backend) {
    let (_d, store) = open_store(backend);
    store.create_run(new_run("r1", &[], Some("me"))).await.unwrap();
    store.start_step("r1", "me", start("a", vec![], 2_000)).await.unwrap();
    store
        .finish_step("r1", "me", complete("a", vec![], 3_000))
        .await
        .unwrap();
    let again = store.start_step("r1", "me", start("a", vec![], 4_000)).await;
    assert!(matches!(again, Err(StateError::InvalidTransition { .. })), "{again:?}");
}

async fn a_locked_key_refuses_a_second_run_and_names_the_holder(backend: Backend) {
    let (_d, store) = open_store(backend);
    store
        .create_run(new_run("r1", &["fog/a", "mi/x"], Some("me")))
        .await
        .unwrap();
    let err = store
        .create_run(new_run("r2", &["mi/y", "fog/a"], None))
        .await
        .unwrap_err();
    match err {
        StateError::LockHeld { key, holder, .. } => assert_eq!((key.as_str(), holder.as_str()), ("fog/a", "r1")),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(store.load_run("r2").await, Err(StateError::UnknownRun { .. })),
        "nothing was created"
    );
    // A failed run keeps its locks; a cancelled one releases them.
    store
        .set_run_status("r1", "me", RunStatus::Failed, None, 2_000)
        .await
        .unwrap();
    assert!(store.create_run(new_run("r3", &["fog/a"], None)).await.is_err());
    store.cancel("r1", "op", Some("me".to_owned()), 3_000).await.unwrap();
    store.create_run(new_run("r3", &["fog/a"], None)).await.unwrap();
}

async fn the_lease_fences_writes_and_is_taken_over_only_after_expiry_or_death(backend: Backend) {
    let (_d, store) = open_store(backend);
    store.create_run(new_run("r1", &[], Some("a"))).await.unwrap();
    // Valid lease: refused.
    let held = store.acquire_lease("r1", "b", TTL, None, 2_000).await.unwrap_err();
    assert!(
        matches!(held, StateError::LeaseHeld { ref owner, .. } if owner == "a"),
        "{held:?}"
    );
    // Holder proven dead: taken over at once.
    let grant = store
        .acquire_lease("r1", "b", TTL, Some("a".to_owned()), 2_000)
        .await
        .unwrap();
    assert_eq!(grant.taken_over_from.as_deref(), Some("a"));
    // The old owner's writes are fenced off.
    let fenced = store
        .start_step("r1", "a", start("a", vec![], 2_100))
        .await
        .unwrap_err();
    assert!(
        matches!(fenced, StateError::LeaseLost { ref owner, .. } if owner == "b"),
        "{fenced:?}"
    );
    // A driver whose lease expired is fenced off even before anyone takes the run over.
    let expired = store
        .start_step("r1", "b", start("a", vec![], 2_000 + 30_001))
        .await
        .unwrap_err();
    assert!(matches!(expired, StateError::LeaseLost { .. }), "{expired:?}");
    // After expiry anyone may take it.
    let grant = store.acquire_lease("r1", "c", TTL, None, 2_000 + 31_000).await.unwrap();
    assert_eq!(grant.taken_over_from.as_deref(), Some("b"));
    let kinds: Vec<String> = store.events("r1").await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "lease.taken_over").count(), 2);
}

async fn retries_keep_the_window_open_once(backend: Backend) {
    let (_d, store) = open_store(backend);
    store.create_run(new_run("r1", &[], Some("me"))).await.unwrap();
    store
        .start_step("r1", "me", start("a", vec![WindowKind::Unprotected], 2_000))
        .await
        .unwrap();
    store
        .finish_step(
            "r1",
            "me",
            StepFinish {
                step_id: "a".into(),
                attempt: 1,
                outcome: StepOutcome::RetryScheduled {
                    error: json!({"code": "X"}),
                    next_attempt_at: 5_000,
                },
                closes: vec![],
                run_status: None,
                now: 3_000,
            },
        )
        .await
        .unwrap();
    let mut second = start("a", vec![WindowKind::Unprotected], 5_000);
    second.attempt = 2;
    second.keep_progress = true;
    store.start_step("r1", "me", second).await.unwrap();
    let snap = store.load_run("r1").await.unwrap();
    assert_eq!(snap.windows.len(), 1);
    assert_eq!(snap.windows[0].opened_at, 2_000, "open since the first attempt");
    assert_eq!(snap.steps[0].attempt, 2);
    assert_eq!(snap.steps[0].first_started_at, Some(2_000));
}

#[tokio::test]
async fn state_survives_reopening_and_the_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let store = Store::open(&path).unwrap();
        store.create_run(new_run("r1", &[], Some("me"))).await.unwrap();
        store.start_step("r1", "me", start("a", vec![], 2_000)).await.unwrap();
        store.close().await;
    }
    let store = Store::open(&path).unwrap();
    let snap = store.load_run("r1").await.unwrap();
    assert_eq!(snap.steps[0].status, StepStatus::Running);
    assert!(store.verify_audit(Some("r1")).await.unwrap().failure.is_none());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let conn = rusqlite_free_pragma(&path);
    assert_eq!(conn, ("wal".to_owned(), 8), "WAL mode and the latest schema version");
}

/// Reads journal_mode and user_version without the store.
fn rusqlite_free_pragma(path: &std::path::Path) -> (String, i64) {
    // The store is the only crate with rusqlite; its own dependency is reachable here.
    let c = rusqlite::Connection::open(path).unwrap();
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    (mode, version)
}

#[tokio::test]
async fn a_database_from_a_newer_fogbook_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    Store::open(&path).unwrap().close().await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StateError::NewerSchema { found: 99, .. }), "{err:?}");
}

async fn approvals_are_recorded_once(backend: Backend) {
    let (_d, store) = open_store(backend);
    store.create_run(new_run("r1", &[], Some("me"))).await.unwrap();
    store
        .approve("r1", "a", "alice", Some("ok".into()), false, 2_000)
        .await
        .unwrap();
    let again = store.approve("r1", "a", "bob", None, false, 2_100).await.unwrap_err();
    assert!(again.to_string().contains("already approved by alice"), "{again}");
    assert_eq!(store.approval("r1", "a").await.unwrap().unwrap().by, "alice");
}

/// Writes queued together share one commit, each in its own savepoint: one that fails (a
/// lock conflict) leaves nothing behind, and the others in the same group are all saved.
async fn a_failed_write_in_a_group_commit_undoes_only_itself(backend: Backend) {
    let (_d, store) = open_store(backend);
    store.create_run(new_run("holder", &["fog/a"], None)).await.unwrap();
    let before = store.commit_count();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.spawn(async move {
            // Every fifth run wants the held key and must be refused.
            let lock = if i % 5 == 0 {
                "fog/a".to_owned()
            } else {
                format!("fog/free-{i}")
            };
            (
                i,
                store
                    .create_run(new_run(&format!("r{i}"), &[lock.as_str()], None))
                    .await,
            )
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.unwrap();
        if i % 5 == 0 {
            assert!(matches!(result, Err(StateError::LockHeld { .. })), "r{i}: {result:?}");
            assert!(store.load_run(&format!("r{i}")).await.is_err(), "r{i} left a trace");
        } else {
            result.unwrap();
            assert_eq!(store.load_run(&format!("r{i}")).await.unwrap().steps.len(), 2, "r{i}");
        }
    }
    assert!(store.commit_count() - before <= 40, "queued writes may share commits");
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    assert_eq!(report.runs, 33, "the holder and the 32 runs that got their keys");
}

/// One transition takes a run from one step to the next: the end of `a` and the start of
/// `b` are committed together. A cancellation refuses the start but keeps the end, which
/// records an effect that already happened.
async fn a_step_end_and_the_next_start_are_one_transition_and_a_cancel_keeps_the_end(backend: Backend) {
    let (_d, store) = open_store(backend);
    store.create_run(new_run("r1", &[], Some("me"))).await.unwrap();
    store.start_step("r1", "me", start("a", vec![], 2_000)).await.unwrap();
    let before = store.commit_count();
    store
        .advance(
            "r1",
            "me",
            vec![complete("a", vec![], 3_000)],
            Some(start("b", vec![], 3_000)),
        )
        .await
        .unwrap();
    assert_eq!(store.commit_count() - before, 1, "one durable commit");
    let snap = store.load_run("r1").await.unwrap();
    assert_eq!(snap.steps[0].status, StepStatus::Completed);
    assert_eq!(snap.steps[1].status, StepStatus::Running);

    store.create_run(new_run("r2", &[], Some("me"))).await.unwrap();
    store.start_step("r2", "me", start("a", vec![], 2_000)).await.unwrap();
    // The operator asks to cancel while `a` runs (the lease is live, so it is a request).
    assert!(!store.cancel("r2", "alice", None, 2_500).await.unwrap());
    let err = store
        .advance(
            "r2",
            "me",
            vec![complete("a", vec![], 3_000)],
            Some(start("b", vec![], 3_000)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::CancelRequested { .. }), "{err:?}");
    let snap = store.load_run("r2").await.unwrap();
    assert_eq!(snap.steps[0].status, StepStatus::Completed, "the end of `a` is kept");
    assert_eq!(snap.steps[1].status, StepStatus::Pending, "`b` never started");
    assert!(store.verify_audit(None).await.unwrap().failure.is_none());
}

/// Fencing by lease epoch (issue 17): a worker on another host takes the run over after its
/// lease expired, under the same owner name (a worker whose configured name is reused);
/// from then on the first worker's writes carry a stale epoch and are refused with the
/// lease error, on either path a driver writes by (`save_progress`, `advance`), while the
/// new holder's go through.
async fn a_takeover_fences_the_old_holder_by_epoch_whatever_its_name(backend: Backend) {
    let (db, host1) = open_store(backend);
    let host2 = db.reopen();
    host1.create_run(new_run("r1", &[], Some("worker"))).await.unwrap();
    host1
        .start_step("r1", "worker", start("a", vec![], 2_000))
        .await
        .unwrap();
    // host1's lease ends at 31 000; host2 takes the run over after that.
    host2.acquire_lease("r1", "worker", TTL, None, 40_000).await.unwrap();
    let progress = host1
        .save_progress("r1", "worker", "a", 1, json!({ "phase": "late" }), 41_000)
        .await
        .unwrap_err();
    assert!(matches!(progress, StateError::LeaseLost { .. }), "{progress:?}");
    assert!(progress.to_string().contains("epoch"), "{progress}");
    let advance = host1
        .advance("r1", "worker", vec![complete("a", vec![], 41_000)], None)
        .await
        .unwrap_err();
    assert!(matches!(advance, StateError::LeaseLost { .. }), "{advance:?}");
    let snap = host2.load_run("r1").await.unwrap();
    assert_eq!(
        snap.steps[0].status,
        StepStatus::Running,
        "the refused end changed nothing"
    );
    host2
        .save_progress("r1", "worker", "a", 1, json!({ "phase": "new holder" }), 42_000)
        .await
        .unwrap();
    host2
        .finish_step("r1", "worker", complete("a", vec![], 43_000))
        .await
        .unwrap();
    assert!(host2.verify_audit(Some("r1")).await.unwrap().failure.is_none());
    host1.close().await;
    host2.close().await;
}

/// A worker that claimed a run and then cannot drive it here gives the claim back
/// (`Store::give_back`), leaving the run as a release would: a run whose driver's lease had
/// expired (`running`) is `pending`, a waiting one waits again; and `audit verify` derives
/// the same status from the trail (a claim given back from an expired `running` run once
/// left the row `running` and the trail `pending`: the PostgreSQL chaos sample's violation).
async fn a_claim_given_back_leaves_the_row_and_the_trail_agreeing(backend: Backend) {
    let (db, host1) = open_store(backend);
    let worker = db.reopen();
    host1.create_run(new_run("r1", &[], Some("driver"))).await.unwrap();
    host1
        .start_step("r1", "driver", start("a", vec![], 2_000))
        .await
        .unwrap();
    host1.create_run(new_run("r2", &[], Some("driver"))).await.unwrap();
    host1
        .set_run_status("r2", "driver", RunStatus::Waiting, None, 2_000)
        .await
        .unwrap();
    host1.release_lease("r2", "driver", 2_000).await.unwrap();
    // The driver's lease of r1 ends at 31 000: the worker takes it over after that.
    for (id, before) in [("r1", RunStatus::Running), ("r2", RunStatus::Waiting)] {
        worker.acquire_lease(id, "worker", TTL, None, 40_000).await.unwrap();
        assert_eq!(worker.load_run(id).await.unwrap().run.status, RunStatus::Running);
        worker
            .give_back(id, "worker", before, "not here".into(), 41_000)
            .await
            .unwrap();
    }
    assert_eq!(worker.load_run("r1").await.unwrap().run.status, RunStatus::Pending);
    assert_eq!(worker.load_run("r2").await.unwrap().run.status, RunStatus::Waiting);
    for id in ["r1", "r2"] {
        let run = worker.load_run(id).await.unwrap().run;
        assert_eq!(run.lease_owner, None, "{id}: the claim went back");
        let report = worker.verify_audit(Some(id)).await.unwrap();
        assert!(report.failure.is_none(), "{id}: {:?}", report.failure);
    }
    host1.close().await;
    worker.close().await;
}

on_both_backends!(
    a_claim_given_back_leaves_the_row_and_the_trail_agreeing,
    a_takeover_fences_the_old_holder_by_epoch_whatever_its_name,
    a_run_goes_through_its_steps_with_windows_in_the_same_transitions,
    a_completed_step_cannot_start_again,
    a_locked_key_refuses_a_second_run_and_names_the_holder,
    the_lease_fences_writes_and_is_taken_over_only_after_expiry_or_death,
    retries_keep_the_window_open_once,
    approvals_are_recorded_once,
    a_failed_write_in_a_group_commit_undoes_only_itself,
    a_step_end_and_the_next_start_are_one_transition_and_a_cancel_keeps_the_end,
);
