//! `fogbook resume`: continues one run or every unfinished one.

use std::sync::Arc;

use fogbook_engine::Engine;
use fogbook_engine::runbook;
use fogbook_state::{RunFilter, RunStatus, Store};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, ResumeArgs};
use crate::database::open_existing;
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::output;
use crate::progress::Progress;
use crate::report;
use crate::run_cmd::{drive, engine, retake_released_locks};
use crate::signals::spawn_signal_handler;

pub(crate) async fn resume(cli: &Cli, args: &ResumeArgs) -> Exit {
    let store = match open_existing(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let exit = resume_runs(cli, args, store.clone()).await;
    store.close().await;
    exit
}

async fn resume_runs(cli: &Cli, args: &ResumeArgs, store: Store) -> Exit {
    let progress = Progress::new(cli.quiet);
    let ids = if let Some(id) = &args.run_id {
        vec![id.clone()]
    } else {
        let filter = RunFilter {
            statuses: vec![RunStatus::Pending, RunStatus::Running, RunStatus::Waiting],
            limit: None,
        };
        match store.list_runs(filter).await {
            Ok(runs) => runs.into_iter().rev().map(|r| r.id).collect(),
            Err(e) => return fail(e),
        }
    };
    if ids.is_empty() {
        output::note(cli.quiet, "no unfinished runs to resume");
        return Exit::Success;
    }
    // Every run is tried, and the worst outcome is the exit code, whichever order they came
    // in (an interruption stops the rest).
    let mut worst = Exit::Success;
    for id in ids {
        let exit = resume_id(cli, args, &store, &id, &progress).await;
        worst = worst.worst(exit);
        if exit == Exit::Interrupted {
            break;
        }
    }
    worst
}

/// Resumes run `id` on the target it was created for: its restored emulator or its endpoint.
async fn resume_id(cli: &Cli, args: &ResumeArgs, store: &Store, id: &str, progress: &Arc<Progress>) -> Exit {
    let id = id.to_owned();
    // Where the run was created decides where it continues: a rehearsal on its restored
    // emulator, a real run against its endpoint (src/rehearsal.rs).
    let target = match crate::rehearsal::target_of(store, &id).await {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if let Err(code) = crate::rehearsal::check_target(&id, &target, cli.arm_endpoint.as_deref(), args.sim) {
        return code;
    }
    let snap = match store.load_run(&id).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // A live driver keeps the run (and a rehearsal's emulator address): say so before
    // trying to restore anything. Live is judged by the lease clock, as `status` judges it
    // (the database server's on PostgreSQL, whatever this host's clock says).
    let lease_now = match report::lease_clock_now(store).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    if let report::Drive::Running { owner, until } = report::drive_of_run(&snap, lease_now, cli.lease_ttl) {
        return fail(fogbook_state::StateError::LeaseHeld {
            run_id: id.clone(),
            owner,
            expires_at: fogbook_state::format_ms(until),
        });
    }
    // A driver frozen past its lease still holds its emulator's address: the run cannot be
    // taken over while that process lives (refused naming it, before any takeover).
    if let crate::rehearsal::Target::Rehearsal(r) = &target
        && let Some(owner) = &snap.run.lease_owner
        && let Err(e) = crate::rehearsal::check_previous_driver(&id, r, owner)
    {
        return fail(e);
    }
    // A rehearsal's emulator listens on the run's recorded address, which only one
    // process can hold: the lease is taken first, so that of two resumes started at once
    // the loser is refused naming the driver (exit 4) instead of failing to bind, and
    // only the lease holder ever restores the emulator.
    let owner = fogbook_engine::Owner::this_process(None);
    // The lease of a finished run is not granted: a failed rehearsal's step is reopened
    // (`--retry-failed`) before its lease is claimed, as driving a real run does it first.
    let mut reopened = false;
    if args.retry_failed
        && snap.run.status == RunStatus::Failed
        && matches!(target, crate::rehearsal::Target::Rehearsal(_))
    {
        if let Err(code) = reopen_failed(cli, args, store, &id, engine_now()).await {
            return code;
        }
        reopened = true;
    }
    let sim = match &target {
        crate::rehearsal::Target::Rehearsal(r) => {
            if let Err(code) = claim_lease(cli, store, &id, &owner).await {
                return code;
            }
            match crate::rehearsal::restore(&id, r, cli.quiet).await {
                Ok(sim) => Some(sim),
                Err(code) => {
                    release_claim(store, &id, &owner).await;
                    return code;
                }
            }
        }
        _ => None,
    };
    let env = match crate::arm::env(cli, sim.as_ref(), sim.is_some()).await {
        Ok(e) => e,
        Err(code) => {
            if let Some(sim) = sim {
                sim.shutdown().await;
                release_claim(store, &id, &owner).await;
            }
            return code;
        }
    };
    // A real run with Azure steps continues only with a credential that gives a token, so
    // a bad login does not fail the run at its next Azure step.
    let needs_arm =
        runbook::parse(&snap.run.runbook_text, "pinned runbook").is_ok_and(|rb| crate::arm::uses_azure(&rb));
    if sim.is_none()
        && needs_arm
        && !matches!(snap.run.status, RunStatus::Succeeded | RunStatus::Cancelled)
        && let Err(code) = crate::arm::check_credential(cli, &env, &format!("run {id} was not continued")).await
    {
        return code;
    }
    let engine = engine(cli, store.clone(), &args.drive, progress.clone(), env).with_owner(owner.clone());
    tracing::debug!("engine.ready");
    let exit = resume_one(cli, args, store, &engine, &id, reopened, progress.clone()).await;
    if let Some(sim) = sim {
        sim.shutdown().await;
        // Driving releases the lease; a refusal before driving (a failed run without
        // --retry-failed) leaves the claim, given back here.
        release_claim(store, &id, &owner).await;
    }
    exit
}

/// Takes the lease of `run_id` for `owner` before anything of the run is restored, as
/// [`Engine::drive`] would: at once from a process proven gone, only a safety margin after
/// the expiry of one that may live, never from a live holder (refused naming it, exit 4).
async fn claim_lease(cli: &Cli, store: &Store, run_id: &str, owner: &fogbook_engine::Owner) -> Result<(), Exit> {
    let holder = store.lease_owner(run_id).await.map_err(fail)?;
    let dead = holder.clone().filter(|o| fogbook_engine::owner::is_dead(o));
    if holder.as_deref().is_some_and(|h| h != owner.as_str())
        && dead.is_none()
        && let Ok(snap) = store.load_run(run_id).await
        && let Some(expires_at) = snap.run.lease_expires_at
    {
        let margin = fogbook_engine::lease_margin(cli.lease_ttl, cli.lease_margin);
        let until = expires_at.saturating_add(i64::try_from(margin.as_millis()).unwrap_or(i64::MAX));
        // The expiry is by the lease clock (the database server's on PostgreSQL).
        let now = report::lease_clock_now(store).await?;
        if now >= expires_at && now < until {
            let wait = std::time::Duration::from_millis((until - now).unsigned_abs());
            tracing::info!(
                wait_ms = wait.as_millis(),
                "the run's lease expired just now; waiting out the safety margin before taking it over"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = tokio::signal::ctrl_c() => return Err(Exit::Interrupted),
            }
        }
    }
    match store
        .acquire_lease(run_id, owner.as_str(), cli.lease_ttl, dead, engine_now())
        .await
    {
        Ok(grant) => {
            if let Some(from) = grant.taken_over_from {
                tracing::warn!(from = %from, "took over the run's lease");
            }
            Ok(())
        }
        Err(e) => Err(fail(e)),
    }
}

/// Gives back a lease [`claim_lease`] took, when this process does not drive the run (a
/// no-op when driving already released it or another process holds it).
async fn release_claim(store: &Store, run_id: &str, owner: &fogbook_engine::Owner) {
    if let Err(e) = store.release_lease(run_id, owner.as_str(), engine_now()).await {
        tracing::warn!(error = %e, "lease.release_failed");
    }
}

fn engine_now() -> fogbook_state::Millis {
    fogbook_engine::Clock::now_ms(&fogbook_engine::SystemClock)
}

/// Gives the failed step of run `id` a fresh attempt (`--retry-failed`), retaking the locks
/// the failure released.
async fn reopen_failed(
    cli: &Cli,
    args: &ResumeArgs,
    store: &Store,
    id: &str,
    now: fogbook_state::Millis,
) -> Result<(), Exit> {
    if let Err(e) = retake_released_locks(store, id, now).await {
        return Err(fail(e));
    }
    let actor = args.who.actor();
    match store.retry_failed(id, &actor, now).await {
        Ok(step) => {
            output::note(cli.quiet, &format!("step `{step}` of run {id} gets a fresh attempt"));
            Ok(())
        }
        Err(e) => Err(fail(e)),
    }
}

/// Resumes one run (with `--retry-failed`, gives its failed step a fresh attempt first,
/// unless `reopened` says that was done already).
async fn resume_one(
    cli: &Cli,
    args: &ResumeArgs,
    store: &Store,
    engine: &Engine,
    id: &str,
    reopened: bool,
    progress: Arc<Progress>,
) -> Exit {
    if args.retry_failed {
        if !reopened && let Err(code) = reopen_failed(cli, args, store, id, engine.now_ms()).await {
            return code;
        }
    } else if let Ok(snap) = store.load_run(id).await
        && snap.run.status == RunStatus::Failed
    {
        return fail(CliError::usage(
            format!("run {id} has failed; resuming it would retry its failed step"),
            Some(
                format!(
                    "if that is what you want: {fb} resume {id} --retry-failed; otherwise {fb} cancel {id}",
                    fb = crate::output::fogbook()
                )
                .as_str(),
            ),
        ));
    }
    output::always(&format!("run {id}"));
    if args.drive.wait {
        progress.wait_at_approvals(id);
    }
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone(), cli.quiet);
    drive(cli, engine, id, progress, stop).await
}
