//! Round trips per write on PostgreSQL (issue 17, batching): measured from the sessions'
//! own counter ([`crate::Store::round_trips`]), which counts every request whose answer was
//! waited for, a pipeline of statements once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::str::FromStr;
use std::task::Poll;

use serde_json::json;

use crate::pg::StoreUrl;
use crate::{NewRun, StateError, Store};

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

/// Polls `fut` once (so a write sends its job to the writer) without waiting for it.
pub(super) async fn poll_once<F: Future + Unpin>(fut: &mut F) {
    std::future::poll_fn(|cx| {
        let _ = std::pin::Pin::new(&mut *fut).poll(cx);
        Poll::Ready(())
    })
    .await;
}

/// A write that holds the writer (inside its transaction) until `release` is sent; it
/// answers once it is running, so the writes queued behind it form the next group.
pub(super) async fn hold_writer(
    store: &Store,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), StateError>>,
) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, in_write) = tokio::sync::oneshot::channel::<()>();
    let holder = store.clone();
    let blocker = tokio::spawn(async move {
        holder
            .write(move |_| {
                let _ = entered.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
    });
    in_write.await.unwrap();
    (release, blocker)
}

/// Three writes of one group, each appending an event to run `r1`; the middle one fails as
/// `fail` makes it (after its append). Returns the three results.
async fn group_of_three(
    store: &Store,
    fail: fn(&dyn crate::sql::Tx) -> Result<(), StateError>,
) -> [Result<(), StateError>; 3] {
    let (release, blocker) = hold_writer(store).await;
    let write = |n: u32, failing: bool| {
        let store = store.clone();
        Box::pin(async move {
            store
                .write(move |tx| {
                    crate::audit::append(
                        tx,
                        "r1",
                        2_000,
                        crate::audit::NewEvent::run("test.event", json!({ "n": n })),
                    )?;
                    if failing {
                        return fail(tx);
                    }
                    Ok(())
                })
                .await
        })
    };
    let (mut first, mut failing, mut last) = (write(1, false), write(2, true), write(3, false));
    poll_once(&mut first).await;
    poll_once(&mut failing).await;
    poll_once(&mut last).await;
    let commits = store.commit_count();
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    let results = [first.await, failing.await, last.await];
    assert_eq!(
        store.commit_count() - commits,
        2,
        "the holder's commit, then one for the three writes"
    );
    results
}

/// The events `test.event` committed, by global position.
async fn test_events(store: &Store) -> Vec<i64> {
    store
        .read(|tx| {
            tx.query_map(
                "SELECT gseq FROM events WHERE kind = 'test.event' ORDER BY gseq",
                crate::sql::params![],
                |r| r.get(0),
            )
            .map_err(|e| StateError::commit_failed(e.to_string()))
        })
        .await
        .unwrap()
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
    let [first, failing, last] =
        group_of_three(&store, |_| Err(StateError::commit_failed("this write is made to fail"))).await;
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
    let [first, failing, last] = group_of_three(&store, |tx| {
        tx.execute_later(
            "INSERT INTO chain (id, head, count) VALUES (1, 'x', 0)",
            crate::sql::params![],
        )
        .map_err(|e| StateError::commit_failed(e.to_string()))
    })
    .await;
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
