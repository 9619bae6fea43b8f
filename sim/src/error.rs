//! The one error type of the emulator's public API.

use std::path::PathBuf;

/// What went wrong while loading the emulator's inputs or starting it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A file (estate, faults, state, certificate) could not be read.
    #[error("cannot read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The estate file is not valid YAML of the expected shape.
    #[error("invalid estate file")]
    ParseEstate(#[source] serde_saphyr::Error),
    /// The estate parsed but describes something impossible (dangling reference, bad CIDR, …).
    #[error("invalid estate: {0}")]
    InvalidEstate(String),
    /// The faults file is neither valid YAML nor valid JSON of the expected shape.
    #[error("invalid faults file")]
    ParseFaults(#[source] serde_saphyr::Error),
    /// The faults file parsed but holds impossible values.
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    /// The state file exists but cannot be understood.
    #[error("invalid state file {path}")]
    ParseState {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The state file could not be written.
    #[error("cannot write state file {path}")]
    WriteState {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key could not be used.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// The time scale is not a positive finite number.
    #[error("invalid time scale {0}: must be positive and finite")]
    InvalidTimeScale(f64),
}
