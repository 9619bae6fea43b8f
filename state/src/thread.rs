//! The one thread that owns the SQLite connection.
//!
//! Requests are closures sent over a channel; each reply comes back over a oneshot. The
//! async caller awaits the reply, so no SQLite call ever runs on a tokio worker thread.
//!
//! Writes are committed in groups: when several write requests are queued (many runs
//! driven at once), the thread runs them in one transaction, each inside its own savepoint
//! (so one request's failure undoes only its own changes), commits once, and only then
//! answers each of them. Every caller is still answered only after its changes are
//! durable, but many commits share one fsync.
//!
//! A write that refuses only before its first change (a step transition: the lease and the
//! step's state are checked first) may skip its savepoint ([`Guard::None`]): its failure
//! leaves nothing to undo. Should it fail after changing something all the same (a database
//! error half-way), the group's transaction is rolled back and every write in it is told
//! that the group did not commit, which is true; nothing of any of them is kept.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::StateError;
use crate::error::BackendError;
use crate::sql::Tx;
use crate::sql::sqlite::SqliteTx;
use crate::sql::sqlite::without_sql;

/// At most this many writes share one commit.
pub(crate) const MAX_GROUP: usize = 256;

/// A write's result, held until the group it belongs to is committed.
pub(crate) trait Pending: Send {
    /// Whether the write itself failed (its savepoint is then rolled back).
    fn failed(&self) -> bool;
    /// Answers the caller once the commit is known (`Err`: the group did not commit).
    fn finish(self: Box<Self>, commit: Result<(), &BackendError>);
}

pub(crate) struct Reply<T> {
    pub(crate) tx: oneshot::Sender<Result<T, StateError>>,
    pub(crate) result: Result<T, StateError>,
}

impl<T: Send> Pending for Reply<T> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn finish(self: Box<Self>, commit: Result<(), &BackendError>) {
        let answer = match commit {
            Ok(()) => self.result,
            Err(source) => Err(StateError::Commit { source: source.clone() }),
        };
        let _ = self.tx.send(answer);
    }
}

type WriteFn = Box<dyn FnOnce(Option<&SqliteTx<'_>>) -> Box<dyn Pending> + Send>;

/// How a write sharing a transaction with others is isolated from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    /// In a savepoint of its own: its failure undoes its changes and only those.
    Savepoint,
    /// No savepoint: the write refuses before its first change (else it is not wrong, only
    /// costly: a failure after a change rolls the whole group back; the database's change
    /// count tells the two apart).
    None,
}

enum Job {
    Read(Box<dyn FnOnce(&mut Connection) + Send>),
    Write(WriteFn, Guard),
    /// Close the connection (checkpointing the WAL) and end the thread; the sender hears
    /// back once the connection is closed.
    Close(oneshot::Sender<()>),
}

/// A handle to the connection thread. Cloning shares the thread; the thread ends when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct ConnThread {
    tx: mpsc::Sender<Job>,
    commits: Arc<AtomicU64>,
    #[cfg(feature = "test-hooks")]
    faults: Arc<std::sync::Mutex<crate::fault::FaultPlan>>,
}

impl ConnThread {
    pub(crate) fn spawn(mut conn: Connection) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        // The connection thread is not a tokio thread: it blocks on the channel and on
        // SQLite (including fsync), which is exactly what must stay off the runtime.
        std::thread::Builder::new()
            .name("fogbook-sqlite".to_owned())
            .spawn(move || {
                let mut queue: VecDeque<Job> = VecDeque::new();
                loop {
                    let job = match queue.pop_front() {
                        Some(job) => job,
                        None => match next_job(&rx) {
                            Ok(job) => job,
                            Err(_) => return,
                        },
                    };
                    match job {
                        Job::Read(f) => f(&mut conn),
                        Job::Write(first, guard) => {
                            let mut group = vec![(first, guard)];
                            while group.len() < MAX_GROUP {
                                match rx.try_recv() {
                                    Ok(Job::Write(w, guard)) => group.push((w, guard)),
                                    Ok(other) => {
                                        queue.push_back(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            commit_group(&mut conn, group, &counter);
                        }
                        Job::Close(done) => {
                            drop(conn);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the SQLite thread: {e}"));
        Self {
            tx,
            commits,
            #[cfg(feature = "test-hooks")]
            faults: Arc::default(),
        }
    }

    /// Makes the write after the next `skip` ones fail with `fault` (once).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn inject(&self, skip: u64, fault: crate::StoreFault) {
        crate::fault::plan(&self.faults, skip, fault);
    }

    /// Closes the connection cleanly (the WAL is checkpointed and removed) and ends the
    /// thread. Later calls on any clone fail with [`StateError::StoreClosed`].
    pub(crate) async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Job::Close(done)).is_ok() {
            let _ = rx.await;
        }
    }

    /// How many write transactions were committed (each is one fsync of the WAL).
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` on the connection thread (outside any write transaction) and returns its
    /// result.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job::Read(Box::new(move |conn| {
            let _ = reply.send(f(&SqliteTx::new(conn)));
        }));
        self.tx.send(job).map_err(|_| StateError::StoreClosed)?;
        rx.await.map_err(|_| StateError::StoreClosed)?
    }

    /// Runs `f` inside a write transaction (shared with other queued writes, in a savepoint
    /// of its own) and returns its result once the transaction is committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        self.write_guarded(Guard::Savepoint, f).await
    }

    /// [`ConnThread::write`], isolated from the other writes of its group as `guard` says.
    pub(crate) async fn write_guarded<T, F>(&self, guard: Guard, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        #[cfg(feature = "test-hooks")]
        let fault = crate::fault::before_write(&self.faults)?;
        let (reply, rx) = oneshot::channel();
        let job = Job::Write(
            Box::new(move |tx| -> Box<dyn Pending> {
                let result = match tx {
                    Some(tx) => f(tx),
                    None => Err(StateError::commit_failed("could not begin a transaction")),
                };
                Box::new(Reply { tx: reply, result })
            }),
            guard,
        );
        self.tx.send(job).map_err(|_| StateError::StoreClosed)?;
        let result = rx.await.map_err(|_| StateError::StoreClosed)?;
        #[cfg(feature = "test-hooks")]
        crate::fault::after_write(fault, &result)?;
        result
    }
}

/// How long the thread polls for the next job before it sleeps on the channel.
const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// The next job. A driver sends its next write a few tens of microseconds after the answer
/// to its last one; waking a sleeping thread costs about as much again, so the thread keeps
/// polling (yielding its core) for a short while before it sleeps.
fn next_job(rx: &mpsc::Receiver<Job>) -> Result<Job, mpsc::RecvError> {
    let start = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(job) => return Ok(job),
            Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
            Err(mpsc::TryRecvError::Empty) if start.elapsed() < SPIN => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Empty) => return rx.recv(),
        }
    }
}

/// Commits `group` in one transaction and answers each write after the commit. A commit is
/// counted in `commits` before any writer is answered, so a caller that reads the count
/// after its answer sees its own commit.
///
/// The audit chain's head is kept in memory for the transaction (each write's appends move
/// it; a write rolled back to its savepoint restores it) and its row is written once,
/// before the commit: `BEGIN IMMEDIATE` keeps every other writer out until then.
fn commit_group(conn: &mut Connection, mut group: Vec<(WriteFn, Guard)>, commits: &AtomicU64) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let source = failure("beginning a transaction", e);
            for (w, _) in group {
                w(None).finish(Err(&source));
            }
            return;
        }
    };
    let chain = RefCell::new(None);
    let stx = SqliteTx::with_chain(&tx, &chain);
    let mut pending = Vec::with_capacity(group.len());
    if group.len() == 1
        && let Some((w, _)) = group.pop()
    {
        // Alone in its transaction: a failed write rolls the whole transaction back, no
        // savepoint needed.
        let p = w(Some(&stx));
        if p.failed() {
            if let Err(e) = tx.rollback() {
                tracing::error!(error = %e, "could not roll back a failed write");
            }
            p.finish(Ok(()));
            return;
        }
        pending.push(p);
    }
    let mut group = group.into_iter();
    while let Some((w, guard)) = group.next() {
        if guard == Guard::None {
            let (before, changes) = (chain.borrow().clone(), tx.total_changes());
            let p = w(Some(&stx));
            if p.failed() {
                *chain.borrow_mut() = before;
                if tx.total_changes() != changes {
                    // It changed something before it failed, and has no savepoint to undo
                    // that alone: nothing of the group is kept (dropping `tx` rolls back).
                    let source: BackendError = Arc::new(StateError::commit_failed(
                        "another write of its group failed half-way; the group was rolled back",
                    ));
                    p.finish(Ok(()));
                    for other in pending {
                        other.finish(Err(&source));
                    }
                    for (w, _) in group {
                        w(None).finish(Err(&source));
                    }
                    return;
                }
            }
            pending.push(p);
            continue;
        }
        if let Err(e) = tx.prepare_cached("SAVEPOINT write").and_then(|mut s| s.execute([])) {
            let p = w(None);
            p.finish(Err(&failure("opening a savepoint", e)));
            continue;
        }
        let before = chain.borrow().clone();
        let p = w(Some(&stx));
        let closed = if p.failed() {
            *chain.borrow_mut() = before;
            tx.execute_batch("ROLLBACK TO write; RELEASE write")
        } else {
            tx.prepare_cached("RELEASE write")
                .and_then(|mut s| s.execute([]).map(|_| ()))
        };
        if let Err(e) = closed {
            tracing::error!(error = %e, "could not close a savepoint");
        }
        pending.push(p);
    }
    let head = chain.borrow_mut().take();
    let written = match head {
        Some(head) => crate::audit::write_chain_head(&stx, &head),
        None => Ok(()),
    };
    let committed = match written {
        Ok(()) => tx.commit().map_err(|e| failure("committing", e)),
        // Dropping the transaction rolls it back.
        Err(e) => Err(Arc::new(e) as BackendError),
    };
    match committed {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for p in pending {
                p.finish(Ok(()));
            }
        }
        Err(source) => {
            for p in pending {
                p.finish(Err(&source));
            }
        }
    }
}

/// A failure of the group's transaction, shared by every write in the group.
fn failure(operation: &'static str, e: rusqlite::Error) -> BackendError {
    Arc::new(StateError::Database {
        operation,
        source: Arc::new(without_sql(e)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use crate::audit::{self, NewEvent};
    use crate::store::hold::{Through, group_of_three, hold, poll_once, test_events};
    use crate::{NewRun, StateError, Store};

    fn new_run(id: &str) -> NewRun {
        NewRun {
            id: id.to_owned(),
            runbook_name: "rb".to_owned(),
            runbook_version: 1,
            runbook_text: "runbook: rb".to_owned(),
            runbook_sha256: "abc".to_owned(),
            source_path: None,
            params: json!({}),
            steps: vec!["a".to_owned()],
            locks: Vec::new(),
            auto_approve: false,
            lease: None,
            created_by: json!("test"),
            window: None,
            schedule: None,
            now: 1_000,
        }
    }

    /// Three writes queued behind a read, so that they are one group (one transaction); the
    /// second has no savepoint and fails, after appending an event when `change` is set.
    /// Returns the three results and the commits the group made.
    async fn group_with_an_unguarded_failure(store: &Store, change: bool) -> (Vec<Result<(), StateError>>, u64) {
        let held = hold(store, Through::Read).await;
        let before = store.commit_count();
        let event = |n: u32| NewEvent::run("test.event", json!({ "n": n }));
        let guarded = |n: u32| {
            let store = store.clone();
            Box::pin(async move { store.write(move |tx| audit::append(tx, "r1", 2_000, event(n))).await })
        };
        let mut first = guarded(1);
        let mut failing = Box::pin({
            let store = store.clone();
            async move {
                store
                    .write_refusing_first(None, move |tx| {
                        if change {
                            audit::append(tx, "r1", 2_000, event(2))?;
                        }
                        Err::<(), _>(StateError::commit_failed("this write is made to fail"))
                    })
                    .await
            }
        });
        let mut last = guarded(3);
        poll_once(&mut first).await;
        poll_once(&mut failing).await;
        poll_once(&mut last).await;
        held.release().await;
        let results = vec![first.await, failing.await, last.await];
        (results, store.commit_count() - before)
    }

    /// A write without a savepoint that refuses before changing anything fails alone: the
    /// other writes of its group commit, in one transaction, and the chain verifies.
    #[tokio::test]
    async fn a_write_without_a_savepoint_refused_before_its_first_change_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        store.create_run(new_run("r1")).await.unwrap();
        let (results, commits) = group_with_an_unguarded_failure(&store, false).await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(results[1].is_err(), "{results:?}");
        assert_eq!(commits, 1, "the writes shared one transaction");
        assert_eq!(test_events(&store).await.len(), 2);
        let report = store.verify_audit(None).await.unwrap();
        assert!(report.failure.is_none(), "{report:?}");
    }

    /// A write without a savepoint that fails after a change cannot be undone alone: the whole
    /// group is rolled back, every writer hears so, and nothing of any of them is kept.
    #[tokio::test]
    async fn a_write_without_a_savepoint_failing_after_a_change_rolls_its_group_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        store.create_run(new_run("r1")).await.unwrap();
        let (results, commits) = group_with_an_unguarded_failure(&store, true).await;
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert!(
            matches!(results[0], Err(StateError::Commit { .. })),
            "the others are told their group did not commit: {results:?}"
        );
        assert_eq!(commits, 0);
        assert!(test_events(&store).await.is_empty(), "nothing of the group is kept");
        let report = store.verify_audit(None).await.unwrap();
        assert!(report.failure.is_none(), "{report:?}");
        // The chain head kept in memory was not advanced by the rolled-back group.
        store
            .write(|tx| audit::append(tx, "r1", 3_000, NewEvent::run("test.event", json!({}))))
            .await
            .unwrap();
        let report = store.verify_audit(None).await.unwrap();
        assert!(report.failure.is_none(), "{report:?}");
    }

    /// A write rolled back to its savepoint after appending to the audit trail also takes
    /// its events out of the chain head the group keeps in memory: the next write of the
    /// same transaction links to the event before it, and the chain verifies.
    #[tokio::test]
    async fn a_write_rolled_back_in_a_group_leaves_the_chain_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        store.create_run(new_run("r1")).await.unwrap();
        // A read holds the thread until the three writes are queued behind it, so they
        // are one group: one transaction, one savepoint each.
        let [first, failing, last] = group_of_three(&store, Through::Read, |_| {
            Err(StateError::commit_failed("this write is made to fail"))
        })
        .await;
        first.unwrap();
        assert!(failing.is_err(), "the second write fails");
        last.unwrap();
        let report = store.verify_audit(None).await.unwrap();
        assert!(report.failure.is_none(), "{report:?}");
        let events = test_events(&store).await;
        assert_eq!(events.len(), 2, "the failed write's event is gone: {events:?}");
        assert_eq!(events[1], events[0] + 1, "the last write's event follows the first's");
    }
}
