//! Driving a run under its lease: taking the lease, walking the steps in order, ending the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fogbook_state::{RunSnapshot, RunStatus, StateError, StepStatus};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::create::sha256_hex;
use super::driver::{Driver, StepEnd};
use super::engine::{Engine, RunOutcome};
use super::heartbeat::{Beat, Member};
use super::step::{scope_completed, scope_failed, scope_skipped};
use crate::EngineError;
use crate::clock::ms;
use crate::expr::{Scope, StepScope};
use crate::lease::{self, LeaseClock};
use crate::owner::{self};
use crate::runbook::{NotifyEvent, Runbook};

impl Engine {
    /// Drives a run until it ends, suspends at an approval, or `stop` is cancelled. Takes
    /// the run's lease first (refused with [`StateError::LeaseHeld`] while a live process
    /// holds it) and keeps it renewed.
    #[tracing::instrument(name = "run", skip_all, fields(run_id = %run_id))]
    pub async fn drive(&self, run_id: &str, stop: CancellationToken) -> Result<RunOutcome, EngineError> {
        let holder = self.store.lease_owner(run_id).await?;
        let dead = holder.clone().filter(|o| owner::is_dead(o));
        if holder.as_deref().is_some_and(|h| h != self.owner.as_str()) && dead.is_none() {
            // An expired lease of a process that may live is taken over only a margin after
            // its expiry, when that process's own deadline has certainly passed.
            if !self.wait_out_lease_margin(run_id, &stop).await? {
                return Ok(RunOutcome::Interrupted);
            }
        }
        let margin = self.lease_margin();
        let sent = self.clock.monotonic();
        let grant = self
            .store
            .acquire_lease(
                run_id,
                self.owner.as_str(),
                self.config.lease_ttl,
                dead,
                self.clock.now_ms(),
            )
            .await?;
        if let Some(from) = &grant.taken_over_from {
            tracing::warn!(from = %from, "took over the run's lease");
            self.observer.took_over(from);
        }

        let lease = Arc::new(LeaseClock::new(
            self.clock.clone(),
            self.store.clone(),
            run_id,
            self.owner.as_str(),
            self.config.lease_ttl,
            margin,
            sent,
        ));
        let token = stop.child_token();
        let beat = Arc::new(Beat::default());
        let result = self.drive_steps(run_id, &token, &lease, &beat).await;
        if let Some(step_id) = lease.refused_step() {
            // A cloud request was not sent for want of the lease: say so, whatever the
            // activity made of the refusal. If the store still names this process, give the
            // lease up so that the run can be resumed at once.
            let _ = self
                .store
                .release_lease(run_id, self.owner.as_str(), self.clock.now_ms())
                .await;
            let message = match result {
                Err(EngineError::Fenced { message, .. }) => message,
                _ => lease::FENCED.to_owned(),
            };
            return Err(EngineError::Fenced {
                run_id: run_id.to_owned(),
                step_id,
                message,
            });
        }
        if let Some(moved) = beat.take_moved() {
            return Err(EngineError::State(moved));
        }
        if let Some(owner) = beat.lost_to() {
            let lost = self.lease_lost(run_id, owner).await;
            // The store failed the renewals until the lease ran out: unless it answers again
            // and names the process that took the run over, say that, not that this process
            // stalled.
            return Err(match (lost, beat.take_unrenewed()) {
                (taken @ EngineError::TakenOver { .. }, _) | (taken, None) => taken,
                (_, Some(cause)) => EngineError::LeaseUnrenewed {
                    run_id: run_id.to_owned(),
                    cause,
                },
            });
        }
        let outcome = match result {
            // A write found the lease gone (the heartbeat had not noticed yet): logged as the
            // heartbeat logs it, whichever of the two a thawed driver meets first.
            Err(EngineError::State(StateError::LeaseLost { owner, .. })) => {
                if !owner.starts_with("nobody") {
                    tracing::warn!(%run_id, new_owner = %owner, "lost the lease; stopping");
                }
                return Err(self.lease_lost(run_id, owner).await);
            }
            // The store refused to start a step because an operator asked to cancel.
            Err(EngineError::State(StateError::CancelRequested { .. })) => RunOutcome::Interrupted,
            other => other?,
        };
        // An operator asked to cancel: whatever stopped the run at a safe point (the request
        // itself, an approval, a closed window), it ends cancelled and its locks are released.
        let stopped_early = matches!(
            outcome,
            RunOutcome::Interrupted | RunOutcome::Waiting { .. } | RunOutcome::OutsideWindow { .. }
        );
        let cancel = stopped_early
            && (beat.cancel_requested.load(Ordering::SeqCst)
                || self.store.load_run(run_id).await?.run.cancel_requested);
        let outcome = match outcome {
            RunOutcome::Interrupted | RunOutcome::Waiting { .. } | RunOutcome::OutsideWindow { .. } if cancel => {
                self.store
                    .finish_cancel(run_id, self.owner.as_str(), self.clock.now_ms())
                    .await?;
                RunOutcome::Cancelled
            }
            other => other,
        };
        if outcome != RunOutcome::Cancelled {
            self.store
                .release_lease(run_id, self.owner.as_str(), self.clock.now_ms())
                .await?;
        }
        Ok(outcome)
    }

    /// The error of a driver that lost its lease. The store names no holder once whoever took
    /// the run over has let it go again (it finished the run, or stopped): the audit trail
    /// then says who took it over, and the run's status what became of it.
    async fn lease_lost(&self, run_id: &str, owner: String) -> EngineError {
        if !owner.starts_with("nobody") {
            return EngineError::State(StateError::LeaseLost {
                run_id: run_id.to_owned(),
                owner,
            });
        }
        // Expired, and maybe nobody took it: if the store still names this process, give the
        // lease up, as a driver that fenced itself before a request does, so that the next
        // process acquires the run instead of taking it over from one that stopped (which
        // of the two paths a thawed driver takes is a matter of scheduling).
        let _ = self
            .store
            .release_lease(run_id, self.owner.as_str(), self.clock.now_ms())
            .await;
        let (events, snapshot) = match (self.store.events(run_id).await, self.store.load_run(run_id).await) {
            (Ok(events), Ok(snapshot)) => (events, snapshot),
            _ => {
                return EngineError::State(StateError::LeaseLost {
                    run_id: run_id.to_owned(),
                    owner,
                });
            }
        };
        // The last acquisition of the lease: a process takes it with an audited event.
        let taker = events
            .iter()
            .rev()
            .find(|e| matches!(e.kind.as_str(), "lease.taken_over" | "lease.acquired"))
            .and_then(|e| e.data.get("owner")?.as_str().map(str::to_owned));
        match taker {
            Some(by) if by != self.owner.as_str() => {
                tracing::warn!(%run_id, taken_over_by = %by, status = snapshot.run.status.as_str(), "another process took the run over while this one was stopped; stopping");
                EngineError::TakenOver {
                    run_id: run_id.to_owned(),
                    by,
                    holder: snapshot.run.lease_owner,
                    status: snapshot.run.status,
                }
            }
            _ => EngineError::State(StateError::LeaseLost {
                run_id: run_id.to_owned(),
                owner,
            }),
        }
    }

    /// The safety margin of this engine's leases.
    fn lease_margin(&self) -> Duration {
        lease::lease_margin(self.config.lease_ttl, self.config.lease_margin)
    }

    /// When the run's lease has expired less than a margin ago, waits until the margin has
    /// passed. Returns `false` when `stop` was cancelled meanwhile.
    async fn wait_out_lease_margin(&self, run_id: &str, stop: &CancellationToken) -> Result<bool, EngineError> {
        let Some(expires_at) = self.store.load_run(run_id).await?.run.lease_expires_at else {
            return Ok(true);
        };
        // The expiry is by the store's lease clock (the database's, on PostgreSQL).
        let now = self.store.lease_now(self.clock.now_ms()).await?;
        let margin = ms(self.lease_margin());
        let until = expires_at.saturating_add(margin);
        // A lease about to expire counts as expired just now: on PostgreSQL the store decides
        // the takeover by the database's clock a round trip later, when it may have expired.
        if now < expires_at.saturating_sub(margin) || now >= until {
            // Live (the store refuses, naming the holder), or expired long enough.
            return Ok(true);
        }
        let wait = Duration::from_millis((until - now).unsigned_abs());
        tracing::info!(
            wait_ms = ms(wait),
            "the run's lease expired just now; waiting out the safety margin before taking it over"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(true),
            () = stop.cancelled() => Ok(false),
        }
    }

    async fn drive_steps(
        &self,
        run_id: &str,
        stop: &CancellationToken,
        lease: &Arc<LeaseClock>,
        beat: &Arc<Beat>,
    ) -> Result<RunOutcome, EngineError> {
        let snap = self.store.load_run(run_id).await?;
        let origin = format!("runbook pinned to run {run_id}");
        let runbook =
            self.parsed
                .get(&snap.run.runbook_text, &origin)
                .map_err(|source| EngineError::StoredRunbook {
                    run_id: run_id.to_owned(),
                    source,
                })?;
        // Left when this function returns by any path, so a lease is never renewed for a
        // run this process no longer drives.
        let _heartbeat = self.join_heartbeat(
            run_id,
            Member {
                token: stop.clone(),
                beat: beat.clone(),
                lease: lease.clone(),
                window_limit: runbook.limits.max_unprotected.is_some(),
            },
        );
        self.check_pinned_file(&snap).await?;
        if let Some(arm) = &self.env.arm
            && runbook.steps.iter().any(|s| fogbook_activities::needs_arm(&s.uses))
        {
            // Which credential drove the cloud calls, never the token itself.
            self.store
                .record_event(
                    run_id,
                    "arm.credential",
                    None,
                    json!({ "kind": arm.credential_kind(), "endpoint": arm.endpoint().as_str() }),
                    self.clock.now_ms(),
                )
                .await?;
        }

        let params = snap.run.params.clone();
        let run_info = json!({ "id": run_id, "runbook": runbook.name });
        let driver = Driver {
            engine: self,
            run_id,
            runbook: &runbook,
            auto_approve: snap.run.auto_approve,
            window: snap.run.window.as_ref(),
            stop,
            lease: Some(lease.clone()),
            carry: std::sync::Mutex::default(),
            shown: std::sync::Mutex::default(),
        };
        let walked = self.walk(&driver, &runbook, &snap, &params, &run_info).await;
        if walked.is_err() {
            // Ends of steps whose effects happened are committed even when the walk stops
            // on an error (if the store still takes writes).
            if let Err(e) = driver.flush().await {
                tracing::warn!(error = %crate::error::with_causes(&e), "could not commit the end of the last step");
            }
        }
        walked
    }

    /// Runs the remaining steps of a run in order.
    async fn walk(
        &self,
        driver: &Driver<'_>,
        runbook: &Runbook,
        snap: &RunSnapshot,
        params: &serde_json::Value,
        run_info: &serde_json::Value,
    ) -> Result<RunOutcome, EngineError> {
        let run_id = driver.run_id;
        let mut steps: BTreeMap<String, StepScope> = BTreeMap::new();

        for (position, step) in runbook.steps.iter().enumerate() {
            let row = snap
                .step_at(position, step.id.as_str())
                .cloned()
                .ok_or_else(|| StateError::UnknownStep {
                    run_id: run_id.to_owned(),
                    step_id: step.id.0.clone(),
                })?;
            match row.status {
                StepStatus::Completed => {
                    steps.insert(step.id.0.clone(), scope_completed(row.output.unwrap_or_default()));
                    continue;
                }
                StepStatus::Skipped => {
                    steps.insert(step.id.0.clone(), scope_skipped());
                    continue;
                }
                StepStatus::Failed => {
                    steps.insert(step.id.0.clone(), scope_failed(&row.error));
                    continue;
                }
                StepStatus::Pending | StepStatus::Running | StepStatus::RetryWait => {}
            }
            if driver.stop.is_cancelled() {
                driver.flush().await?;
                return Ok(RunOutcome::Interrupted);
            }
            let scope = Scope {
                params,
                steps: &steps,
                run: run_info,
            };
            match driver.run_step(step, row, &scope).await? {
                StepEnd::Completed(output) => {
                    steps.insert(step.id.0.clone(), scope_completed(output));
                }
                StepEnd::Skipped => {
                    steps.insert(step.id.0.clone(), scope_skipped());
                }
                StepEnd::FailedContinue(error) => {
                    steps.insert(step.id.0.clone(), scope_failed(&Some(error)));
                }
                StepEnd::Stop(outcome) => {
                    driver.flush().await?;
                    if let RunOutcome::Failed { .. } = &outcome {
                        driver
                            .notify(NotifyEvent::RunFailed, json!({ "outcome": format!("{outcome:?}") }))
                            .await;
                    }
                    return Ok(outcome);
                }
            }
        }
        // The run's success is committed with the end of its last step when that is pending.
        let mut last = driver.take_carry();
        match last.last_mut() {
            Some(finish) => {
                finish.run_status = Some(RunStatus::Succeeded);
                let tail = last.pop();
                for f in last {
                    driver.carry_end(f);
                }
                driver.advance(tail, None).await?;
            }
            None => {
                self.store
                    .set_run_status(
                        run_id,
                        self.owner.as_str(),
                        RunStatus::Succeeded,
                        None,
                        self.clock.now_ms(),
                    )
                    .await?;
            }
        }
        driver.notify(NotifyEvent::RunSucceeded, json!({})).await;
        Ok(RunOutcome::Succeeded)
    }

    /// Resume always uses the pinned text; when the file it came from has changed since,
    /// say so (once per resume) so nobody believes their edit is in effect.
    async fn check_pinned_file(&self, snap: &RunSnapshot) -> Result<(), EngineError> {
        let Some(path) = snap.run.source_path.as_deref() else {
            return Ok(());
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(());
        };
        let sha = sha256_hex(&text);
        if sha != snap.run.runbook_sha256 {
            self.observer.runbook_file_changed(path);
            tracing::warn!(
                path,
                "the runbook file changed since the run started; using the stored text"
            );
            self.store
                .record_event(
                    &snap.run.id,
                    "runbook.file_changed",
                    None,
                    json!({ "path": path, "pinned_sha256": snap.run.runbook_sha256, "file_sha256": sha }),
                    self.clock.now_ms(),
                )
                .await?;
        }
        Ok(())
    }
}
