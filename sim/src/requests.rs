//! What the emulator received, for benchmarks: a count of ARM requests per operation and
//! status (`GET /_sim/requests`) and, when [`crate::SimConfig::observer`] is set, every ARM
//! request with the [`Instant`] it arrived, sent to the process that started the emulator.
//!
//! Requests to the admin API (`/_sim/`) are neither counted nor reported, so reading the
//! counts does not change them. Throttled (429) and fault-injected answers are, with their
//! status: they are what a client sent.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

/// One ARM request, as the emulator received and answered it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// When the request reached the ARM handler (the process's monotonic clock).
    pub received: Instant,
    /// The HTTP method.
    pub method: String,
    /// The URL path, without the query.
    pub path: String,
    /// The spec's operationId (`AzureAsyncOperation_Get`, `ManagedInstances_Update`, ...),
    /// `None` for a path or method the emulator does not serve.
    pub operation: Option<&'static str>,
    /// The status answered; 0 when an injected fault closed the connection instead.
    pub status: u16,
}

/// The sending half of the channel that receives every [`SeenRequest`].
pub type RequestObserver = tokio::sync::mpsc::UnboundedSender<SeenRequest>;

/// The counts, and the observer.
#[derive(Debug)]
pub(crate) struct RequestLog {
    started: Instant,
    observer: Option<RequestObserver>,
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

/// `GET /_sim/requests`.
#[derive(Debug, Serialize)]
pub(crate) struct RequestCounts {
    /// Milliseconds since the emulator started (monotonic), so rates can be computed from
    /// two readings.
    pub(crate) elapsed_ms: u64,
    pub(crate) total: u64,
    pub(crate) counts: Vec<RequestCount>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RequestCount {
    pub(crate) operation: &'static str,
    pub(crate) status: u16,
    pub(crate) count: u64,
}

impl RequestLog {
    pub(crate) fn new(observer: Option<RequestObserver>) -> RequestLog {
        RequestLog {
            started: Instant::now(),
            observer,
            counts: Mutex::default(),
        }
    }

    /// Counts a request and reports it to the observer, if any (a closed channel is ignored:
    /// the observer went away, the emulator goes on).
    pub(crate) fn record(&self, seen: SeenRequest) {
        {
            let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            *counts
                .entry((seen.operation.unwrap_or("unknown"), seen.status))
                .or_insert(0) += 1;
        }
        if let Some(observer) = &self.observer {
            let _ = observer.send(seen);
        }
    }

    pub(crate) fn counts(&self) -> RequestCounts {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        RequestCounts {
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            total: counts.values().sum(),
            counts: counts
                .iter()
                .map(|(&(operation, status), &count)| RequestCount {
                    operation,
                    status,
                    count,
                })
                .collect(),
        }
    }

    pub(crate) fn clear(&self) {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(operation: Option<&'static str>, status: u16) -> SeenRequest {
        SeenRequest {
            received: Instant::now(),
            method: "GET".into(),
            path: "/x".into(),
            operation,
            status,
        }
    }

    #[test]
    fn counts_per_operation_and_status_and_reports_each_request() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let log = RequestLog::new(Some(tx));
        log.record(seen(Some("AzureAsyncOperation_Get"), 200));
        log.record(seen(Some("AzureAsyncOperation_Get"), 200));
        log.record(seen(Some("AzureAsyncOperation_Get"), 429));
        log.record(seen(None, 404));
        let c = log.counts();
        assert_eq!(c.total, 4);
        let got: Vec<_> = c.counts.iter().map(|c| (c.operation, c.status, c.count)).collect();
        assert_eq!(
            got,
            [
                ("AzureAsyncOperation_Get", 200, 2),
                ("AzureAsyncOperation_Get", 429, 1),
                ("unknown", 404, 1)
            ]
        );
        let mut reported = 0;
        while rx.try_recv().is_ok() {
            reported += 1;
        }
        assert_eq!(reported, 4);
        log.clear();
        assert_eq!(log.counts().total, 0);
        drop(rx);
        log.record(seen(None, 200));
        assert_eq!(log.counts().total, 1, "a closed observer does not stop the counting");
    }
}
