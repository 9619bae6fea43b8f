//! The `fogbook` command line: parses arguments, installs logging, runs one command and
//! maps its result to an exit code. All data goes to stdout through `output`; logs,
//! progress and errors go to stderr.

mod arm;
mod bench_cloud;
mod bench_fleet;
mod cli;
mod commands;
mod fleet_cmd;
mod html;
mod operator_cmd;
mod output;
mod plan_cmd;
mod progress;
mod rehearsal;
mod report;
mod schedule_cmd;
mod serve;
mod sim_cmd;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, ColorChoice};

/// What a command asks the process to exit with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Success = 0,
    RunFailed = 1,
    BadInput = 2,
    Waiting = 3,
    Busy = 4,
    Cancelled = 5,
    Interrupted = 130,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    // The first event of the process (debug level): `fogbook bench` times resume from it.
    tracing::debug!("cli.started");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::error(&format!("cannot start the async runtime: {e}"), None);
            return ExitCode::from(Exit::BadInput as u8);
        }
    };
    let exit = runtime.block_on(commands::dispatch(cli));
    ExitCode::from(exit as u8)
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
    let ansi = use_color(cli.color);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

pub(crate) fn use_color(choice: ColorChoice) -> bool {
    use std::io::IsTerminal;
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal(),
    }
}
