//! The `fogbook` command line: parses arguments, installs logging, runs one command and
//! maps its result to an exit code. All data goes to stdout through `output`; logs,
//! progress and errors go to stderr.

mod arm;
mod bench;
mod cli;
mod database;
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
mod validate_cmd;

use std::process::ExitCode;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = help::parse();
    init_tracing(&cli);
    // The first event of the process (debug level): `fogbook bench` times resume from it.
    tracing::debug!("cli.started");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(source) => return ExitCode::from(error::CliError::Runtime { source }.report().code()),
    };
    let exit = runtime.block_on(dispatch::dispatch(cli));
    ExitCode::from(exit.code())
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
