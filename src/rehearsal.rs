//! Rehearsals (`run --sim`) that outlive their process.
//!
//! The in-process emulator saves its state (world, operations in flight, journal, simulated
//! time) to a file beside the database, and the run records that file, the emulator's address
//! and the time scale in its `run.created` audit event (under `by.rehearsal`), so the record
//! is hash-chained with the rest of the trail. Every command that drives the run again
//! restores the emulator from that file on the same address (the polling URLs the run saved
//! point there), with simulated time advanced by the real time that passed at the run's
//! scale. A rehearsal is never continued against another endpoint, and a run created against
//! an ARM endpoint is never continued on the emulator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fogbook_activities::arm::Cloud;
use fogbook_sim::{Estate, SimConfig, SimHandle};
use fogbook_state::Store;
use serde_json::{Value, json};

use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::output;

/// What a rehearsal run recorded about its emulator.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rehearsal {
    /// The emulator's saved state.
    pub(crate) state_file: PathBuf,
    /// Where it listened (and listens again when restored).
    pub(crate) addr: SocketAddr,
    /// Simulated seconds per real second.
    pub(crate) time_scale: f64,
}

/// How a run reaches ARM, as recorded when it was created.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Target {
    /// `run --sim`: the in-process emulator.
    Rehearsal(Rehearsal),
    /// An ARM endpoint (`--arm-endpoint`, or the public cloud).
    Endpoint(String),
    /// Nothing recorded (a run created before targets were recorded, a schedule's run).
    Unrecorded,
}

impl Rehearsal {
    /// The `created_by` entry of the run.
    pub(crate) fn record(&self) -> Value {
        json!({
            "emulator": format!("http://{}", self.addr),
            "state_file": self.state_file.display().to_string(),
            "time_scale": self.time_scale,
        })
    }

    fn from_record(v: &Value) -> Option<Rehearsal> {
        let addr = v["emulator"].as_str()?.strip_prefix("http://")?.parse().ok()?;
        Some(Rehearsal {
            state_file: PathBuf::from(v["state_file"].as_str()?),
            addr,
            time_scale: v["time_scale"].as_f64()?,
        })
    }
}

/// A new, unused state file for a rehearsal's emulator, in `<db>.sim/` beside the database
/// (the directory is created with the file's parents).
pub(crate) fn new_state_file(db: &Path) -> Result<PathBuf, Exit> {
    let db = std::path::absolute(db).unwrap_or_else(|_| db.to_owned());
    let mut dir = db.as_os_str().to_owned();
    dir.push(".sim");
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Err(fail(CliError::usage(
            format!(
                "cannot create {} for the rehearsal's emulator state: {e}",
                dir.display()
            ),
            Some("the emulator's state is kept beside the database; pass a writable --db"),
        )));
    }
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    Ok(dir.join(format!("{nanos}-{}.json", std::process::id())))
}

/// How `run_id` reaches ARM, from its `run.created` event.
pub(crate) async fn target_of(store: &Store, run_id: &str) -> Result<Target, fogbook_state::StateError> {
    let events = store.events(run_id).await?;
    let Some(created) = events.iter().find(|e| e.kind == "run.created") else {
        return Ok(Target::Unrecorded);
    };
    let by = &created.data["by"];
    if let Some(r) = Rehearsal::from_record(&by["rehearsal"]) {
        return Ok(Target::Rehearsal(r));
    }
    Ok(match by["arm_endpoint"].as_str() {
        Some(e) => Target::Endpoint(e.to_owned()),
        None => Target::Unrecorded,
    })
}

/// Starts the emulator of a rehearsal run again from its saved state, on its address, with
/// the simulated time that passed while nothing ran.
pub(crate) async fn restore(run_id: &str, r: &Rehearsal, quiet: bool) -> Result<SimHandle, Exit> {
    if !r.state_file.exists() {
        return Err(fail(CliError::usage(
            format!(
                "run {run_id} is a rehearsal, and its emulator state {} is gone",
                r.state_file.display()
            ),
            Some(
                format!(
                    "without it the rehearsed estate cannot be restored; `{fb} cancel {run_id}` ends the run",
                    fb = crate::output::fogbook()
                )
                .as_str(),
            ),
        )));
    }
    // The estate is ignored when the state file exists; the demo one only fills the field.
    let estate = Estate::demo().map_err(|e| fail(CliError::input(e, None)))?;
    let mut config = SimConfig::new(estate);
    config.listen = r.addr;
    config.time_scale = r.time_scale;
    config.state_file = Some(r.state_file.clone());
    config.clock_runs_while_stopped = true;
    config.token = Some(crate::arm::SIM_TOKEN.to_owned());
    let sim = fogbook_sim::start(config).await.map_err(|e| {
        let fb = crate::output::fogbook();
        let hint = match &e {
            fogbook_sim::SimError::ParseState { path, .. } => format!(
                "{} is corrupt: it is not the emulator state fogbook wrote, so the rehearsed estate cannot be restored from it; put back a copy of that file if you have one and resume again, or end the run with `{fb} cancel {run_id}` (a rehearsal: nothing outside this machine is touched)",
                path.display()
            ),
            fogbook_sim::SimError::ReadFile { path, .. } => format!(
                "the emulator state {} of run {run_id} cannot be read: fix its permissions (it must be readable by this user) and resume again",
                path.display()
            ),
            _ => format!(
                "run {run_id} is a rehearsal: its emulator must listen on {} again, because the operations it polls were started there; free that port and resume again",
                r.addr
            ),
        };
        fail(CliError::input(e, Some(&hint)))
    })?;
    output::note(
        quiet,
        &format!(
            "rehearsal: ARM emulator restored at {} from {} ({}x time); nothing leaves this machine",
            sim.base_url(),
            r.state_file.display(),
            r.time_scale
        ),
    );
    Ok(sim)
}

/// Refuses (busy, exit 4) to take over rehearsal `run_id` from `owner`, its previous driver,
/// while that process still lives on this host and its emulator still listens on the
/// rehearsal's address: a driver frozen (SIGSTOP, a suspended terminal) past its lease. Its
/// lease may be expired, but the emulator cannot be restored where the run's operations are
/// polled until that process lets go of the address. Checked before the lease is claimed,
/// so the refusal records no takeover.
pub(crate) fn check_previous_driver(run_id: &str, r: &Rehearsal, owner: &str) -> Result<(), CliError> {
    let this = fogbook_engine::Owner::this_process(None);
    let this_host = this.as_str().split(':').next().unwrap_or_default();
    let host = owner.split(':').next().unwrap_or_default();
    if owner == this.as_str() || host != this_host || fogbook_engine::owner::is_dead(owner) {
        return Ok(());
    }
    match std::net::TcpListener::bind(r.addr) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        // Free (the listener is dropped at once), or another trouble that restoring reports.
        _ => return Ok(()),
    }
    let pid = owner.split(':').nth(1).unwrap_or("?");
    let fb = crate::output::fogbook();
    Err(CliError::Busy {
        message: format!(
            "run {run_id} is a rehearsal still held by its previous driver {owner} ({}): that process lives, and its emulator still listens on {}, where the rehearsal must be restored",
            crate::error::process_of(owner),
            r.addr
        ),
        hint: format!(
            "let that driver go on: if it is stopped (SIGSTOP, Ctrl-Z), `kill -CONT {pid}` continues it, and once its lease has expired it stops by itself; or end it with `kill {pid}`. When it has exited, `{fb} resume {run_id}` takes the run over (nothing was changed now)"
        ),
    })
}

/// Refuses to continue `run_id` against something other than what it was created against:
/// a rehearsal against an ARM endpoint, or a real run on the emulator (`--sim`).
pub(crate) fn check_target(
    run_id: &str,
    target: &Target,
    arm_endpoint: Option<&str>,
    sim_asked: bool,
) -> Result<(), Exit> {
    match target {
        Target::Rehearsal(r) => {
            if let Some(endpoint) = arm_endpoint {
                return Err(fail(CliError::usage(format!(
                        "run {run_id} is a rehearsal on the ARM emulator (--sim); it is not continued against {endpoint}"
                    ), Some(format!(
                        "drop --arm-endpoint (and unset FOGBOOK_ARM_ENDPOINT): `{fb} resume {run_id}` restores its emulator from {}; to do it for real, start a new run without --sim",
                        r.state_file.display(),
                        fb = crate::output::fogbook()
                    ).as_str()))));
            }
        }
        Target::Endpoint(_) | Target::Unrecorded if sim_asked => {
            return Err(fail(CliError::usage(format!("run {run_id} is not a rehearsal; it is not continued on the ARM emulator (--sim)"), Some(format!(
                    "drop --sim to continue it against Azure, or rehearse with a new `fogbook run … --sim`; `{fb} status {run_id}` shows where it stands",
                    fb = crate::output::fogbook()
                ).as_str()))));
        }
        Target::Endpoint(recorded) => {
            let current = endpoint_record(arm_endpoint);
            if endpoint_record(Some(recorded)) != current {
                return Err(fail(CliError::usage(format!("run {run_id} was started against {recorded}; it is not continued against {current}"), Some(format!(
                        "pass --arm-endpoint {recorded} (or set FOGBOOK_ARM_ENDPOINT) to continue it where its operations are"
                    ).as_str()))));
            }
        }
        Target::Unrecorded => {}
    }
    Ok(())
}

/// The endpoint a run records: the URL, with a cloud name (or nothing: the public cloud)
/// turned into its URL, as the ARM client reads `--arm-endpoint`.
pub(crate) fn endpoint_record(arm_endpoint: Option<&str>) -> String {
    let url = match arm_endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        None => Some(Cloud::Public.endpoint()),
        Some(text) if !text.contains("://") => text.parse::<Cloud>().ok().map(Cloud::endpoint),
        Some(text) => url::Url::parse(text).ok(),
    };
    match url {
        Some(u) => u.as_str().trim_end_matches('/').to_owned(),
        None => arm_endpoint.unwrap_or_default().to_owned(),
    }
}

/// The worker's per-run environments: a rehearsal is driven on its restored emulator, a run
/// started against another endpoint than the worker's is left alone (logged).
pub(crate) struct WorkerRunEnv {
    pub(crate) store: Store,
    pub(crate) arm_endpoint: Option<String>,
    pub(crate) quiet: bool,
}

impl fogbook_engine::RunEnv for WorkerRunEnv {
    fn prepare<'a>(
        &'a self,
        run_id: &'a str,
    ) -> fogbook_activities::BoxFuture<'a, Result<Option<fogbook_engine::PreparedEnv>, String>> {
        Box::pin(async move {
            match target_of(&self.store, run_id).await.map_err(|e| e.to_string())? {
                Target::Rehearsal(r) => {
                    let sim = restore(run_id, &r, self.quiet)
                        .await
                        .map_err(|_| format!("cannot restore the emulator of rehearsal {run_id}"))?;
                    let env = match crate::arm::sim_env(&sim).await {
                        Ok(env) => env,
                        Err(e) => {
                            sim.shutdown().await;
                            return Err(e);
                        }
                    };
                    Ok(Some(fogbook_engine::PreparedEnv {
                        env,
                        finish: Box::pin(async move { sim.shutdown().await }),
                    }))
                }
                Target::Endpoint(recorded) => {
                    let current = endpoint_record(self.arm_endpoint.as_deref());
                    if endpoint_record(Some(&recorded)) == current {
                        Ok(None)
                    } else {
                        Err(format!(
                            "run {run_id} was started against {recorded}; this worker talks to {current}"
                        ))
                    }
                }
                Target::Unrecorded => Ok(None),
            }
        })
    }

    /// A rehearsal whose previous driver still lives on this host holding its emulator's
    /// address (frozen past its lease) is left to it, as `resume` refuses it
    /// ([`check_previous_driver`]), before any takeover.
    fn may_take_over<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
    ) -> fogbook_activities::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match target_of(&self.store, run_id).await.map_err(|e| e.to_string())? {
                Target::Rehearsal(r) => check_previous_driver(run_id, &r, owner).map_err(|e| match e {
                    CliError::Busy { message, .. } => message,
                    other => other.to_string(),
                }),
                _ => Ok(()),
            }
        })
    }
}
