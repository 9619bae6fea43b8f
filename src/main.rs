//! The `fogbook` command line: parses arguments, installs logging, runs one command and
//! maps its result to an exit code. All data goes to stdout through `output`; logs,
//! progress and errors go to stderr.

mod arm;
mod bench;
mod cli;
mod database;
mod db_wait;
mod dispatch;
mod error;
mod exit;
mod fleet_cmd;
mod help;
mod html;
mod input;
mod operator_cmd;
mod output;
mod plan_cmd;
mod progress;
mod rehearsal;
mod report;
mod resume_cmd;
mod run_cmd;
mod schedule_cmd;
mod serve;
mod signals;
mod sim_cmd;
mod store_cmd;
mod validate_cmd;

use std::process::ExitCode;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = help::parse();
    init_tracing(&cli);
    // The first event of the process (debug level): `fogbook bench` times resume from it.
    tracing::debug!("cli.started");
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return ExitCode::from(e.report().code()),
    };
    let exit = runtime.block_on(dispatch::dispatch(cli));
    ExitCode::from(exit.code())
}

/// The async runtime. tokio panics, rather than returning an error, when the OS refuses its
/// worker threads: both end as [`error::CliError::Runtime`] (exit 70), without a panic message.
fn runtime() -> Result<tokio::runtime::Runtime, error::CliError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let built = std::panic::catch_unwind(|| tokio::runtime::Builder::new_multi_thread().enable_all().build());
    std::panic::set_hook(hook);
    let source = match built {
        Ok(Ok(rt)) => return Ok(rt),
        Ok(Err(e)) => e,
        Err(panic) => std::io::Error::other(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the runtime could not start its threads".to_owned()),
        ),
    };
    Err(error::CliError::Runtime { source })
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = output::set_color(cli.color);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
