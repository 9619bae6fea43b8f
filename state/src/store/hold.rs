//! Test helpers for group commit on both backends: a read or write that holds a store's
//! thread busy, so that the writes queued behind it (each polled once) form one group, one
//! transaction, once it lets go; and the test events those groups commit.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::task::Poll;

use crate::sql::Tx;
use crate::{StateError, Store};

/// What holds the thread busy.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Through {
    /// A read: on SQLite one thread runs the reads and the writes, so a read holds the
    /// writes back and commits nothing itself.
    Read,
    /// A write, inside its transaction: on PostgreSQL reads have connections of their own,
    /// so only a write holds the writer back; it commits (once) when let go.
    Write,
    /// As `Write`, and in [`group_of_three`] the failing write declares its run
    /// ([`crate::sql::Keys`]): on PostgreSQL its failure then fails the whole group.
    KeyedWrite,
}

/// A read or write holding a store's thread until [`Held::release`].
pub(crate) struct Held {
    release: std::sync::mpsc::Sender<()>,
    holder: tokio::task::JoinHandle<Result<(), StateError>>,
}

impl Held {
    /// Lets the holder end, and waits until it has (and succeeded).
    pub(crate) async fn release(self) {
        self.release.send(()).unwrap();
        self.holder.await.unwrap().unwrap();
    }
}

/// Holds `store`'s thread with a read or write `through`; answers once the holder is
/// running, so the writes sent after it queue behind it.
pub(crate) async fn hold(store: &Store, through: Through) -> Held {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, running) = tokio::sync::oneshot::channel::<()>();
    let body = move |_: &dyn Tx| {
        let _ = entered.send(());
        let _ = held.recv();
        Ok::<(), StateError>(())
    };
    let store = store.clone();
    let holder = tokio::spawn(async move {
        match through {
            Through::Read => store.read(body).await,
            Through::Write | Through::KeyedWrite => store.write(body).await,
        }
    });
    running.await.unwrap();
    Held { release, holder }
}

/// Polls `fut` once (so a write sends its job to the thread) without waiting for it.
pub(crate) async fn poll_once<F: Future + Unpin>(fut: &mut F) {
    std::future::poll_fn(|cx| {
        let _ = std::pin::Pin::new(&mut *fut).poll(cx);
        Poll::Ready(())
    })
    .await;
}

/// The events `test.event` committed, by global position.
pub(crate) async fn test_events(store: &Store) -> Vec<i64> {
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

/// Three writes of one group (held back `through` a read or write until all three are
/// queued), each appending an event to run `r1`; the middle one fails as `fail` makes it
/// (after its append), declaring its run when `through` is [`Through::KeyedWrite`].
/// Asserts that the three shared one transaction (the holder, when a
/// write, commits once of its own); returns their results.
pub(crate) async fn group_of_three(
    store: &Store,
    through: Through,
    fail: fn(&dyn Tx) -> Result<(), StateError>,
) -> [Result<(), StateError>; 3] {
    let held = hold(store, through).await;
    let write = |n: u32, failing: bool| {
        let store = store.clone();
        Box::pin(async move {
            let f = move |tx: &dyn Tx| {
                crate::audit::append(
                    tx,
                    "r1",
                    2_000,
                    crate::audit::NewEvent::run("test.event", serde_json::json!({ "n": n })),
                )?;
                if failing {
                    return fail(tx);
                }
                Ok(())
            };
            if failing && matches!(through, Through::KeyedWrite) {
                store.write_keyed(crate::sql::Keys::run("r1", []), f).await
            } else {
                store.write(f).await
            }
        })
    };
    let (mut first, mut failing, mut last) = (write(1, false), write(2, true), write(3, false));
    poll_once(&mut first).await;
    poll_once(&mut failing).await;
    poll_once(&mut last).await;
    let commits = store.commit_count();
    held.release().await;
    let results = [first.await, failing.await, last.await];
    match through {
        Through::Read => assert_eq!(
            store.commit_count() - commits,
            1,
            "the three writes shared one transaction"
        ),
        Through::Write => assert_eq!(
            store.commit_count() - commits,
            2,
            "the holder's commit, then one for the three writes"
        ),
        // A declared write's failing statement aborts the group's transaction.
        Through::KeyedWrite => assert_eq!(
            store.commit_count() - commits,
            1,
            "the holder's commit; the group's never happens"
        ),
    }
    results
}
