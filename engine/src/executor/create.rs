//! Creating a run: pinning the runbook text and parameters, resolving its resource locks.

use std::collections::BTreeMap;

use fogbook_state::NewRun;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::engine::Engine;
use crate::EngineError;
use crate::clock::ms;
use crate::expr::Scope;
use crate::failpoint::{self};
use crate::runbook::{self, Runbook};

/// A request to create a run.
#[derive(Debug)]
pub struct CreateRun<'a> {
    /// The validated runbook.
    pub runbook: &'a Runbook,
    /// Its exact text (pinned with the run).
    pub text: &'a str,
    /// Where it was read from.
    pub source_path: Option<String>,
    /// Resolved parameters.
    pub params: serde_json::Value,
    /// Approve approval steps automatically (recorded as such).
    pub auto_approve: bool,
    /// Take the lease at once (the creating process drives it) or leave it to a worker.
    pub take_lease: bool,
    /// Who asked (user, schedule), for the audit trail.
    pub created_by: serde_json::Value,
    /// The schedule that fires this run, if any.
    pub schedule: Option<String>,
    /// The maintenance window its disruptive steps wait for, if any.
    pub window: Option<serde_json::Value>,
}

impl<'a> CreateRun<'a> {
    /// A request for a run of `runbook` (parsed from `text`) with the defaults: no
    /// parameters, no source file, approvals asked, the lease left to whoever drives the run,
    /// no creator recorded, no schedule, no window. Set what differs with struct update
    /// syntax: `CreateRun { take_lease: true, ..CreateRun::new(&rb, &text) }`.
    pub fn new(runbook: &'a Runbook, text: &'a str) -> Self {
        Self {
            runbook,
            text,
            source_path: None,
            params: json!({}),
            auto_approve: false,
            take_lease: false,
            created_by: serde_json::Value::Null,
            schedule: None,
            window: None,
        }
    }
}

impl Engine {
    /// Creates a run: pins the runbook text and parameters, locks the run's resource keys
    /// (refusing, with the holder's id, when another run has one), and returns its id.
    pub async fn create_run(&self, req: CreateRun<'_>) -> Result<String, EngineError> {
        let new = self.prepare_run(req)?;
        let id = new.id.clone();
        self.store.create_run(new).await?;
        failpoint::after_create();
        Ok(id)
    }

    /// The row [`Engine::create_run`] would insert: a fresh id, resolved locks, the lease.
    pub(crate) fn prepare_run(&self, req: CreateRun<'_>) -> Result<NewRun, EngineError> {
        let id = uuid::Uuid::now_v7().to_string();
        let locks = resolve_locks(req.runbook, &req.params, &id)?;
        let now = self.clock.now_ms();
        let new = NewRun {
            id: id.clone(),
            runbook_name: req.runbook.name.clone(),
            runbook_version: req.runbook.version,
            runbook_text: req.text.to_owned(),
            runbook_sha256: sha256_hex(req.text),
            source_path: req.source_path,
            params: req.params,
            steps: req.runbook.steps.iter().map(|s| s.id.0.clone()).collect(),
            locks,
            auto_approve: req.auto_approve,
            lease: req
                .take_lease
                .then(|| (self.owner.to_string(), now + ms(self.config.lease_ttl))),
            created_by: req.created_by,
            schedule: req.schedule,
            window: req.window,
            now,
        };
        Ok(new)
    }
}

/// The hex sha256 of a text.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub(super) fn resolve_locks(
    runbook: &Runbook,
    params: &serde_json::Value,
    run_id: &str,
) -> Result<Vec<String>, EngineError> {
    let steps = BTreeMap::new();
    let run = json!({ "id": run_id, "runbook": runbook.name });
    let scope = Scope {
        params,
        steps: &steps,
        run: &run,
    };
    let mut keys = Vec::new();
    for (i, t) in runbook.locks.iter().enumerate() {
        let v = t.eval(&scope).map_err(|e| {
            EngineError::Invalid(runbook::Diagnostics(vec![runbook::Diagnostic {
                origin: runbook.name.clone(),
                line: None,
                column: None,
                path: format!("locks[{i}]"),
                message: e.to_string(),
            }]))
        })?;
        let key = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}
