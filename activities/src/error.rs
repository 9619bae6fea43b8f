//! [`ActivityError`]: why an activity produced no output, and whether the engine may retry.

use std::time::Duration;

/// Why an activity did not produce an output.
///
/// The engine decides what to do from the variant: [`ActivityError::is_retryable`] errors
/// may be retried by the step's retry policy, [`ActivityError::Interrupted`] and
/// [`ActivityError::AwaitingApproval`] leave the step running so the run can be resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivityError {
    /// A fault worth retrying: throttling, 5xx, a dropped connection.
    #[error("{code}: {message}")]
    Transient {
        /// Machine-readable code (`ServerBusy`, `ConnectionReset`, ...).
        code: String,
        /// Human message.
        message: String,
        /// A server-requested delay before the next try.
        retry_after: Option<Duration>,
    },
    /// The activity ran and reported failure (non-zero exit, 4xx, false assertion).
    #[error("{code}: {message}")]
    Failed {
        /// Machine-readable code (`CommandFailed`, `AssertionFailed`, an ARM error code).
        code: String,
        /// Human message.
        message: String,
        /// What the activity produced before failing (exit code, captured output).
        output: Option<serde_json::Value>,
    },
    /// The resolved inputs do not fit the activity.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
    },
    /// An earlier attempt was interrupted after its effect may have started, and the
    /// activity cannot tell whether it completed. The run stops for an operator.
    #[error("{message}")]
    Ambiguous {
        /// What happened and what the operator can do.
        message: String,
    },
    /// The engine is shutting down; the step stays running and resumes later.
    #[error("interrupted; the step resumes where it stopped")]
    Interrupted,
    /// The step waits for `fogbook approve`; the run is suspended.
    #[error("waiting for approval")]
    AwaitingApproval {
        /// The approval message shown to the operator.
        message: String,
    },
    /// The state store failed (saving progress, reading or giving an approval); nothing
    /// further was done. The store's own error is the source, so the engine can tell a lost
    /// lease from a database failure (`source.downcast_ref`); this crate does not know the
    /// store's types.
    #[error("the state store failed")]
    Store {
        /// What the store reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The driver no longer holds the run's lease (its deadline on the monotonic clock
    /// passed, or the store says another process holds it), so a cloud request was not
    /// sent. The run stays resumable by whoever holds the lease.
    #[error("{message}")]
    LeaseExpired {
        /// What happened, and that nothing was sent.
        message: String,
    },
}

impl ActivityError {
    /// Whether another attempt may succeed (the error class `transient`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The server-requested delay, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The machine-readable code recorded with the failure.
    pub fn code(&self) -> &str {
        match self {
            Self::Transient { code, .. } | Self::Failed { code, .. } => code,
            Self::InvalidInput { .. } => "InvalidInput",
            Self::Ambiguous { .. } => "AmbiguousInterruption",
            Self::Interrupted => "Interrupted",
            Self::AwaitingApproval { .. } => "AwaitingApproval",
            Self::Store { .. } => "StateStoreError",
            Self::LeaseExpired { .. } => "LeaseExpired",
        }
    }

    /// Shorthand for [`ActivityError::Failed`] without output.
    pub fn failed(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed {
            code: code.into(),
            message: message.into(),
            output: None,
        }
    }

    /// Shorthand for [`ActivityError::Store`].
    pub fn store(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Store {
            source: Box::new(source),
        }
    }

    /// Shorthand for [`ActivityError::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("lease lost")]
    struct LeaseLost;

    /// A store failure keeps its type: the caller finds the store's own error as the source
    /// (and can downcast it), and the message does not repeat it.
    #[test]
    fn a_store_error_is_the_source_not_a_string() {
        let err = ActivityError::store(LeaseLost);
        assert_eq!(err.to_string(), "the state store failed");
        assert_eq!(err.code(), "StateStoreError");
        let source = std::error::Error::source(&err).expect("the store's error is the source");
        assert!(source.downcast_ref::<LeaseLost>().is_some());
        let ActivityError::Store { source } = err else {
            panic!("not a store error")
        };
        assert!(source.downcast::<LeaseLost>().is_ok());
    }
}
