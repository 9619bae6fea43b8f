//! Certificates for a test server with TLS: a throwaway CA and a server certificate for
//! 127.0.0.1 it signed, made with the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::TestPgError;

/// The files a TLS test server uses and its clients trust.
#[derive(Debug)]
pub(crate) struct Certificates {
    /// The CA's certificate (PEM): what a client must trust.
    pub(crate) ca: PathBuf,
    /// The server's certificate (PEM), for `ssl_cert_file`.
    pub(crate) cert: PathBuf,
    /// The server's private key (PEM), for `ssl_key_file`.
    pub(crate) key: PathBuf,
}

/// Makes a CA and a server certificate for IP 127.0.0.1 (valid one day) in `dir`.
pub(crate) fn make_certificates(dir: &Path) -> Result<Certificates, TestPgError> {
    let files = Certificates {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    let (ca_key, csr, ext) = (dir.join("ca.key"), dir.join("server.csr"), dir.join("server.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )
    .map_err(|source| TestPgError::Io {
        what: "writing the server certificate's extensions".to_owned(),
        source,
    })?;
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        "making the test CA",
        Command::new("openssl")
            .args(["req", "-x509", "-days", "1", "-subj", "/CN=fogbook test CA"])
            .args(p256)
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&files.ca),
    )?;
    openssl(
        "making the test server's key",
        Command::new("openssl")
            .args(["req", "-subj", "/CN=127.0.0.1"])
            .args(p256)
            .arg("-keyout")
            .arg(&files.key)
            .arg("-out")
            .arg(&csr),
    )?;
    openssl(
        "signing the test server's certificate",
        Command::new("openssl")
            .args(["x509", "-req", "-days", "1", "-CAcreateserial", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&files.ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&files.cert),
    )?;
    Ok(files)
}

fn openssl(what: &str, cmd: &mut Command) -> Result<(), TestPgError> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| TestPgError::Command {
        what: what.to_owned(),
        detail: format!(
            "could not run `openssl` ({e}); the TLS tests make their certificates with it: install the Debian \
                 package `openssl`"
        ),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(TestPgError::Command {
        what: what.to_owned(),
        detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
    })
}
