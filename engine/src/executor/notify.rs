//! Notifications: engine events posted to the runbook's webhook.

use std::collections::BTreeMap;

use fogbook_state::format_ms;
use serde_json::json;

use super::driver::Driver;
use crate::expr::Scope;
use crate::runbook::NotifyEvent;

impl Driver<'_> {
    /// Posts an engine event to the runbook's webhook, if it asked for this event. Best
    /// effort: a failed delivery is logged and audited, never fails the run.
    pub(super) async fn notify(&self, event: NotifyEvent, data: serde_json::Value) {
        let Some(cfg) = &self.runbook.notify else { return };
        if !cfg.on.contains(&event) {
            return;
        }
        // Nothing is sent about a state that is not committed.
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %crate::error::with_causes(&e), "not sending a notification: the state could not be committed");
            return;
        }
        let Ok(snap) = self.engine.store.load_run(self.run_id).await else {
            return;
        };
        let steps = BTreeMap::new();
        let run = json!({ "id": self.run_id, "runbook": self.runbook.name });
        let scope = Scope {
            params: &snap.run.params,
            steps: &steps,
            run: &run,
        };
        let Ok(serde_json::Value::String(url)) = cfg.url.eval(&scope) else {
            tracing::warn!("notify.url did not resolve to a string");
            return;
        };
        let event_name = serde_json::to_value(event).unwrap_or_default();
        let body = json!({
            "event": event_name,
            "run_id": self.run_id,
            "runbook": self.runbook.name,
            "at": format_ms(self.now()),
            "data": data,
        });
        // Sent only while the lease is held, as a cloud request is: a driver frozen past its
        // lease says nothing about a run another process may be driving now.
        if let Some(lease) = &self.lease
            && let Err(why) = lease.confirm().await
        {
            tracing::error!(why, "not sending a notification: {}", crate::lease::FENCED);
            return;
        }
        let delivered = fogbook_activities::post_event(&self.engine.env, &url, &body).await;
        let (kind, detail) = match &delivered {
            Ok(status) => ("notify.sent", json!({ "event": event_name, "status": status })),
            Err(e) => {
                tracing::warn!(error = %e, "could not deliver a notification");
                ("notify.failed", json!({ "event": event_name, "error": e.to_string() }))
            }
        };
        let _ = self
            .engine
            .store
            .record_event(self.run_id, kind, None, detail, self.now())
            .await;
    }
}
