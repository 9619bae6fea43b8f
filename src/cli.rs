//! The command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0    success (the run succeeded, the command did what was asked)
  1    the run failed (a step failed for good); `fogbook report RUN` says why
  2    bad input or usage: invalid runbook, parameters or arguments, unreadable state
  3    the run is waiting for an approval: `fogbook approve RUN STEP --by NAME`, then resume
  4    busy: another process drives the run, or another run holds a resource it needs
  5    the run was cancelled
  130  interrupted (Ctrl-C, SIGTERM): the run stopped at a safe point; `fogbook resume RUN`";

/// fogbook: durable runbooks for Azure SQL Managed Instance failover groups.
///
/// Every step of a run is checkpointed in a SQLite file, so a crash loses nothing and
/// `fogbook resume` continues where the run stopped.
#[derive(Debug, Parser)]
#[command(name = "fogbook", version, after_help = EXIT_CODES, max_term_width = 100)]
pub(crate) struct Cli {
    /// The state database (created with mode 0600 if missing).
    #[arg(long, global = true, env = "FOGBOOK_DB", default_value = "fogbook.db")]
    pub(crate) db: PathBuf,
    /// Output format on stdout. Logs and progress always go to stderr.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// More logging on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only errors on stderr; no progress.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Colour on stderr. NO_COLOR in the environment means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,
    /// How long a driver's lease on a run lasts without renewal; another process may take
    /// the run over after that (at once if the holder's process is gone).
    #[arg(long, global = true, env = "FOGBOOK_LEASE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub(crate) lease_ttl: std::time::Duration,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    Text,
    /// JSON with a `schema_version` field.
    Json,
    /// Same as text (for `history`).
    Table,
    /// Comma-separated values (only `history`).
    Csv,
}

/// Colour choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// Colour when stderr is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check runbooks (and optionally parameters) and report every error with its place.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the runbook format (for editors).
    Schema,
    /// Start a run of a runbook and drive it to the end (or to an approval).
    Run(RunArgs),
    /// Continue an interrupted, waiting or failed run where it stopped.
    Resume(ResumeArgs),
    /// Show one run: status, steps, open windows, lease, pending approval.
    Status(RunIdArg),
    /// List runs, newest first.
    Runs(RunsArgs),
    /// The audit trail of a run (use `--format table|json|csv`).
    History(RunIdArg),
    /// Steps with durations and every unprotected window of a run.
    Report(RunIdArg),
    /// Approve an approval step of a waiting run.
    Approve(ApproveArgs),
    /// Cancel a run (at its next safe point when another process drives it).
    Cancel(CancelArgs),
    /// Audit trail commands.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Runbook files.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Also check this parameter file against each runbook.
    #[arg(long)]
    pub(crate) params: Option<PathBuf>,
    /// Also check parameters given as key=value (dotted keys set nested fields).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The runbook file.
    pub(crate) file: PathBuf,
    /// Parameter file (YAML or JSON).
    #[arg(long)]
    pub(crate) params: Option<PathBuf>,
    /// Set a parameter (repeatable; overrides the file). Dotted keys set nested fields.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
    /// Approve every approval step without asking (recorded as auto-approved in the audit trail).
    #[arg(long)]
    pub(crate) auto_approve: bool,
    #[command(flatten)]
    pub(crate) drive: DriveArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DriveArgs {
    /// At an approval step, wait here until someone runs `fogbook approve` (instead of exiting with code 3).
    #[arg(long)]
    pub(crate) wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The run to resume.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) run_id: Option<String>,
    /// Resume every run that is not finished and not driven by a live process.
    #[arg(long)]
    pub(crate) all: bool,
    /// For a failed run: give its failed step a fresh attempt (audited).
    #[arg(long)]
    pub(crate) retry_failed: bool,
    /// Who asks for `--retry-failed` (for the audit trail).
    #[arg(long, default_value_t = default_user())]
    pub(crate) by: String,
    #[command(flatten)]
    pub(crate) drive: DriveArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunIdArg {
    /// The run id (as printed by `fogbook run` and `fogbook runs`).
    pub(crate) run_id: String,
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    /// Only runs with this status (repeatable): pending, running, waiting, succeeded, failed, cancelled.
    #[arg(long)]
    pub(crate) status: Vec<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The run.
    pub(crate) run_id: String,
    /// The approval step.
    pub(crate) step: String,
    /// Who approves (recorded in the audit trail).
    #[arg(long)]
    pub(crate) by: String,
    /// Optional comment.
    #[arg(long)]
    pub(crate) comment: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The run.
    pub(crate) run_id: String,
    /// Who cancels (recorded in the audit trail).
    #[arg(long, default_value_t = default_user())]
    pub(crate) by: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the hash chain of one run (or all) and name the first event that does not verify.
    Verify {
        /// Only this run.
        run_id: Option<String>,
    },
}

fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    fogbook_activities::duration::parse(s)
}
