//! Round trips per write on PostgreSQL (issue 17, batching): measured from the sessions'
//! own counter ([`crate::Store::round_trips`]), which counts every request whose answer was
//! waited for, a pipeline of statements once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::str::FromStr;
use std::task::Poll;

use serde_json::json;

use crate::pg::StoreUrl;
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
        steps: vec!["a".to_owned(), "b".to_owned()],
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

/// Round trips of one advance (the end of step `a` and the start of step `b`) alone, and
/// per advance in a group of `K` runs' advances committed together.
async fn measure(store: &Store, k: usize) -> (u64, f64) {
    let now = wall_ms();
    for i in 0..=k {
        let id = format!("r{i}");
        store.create_run(new_run(&id, now)).await.unwrap();
        store.start_step(&id, "me", start("a", now)).await.unwrap();
    }
    let before = store.round_trips().unwrap();
    store
        .advance("r0", "me", vec![finish("a", now)], Some(start("b", now)))
        .await
        .unwrap();
    let alone = store.round_trips().unwrap() - before;

    let (release, blocker) = hold_writer(store).await;
    let mut advances: Vec<_> = (1..=k)
        .map(|i| {
            let store = store.clone();
            Box::pin(async move {
                store
                    .advance(&format!("r{i}"), "me", vec![finish("a", now)], Some(start("b", now)))
                    .await
            })
        })
        .collect();
    for a in &mut advances {
        poll_once(a).await;
    }
    let before = store.round_trips().unwrap();
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    for a in advances {
        a.await.unwrap();
    }
    // The holder's COMMIT is counted here too (one round trip).
    let group = store.round_trips().unwrap() - before - 1;
    #[allow(clippy::cast_precision_loss, reason = "a small count")]
    let per = group as f64 / k as f64;
    (alone, per)
}

/// The counter counts: an advance costs round trips, and a group of advances costs fewer
/// per advance than one alone (BEGIN and COMMIT are shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advances_are_counted_in_round_trips() {
    let server = fogbook_testpg::TestPostgres::start();
    let store = open(&server);
    let (alone, per) = measure(&store, 8).await;
    eprintln!("round trips: {alone} for an advance alone, {per:.2} per advance in a group of 8");
    assert!(alone > 0, "an advance is counted");
    assert!(per > 0.0 && per < alone as f64, "alone {alone}, in a group {per}");
    store.close().await;
}
