//! Connecting the Azure activities: the ARM client from `--arm-endpoint`, `--auth` and
//! `FOGBOOK_ARM_TOKEN`, and `--sim`, which starts the emulator inside this process and
//! points the client at it with a static token.

use fogbook_activities::Env;
use fogbook_activities::arm::{ArmClient, ArmConfig, Secret};
use fogbook_engine::runbook::Runbook;
use fogbook_sim::{Estate, SimConfig, SimHandle};

use crate::cli::{Cli, SimArgs};
use crate::{Exit, output};

/// The token the in-process emulator accepts (it is a local rehearsal: no secret).
pub(crate) const SIM_TOKEN: &str = "fogbook-sim";

/// Whether the runbook calls Azure (every activity outside the built-ins has a dotted name).
pub(crate) fn uses_azure(rb: &Runbook) -> bool {
    rb.steps.iter().any(|s| s.uses.contains('.'))
}

/// Starts the emulator for `--sim`, saving its state to `state_file` after every mutation
/// (so the rehearsal can be restored by a later command).
pub(crate) async fn start_sim(
    args: &SimArgs,
    state_file: Option<std::path::PathBuf>,
    quiet: bool,
) -> Result<Option<SimHandle>, Exit> {
    if !args.sim {
        return Ok(None);
    }
    let estate = match &args.sim_estate {
        Some(path) => Estate::load(path),
        None => Estate::demo(),
    };
    let estate = estate.map_err(|e| {
        output::error_chain(&e, Some("the estate format is described in sim/README.md"));
        Exit::BadInput
    })?;
    if !(args.sim_time_scale.is_finite() && args.sim_time_scale > 0.0) {
        output::error("--sim-time-scale must be a number > 0", None);
        return Err(Exit::BadInput);
    }
    let mut config = SimConfig::new(estate);
    config.time_scale = args.sim_time_scale;
    config.token = Some(SIM_TOKEN.to_owned());
    config.state_file = state_file;
    let sim = fogbook_sim::start(config).await.map_err(|e| {
        output::error_chain(&e, None);
        Exit::BadInput
    })?;
    output::note(
        quiet,
        &format!(
            "--sim: ARM emulator at {} (demo estate, {}x time); nothing leaves this machine",
            sim.base_url(),
            args.sim_time_scale
        ),
    );
    Ok(Some(sim))
}

/// The activities' environment: with an ARM client when one can be built. `required`: the
/// runbook calls Azure, so a client that cannot be built is an error (exit 2); otherwise the
/// run goes on without one (a later Azure step fails with `ArmNotConfigured`).
pub(crate) async fn env(cli: &Cli, sim: Option<&SimHandle>, required: bool) -> Result<Env, Exit> {
    let config = match sim {
        Some(sim) => match url::Url::parse(&sim.base_url()) {
            Ok(url) => Ok(ArmConfig::with_token(url, Secret::new(SIM_TOKEN.to_owned()))),
            Err(e) => {
                output::error(&format!("the emulator's URL does not parse: {e}"), None);
                return Err(Exit::BadInput);
            }
        },
        None => ArmConfig::from_parts(
            cli.arm_endpoint.as_deref(),
            cli.auth.as_deref(),
            std::env::var("FOGBOOK_ARM_TOKEN").ok(),
        ),
    };
    let client = match config {
        Ok(cfg) => ArmClient::new(cfg).await,
        Err(e) => Err(e),
    };
    match client {
        Ok(client) => Ok(Env::with_arm(client)),
        Err(e) if required => {
            output::error_chain(
                &e,
                Some("see `fogbook --help` for --arm-endpoint and --auth, or add --sim to rehearse on the emulator"),
            );
            Err(Exit::BadInput)
        }
        Err(e) => {
            tracing::debug!(error = %e, "no ARM client; Azure activities will fail if a run needs them");
            Ok(Env::new())
        }
    }
}
