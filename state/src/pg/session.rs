//! The store's own connections: a blocking face over the async client in which every
//! round trip has a deadline, and the settings that bound how long a silent database can
//! hold a process up.
//!
//! TCP keepalives and `tcp_user_timeout` notice a peer that vanished while the kernel
//! still has something to say to it; they notice nothing when the path to the database
//! accepts bytes and never answers (a stopped proxy or load balancer, a half-open NAT
//! entry). So every statement here also has a deadline of its own ([`Limits::deadline`]):
//! past it, the connection is dropped and the job in flight fails as a lost connection,
//! and the next job connects again (itself bounded by `connect_timeout`). On the server's
//! side, the session's `idle_in_transaction_session_timeout` (half the deadline) ends a
//! transaction whose client went silent, so the write lock it holds is freed for the
//! other hosts.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Notification, Row, SimpleQueryMessage, Socket, Statement};

use super::connect::{mentions, tls_connector};
use super::{PgError, PgUrl, TlsMode};

/// The environment variable setting how many read connections a process opens at most.
pub const READERS_VAR: &str = "FOGBOOK_PG_READERS";
/// The environment variable bounding every round trip to PostgreSQL (e.g. `10s`, `500ms`).
pub const TIMEOUT_VAR: &str = "FOGBOOK_PG_TIMEOUT";

const DEFAULT_READERS: usize = 4;
const MAX_READERS: usize = 64;
const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// How long a connection attempt may take, handshake included, when the URL sets no
/// `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive defaults (when the URL sets none): an idle connection whose peer is gone is
/// noticed within `idle + interval * retries` = 11 s.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVES_RETRIES: u32 = 3;

/// How many connections the store opens and how long it waits for any one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Read connections (threads), opened as reads need them: `FOGBOOK_PG_READERS`, 4 by
    /// default. Writes always share one connection per process (group commit).
    pub readers: usize,
    /// The longest a statement (or a commit) may go unanswered before the connection is
    /// given up as lost: `FOGBOOK_PG_TIMEOUT`, 10 s by default. Keep it well below the
    /// lease (30 s by default), so a driver cut off from the database notices in time.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            readers: DEFAULT_READERS,
            deadline: DEFAULT_DEADLINE,
        }
    }
}

impl Limits {
    /// The limits the environment sets ([`READERS_VAR`], [`TIMEOUT_VAR`]), defaults for the
    /// others.
    pub fn from_env() -> Result<Self, PgError> {
        let var = |name: &'static str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut limits = Self::default();
        if let Some(value) = var(READERS_VAR) {
            limits.readers = value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_READERS).contains(n))
                .ok_or_else(|| PgError::Setting {
                    name: READERS_VAR,
                    value: value.clone(),
                    expected: format!("a whole number of connections from 1 to {MAX_READERS}"),
                })?;
        }
        if let Some(value) = var(TIMEOUT_VAR) {
            limits.deadline = parse_duration(&value)
                .filter(|d| *d >= Duration::from_millis(100))
                .ok_or_else(|| PgError::Setting {
                    name: TIMEOUT_VAR,
                    value: value.clone(),
                    expected: "a duration of at least 100ms, such as 10s or 1500ms".to_owned(),
                })?;
        }
        Ok(limits)
    }
}

/// `10s`, `1500ms`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

/// The notifications a listening [`Session`] received, in order.
pub(crate) type Notifications = tokio::sync::mpsc::UnboundedReceiver<Notification>;

/// Why a statement on a [`Session`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SessionError {
    /// The server answered with an error, or the connection broke.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// No answer within the deadline: the connection was dropped.
    #[error(
        "no answer from the server within {}ms (FOGBOOK_PG_TIMEOUT): the network to it may be cut, or the \
         server stopped",
        after.as_millis()
    )]
    Stalled {
        /// The deadline that passed.
        after: Duration,
    },
    /// The connection was dropped after an earlier failure.
    #[error("the connection was closed after an earlier failure")]
    Closed,
}

/// One connection of the store: the async client driven on a runtime of its own (a
/// current-thread runtime, run only while a call waits), every call bounded by the
/// deadline.
pub(crate) struct Session {
    runtime: Runtime,
    client: Option<tokio_postgres::Client>,
    connection: Option<tokio::task::JoinHandle<()>>,
    deadline: Duration,
    /// Round trips: every request whose answer the session waited for (a pipeline of
    /// several statements counts once). Shared by the store's connections.
    round_trips: Arc<AtomicU64>,
}

impl Session {
    /// Connects (handshake and TLS included, within `connect_timeout`) as `role` (shown to
    /// operators in `application_name`), and sets the server-side timeouts.
    pub(crate) fn open(url: &PgUrl, role: &str, limits: Limits) -> Result<Self, PgError> {
        Self::open_with(url, role, limits, None)
    }

    /// As [`Session::open`], and the notifications the server sends on this session
    /// (`LISTEN`) go to the receiver, read by [`Session::next_notification`].
    pub(crate) fn open_listening(url: &PgUrl, role: &str, limits: Limits) -> Result<(Self, Notifications), PgError> {
        let (send, receive) = tokio::sync::mpsc::unbounded_channel();
        Ok((Self::open_with(url, role, limits, Some(send))?, receive))
    }

    fn open_with(
        url: &PgUrl,
        role: &str,
        limits: Limits,
        notify: Option<tokio::sync::mpsc::UnboundedSender<Notification>>,
    ) -> Result<Self, PgError> {
        let connect_error = |source| PgError::Connect {
            target: url.to_string(),
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| PgError::Runtime { source })?;
        let mut config = url.session_config().map_err(connect_error)?;
        apply_defaults(&mut config, &url.to_string(), role);
        let handshake = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
        let started = runtime.block_on(async {
            let connecting = async {
                match url.tls() {
                    TlsMode::Disable => start(&config, tokio_postgres::NoTls, notify).await,
                    TlsMode::Prefer | TlsMode::Require => start(&config, tls_connector(url.root_cert())?, notify).await,
                }
            };
            tokio::time::timeout(handshake, connecting).await
        });
        let (client, connection) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(Started::Tls(e))) => return Err(e),
            Ok(Err(Started::Db(source))) => {
                // The client reports this case only in the message of its error's cause.
                if url.tls() == TlsMode::Require && mentions(&source, "server does not support TLS") {
                    return Err(PgError::TlsRefused {
                        target: url.to_string(),
                    });
                }
                return Err(connect_error(source));
            }
            Err(_) => {
                return Err(PgError::ConnectStalled {
                    target: url.to_string(),
                    after: handshake,
                });
            }
        };
        let mut session = Self {
            runtime,
            client: Some(client),
            connection: Some(connection),
            deadline: limits.deadline,
            round_trips: Arc::default(),
        };
        // A transaction idle longer than this is ended by the server, so a host that went
        // silent while holding the write lock frees it (half the deadline: the other hosts'
        // writes wait for the lock within theirs).
        let idle = (limits.deadline / 2).as_millis();
        session
            .batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {idle}; SET statement_timeout = {}",
                limits.deadline.as_millis()
            ))
            .map_err(|e| match e {
                SessionError::Db(source) => connect_error(source),
                other => PgError::ConnectionLost {
                    target: url.to_string(),
                    reason: other.to_string(),
                },
            })?;
        Ok(session)
    }

    /// Counts this session's round trips (from now on) in `counter`.
    pub(crate) fn count_round_trips(&mut self, counter: Arc<AtomicU64>) {
        self.round_trips = counter;
    }

    /// Whether the connection is gone (it must be opened again).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(tokio_postgres::Client::is_closed)
    }

    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), SessionError> {
        let client = self.client.as_ref().ok_or(SessionError::Closed)?;
        let answer = self.runtime.block_on(within(self.deadline, client.batch_execute(sql)));
        self.settle(answer)
    }

    /// Runs `sql` (one or more statements, the simple protocol) in one round trip and
    /// returns what the server sent back: the rows of every statement, in order.
    pub(crate) fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, SessionError> {
        let client = self.client.as_ref().ok_or(SessionError::Closed)?;
        let answer = self.runtime.block_on(within(self.deadline, client.simple_query(sql)));
        self.settle(answer)
    }

    /// Sends every request at once (a pipeline: the client writes them all before it reads
    /// the first answer) and returns each one's answer, in order: one round trip. The
    /// server runs them one after the other; one that fails does not stop the next from
    /// being run (inside a transaction, the next ones then fail as the transaction is
    /// aborted, until a `ROLLBACK TO SAVEPOINT`).
    pub(crate) fn pipeline(
        &mut self,
        requests: &[Request<'_>],
    ) -> Result<Vec<Result<Answer, tokio_postgres::Error>>, SessionError> {
        let client = self.client.as_ref().ok_or(SessionError::Closed)?;
        let futures: Vec<Pending<'_>> = requests
            .iter()
            .map(|r| -> Pending<'_> {
                if r.rows {
                    Box::pin(async move { client.query(r.stmt, &r.params).await.map(Answer::Rows) })
                } else {
                    Box::pin(async move { client.execute(r.stmt, &r.params).await.map(Answer::Count) })
                }
            })
            .collect();
        let answer = self.runtime.block_on(within(self.deadline, all(futures)));
        self.settle(answer.map(Ok))
    }

    pub(crate) fn prepare(&mut self, sql: &str) -> Result<Statement, SessionError> {
        let client = self.client.as_ref().ok_or(SessionError::Closed)?;
        let answer = self.runtime.block_on(within(self.deadline, client.prepare(sql)));
        self.settle(answer)
    }

    /// The next notification received on a session opened by [`Session::open_listening`]
    /// (`notifications` is its receiver), or `None` when none came within `wait`. Fails
    /// once the connection has ended.
    pub(crate) fn next_notification(
        &mut self,
        notifications: &mut Notifications,
        wait: Duration,
    ) -> Result<Option<Notification>, SessionError> {
        if self.client.is_none() {
            return Err(SessionError::Closed);
        }
        // The connection's task runs (and reads what the server sent) while this waits.
        match self.runtime.block_on(within(wait, notifications.recv())) {
            Some(Some(notification)) => Ok(Some(notification)),
            Some(None) => {
                self.cut();
                Err(SessionError::Closed)
            }
            None if self.is_closed() => {
                self.cut();
                Err(SessionError::Closed)
            }
            None => Ok(None),
        }
    }

    /// The call's result; a stalled call drops the connection (its socket is closed, so
    /// the server ends the session when it hears of it, and the next job connects anew).
    fn settle<T>(&mut self, answer: Option<Result<T, tokio_postgres::Error>>) -> Result<T, SessionError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match answer {
            Some(result) => Ok(result?),
            None => {
                self.cut();
                Err(SessionError::Stalled { after: self.deadline })
            }
        }
    }

    fn cut(&mut self) {
        self.client = None;
        if let Some(connection) = self.connection.take() {
            connection.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.cut();
    }
}

/// One statement of a [`Session::pipeline`].
pub(crate) struct Request<'a> {
    /// The prepared statement.
    pub(crate) stmt: &'a Statement,
    /// Its parameters.
    pub(crate) params: Vec<&'a (dyn ToSql + Sync)>,
    /// Whether its rows are wanted (otherwise, how many rows it changed).
    pub(crate) rows: bool,
}

/// What a statement of a [`Session::pipeline`] answered.
pub(crate) enum Answer {
    /// The rows changed (a statement sent with `rows: false`).
    Count(u64),
    /// The rows returned.
    Rows(Vec<Row>),
}

type Pending<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Answer, tokio_postgres::Error>> + 'a>>;

/// Every future's output, in order, the futures polled together: each one's first poll
/// (which hands its request to the connection) happens before any waits for an answer, in
/// the order given, so the requests go out together and in order.
async fn all<'a>(futures: Vec<Pending<'a>>) -> Vec<Result<Answer, tokio_postgres::Error>> {
    let mut futures: Vec<Option<Pending<'a>>> = futures.into_iter().map(Some).collect();
    let mut answers: Vec<Option<Result<Answer, tokio_postgres::Error>>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, answer) in futures.iter_mut().zip(answers.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        *answer = Some(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    answers.into_iter().flatten().collect()
}

/// `fut`'s output, or `None` when `limit` passed first.
async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}

enum Started {
    Tls(PgError),
    Db(tokio_postgres::Error),
}

impl From<PgError> for Started {
    fn from(e: PgError) -> Self {
        Self::Tls(e)
    }
}

/// Connects and spawns the connection's task on the session's runtime.
/// Notifications go to `notify` when given (and are dropped otherwise).
async fn start<T>(
    config: &tokio_postgres::Config,
    tls: T,
    notify: Option<tokio::sync::mpsc::UnboundedSender<Notification>>,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), Started>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(Started::Db)?;
    let task = match notify {
        None => tokio::spawn(async move {
            // A connection that ends with an error fails the calls waiting on it, which report it.
            let _ = connection.await;
        }),
        Some(notify) => tokio::spawn(async move {
            let mut connection = connection;
            // The receiver sees the channel close once the connection ends (with an error or not).
            while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    let _ = notify.send(n);
                }
            }
        }),
    };
    Ok((client, task))
}

/// The settings fogbook chooses when the URL leaves them out: who is connected (for
/// `pg_stat_activity`), the connect timeout, TCP keepalives and `tcp_user_timeout`.
fn apply_defaults(config: &mut tokio_postgres::Config, shown_url: &str, role: &str) {
    if config.get_application_name().is_none() {
        config.application_name(application_name(role));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let names = |key: &str| shown_url.contains(&format!("{key}="));
    if !names("keepalives_idle") {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if !names("keepalives_interval") {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if !names("keepalives_retries") {
        config.keepalives_retries(KEEPALIVES_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEFAULT_DEADLINE);
    }
}

/// `fogbook ROLE HOST pid PID`, cut to PostgreSQL's 63 bytes.
pub(crate) fn application_name(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "unknown-host".to_owned()
    } else {
        host
    };
    let mut name = format!("fogbook {role} {host} pid {}", std::process::id());
    while name.len() > 63 {
        name.pop();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("7 h"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn the_application_name_says_who_and_fits_postgres() {
        let name = application_name("reader");
        assert!(name.starts_with("fogbook reader "), "{name}");
        assert!(
            name.ends_with(&format!("pid {}", std::process::id())) || name.len() == 63,
            "{name}"
        );
        assert!(application_name(&"x".repeat(100)).len() <= 63);
    }
}
