//! The journal: every mutating ARM request the emulator accepted, in order.
//!
//! Requests refused before processing (authentication, throttling, an injected error or a
//! connection dropped before processing) are not in it; everything that reached the resource
//! logic is, with its result status, including rule violations. `applied` is true when the
//! request changed or started something (a 2xx answer); `connection_dropped` marks the
//! ambiguous case where the request was applied but the client never saw the response.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One accepted mutating request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JournalEntry {
    pub(crate) seq: u64,
    /// Real time of the request (RFC 3339).
    pub(crate) real_time: String,
    /// Simulated time of the request (RFC 3339).
    pub(crate) sim_time: String,
    pub(crate) method: String,
    /// Path and query as sent.
    pub(crate) path: String,
    /// SHA-256 of the request body, hex.
    pub(crate) body_sha256: String,
    /// The long-running operation the request started or re-attached to.
    pub(crate) operation_id: Option<String>,
    pub(crate) status: u16,
    pub(crate) applied: bool,
    pub(crate) connection_dropped: bool,
    pub(crate) request_id: String,
    pub(crate) client_request_id: Option<String>,
}

/// The journal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub(crate) entries: Vec<JournalEntry>,
}

impl Journal {
    /// Appends an entry, numbering it.
    pub(crate) fn push(&mut self, mut entry: JournalEntry) {
        entry.seq = self.entries.len() as u64 + 1;
        self.entries.push(entry);
    }
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
