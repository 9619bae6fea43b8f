//! Round trips per write on PostgreSQL (issue 17, batching): measured from the sessions'
//! own counter ([`crate::Store::round_trips`]), which counts every request whose answer was
//! waited for, a pipeline of statements once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;

use serde_json::json;

use crate::pg::StoreUrl;
use crate::store::hold::{Through, group_of_three, hold, poll_once, test_events};
use crate::{NewRun, StateError, StepFinish, StepOutcome, StepStart, Store};

pub(super) fn open(server: &fogbook_testpg::TestPostgres) -> Store {
    Store::open_url(&StoreUrl::from_str(&server.url()).unwrap()).unwrap()
}

/// The wall clock in milliseconds (the test server runs on this host: its clock is this one).
pub(super) fn wall_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

pub(super) fn new_run(id: &str, now: i64) -> NewRun {
    NewRun {
        id: id.to_owned(),
        runbook_name: "rb".to_owned(),
        runbook_version: 1,
        runbook_text: "runbook: rb".to_owned(),
        runbook_sha256: "abc".to_owned(),
        source_path: None,
        params: json!({}),
        steps: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
        locks: Vec::new(),
        auto_approve: false,
        lease: Some(("me".to_owned(), now + 3_600_000)),
        created_by: json!("test"),
        window: None,
        schedule: None,
        now,
    }
}

pub(super) fn start(step: &str, now: i64) -> StepStart {
    StepStart {
        step_id: step.to_owned(),
        attempt: 1,
        input: json!({}),
        deadline_at: None,
        opens: Vec::new(),
        subject: None,
        keep_progress: false,
        now,
    }
}

pub(super) fn finish(step: &str, now: i64) -> StepFinish {
    StepFinish {
        step_id: step.to_owned(),
        attempt: 1,
        outcome: StepOutcome::Completed { output: json!({}) },
        closes: Vec::new(),
        run_status: None,
        now,
    }
}

/// Round trips of one advance alone, and per advance in a group of `k` runs' advances
/// committed together, in steady state: every run first advances from step `a` to `b` (so
/// the writer has prepared every statement once: a statement's first use on a connection
/// costs one more round trip), then the measured advances go from `b` to `c`.
async fn measure(store: &Store, k: usize) -> (u64, f64) {
    let now = wall_ms();
    for i in 0..=k {
        let id = format!("r{i}");
        store.create_run(new_run(&id, now)).await.unwrap();
        store.start_step(&id, "me", start("a", now)).await.unwrap();
    }
    let mut alone = 0;
    let mut per = 0.0;
    for (from, to) in [("a", "b"), ("b", "c")] {
        let before = store.round_trips().unwrap();
        store
            .advance("r0", "me", vec![finish(from, now)], Some(start(to, now)))
            .await
            .unwrap();
        alone = store.round_trips().unwrap() - before;

        let held = hold(store, Through::Write).await;
        let mut advances: Vec<_> = (1..=k)
            .map(|i| {
                let store = store.clone();
                Box::pin(async move {
                    store
                        .advance(&format!("r{i}"), "me", vec![finish(from, now)], Some(start(to, now)))
                        .await
                })
            })
            .collect();
        for a in &mut advances {
            poll_once(a).await;
        }
        let before = store.round_trips().unwrap();
        let commits = store.commit_count();
        held.release().await;
        for a in advances {
            a.await.unwrap();
        }
        assert_eq!(
            store.commit_count() - commits,
            2,
            "the holder's commit, then one for the group"
        );
        // The holder's COMMIT is counted here too (one round trip).
        let group = store.round_trips().unwrap() - before - 1;
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        {
            per = group as f64 / k as f64;
        }
    }
    (alone, per)
}

/// Batching (issue 17): an advance (the end of one step and the start of the next) needs
/// no round trip of its own. Its lease and its steps are read with its group's BEGIN (with
/// the clock, the lock and the chain head), its statements go out with the group's COMMIT:
/// an advance alone costs 2 round trips, a group of 8 advances 2 in all (0.25 each). Before
/// the rows were read ahead, 5 alone and 4.25 per advance in a group of 8; before the
/// pipeline, 12 and 10.25 (every statement its own round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_advances_costs_two_round_trips_in_all() {
    let server = fogbook_testpg::TestPostgres::start();
    let store = open(&server);
    let (alone, per) = measure(&store, 8).await;
    eprintln!("round trips: {alone} for an advance alone, {per:.2} per advance in a group of 8");
    assert_eq!(alone, 2, "an advance alone: BEGIN and COMMIT");
    assert!(
        per <= 0.25,
        "{per} round trips per advance in a group of 8 (the group's BEGIN and COMMIT, nothing else)"
    );
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    store.close().await;
}

/// What was read ahead is not trusted after a write of the same group that declared no
/// rows: an operator's cancellation queued before a driver's advance of the same run, in
/// one group, refuses the advance's start (the advance reads the lease row again and sees
/// the request) and keeps its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_earlier_in_the_group_is_seen_by_the_advance_after_it() {
    let server = fogbook_testpg::TestPostgres::start();
    let store = open(&server);
    let now = wall_ms();
    store.create_run(new_run("r1", now)).await.unwrap();
    store.start_step("r1", "me", start("a", now)).await.unwrap();
    let held = hold(&store, Through::Write).await;
    let mut cancel = Box::pin({
        let store = store.clone();
        async move { store.cancel("r1", "operator", None, now).await }
    });
    let mut advance = Box::pin({
        let store = store.clone();
        async move {
            store
                .advance("r1", "me", vec![finish("a", now)], Some(start("b", now)))
                .await
        }
    });
    poll_once(&mut cancel).await;
    poll_once(&mut advance).await;
    let commits = store.commit_count();
    held.release().await;
    assert!(!cancel.await.unwrap(), "the run is driven: its driver is asked to stop");
    let refused = advance.await.expect_err("the start after the cancellation");
    assert!(matches!(refused, StateError::CancelRequested { .. }), "{refused:?}");
    assert_eq!(
        store.commit_count() - commits,
        2,
        "the holder's commit, then the group's"
    );
    let snap = store.load_run("r1").await.unwrap();
    let status = |id: &str| snap.steps.iter().find(|s| s.step_id == id).map(|s| s.status);
    assert_eq!(status("a"), Some(crate::StepStatus::Completed), "the end is kept");
    assert_eq!(status("b"), Some(crate::StepStatus::Pending), "the start is refused");
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    store.close().await;
}

/// A write rolled back to its savepoint after appending to the audit trail also takes its
/// events out of the chain head the PostgreSQL group keeps in memory: the next write of the
/// same transaction links to the event before it, the chain row is written once with the
/// commit, and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_rolled_back_in_a_postgres_group_leaves_the_chain_whole() {
    let server = fogbook_testpg::TestPostgres::start();
    let store = open(&server);
    store.create_run(new_run("r1", wall_ms())).await.unwrap();
    let [first, failing, last] = group_of_three(&store, Through::Write, |_| {
        Err(StateError::commit_failed("this write is made to fail"))
    })
    .await;
    first.unwrap();
    assert!(failing.is_err(), "the second write fails");
    last.unwrap();
    let events = test_events(&store).await;
    assert_eq!(events.len(), 2, "the failed write's event is gone: {events:?}");
    assert_eq!(events[1], events[0] + 1, "the last write's event follows the first's");
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    store.close().await;
}

/// A queued statement ([`crate::sql::Tx::execute_later`]) that fails fails its own write
/// only: the write's closure has returned, its statements go out with its savepoint's
/// release, the failure rolls it back to its savepoint (its event out of the chain head
/// too) and answers it with the server's error naming the statement; the writes before and
/// after it in the same transaction commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_queued_statement_fails_its_own_write_only() {
    let server = fogbook_testpg::TestPostgres::start();
    let store = open(&server);
    store.create_run(new_run("r1", wall_ms())).await.unwrap();
    let [first, failing, last] = group_of_three(&store, Through::Write, duplicate_chain_row).await;
    first.unwrap();
    let err = failing.expect_err("the write whose queued statement failed");
    let text: Vec<String> = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect();
    let text = text.join(": ");
    assert!(
        text.contains("INSERT INTO chain") && text.contains("duplicate key"),
        "names the statement and the server's error: {text}"
    );
    last.unwrap();
    let events = test_events(&store).await;
    assert_eq!(events.len(), 2, "the failed write's event is gone: {events:?}");
    assert_eq!(events[1], events[0] + 1, "the last write's event follows the first's");
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    store.close().await;
}

/// A statement that fails when it reaches the server (the chain row exists), queued.
fn duplicate_chain_row(tx: &dyn crate::sql::Tx) -> Result<(), StateError> {
    tx.execute_later(
        "INSERT INTO chain (id, head, count) VALUES (1, 'x', 0)",
        crate::sql::params![],
    )
    .map_err(|e| StateError::commit_failed(e.to_string()))
}

/// A write that declared its rows ends without a round trip, so a queued statement of it
/// that fails is reported to the write after it (or the commit), when the transaction is
/// already aborted: the whole group fails, nothing of it is kept, each write is told so,
/// and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_queued_statement_of_a_keyed_write_fails_its_group() {
    let server = fogbook_testpg::TestPostgres::start();
    let store = open(&server);
    store.create_run(new_run("r1", wall_ms())).await.unwrap();
    let results = group_of_three(&store, Through::KeyedWrite, duplicate_chain_row).await;
    for (i, result) in results.iter().enumerate() {
        let err = result.as_ref().expect_err("every write of the group fails");
        let text: Vec<String> = std::iter::successors(Some(err as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect();
        assert!(
            text.join(": ").contains("duplicate key"),
            "write {i}: {}",
            text.join(": ")
        );
    }
    assert_eq!(
        test_events(&store).await,
        Vec::<i64>::new(),
        "nothing of the group is kept"
    );
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    store.close().await;
}
