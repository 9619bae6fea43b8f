//! The bearer token never reaches logs (at trace level), errors, outputs or saved progress.
//!
//! A test binary of its own: tracing caches per-callsite interest process-wide, so a
//! subscriber installed for one test thread only sees every event when no other test thread
//! hit the callsites first.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;

#[path = "arm/common.rs"]
#[allow(dead_code)]
mod common;

use common::*;

/// Collects everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_never_appears_in_logs_errors_outputs_or_progress() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = Sim::start(DEMO).await;
    let mut seen = String::new();
    // A long-running operation with progress, a failing 4xx, and a transient storm.
    let host = Arc::new(TestHost::default());
    let out = fogbook_activities::execute(
        "instance.scale",
        json!({ "instance": mi(WEST, "mi-fog-b"), "v_cores": 16 }),
        &ctx(host.clone(), None),
        &sim.env,
    )
    .await
    .expect("scaled");
    seen.push_str(&out.to_string());
    seen.push_str(&format!(
        "{:?}",
        host.saved.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    ));
    let err = run(
        &sim,
        "fog.create",
        json!({ "name": "fog-x", "primary": mi(WEST, "mi-fog-b"), "secondary": mi(EAST, "mi-fog-a") }),
    )
    .await
    .expect_err("secondary is not empty");
    seen.push_str(&format!("{err} {err:?}"));
    sim.faults(json!([{ "operation": "*", "error_rate": 1.0, "error_status": 503 }]))
        .await;
    let err = run(&sim, "instance.get", json!({ "instance": mi(EAST, "mi-fog-a") }))
        .await
        .expect_err("storm");
    seen.push_str(&format!("{err} {err:?} {:?}", sim.env));
    // A wrong token: the refusal names no token either.
    let wrong = "wrong-token-51f0e2";
    let env = fogbook_activities::Env::with_arm(client_for(&sim.handle.base_url(), wrong).await);
    let err = fogbook_activities::execute(
        "instance.get",
        json!({ "instance": mi(EAST, "mi-fog-a") }),
        &ctx(Arc::new(TestHost::default()), None),
        &env,
    )
    .await
    .expect_err("unauthorized");
    assert_eq!(err.code(), "InvalidAuthenticationToken");
    seen.push_str(&format!("{err} {err:?} {env:?}"));

    let logs = String::from_utf8(
        captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
    )
    .unwrap();
    assert!(logs.contains("arm.http"), "trace logs were captured");
    for secret in [TOKEN, wrong] {
        assert!(!logs.contains(secret), "token in logs");
        assert!(!seen.contains(secret), "token in errors, outputs or progress: {seen}");
    }
}
