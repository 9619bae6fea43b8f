//! Connecting the Azure activities: the ARM client from `--arm-endpoint`, `--auth` and
//! `FOGBOOK_ARM_TOKEN`, and `--sim`, which starts the emulator inside this process and
//! points the client at it with a static token.

use fogbook_activities::Env;
use fogbook_activities::arm::{ArmClient, ArmConfig, Secret};
use fogbook_engine::runbook::Runbook;
use fogbook_sim::{Estate, SimConfig, SimHandle};

use crate::cli::{Cli, SimArgs};
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::output;

/// The token the in-process emulator accepts (it is a local rehearsal: no secret).
pub(crate) const SIM_TOKEN: &str = "fogbook-sim";

/// Whether the runbook calls Azure (an activity that needs ARM).
pub(crate) fn uses_azure(rb: &Runbook) -> bool {
    rb.steps.iter().any(|s| fogbook_activities::needs_arm(&s.uses))
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
        fail(CliError::input(
            e,
            Some("the estate format is described in sim/README.md"),
        ))
    })?;
    if !(args.sim_time_scale.is_finite() && args.sim_time_scale > 0.0) {
        return Err(fail(CliError::usage("--sim-time-scale must be a number > 0", None)));
    }
    let mut config = SimConfig::new(estate);
    config.time_scale = args.sim_time_scale;
    config.token = Some(SIM_TOKEN.to_owned());
    config.state_file = state_file;
    let sim = fogbook_sim::start(config)
        .await
        .map_err(|e| fail(CliError::input(e, None)))?;
    let estate = match &args.sim_estate {
        Some(path) => format!("estate {}", path.display()),
        None => "demo estate".to_owned(),
    };
    output::note(
        quiet,
        &format!(
            "--sim: ARM emulator at {} ({estate}, {}x time); nothing leaves this machine",
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
    env_with(cli, sim, required, true).await
}

/// As [`env()`], for a command that must leave no file behind (`plan`): its few reads are
/// paced by this process alone.
pub(crate) async fn env_read_only(cli: &Cli, sim: Option<&SimHandle>, required: bool) -> Result<Env, Exit> {
    env_with(cli, sim, required, false).await
}

/// The file beside the state database in which every process using it shares one ARM
/// request schedule per subscription and principal (README "The database files").
pub(crate) fn schedule_file(db: &std::path::Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-arm-schedule");
    std::path::PathBuf::from(name)
}

async fn env_with(cli: &Cli, sim: Option<&SimHandle>, required: bool, shared: bool) -> Result<Env, Exit> {
    let config = match sim {
        Some(sim) => match url::Url::parse(&sim.base_url()) {
            Ok(url) => Ok(ArmConfig::with_token(url, Secret::new(SIM_TOKEN.to_owned()))),
            Err(e) => {
                return Err(fail(CliError::usage(
                    format!("the emulator's URL does not parse: {e}"),
                    None,
                )));
            }
        },
        None => ArmConfig::from_parts(
            cli.arm_endpoint.as_deref(),
            cli.auth.as_deref(),
            std::env::var("FOGBOOK_ARM_TOKEN").ok(),
        ),
    };
    let client = match config {
        Ok(mut cfg) => {
            if shared {
                cfg.shared_schedule = Some(schedule_file(&crate::database::local_base(cli)));
            }
            ArmClient::new(cfg).await
        }
        Err(e) => Err(e),
    };
    match client {
        Ok(client) => Ok(Env::with_arm(client)),
        Err(e) if required => Err(fail(CliError::input(
            e,
            Some("see `fogbook --help` for --arm-endpoint and --auth, or add --sim to rehearse on the emulator"),
        ))),
        Err(e) => {
            tracing::debug!(error = %e, "no ARM client; Azure activities will fail if a run needs them");
            Ok(Env::new())
        }
    }
}

/// Before a run with Azure steps is created or continued: the credential must give a token
/// for the endpoint now, so a bad login creates no run, takes no lock and fails no step. Under `--auth auto` the
/// error names each source in the order they are tried and why each gave nothing.
pub(crate) async fn check_credential(cli: &Cli, env: &Env, consequence: &str) -> Result<(), Exit> {
    let Some(client) = &env.arm else {
        return Ok(());
    };
    let limit = std::time::Duration::from_secs(60);
    let reason = match tokio::time::timeout(limit, client.check_credential()).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => match e {
            fogbook_activities::ActivityError::Failed { message, .. } => match message.split_once("gave no token: ") {
                Some((_, why)) => why.to_owned(),
                None => message,
            },
            other => other.to_string(),
        },
        Err(_) => format!(
            "the {} credential gave no token within {}s",
            client.credential_kind(),
            limit.as_secs()
        ),
    };
    let mut text = format!("no ARM token for {}; {consequence}", client.endpoint());
    let auto = cli.auth.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("auto"));
    if auto {
        text.push_str("\n--auth auto tried, in order:");
        for (source, outcome) in auto_sources(&reason) {
            text.push_str(&format!("\n  {source}: {outcome}"));
        }
    } else {
        text.push_str(&format!("\n  {}", indent(&reason)));
    }
    Err(fail(CliError::usage(
        text,
        Some(
            "log in (`az login`), set FOGBOOK_ARM_TOKEN, or pick a source with --auth (see `fogbook --help`); add --sim to rehearse on the emulator",
        ),
    )))
}

fn set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

fn indent(text: &str) -> String {
    text.trim().replace('\n', "\n    ")
}

/// The sources `--auth auto` tries (the order of `activities::arm::credential`), each with
/// why it gave nothing: not configured, or the error of the one that was asked.
fn auto_sources(reason: &str) -> Vec<(&'static str, String)> {
    let checks: [(&'static str, bool, &'static str); 5] = [
        ("FOGBOOK_ARM_TOKEN", set("FOGBOOK_ARM_TOKEN"), "not set"),
        (
            "workload identity",
            set("AZURE_FEDERATED_TOKEN_FILE") && set("AZURE_CLIENT_ID"),
            "not configured (AZURE_FEDERATED_TOKEN_FILE and AZURE_CLIENT_ID are not both set)",
        ),
        (
            "client secret",
            set("AZURE_CLIENT_SECRET") && set("AZURE_CLIENT_ID") && set("AZURE_TENANT_ID"),
            "not configured (AZURE_CLIENT_SECRET, AZURE_CLIENT_ID and AZURE_TENANT_ID are not all set)",
        ),
        (
            "managed identity",
            set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT"),
            "not configured (neither IDENTITY_ENDPOINT nor MSI_ENDPOINT is set)",
        ),
        ("developer tools (az login, azd auth login)", true, ""),
    ];
    let mut out = Vec::new();
    for (source, configured, why_not) in checks {
        if configured {
            out.push((source, format!("gave no token: {}", indent(reason))));
            break;
        }
        out.push((source, why_not.to_owned()));
    }
    out
}

/// The activities' environment of a run on the emulator `sim` (a restored rehearsal).
pub(crate) async fn sim_env(sim: &SimHandle) -> Result<Env, String> {
    let url = url::Url::parse(&sim.base_url()).map_err(|e| format!("the emulator's URL does not parse: {e}"))?;
    let client = ArmClient::new(ArmConfig::with_token(url, Secret::new(SIM_TOKEN.to_owned())))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Env::with_arm(client))
}
