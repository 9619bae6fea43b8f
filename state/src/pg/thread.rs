//! The PostgreSQL store's threads: one writer, and a small pool of readers (as many as
//! [`Limits::readers`], 4 by default), each with a connection of its own (a [`Session`]:
//! the async client driven on the thread, never on a tokio worker of the caller's).
//!
//! The writer commits in groups as the SQLite thread does: the writes queued when it takes
//! one run in one transaction, each in a savepoint of its own, and every caller is answered
//! only after the commit. Every write transaction first takes one transaction-scoped
//! advisory lock ([`WRITE_LOCK`]): that is the store's single-writer rule across processes
//! and hosts, so a check and the change that depends on it (a lease, a resource lock, the
//! audit chain's head) never interleave with another host's. Group commit is the batching
//! of writes, so one connection carries them all.
//!
//! Reads are taken by whichever reader thread is free (they share one queue), each in one
//! `REPEATABLE READ READ ONLY` transaction, so a read that takes several statements sees
//! one snapshot, and many runs' reads do not queue behind one connection. A reader
//! connects on its first read.
//!
//! A lost connection (broken, or silent past the deadline) fails the writes (or the read)
//! in flight with [`PgError::ConnectionLost`], naming the database, or, when it broke once
//! the group's COMMIT had left, with [`PgError::CommitUnanswered`] (the server may have
//! committed it); the thread connects again for its next job.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use tokio_postgres::SimpleQueryMessage;

use super::prefetch::Prefetched;
use super::session::{Limits, Session, SessionError};
use super::tx::{DB_NOW_MS, PgConn, PgTx};
use super::{PgError, PgUrl};
use crate::StateError;
use crate::error::BackendError;
use crate::sql::{ChainHead, Keys, Tx};
use crate::thread::{MAX_GROUP, Reply};

/// How long to wait between attempts to connect to a server that refuses connections.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// The key of the advisory lock every write transaction takes ("fogbookw" in ASCII).
pub(crate) const WRITE_LOCK: i64 = 0x666f_6762_6f6f_6b77;

type WriteFn = Box<dyn FnOnce(Option<&dyn Tx>) -> Box<dyn Held> + Send>;

/// A write with the rows it said it will check ([`Keys`]), read ahead with its group's
/// start ([`Prefetched`]).
struct Job {
    keys: Option<Keys>,
    write: WriteFn,
}

/// A write's result, held until its statements have all been answered and the group it
/// belongs to is committed.
trait Held: Send {
    /// Whether the write itself failed (its savepoint is then rolled back).
    fn failed(&self) -> bool;
    /// The write failed after its closure returned: a statement it queued failed.
    fn fail(&mut self, error: StateError);
    /// Answers the caller once the commit is known (`Err`: the group did not commit).
    fn finish(self: Box<Self>, commit: Result<(), &BackendError>);
}

impl<T: Send> Held for Reply<T> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn fail(&mut self, error: StateError) {
        self.result = Err(error);
    }

    fn finish(self: Box<Self>, commit: Result<(), &BackendError>) {
        crate::thread::Pending::finish(self, commit);
    }
}
type ReadFn = Box<dyn FnOnce(Result<&dyn Tx, StateError>, &dyn Fn() -> Option<StateError>) + Send>;

/// A handle to the writer and reader threads. Cloning shares them; they end when the last
/// handle is dropped (or [`PgThread::close`] is called).
#[derive(Clone, Debug)]
pub(crate) struct PgThread {
    writes: mpsc::Sender<Option<Job>>,
    reads: mpsc::Sender<Option<ReadFn>>,
    /// The database (a worker's listening connection opens one more).
    url: PgUrl,
    readers: usize,
    commits: Arc<AtomicU64>,
    /// Round trips to the server on every connection of these threads.
    round_trips: Arc<AtomicU64>,
    /// Leases follow the caller's clock instead of the server's (a test hook sets it).
    caller_clock: Arc<AtomicBool>,
    #[cfg(feature = "test-hooks")]
    faults: Arc<std::sync::Mutex<crate::fault::FaultPlan>>,
}

/// A connection that is opened again when it was lost.
struct Link {
    url: PgUrl,
    role: String,
    limits: Limits,
    conn: Option<RefCell<PgConn>>,
    caller_clock: Arc<AtomicBool>,
    round_trips: Arc<AtomicU64>,
}

impl Link {
    /// Connects (again) when there is no connection or it broke.
    fn ensure(&mut self) -> Result<(), StateError> {
        if self.conn.as_ref().is_some_and(|c| c.borrow().is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            // A server restarting or failing over refuses connections for a few seconds:
            // try again until the deadline, then report why.
            let give_up = Instant::now() + self.limits.deadline;
            let mut client = loop {
                match Session::open(&self.url, &self.role, self.limits) {
                    Ok(client) => break client,
                    Err(e) if e.is_transient() && Instant::now() < give_up => {
                        std::thread::sleep(RECONNECT_PAUSE);
                    }
                    Err(e) => return Err(StateError::Postgres(e)),
                }
            };
            client.count_round_trips(self.round_trips.clone());
            self.conn = Some(RefCell::new(
                PgConn::new(client).with_clock_flag(self.caller_clock.clone()),
            ));
        }
        Ok(())
    }

    /// Connects when needed and begins a transaction with `sql`. A connection found broken
    /// at the start (the server restarted since the last job) is opened again, once:
    /// nothing of the job was sent yet, so trying again cannot do anything twice. A silent
    /// connection is not tried again (its deadline has passed already).
    ///
    /// Returns the rows `sql` answered and when it was sent.
    fn begin(&mut self, sql: &str, operation: &'static str) -> Result<(Vec<SimpleQueryMessage>, Instant), StateError> {
        let mut retried = false;
        loop {
            self.ensure()?;
            let Some(conn) = self.conn.as_ref() else {
                return Err(StateError::StoreClosed);
            };
            let sent = Instant::now();
            let begun = conn.borrow_mut().client().simple_query(sql);
            let e = match begun {
                Ok(answer) => return Ok((answer, sent)),
                Err(e) => e,
            };
            match self.lost(&e) {
                Some(_) if !retried && matches!(e, SessionError::Db(_)) => {
                    tracing::info!(error = %e, "the PostgreSQL connection was found broken; connecting again");
                    self.conn = None;
                    retried = true;
                }
                Some(lost) => return Err(lost),
                None => return Err(database(operation, e)),
            }
        }
    }

    /// The error to report when the connection broke under a job; `None` when it is up.
    fn lost(&self, reason: &dyn std::fmt::Display) -> Option<StateError> {
        let conn = self.conn.as_ref()?;
        conn.borrow().is_closed().then(|| {
            StateError::Postgres(PgError::ConnectionLost {
                target: self.url.to_string(),
                reason: reason.to_string(),
            })
        })
    }
}

impl PgThread {
    /// Starts the writer thread and the reader threads; each connects on its first job.
    pub(crate) fn spawn(url: &PgUrl, limits: Limits) -> Result<Self, StateError> {
        let (writes, write_rx) = mpsc::channel::<Option<Job>>();
        let (reads, read_rx) = mpsc::channel::<Option<ReadFn>>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        let caller_clock = Arc::new(AtomicBool::new(false));
        let round_trips = Arc::new(AtomicU64::new(0));
        let mut link = Link {
            url: url.clone(),
            role: "writer".to_owned(),
            limits,
            conn: None,
            caller_clock: caller_clock.clone(),
            round_trips: round_trips.clone(),
        };
        let spawn_err = |e: std::io::Error| StateError::OpenDatabase {
            path: url.to_string().into(),
            source: Box::new(e),
        };
        std::thread::Builder::new()
            .name("fogbook-pg-writer".to_owned())
            .spawn(move || {
                while let Ok(Some(first)) = write_rx.recv() {
                    let mut group = vec![first];
                    let mut closing = false;
                    while group.len() < MAX_GROUP {
                        match write_rx.try_recv() {
                            Ok(Some(w)) => group.push(w),
                            Ok(None) => {
                                closing = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    commit_group(&mut link, group, &counter);
                    if closing {
                        return;
                    }
                }
            })
            .map_err(spawn_err)?;
        // The readers share one queue: a read goes to whichever reader is free.
        let read_rx = Arc::new(Mutex::new(read_rx));
        for n in 1..=limits.readers {
            let mut reader = Link {
                url: url.clone(),
                role: format!("reader {n}"),
                limits,
                conn: None,
                caller_clock: caller_clock.clone(),
                round_trips: round_trips.clone(),
            };
            let queue = read_rx.clone();
            std::thread::Builder::new()
                .name(format!("fogbook-pg-reader-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = match queue.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match next {
                            Ok(Some(job)) => run_read(&mut reader, job),
                            Ok(None) | Err(_) => return,
                        }
                    }
                })
                .map_err(spawn_err)?;
        }
        Ok(Self {
            writes,
            reads,
            url: url.clone(),
            readers: limits.readers,
            commits,
            round_trips,
            caller_clock,
            #[cfg(feature = "test-hooks")]
            faults: Arc::default(),
        })
    }

    /// Makes the write after the next `skip` ones fail with `fault` (once).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn inject(&self, skip: u64, fault: crate::StoreFault) {
        crate::fault::plan(&self.faults, skip, fault);
    }

    /// Makes leases follow the callers' clocks instead of the server's (tests that step a
    /// clock of their own through lease expiries).
    pub(crate) fn use_caller_clock(&self) {
        self.caller_clock.store(true, Ordering::Relaxed);
    }

    /// The database these threads connect to.
    pub(crate) fn url(&self) -> &PgUrl {
        &self.url
    }

    /// Ends the threads once the jobs already queued are done.
    pub(crate) fn close(&self) {
        let _ = self.writes.send(None);
        for _ in 0..self.readers {
            let _ = self.reads.send(None);
        }
    }

    /// How many write transactions were committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// How many round trips to the server the writer and the readers made (each request
    /// whose answer was waited for; a pipeline of statements counts once).
    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Runs `f` in a read-only transaction on the reader's connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: ReadFn = Box::new(move |tx, lost| {
            let result = tx.and_then(f).map_err(|e| lost().unwrap_or(e));
            let _ = reply.send(result);
        });
        self.reads.send(Some(job)).map_err(|_| StateError::StoreClosed)?;
        rx.await.map_err(|_| StateError::StoreClosed)?
    }

    /// Runs `f` inside a write transaction (shared with other queued writes, in a savepoint
    /// of its own) and returns its result once the transaction is committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        self.write_keyed(None, f).await
    }

    /// As [`PgThread::write`], for a write that declares the rows it checks (`keys`): they
    /// are read with its group's start, and its end goes out with the next statement that
    /// needs an answer (a failure of its statements then fails its whole group).
    pub(crate) async fn write_keyed<T, F>(&self, keys: Option<Keys>, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<T, StateError> + Send + 'static,
    {
        #[cfg(feature = "test-hooks")]
        let fault = crate::fault::before_write(&self.faults)?;
        let (reply, rx) = oneshot::channel();
        let job: WriteFn = Box::new(move |tx| -> Box<dyn Held> {
            let result = match tx {
                Some(tx) => f(tx),
                None => Err(StateError::commit_failed("could not begin a transaction")),
            };
            Box::new(Reply { tx: reply, result })
        });
        self.writes
            .send(Some(Job { keys, write: job }))
            .map_err(|_| StateError::StoreClosed)?;
        let result = rx.await.map_err(|_| StateError::StoreClosed)?;
        #[cfg(feature = "test-hooks")]
        crate::fault::after_write(fault, &result)?;
        result
    }
}

fn run_read(link: &mut Link, job: ReadFn) {
    if let Err(e) = link.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "beginning a read") {
        job(Err(e), &|| None);
        return;
    }
    let link = &*link;
    let Some(conn) = link.conn.as_ref() else {
        job(Err(StateError::StoreClosed), &|| None);
        return;
    };
    job(Ok(&PgTx::new(conn)), &|| {
        link.lost(&"the connection closed during a read")
    });
    // A read changes nothing: ending it cannot lose anything, and a broken connection is
    // opened again by the next read.
    let _ = conn.borrow_mut().client().batch_execute("ROLLBACK");
}

/// Begins a write transaction in one round trip: the server's clock (read before the lock,
/// so the lease clock built on it is never behind the server's, see [`PgConn::set_clock`]),
/// the write lock, and the audit chain's head (read under the lock, so it stays valid until
/// the commit: no other writer can move it).
fn begin_write() -> String {
    format!(
        "BEGIN; {DB_NOW_MS}; SELECT pg_advisory_xact_lock({WRITE_LOCK}); SELECT head, count FROM chain WHERE id = 1"
    )
}

/// The clock and the chain head [`begin_write`] answered (the rows read ahead follow them).
fn read_begin(answer: &[SimpleQueryMessage]) -> Option<(crate::Millis, ChainHead)> {
    let rows: Vec<_> = answer
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    let clock = rows.first()?.get(0)?.parse().ok()?;
    let chain = rows.get(2)?;
    let head = ChainHead {
        hash: chain.get(0)?.to_owned(),
        count: chain.get(1)?.parse().ok()?,
    };
    Some((clock, head))
}

/// Runs a group of writes in one transaction (after the advisory lock) and answers each
/// after the commit.
///
/// Round trips: one for BEGIN (with the clock, the lock, the chain head and the rows the
/// writes declared, [`Prefetched`]); then per write only its statements that need an
/// answer (the savepoint and the statements it queued go out with them,
/// [`Tx::execute_later`]); and one for the commit (with every queued statement and the
/// chain row, written once). A write that declared its rows ([`Keys`]) and checked them
/// from what was read ahead needs no round trip of its own: its end is queued too. A
/// write that declared none ends with a round trip (`RELEASE SAVEPOINT`), so a statement
/// of it that fails is rolled back to its savepoint and fails alone; a queued statement of
/// a write that declared its rows fails the whole group.
fn commit_group(link: &mut Link, mut group: Vec<Job>, commits: &AtomicU64) {
    let ahead_sql = Prefetched::sql(group.iter().filter_map(|j| j.keys.as_ref()));
    let begun = link
        .begin(&format!("{}{ahead_sql}", begin_write()), "beginning a transaction")
        .and_then(|(answer, sent)| {
            read_begin(&answer)
                .map(|(clock, head)| (clock, head, Prefetched::read(&answer), sent))
                .ok_or_else(|| {
                    StateError::commit_failed("the transaction's start did not answer the clock and the chain head")
                })
        });
    let (clock, head, ahead, sent) = match begun {
        Ok(begun) => begun,
        Err(e) => {
            let source: BackendError = Arc::new(e);
            for j in group {
                (j.write)(None).finish(Err(&source));
            }
            return;
        }
    };
    let link = &*link;
    let Some(conn) = link.conn.as_ref() else {
        return;
    };
    conn.borrow_mut().clear();
    conn.borrow_mut().set_clock(Some((clock, sent)));
    let chain = RefCell::new(Some(head.clone()));
    let ahead = RefCell::new(ahead);
    let tx = PgTx::writing(conn, &chain, &ahead);
    let control = |sql: &str| conn.borrow_mut().client().batch_execute(sql);
    let mut pending = Vec::with_capacity(group.len());
    if group.len() == 1
        && let Some(j) = group.pop()
    {
        // Alone in its transaction: a failed write rolls the whole transaction back.
        conn.borrow_mut().start_write();
        ahead.borrow_mut().serve(j.keys.as_ref());
        let p = (j.write)(Some(&tx));
        if p.failed() {
            conn.borrow_mut().clear();
            let rolled_back = control("ROLLBACK");
            conn.borrow_mut().set_clock(None);
            match link.lost(&"the connection closed during the write") {
                Some(lost) => p.finish(Err(&(Arc::new(lost) as BackendError))),
                None => {
                    if let Err(e) = rolled_back {
                        tracing::error!(error = %e, "could not roll back a failed write");
                    }
                    p.finish(Ok(()));
                }
            }
            return;
        }
        pending.push(p);
    } else {
        for j in group {
            // Bound first: `failure` borrows the connection again (is it lost?).
            let queued = conn.borrow_mut().queue_savepoint("SAVEPOINT write");
            if let Err(e) = queued {
                let source = failure(link, "opening a savepoint", e);
                (j.write)(None).finish(Err(&source));
                continue;
            }
            let before = chain.borrow().clone();
            ahead.borrow_mut().serve(j.keys.as_ref());
            let mut p = (j.write)(Some(&tx));
            ahead.borrow_mut().forget(j.keys.as_ref());
            let poisoned = conn.borrow().poisoned();
            if let Some(source) = poisoned {
                // A statement an earlier write queued failed: the transaction is aborted.
                pending.push(p);
                fail_group(conn, pending, &source);
                return;
            }
            let ended = if p.failed() {
                Err(None)
            } else {
                let end = if j.keys.is_some() {
                    conn.borrow_mut().defer("RELEASE SAVEPOINT write")
                } else {
                    conn.borrow_mut().flush_with("RELEASE SAVEPOINT write")
                };
                end.map_err(|e| {
                    Some(StateError::Database {
                        operation: "finishing a write",
                        source: Arc::new(e),
                    })
                })
            };
            let poisoned = conn.borrow().poisoned();
            if let Some(source) = poisoned {
                pending.push(p);
                fail_group(conn, pending, &source);
                return;
            }
            if let Err(error) = ended {
                *chain.borrow_mut() = before;
                // Nothing of the write reached the server: nothing to roll back.
                if conn.borrow_mut().discard()
                    && let Err(e) = control("ROLLBACK TO SAVEPOINT write; RELEASE SAVEPOINT write")
                {
                    tracing::error!(error = %e, "could not roll back a failed write to its savepoint");
                }
                if let Some(error) = error {
                    p.fail(link.lost(&error).unwrap_or(error));
                }
            }
            pending.push(p);
        }
    }
    // The chain row once, with the commit.
    let moved = chain.borrow_mut().take().filter(|h| *h != head);
    let written = match moved {
        Some(moved) => crate::audit::write_chain_head(&tx, &moved).map_err(|e| Arc::new(e) as BackendError),
        None => Ok(()),
    };
    let committed = written.and_then(|()| {
        // Bound first: `failure` borrows the connection again (is it lost?); a borrow held
        // across it panicked the writer when the connection broke during the COMMIT.
        let prepared = conn.borrow_mut().prepare("COMMIT");
        prepared.map_err(|e| failure(link, "committing", e))?;
        // A connection already lost sends nothing, so nothing was committed; one lost once
        // the COMMIT left may have committed it: say so, not "nothing saved".
        let open = !conn.borrow().is_closed();
        let flushed = conn.borrow_mut().flush_with("COMMIT");
        flushed.map_err(|e| match link.lost(&e) {
            Some(_) if open => Arc::new(StateError::Postgres(PgError::CommitUnanswered {
                target: link.url.to_string(),
                reason: e.to_string(),
            })) as BackendError,
            Some(lost) => Arc::new(lost) as BackendError,
            None => Arc::new(database("committing", e)) as BackendError,
        })
    });
    conn.borrow_mut().set_clock(None);
    match committed {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for p in pending {
                p.finish(Ok(()));
            }
        }
        Err(source) => {
            // The transaction may still be open (a statement queued before the commit
            // failed, and the commit then rolled back, or not sent): end it.
            conn.borrow_mut().clear();
            let _ = control("ROLLBACK");
            for p in pending {
                p.finish(Err(&source));
            }
        }
    }
}

/// Ends a group whose transaction was aborted by a statement an earlier write queued:
/// rolls it back and fails every write of it with `source`.
fn fail_group(conn: &RefCell<PgConn>, pending: Vec<Box<dyn Held>>, source: &BackendError) {
    conn.borrow_mut().clear();
    conn.borrow_mut().set_clock(None);
    let rolled_back = conn.borrow_mut().client().batch_execute("ROLLBACK");
    if let Err(e) = rolled_back {
        tracing::error!(error = %e, "could not roll back a group of writes");
    }
    for p in pending {
        p.finish(Err(source));
    }
}

/// A failure of the group's transaction, shared by every write in the group: a lost
/// connection names the database.
fn failure(link: &Link, operation: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
    Arc::new(link.lost(&e).unwrap_or_else(|| database(operation, e)))
}

fn database(operation: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> StateError {
    StateError::Database {
        operation,
        source: Arc::new(e),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::Condvar;

    use super::*;
    use crate::error::SqlContext;
    use crate::pg::StoreUrl;

    /// The server's URL, its store schema made (a write transaction reads the chain head).
    fn url(server: &fogbook_testpg::TestPostgres) -> PgUrl {
        let StoreUrl::Postgres(url) = StoreUrl::from_str(&server.url()).unwrap() else {
            panic!("not a PostgreSQL URL");
        };
        crate::pg::migrate(&mut crate::pg::connect(&url).unwrap()).unwrap();
        url
    }

    /// Reads run on several connections at once: four reads, each waiting (on a condition,
    /// up to 30 s) until all four are under way together, all see the others, on four
    /// server sessions (one reader connection would run them one after another, and the
    /// first would wait in vain); the server lists the writer and the readers by name,
    /// host and pid.
    #[test]
    fn four_reads_run_at_once_on_four_named_connections() {
        let server = fogbook_testpg::TestPostgres::start();
        let limits = Limits {
            readers: 4,
            deadline: Duration::from_secs(30),
        };
        let thread = PgThread::spawn(&url(&server), limits).unwrap();
        let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
        let read = || {
            let gate = gate.clone();
            thread.read(move |tx| {
                let pid: i64 = tx
                    .query_row("SELECT pg_backend_pid()::BIGINT", &[], |r| r.get(0))
                    .during("reading the backend pid")?;
                let (count, arrived) = &*gate;
                let mut n = count.lock().unwrap();
                *n += 1;
                arrived.notify_all();
                let (n, _) = arrived
                    .wait_timeout_while(n, Duration::from_secs(30), |n| *n < 4)
                    .unwrap();
                Ok((pid, *n >= 4))
            })
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (a, b, c, d) = runtime.block_on(async { tokio::join!(read(), read(), read(), read()) });
        let results = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
        assert!(
            results.iter().all(|(_, together)| *together),
            "the four reads were under way at once: {results:?}"
        );
        let mut pids: Vec<i64> = results.iter().map(|(pid, _)| *pid).collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 4, "four server sessions: {results:?}");
        runtime
            .block_on(thread.write(|tx| tx.execute("SELECT 1", &[]).during("a write")))
            .unwrap();

        let mut outside = crate::pg::connect(&url(&server)).unwrap();
        let names: Vec<String> = outside
            .query(
                "SELECT application_name FROM pg_stat_activity
                 WHERE application_name LIKE 'fogbook %' AND pid <> pg_backend_pid() ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let me = format!("pid {}", std::process::id());
        let roles: Vec<&str> = names
            .iter()
            .map(|n| {
                assert!(n.ends_with(&me), "{n} names this process");
                n.split(' ').nth(1).unwrap()
            })
            .collect();
        assert_eq!(roles.iter().filter(|r| **r == "reader").count(), 4, "{names:?}");
        assert_eq!(roles.iter().filter(|r| **r == "writer").count(), 1, "{names:?}");
        thread.close();
    }

    /// A database that goes silent (a proxy that takes every byte and answers nothing, no
    /// reset) fails the write in flight within the deadline as a lost connection, naming
    /// the database and what happened, instead of holding the process forever; once the
    /// network is back, the next write connects again and commits.
    #[test]
    fn a_silent_database_fails_the_write_within_the_deadline_then_reconnects() {
        let server = fogbook_testpg::TestPostgres::start();
        url(&server);
        let proxy = fogbook_testpg::TestProxy::start(server.port());
        let through = proxy.url(&format!("{}&connect_timeout=1", server.url()));
        let StoreUrl::Postgres(through) = StoreUrl::from_str(&through).unwrap() else {
            panic!("not a PostgreSQL URL");
        };
        let limits = Limits {
            readers: 1,
            deadline: Duration::from_millis(500),
        };
        let thread = PgThread::spawn(&through, limits).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let write = || thread.write(|tx| tx.execute("SELECT 1", &[]).during("a write"));
        runtime.block_on(write()).unwrap();

        proxy.black_hole();
        // The bound is the test's, far above the deadline: without one, the write waits
        // until the network comes back.
        let silent = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(20), write()).await })
            .expect("the write gave up by itself");
        let err = silent.expect_err("nothing can commit while the database is silent");
        let text: Vec<String> = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect();
        let text = text.join(": ");
        assert!(
            text.contains("lost the connection to PostgreSQL at")
                && text.contains("no answer from the server within 500ms"),
            "{text}"
        );
        let read = runtime
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(20),
                    thread.read(|tx| tx.execute("SELECT 1", &[]).during("a read")),
                )
                .await
            })
            .expect("the read gave up by itself");
        assert!(read.is_err(), "no read either: {read:?}");

        proxy.heal();
        runtime.block_on(write()).expect("the next write connects again");
        thread.close();
    }
}
