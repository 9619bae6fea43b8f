//! How the emulator is started.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::estate::Estate;
use crate::faults::FaultConfig;
use crate::requests::RequestObserver;

/// Everything [`crate::start`] needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The starting estate (ignored when `state_file` already holds a saved state).
    pub estate: Estate,
    /// Address to bind, such as `127.0.0.1:0` for any free port.
    pub listen: SocketAddr,
    /// Simulated seconds per real second (1.0 = real time; 3600.0 = an hour per second; 0.0 =
    /// frozen, so only `POST /_sim/clock/advance` moves time).
    pub time_scale: f64,
    /// When set, every accepted mutation is saved here atomically, and a saved state is
    /// loaded from here at start, continuing operations in flight.
    pub state_file: Option<PathBuf>,
    /// With a saved state: simulated time went on while no emulator ran, at the saved time
    /// scale (Azure keeps seeding while the orchestrator is down), so the restored clock reads
    /// the saved time plus the real time since the save times that scale. Without it the clock
    /// resumes at the saved time.
    pub clock_runs_while_stopped: bool,
    /// Faults to inject from the start.
    pub faults: Option<FaultConfig>,
    /// When set, the only bearer token accepted; otherwise any bearer token is.
    pub token: Option<String>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// When set, every ARM request (not the admin API) is sent here once answered, with the
    /// instant it arrived: for benchmarks that run the emulator in their own process.
    pub observer: Option<RequestObserver>,
}

impl SimConfig {
    /// A configuration for `estate` on `127.0.0.1:0`, real time, no state file, faults,
    /// fixed token, TLS or observer.
    pub fn new(estate: Estate) -> SimConfig {
        SimConfig {
            estate,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            time_scale: 1.0,
            state_file: None,
            clock_runs_while_stopped: false,
            faults: None,
            token: None,
            tls: None,
            observer: None,
        }
    }
}

/// PEM files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_pem: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: PathBuf,
}
