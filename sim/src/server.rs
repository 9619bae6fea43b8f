//! Binding, serving (plain HTTP or TLS) and shutting down.
//!
//! Connections are served by hyper directly rather than `axum::serve`, so that an injected
//! fault can close a connection without sending the response, which is what a client sees
//! when a network path or a gateway fails mid-request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt;

use crate::clock::{SimClock, SimTime};
use crate::config::{SimConfig, TlsFiles};
use crate::emulator::{Core, Emulator, Settings};
use crate::error::SimError;
use crate::faults::Faults;
use crate::journal::Journal;
use crate::persist;
use crate::requests::RequestLog;
use crate::routes::{self, DropConnection};
use crate::throttle::Throttle;

/// A running emulator.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    scheme: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    emu: Arc<Emulator>,
}

impl SimHandle {
    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS: the base of every ARM URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting, closes open connections and saves the state a last time.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(error = %error, "sim.server_task_failed");
        }
        let core = self.emu.lock();
        self.emu.persist_or_log(&core);
    }
}

/// Builds the emulator from `config`, binds, and serves on the current tokio runtime.
///
/// With a `state_file` that exists, the saved state (world, journal, simulated time) is
/// loaded instead of the estate, and operations in flight continue for their remaining
/// simulated time.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    if !config.time_scale.is_finite() || config.time_scale < 0.0 {
        return Err(SimError::InvalidTimeScale(config.time_scale));
    }
    let initial = config.estate.build_world(time::OffsetDateTime::now_utc())?;
    let saved = match &config.state_file {
        Some(path) => persist::load(path)?,
        None => None,
    };
    let (world, initial, journal, sim_now) = match saved {
        Some(s) => {
            let now = s.resume_at(config.clock_runs_while_stopped, config.time_scale);
            (s.world, s.initial, s.journal, now)
        }
        None => (initial.clone(), initial, Journal::default(), SimTime(0)),
    };
    let faults = config.faults.unwrap_or_default();
    faults.validate()?;
    let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: config.listen,
        source,
    })?;
    let settings = Settings {
        token: config.token,
        state_file: config.state_file,
        scheme,
    };
    let core = Core {
        world,
        initial,
        journal,
        clock: SimClock::new(sim_now, config.time_scale),
        throttle: Throttle::default(),
        faults: Faults::new(faults),
    };
    let emu = Arc::new(Emulator::new(settings, core, RequestLog::new(config.observer)));
    {
        let core = emu.lock();
        emu.persist(&core)?;
    }
    let router = routes::router(emu.clone());
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(serve(listener, router, acceptor, stopped));
    tracing::info!(%addr, scheme, "sim.started");
    Ok(SimHandle {
        addr,
        scheme,
        stop,
        task,
        emu,
    })
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, SimError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_file_iter(&files.cert_pem)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| SimError::Tls(format!("certificate {}: {e}", files.cert_pem.display())))?;
    if certs.is_empty() {
        return Err(SimError::Tls(format!(
            "certificate {}: no certificate found",
            files.cert_pem.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_pem)
        .map_err(|e| SimError::Tls(format!("key {}: {e}", files.key_pem.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    acceptor: Option<TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let router = router.clone();
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => serve_connection(stream, router).await,
                            Err(error) => tracing::debug!(error = %error, "sim.tls_handshake_failed"),
                        },
                        None => serve_connection(stream, router).await,
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<S>(stream: S, router: axum::Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let drop_now = Arc::new(Notify::new());
    let signal = drop_now.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        let signal = signal.clone();
        async move {
            let response = match router.oneshot(request.map(axum::body::Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<DropConnection>().is_some() {
                // Close the connection instead of answering; this future never completes.
                signal.notify_one();
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(error = %error, "sim.connection_error");
            }
        }
        () = drop_now.notified() => tracing::debug!("sim.connection_dropped"),
    }
}
