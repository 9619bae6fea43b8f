//! HTTPS with a certificate and key from PEM files.

use fogbook_sim::TlsFiles;
use reqwest::StatusCode;

use crate::common::*;

#[tokio::test]
async fn the_emulator_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert_pem = temp_path(&dir, "cert.pem");
    let key_pem = temp_path(&dir, "key.pem");
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();

    let mut cfg = config(DEMO);
    cfg.tls = Some(TlsFiles {
        cert_pem: cert_pem.clone(),
        key_pem,
    });
    let handle = fogbook_sim::start(cfg).await.unwrap();
    let base = handle.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let url = format!("{base}{}", sql(&mi_id(EAST, "mi-fog-a")));
    let r = client.get(&url).bearer_auth("t").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["name"], "mi-fog-a");

    // Polling URLs use the https scheme too.
    let c = format!("{base}{}", sql(&mi_id(NORTH, "mi-fog-c")));
    let accepted = client
        .put(&c)
        .bearer_auth("t")
        .json(&instance_c_body(None))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let status_url = accepted.headers()["azure-asyncoperation"].to_str().unwrap().to_owned();
    assert!(status_url.starts_with("https://"), "{status_url}");
    assert_eq!(
        client.get(&status_url).bearer_auth("t").send().await.unwrap().status(),
        StatusCode::OK
    );

    // A plain-HTTP client gets no answer from the TLS port.
    let plain = reqwest::Client::new()
        .get(url.replace("https://", "http://"))
        .bearer_auth("t")
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != StatusCode::OK));
    handle.shutdown().await;
}
