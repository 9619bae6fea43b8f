//! Connecting to PostgreSQL from a [`PgUrl`], with TLS by rustls.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::pg::{PgError, PgUrl, TlsMode};

/// How long a connection attempt may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens one connection (a blocking client: call it from a thread of its own, never from
/// the async runtime), for the schema's migrations and for tools. The store's reads and
/// writes go through `Session`s (`state/src/pg/session.rs`) instead, whose every call has a deadline.
///
/// `sslmode=disable` connects in plain TCP; `prefer` tries TLS and falls back to plain TCP
/// when the server offers none; `require` connects with TLS or fails. With TLS, the
/// server's certificate chain and host name are always verified, against the system's
/// roots plus the `sslrootcert` file when given.
pub fn connect(url: &PgUrl) -> Result<postgres::Client, PgError> {
    let connect_error = |source| PgError::Connect {
        target: url.to_string(),
        source,
    };
    let mut config = url.config().map_err(connect_error)?;
    if config.get_application_name().is_none() {
        config.application_name(&super::session::application_name("setup"));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let connected = match url.tls() {
        TlsMode::Disable => config.connect(postgres::NoTls),
        TlsMode::Prefer | TlsMode::Require => config.connect(tls_connector(url.root_cert())?),
    };
    connected.map_err(|source| {
        // The client reports this case only in the message of its error's cause.
        if url.tls() == TlsMode::Require && mentions(&source, "server does not support TLS") {
            PgError::TlsRefused {
                target: url.to_string(),
            }
        } else {
            connect_error(source)
        }
    })
}

/// Whether `err` or one of its causes says `text`.
pub(super) fn mentions(err: &(dyn std::error::Error + 'static), text: &str) -> bool {
    std::iter::successors(Some(err), |e| e.source()).any(|e| e.to_string().contains(text))
}

/// A TLS connector trusting the system's roots and `root_cert`.
pub(super) fn tls_connector(root_cert: Option<&Path>) -> Result<MakeRustlsConnect, PgError> {
    let setup = |reason: String| PgError::TlsSetup { reason };
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = root_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                setup(format!(
                    "cannot read the certificates of sslrootcert={}: {e}",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(setup(format!(
                "sslrootcert={} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                setup(format!(
                    "a certificate of sslrootcert={} is invalid: {e}",
                    path.display()
                ))
            })?;
        }
    }
    if roots.is_empty() {
        return Err(setup(
            "no trusted root certificates: the system has none (Debian package `ca-certificates`) and the URL \
             names no sslrootcert=PATH"
                .to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
