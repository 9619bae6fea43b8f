//! Window limits: reports windows open longer than the runbook's `max_unprotected`.

use std::sync::Arc;

use fogbook_state::format_ms;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::driver::Driver;
use super::engine::Engine;
use crate::clock::ms;
use crate::lease::LeaseClock;
use crate::runbook::NotifyEvent;

/// Its notification is sent only while `lease` (the driver's) is held.
pub(super) async fn check_window_limits(engine: &Engine, run_id: &str, lease: &Arc<LeaseClock>) {
    let Ok(snap) = engine.store.load_run(run_id).await else {
        return;
    };
    let Ok(rb) = engine.parsed.get(&snap.run.runbook_text, "pinned runbook") else {
        return;
    };
    let Some(limit) = rb.limits.max_unprotected else {
        return;
    };
    let now = engine.clock.now_ms();
    for w in snap
        .windows
        .iter()
        .filter(|w| w.closed_at.is_none() && !w.limit_notified)
    {
        let age = now - w.opened_at;
        if age > ms(limit) {
            let limit_text = fogbook_activities::duration::format(limit);
            if let Ok(true) = engine
                .store
                .mark_window_limit_exceeded(run_id, w.id, limit_text.clone(), now)
                .await
            {
                tracing::warn!(kind = %w.kind, age_ms = age, limit = %limit_text, "window open longer than the limit");
                engine.observer.window_limit_exceeded(w.kind.as_str(), age, &limit_text);
                let driver = Driver {
                    engine,
                    run_id,
                    runbook: &rb,
                    auto_approve: false,
                    window: None,
                    stop: &CancellationToken::new(),
                    lease: Some(lease.clone()),
                    carry: std::sync::Mutex::default(),
                    shown: std::sync::Mutex::default(),
                };
                driver
                    .notify(
                        NotifyEvent::MaxUnprotectedExceeded,
                        json!({ "kind": w.kind, "opened_at": format_ms(w.opened_at), "age_ms": age, "limit": limit_text }),
                    )
                    .await;
            }
        }
    }
}
