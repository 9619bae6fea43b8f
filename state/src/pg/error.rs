//! What can go wrong reaching or migrating a PostgreSQL database.

/// A failure of the PostgreSQL connection or schema.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The URL demands TLS and the server does not offer it.
    #[error(
        "the PostgreSQL server at {target} does not accept TLS connections, and the sslmode of the \
         URL demands TLS: turn TLS on at the server (ssl = on), or, on a trusted network only, \
         connect with sslmode=disable"
    )]
    TlsRefused {
        /// The URL, password masked.
        target: String,
    },
    /// The TLS client could not be set up (roots, `sslrootcert`).
    #[error("cannot set up TLS for PostgreSQL: {reason}")]
    TlsSetup {
        /// What is missing or wrong.
        reason: String,
    },
    /// Connecting or authenticating failed.
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        /// The URL, password masked.
        target: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// The schema version could not be read (or the migration lock taken).
    #[error("cannot read the PostgreSQL schema version")]
    ReadSchema {
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// A schema migration failed; it is one transaction, so nothing of it was applied
    /// (unless the connection broke once its COMMIT had left: the next open reads the version
    /// again and applies only what is missing).
    #[error("cannot apply PostgreSQL schema migration {version}")]
    ApplyMigrations {
        /// The migration that failed (1-based).
        version: i64,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// The connection broke (the server restarted or failed over, the network dropped).
    /// Nothing of the transaction in flight is saved; the store connects again for its
    /// next read or write.
    #[error(
        "lost the connection to PostgreSQL at {target} ({reason}): nothing of the change in flight is saved; \
         check that the server is up and reachable from this host (after a failover, that the URL names the new \
         primary), then retry: fogbook connects again for its next read or write, and `fogbook resume RUN` \
         carries on a run from its last committed step"
    )]
    ConnectionLost {
        /// The URL, password masked.
        target: String,
        /// What the client said.
        reason: String,
    },
    /// The connection broke while a transaction was being committed: its COMMIT may have
    /// reached the server and been applied, or not; the answer never came back. Nothing
    /// that depends on it was done (an effect waits for its commit's answer).
    #[error(
        "lost the connection to PostgreSQL at {target} ({reason}) once its COMMIT had been sent: the change may \
         or may not have been saved"
    )]
    CommitUnanswered {
        /// The URL, password masked.
        target: String,
        /// What the client said.
        reason: String,
    },
    /// Connecting took longer than `connect_timeout` (handshake included): the server is
    /// down, or the network to it drops packets.
    #[error(
        "cannot connect to PostgreSQL at {target}: no answer within {}ms (connect_timeout): check that the server \
         is up and reachable from this host",
        after.as_millis()
    )]
    ConnectStalled {
        /// The URL, password masked.
        target: String,
        /// The timeout that passed.
        after: std::time::Duration,
    },
    /// A connection setting from the environment is not valid.
    #[error("{name}={value} is not valid: expected {expected}")]
    Setting {
        /// The variable.
        name: &'static str,
        /// The value found.
        value: String,
        /// What it may hold.
        expected: String,
    },
    /// The runtime driving a connection could not be started.
    #[error("cannot start the runtime of a PostgreSQL connection")]
    Runtime {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database was migrated by a newer fogbook.
    #[error(
        "the PostgreSQL database has schema version {found}, newer than this build knows ({known}): \
         run a fogbook at least as new as the one that migrated it"
    )]
    NewerSchema {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
}

impl PgError {
    /// Whether opening the database may work if tried again in a moment: the server refused
    /// or closed the connection, or said it is starting up or shutting down (a restart, a
    /// failover), while connecting or while reading or migrating the schema right after (a
    /// restart between the two; trying again reads the schema's version again).
    /// A refused login, a bad URL or TLS setup, a silent server, or an error the server
    /// answered to a schema statement (rights, a newer schema) are not.
    pub fn is_transient(&self) -> bool {
        use tokio_postgres::error::SqlState;
        let restarting = |source: &postgres::Error| {
            source.as_db_error().is_some_and(|db| {
                [
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                ]
                .contains(db.code())
            })
        };
        match self {
            // Connecting fails without a server error only on the way there (refused, reset).
            Self::Connect { source, .. } => source.as_db_error().is_none() || restarting(source),
            // After the login, only a connection that broke (not a value this build cannot
            // read, which trying again would not change).
            Self::ReadSchema { source } | Self::ApplyMigrations { source, .. } => {
                source.is_closed()
                    || std::error::Error::source(source).is_some_and(|e| e.is::<std::io::Error>())
                    || restarting(source)
            }
            _ => false,
        }
    }
}

/// The server's refusal of the login itself, named by its SQLSTATE's meaning, when `err`
/// holds one: a bad password or role (class 28), a database that does not exist (3D000), or
/// no right to connect to it (42501).
pub fn refused_login(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(db) = e.downcast_ref::<tokio_postgres::error::DbError>() {
            let code = db.code().code();
            return match code {
                "28P01" | "28000" => Some("the password or the role was refused"),
                "3D000" => Some("no such database"),
                "42501" => Some("the role lacks a right it needs on this database"),
                _ => None,
            };
        }
        cause = e.source();
    }
    None
}
