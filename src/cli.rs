// Over 600 lines on purpose: every argument of every command with its help text, in one place a reader scans to see the whole surface (behaviour lives in the command modules).
//! The command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The help heading of the options every command takes.
pub(crate) const GLOBAL: &str = "Global options";

/// Durable runbooks for Azure SQL Managed Instance failover groups.
///
/// Every step of a run is checkpointed in a SQLite file, so a crash loses nothing and
/// `fogbook resume` continues where the run stopped.
#[derive(Debug, Parser)]
#[command(name = "fogbook", version, after_help = crate::exit::help_text(), max_term_width = 100)]
pub(crate) struct Cli {
    /// The state database: a SQLite file (created with mode 0600 if missing; also `sqlite:PATH`)
    /// or a PostgreSQL URL, `postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=require`.
    #[arg(long, global = true, help_heading = GLOBAL, env = "FOGBOOK_DB", hide_env_values = true, default_value = "fogbook.db")]
    pub(crate) db: PathBuf,
    /// Output format on stdout. Logs and progress always go to stderr.
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// More logging on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, help_heading = GLOBAL, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only errors on stderr; no progress.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub(crate) quiet: bool,
    /// Colour on stderr. With auto, NO_COLOR in the environment means never and CLICOLOR_FORCE
    /// means always.
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,
    /// How long a driver's lease on a run lasts without renewal; another process may take
    /// the run over after that (at once if the holder's process is gone). At least 500ms.
    #[arg(long, global = true, help_heading = GLOBAL, env = "FOGBOOK_LEASE_TTL", default_value = "30s", value_parser = parse_lease_ttl)]
    pub(crate) lease_ttl: std::time::Duration,
    /// Safety margin of the lease: a driver sends no cloud request later than the lease
    /// minus this after its last renewal, and takes over an expired lease only this long
    /// after it expired. Default: a quarter of the lease (at most half of it). Must be
    /// shorter than --lease-ttl.
    #[arg(long, global = true, help_heading = GLOBAL, env = "FOGBOOK_LEASE_MARGIN", value_parser = parse_duration)]
    pub(crate) lease_margin: Option<std::time::Duration>,
    /// Azure Resource Manager endpoint: a URL (the emulator's, a private endpoint) or a cloud
    /// name: public (default), china, usgov.
    #[arg(long, global = true, help_heading = GLOBAL, env = "FOGBOOK_ARM_ENDPOINT")]
    pub(crate) arm_endpoint: Option<String>,
    /// How to get ARM tokens: auto (default: FOGBOOK_ARM_TOKEN, then workload identity, a
    /// client secret, managed identity, then the Azure CLI), token, developer-tools,
    /// managed-identity, workload-identity, client-secret.
    #[arg(long, global = true, help_heading = GLOBAL, env = "FOGBOOK_AUTH")]
    pub(crate) auth: Option<String>,
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
    /// Comma-separated values (only `history`, whose help lists it).
    #[value(hide = true)]
    Csv,
}

/// Colour choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// Colour when stderr is a terminal and NO_COLOR is unset (or CLICOLOR_FORCE is set).
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
    /// Show what a run would do, changing nothing: steps in order, read-only steps run for
    /// real (preflight, current sizes, the scale direction), predicted windows, estimates.
    ///
    /// Exits 1 when a read that comes before every change fails now (a mistyped name, a
    /// missing group or database: "A RUN WOULD STOP AT STEP … before changing anything"), so
    /// a script can stop there; 0 otherwise, warnings included.
    Plan(PlanArgs),
    /// Start a run of a runbook and drive it to the end (or to an approval).
    Run(RunArgs),
    /// Continue an interrupted, waiting or failed run where it stopped.
    Resume(ResumeArgs),
    /// Show one run: status, steps, open windows, lease, pending approval.
    Status(StatusArgs),
    /// List runs, newest first.
    Runs(RunsArgs),
    /// The audit trail of a run (`--format text|table|json|csv`; csv only here).
    History(RunIdArg),
    /// Steps with durations and every unprotected window of a run (`--html FILE`: a
    /// self-contained HTML report with the timeline, steps and the verified audit trail).
    Report(ReportArgs),
    /// Pending approvals across runs: run, step, message, since when, who may approve.
    Approvals,
    /// Approve an approval step of a waiting run (refused for a name the step does not allow).
    ///
    /// Approving is refused when the step names who may approve and the name is not among them,
    /// when it requires someone other than the starter (`distinct_from_starter`) and the name is
    /// the starter's, and when the step was already approved or rejected.
    Approve(ApproveArgs),
    /// Reject an approval step: the run ends cancelled as rejected (refused once approved).
    ///
    /// Rejecting is refused when the step is not a pending approval (already approved, done,
    /// or the run is over).
    Reject(RejectArgs),
    /// Cancel a run (refused while a cloud operation is in flight or an unprotected window
    /// is open, unless --force).
    ///
    /// Cancelling is refused while a cloud operation of the run is in flight or an unprotected
    /// window is open: `--force` cancels anyway, records the operation it abandons, and leaves
    /// the window `abandoned open` until `fogbook window close`.
    Cancel(CancelArgs),
    /// Mark a step of a stopped run as skipped, so `resume` continues after it.
    ///
    /// Refused while a process drives the run, for a step that is already done, for an
    /// approval step (use approve or reject), and (without --force) for a step with a cloud
    /// operation in flight.
    Skip(SkipArgs),
    /// Mark a step of a stopped run as done with an output you supply (checked against the
    /// step's output fields), so `resume` continues after it.
    ///
    /// Refused while a process drives the run, for a step that is already done, for an output
    /// that lacks a field the step produces, and (without --force) for a step with a cloud
    /// operation in flight.
    Complete(CompleteArgs),
    /// Re-run a stopped run from a step: that step and every later one that ran run again
    /// (a completed step that changes something needs --force and reads back its effect).
    ///
    /// Refused while a process drives the run or a step in the range is running, for a
    /// finished (succeeded, cancelled) run, and, without --force, when a completed step in the
    /// range changes something outside fogbook.
    RetryFrom(RetryFromArgs),
    /// Continue a stopped run with an edited runbook: steps that started keep their ids,
    /// activities and inputs; refused naming the step that blocks.
    ///
    /// Refused while a process drives the run, for a finished run, for a runbook that does not
    /// validate, when a step that started is missing or changed its activity or inputs, and when
    /// a remaining step refers to an output field a completed step did not record.
    Repin(RepinArgs),
    /// Unprotected windows of a run.
    #[command(subcommand)]
    Window(WindowCommand),
    /// Audit trail commands.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Cron schedules of runbooks (maintenance-window migration jobs), fired by `fogbook worker`.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Fire due schedules and drive runs nobody drives (detached, pending, or left by a dead process).
    ///
    /// Several workers may share one database (on PostgreSQL, on several hosts): no schedule
    /// fires twice and no run is driven twice.
    ///
    /// Stopping: Ctrl-C or SIGTERM stops its runs at safe points and releases their leases
    /// (another worker takes them over without waiting for them to expire); the worker then
    /// exits 0, as every
    /// service does. A worker that dies (SIGKILL, a lost host) releases nothing: its runs are
    /// taken over once their leases expire, within one --lease-ttl plus --lease-margin and
    /// one --poll (at once by a worker on the same host, which sees the process is gone).
    ///
    /// Its database: a PostgreSQL server that does not answer at startup (refused, starting
    /// up, no answer within connect_timeout) is waited for, said once on stderr, and tried
    /// again every 5s at most; a bad URL, a refused login or a TLS mismatch fail at once
    /// (exit 2 or 6). A database outage while it runs is logged once, and once when it
    /// answers again. A store moved away by `fogbook store copy` makes it exit 2, naming the
    /// target: point FOGBOOK_DB at the target and start it again (under systemd with
    /// Restart=on-failure, add RestartPreventExitStatus=2 so it is not restarted into the
    /// same refusal: docs/DEPLOYMENT.md).
    ///
    /// Against the emulator (rehearsals): start `fogbook sim serve --estate ESTATE.yaml`,
    /// then run the worker with FOGBOOK_ARM_ENDPOINT (or --arm-endpoint) set to the URL it
    /// prints and FOGBOOK_ARM_TOKEN set to anything. A run started with `run --sim` is
    /// driven on its own emulator, restored by the worker, whatever the endpoint.
    Worker(WorkerArgs),
    /// Fleets: one runbook over many targets with rate control (max concurrency, max
    /// errors, a canary wave, waves), driven durably (README "Fleets").
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Measure the step overhead beside the durable-commit floor of the disk, resume latency and
    /// memory per waiting run (see docs/PERFORMANCE.md).
    ///
    /// With `--db postgres://…` (or FOGBOOK_DB), the PostgreSQL store instead: sequential and
    /// concurrent steps per second beside that server's commit floor (its synchronous_commit
    /// and fsync as they are, printed), in a scratch schema of that database created and
    /// dropped by the benchmark (the database's own tables are not touched); the emulator
    /// phases measure the SQLite store and are left out.
    Bench(BenchArgs),
    /// The ARM emulator (a local Azure Resource Manager for rehearsals and tests).
    #[command(subcommand)]
    Sim(SimCommand),
    /// Whole-store operations: copy every run, schedule, fleet and the audit chain from one
    /// store to another (SQLite to PostgreSQL, or back).
    #[command(subcommand)]
    Store(StoreCommand),
    /// A web status page over the state database: runs, a live timeline of each run,
    /// schedules, fleets, pending approvals. Read-only unless started with --allow-actions.
    ///
    /// Ctrl-C or SIGTERM stops it; it then exits 0, as every service does.
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout, e.g.
    /// `fogbook completions bash > /etc/bash_completion.d/fogbook`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout, e.g. `fogbook man | man -l -`.
    Man,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The run id (as printed by `fogbook run` and `fogbook runs`).
    pub(crate) run_id: String,
    /// Write a self-contained HTML report (timeline, steps, windows, verified audit trail)
    /// to this file (`-` for stdout) instead of printing the text report.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on. Loopback by default; port 0 picks a free port. The URL is
    /// printed on stdout.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Allow approving and rejecting approval steps from the page. Needs an access token
    /// in the environment variable FOGBOOK_SERVE_TOKEN, which the page asks for (it is
    /// never shown); each action is audited with the name typed in the page, as via the web.
    #[arg(long)]
    pub(crate) allow_actions: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy a whole state store into an empty one: runs with their steps, windows, locks and
    /// approvals, pinned runbook texts, schedules, fleets and their targets, and the audit
    /// chain unchanged (same events, hashes, order and head), so `audit verify` passes on
    /// the copy and `status`, `history` and `report` show the same.
    ///
    /// The source is read in one consistent read and its audit chain verified first: a
    /// source that does not verify (an edited or deleted event) is refused, and nothing is
    /// written. The copy is refused while a process drives a run or fleet of the source (a
    /// live lease of a process that is not provably gone): stop the worker or let the run
    /// finish (or stop it with Ctrl-C; `resume` continues it later, on the target), then copy
    /// again. A run left by a process killed on this host is copied as it is and continued by
    /// `fogbook resume RUN --db TARGET`. The target must hold no fogbook data (it is created
    /// when missing, and its schema brought up to date); everything is written in one
    /// transaction, so a failed copy leaves it empty.
    ///
    /// The source is marked as moved (before it is read, so nothing written after the read
    /// is left behind): from then on every command that writes or drives runs (`run`,
    /// `resume`, `worker`, `approve`, `cancel`, `schedule`, `fleet`, `serve` …) refuses it and
    /// names the target, and the reads (`status`, `runs`, `history`, `report`, `audit verify`)
    /// still work and say it was moved. A copy that fails takes the mark off again. Point
    /// every process at the target (`--db`/`FOGBOOK_DB`) and keep the source as a backup
    /// (docs/DEPLOYMENT.md).
    Copy(StoreCopyArgs),
    /// Take the moved mark off a store (`--db`) whose copy was abandoned, so it drives runs
    /// again. Recorded in the store with who, when and why.
    ///
    /// Only when the target is not used: two stores driving the same estate run every
    /// effect twice.
    Unmark(StoreUnmarkArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StoreUnmarkArgs {
    /// Who takes the mark off. Default: FOGBOOK_USER, else the OS user.
    #[arg(long)]
    pub(crate) by: Option<String>,
    /// Why the copy is abandoned (recorded in the store).
    #[arg(long, required = true)]
    pub(crate) reason: String,
}

#[derive(Debug, Args)]
pub(crate) struct StoreCopyArgs {
    /// The store to copy from: a SQLite file (`sqlite:PATH` or a path) or a PostgreSQL URL.
    #[arg(long, value_name = "STORE", env = "FOGBOOK_COPY_FROM", hide_env_values = true)]
    pub(crate) from: String,
    /// The empty store to copy into: a PostgreSQL URL
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=require`) or a SQLite file. A URL with a
    /// password is better given in the environment than on the command line, where other
    /// users of the host can read it in the process list.
    #[arg(long, value_name = "STORE", env = "FOGBOOK_COPY_TO", hide_env_values = true)]
    pub(crate) to: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Serve the emulator until Ctrl-C or SIGTERM. Prints its base URL on stdout.
    Serve(SimServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SimServeArgs {
    /// The estate to start from (YAML; see sim/README.md).
    #[arg(long, default_value = "examples/estate.yaml")]
    pub(crate) estate: PathBuf,
    /// Address to listen on (loopback; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: std::net::SocketAddr,
    /// Write the base URL to this file once listening (for scripts).
    #[arg(long)]
    pub(crate) port_file: Option<PathBuf>,
    /// Persist every accepted mutation here, and continue from it when it exists.
    #[arg(long)]
    pub(crate) state: Option<PathBuf>,
    /// Simulated seconds per real second (3600 = an hour per second; 0 = frozen clock).
    /// Real time by default, unlike `run --sim` (3600): a served emulator is polled by tools
    /// and scripts at their own pace, where a rehearsal wants an hour to pass in a second.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) time_scale: f64,
    /// Faults to inject (YAML or JSON; see sim/README.md).
    #[arg(long)]
    pub(crate) faults: Option<PathBuf>,
    /// Accept only this bearer token (default: any).
    #[arg(long, env = "FOGBOOK_SIM_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Serve HTTPS with this certificate (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
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
pub(crate) struct BenchArgs {
    /// Directory of the scratch databases (the disk under test); default: the current one. Not
    /// used with `--db postgres://…`, whose scratch schema is in that database.
    #[arg(long, default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Durable commits measured for the floor.
    #[arg(long, default_value_t = 500)]
    pub(crate) floor_commits: u32,
    /// No-op steps of the sequential run.
    #[arg(long, default_value_t = 2000)]
    pub(crate) steps: u32,
    /// Runs driven at once.
    #[arg(long, default_value_t = 1000)]
    pub(crate) runs: u32,
    /// No-op steps of each concurrent run.
    #[arg(long, default_value_t = 10)]
    pub(crate) steps_per_run: u32,
    /// Resumes timed from process start to the first poll of an operation in flight (0: skip).
    #[arg(long, default_value_t = 20)]
    pub(crate) resume_trials: u32,
    /// Runs waiting on ARM operations at once, for the memory per waiting run (0: skip).
    #[arg(long, default_value_t = 1000)]
    pub(crate) waiting_runs: u32,
    /// Seconds during which the waiting runs' polls are counted at the emulator (0: not counted).
    #[arg(long, default_value_t = 30)]
    pub(crate) waiting_secs: u64,
    /// Failover groups moved by the fleet figure (0: skip; docs/PERFORMANCE.md's figure is
    /// taken with 50 at a concurrency of 5; 200 at 20 takes about 16 minutes).
    #[arg(long, default_value_t = 0)]
    pub(crate) fleet_groups: u32,
    /// Targets of the fleet figure run at once.
    #[arg(long, default_value_t = 20)]
    pub(crate) fleet_concurrency: u32,
    /// Only the memory per waiting run, as JSON: how `bench` measures it in a fresh process.
    /// A test switch: refused by a build without the feature `test-hooks`.
    #[arg(long, hide = true)]
    pub(crate) waiting_only: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// The runbook file.
    pub(crate) file: PathBuf,
    /// Parameter file (YAML or JSON).
    #[arg(long)]
    pub(crate) params: Option<PathBuf>,
    /// Set a parameter (repeatable; overrides the file). Dotted keys set nested fields.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
    #[command(flatten)]
    pub(crate) sim: SimArgs,
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
    /// Who starts the run (recorded as its starter; default: FOGBOOK_USER, else the OS user).
    #[arg(long)]
    pub(crate) by: Option<String>,
    /// Create the run and return at once; `fogbook worker` (or `fogbook resume RUN`) drives
    /// it. With --sim, on the emulator restored from the state the run records.
    #[arg(long, conflicts_with = "wait")]
    pub(crate) detach: bool,
    #[command(flatten)]
    pub(crate) sim: SimArgs,
    #[command(flatten)]
    pub(crate) drive: DriveArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Run against the built-in ARM emulator, started inside this process with the demo
    /// estate (examples/estate.yaml) or --sim-estate: a rehearsal that touches no cloud.
    #[arg(long)]
    pub(crate) sim: bool,
    /// The estate the emulator starts from (with --sim).
    #[arg(long, requires = "sim")]
    pub(crate) sim_estate: Option<PathBuf>,
    /// Simulated seconds per real second (with --sim): 3600 makes an hour take a second.
    #[arg(long, requires = "sim", default_value_t = 3600.0)]
    pub(crate) sim_time_scale: f64,
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
    #[command(flatten)]
    pub(crate) who: Who,
    /// Expect a rehearsal (a run started with --sim) and refuse any other run. Not needed to
    /// continue a rehearsal: its emulator is restored from the state the run recorded, with
    /// the simulated time that passed meanwhile.
    #[arg(long)]
    pub(crate) sim: bool,
    #[command(flatten)]
    pub(crate) drive: DriveArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The run id (as printed by `fogbook run` and `fogbook runs`).
    pub(crate) run_id: String,
    /// Refresh every second until the run is over (in place on a terminal; otherwise a new
    /// document each time it changes). Ctrl-C stops watching, not the run.
    #[arg(long)]
    pub(crate) watch: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunIdArg {
    /// The run id (as printed by `fogbook run` and `fogbook runs`).
    pub(crate) run_id: String,
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    /// Only runs with this status (repeatable): pending, running, stalled (running, but nobody
    /// drives it), waiting, succeeded, failed, cancelled.
    #[arg(long)]
    pub(crate) status: Vec<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
}

/// Who asks for a change of a run, and why (both recorded in the audit trail).
#[derive(Debug, Args)]
pub(crate) struct Who {
    /// Who asks (recorded in the audit trail). Default: FOGBOOK_USER, else the OS user
    /// (recorded as such).
    #[arg(long)]
    pub(crate) by: Option<String>,
    /// Why (recorded in the audit trail).
    #[arg(long, alias = "comment")]
    pub(crate) reason: Option<String>,
}

impl Who {
    /// The actor for the store: the name and where it came from.
    pub(crate) fn actor(&self) -> fogbook_state::Actor {
        let (name, source) = identity(self.by.as_deref());
        fogbook_state::Actor {
            name,
            source: source.to_owned(),
            reason: self.reason.clone(),
        }
    }
}

/// The operator's name and where it came from: `--by`, then `FOGBOOK_USER`, then the OS
/// user (the account of this process).
pub(crate) fn identity(by: Option<&str>) -> (String, &'static str) {
    if let Some(b) = by.map(str::trim).filter(|b| !b.is_empty()) {
        return (b.to_owned(), "--by");
    }
    if let Some(u) = std::env::var("FOGBOOK_USER").ok().filter(|u| !u.trim().is_empty()) {
        return (u.trim().to_owned(), "FOGBOOK_USER");
    }
    (os_user(), "os user")
}

/// The account this process runs as: its name from the password database, else `$USER`,
/// else `uid N`.
fn os_user() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if let (Some(uid), Ok(passwd)) = (uid, std::fs::read_to_string("/etc/passwd")) {
        let name = passwd.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?;
            (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        });
        if let Some(n) = name {
            return n;
        }
    }
    match (std::env::var("USER"), uid) {
        (Ok(u), _) if !u.is_empty() => u,
        (_, Some(uid)) => format!("uid {uid}"),
        _ => "uid unknown".to_owned(),
    }
}

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The run.
    pub(crate) run_id: String,
    /// The approval step.
    pub(crate) step: String,
    #[command(flatten)]
    pub(crate) who: Who,
}

#[derive(Debug, Args)]
pub(crate) struct RejectArgs {
    /// The run.
    pub(crate) run_id: String,
    /// The approval step.
    pub(crate) step: String,
    #[command(flatten)]
    pub(crate) who: Who,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The run.
    pub(crate) run_id: String,
    #[command(flatten)]
    pub(crate) who: Who,
    /// Cancel even with a cloud operation in flight or an unprotected window open.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SkipArgs {
    /// The run.
    pub(crate) run_id: String,
    /// The step.
    pub(crate) step: String,
    #[command(flatten)]
    pub(crate) who: Who,
    /// Skip even a step whose cloud operation may be in flight.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CompleteArgs {
    /// The run.
    pub(crate) run_id: String,
    /// The step.
    pub(crate) step: String,
    /// The step's output: a JSON or YAML file with an object.
    #[arg(long)]
    pub(crate) output: PathBuf,
    #[command(flatten)]
    pub(crate) who: Who,
    /// Complete even a step whose cloud operation may be in flight.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RetryFromArgs {
    /// The run.
    pub(crate) run_id: String,
    /// The first step to run again.
    pub(crate) step: String,
    #[command(flatten)]
    pub(crate) who: Who,
    /// Also re-run completed steps that change something (each reads back what it did
    /// through its saved intent or operation before acting).
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RepinArgs {
    /// The run.
    pub(crate) run_id: String,
    /// The edited runbook file.
    pub(crate) runbook: PathBuf,
    #[command(flatten)]
    pub(crate) who: Who,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WindowCommand {
    /// Close a window you know has closed (it is shown `abandoned open` on a finished run).
    ///
    /// Refused without --reason, while a process drives the run (its driver closes its
    /// windows), and for a window already closed.
    Close(WindowCloseArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WindowCloseArgs {
    /// The run.
    pub(crate) run_id: String,
    /// The window: its number (as `status` shows it) or its kind (e.g. unprotected).
    pub(crate) window: String,
    #[command(flatten)]
    pub(crate) who: Who,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the hash chain of one run (or all) and name the first event that does not verify.
    Verify {
        /// Also require that this run exists (the whole chain is always verified).
        run_id: Option<String>,
        /// A head hash printed by an earlier `audit verify` and kept outside the database:
        /// fail unless the chain still contains it (detects a cut or rewritten tail).
        #[arg(long, value_name = "HASH")]
        since_head: Option<String>,
    },
}

pub(crate) fn default_user() -> String {
    identity(None).0
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    fogbook_activities::duration::parse(s)
}

/// The shortest lease accepted: a shorter one expires between two heartbeats of a busy
/// machine, and every driver stops as fenced.
pub(crate) const MIN_LEASE_TTL: std::time::Duration = std::time::Duration::from_millis(500);

fn parse_lease_ttl(s: &str) -> Result<std::time::Duration, String> {
    let ttl = parse_duration(s)?;
    if ttl < MIN_LEASE_TTL {
        return Err(format!(
            "a lease shorter than {}ms expires between heartbeats; pass at least 500ms (default 30s)",
            MIN_LEASE_TTL.as_millis()
        ));
    }
    Ok(ttl)
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Create a schedule; the runbook text and parameters are pinned now.
    Add(ScheduleAddArgs),
    /// List schedules with their next fire time.
    List,
    /// One schedule: settings, next fire times, its active run, its recent history.
    Show(ScheduleShowArgs),
    /// Stop firing (fire times that pass while paused are recorded as skipped).
    Pause(ScheduleNameArg),
    /// Fire again.
    Resume(ScheduleNameArg),
    /// Remove a schedule (its audit trail stays).
    Remove(ScheduleNameArg),
    /// Re-pin the runbook text and parameters (audited).
    Update(ScheduleUpdateArgs),
    /// The next fire times of a schedule, or of a cron expression.
    Next(ScheduleNextArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleAddArgs {
    /// Unique name.
    #[arg(long)]
    pub(crate) name: String,
    /// Cron expression: `min hour day month weekday` (or 6 fields with seconds first), e.g. "0 2 * * 6".
    #[arg(long)]
    pub(crate) cron: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub(crate) tz: String,
    /// The runbook file, or a fleet file (the schedule then fires a fleet); its text is pinned.
    pub(crate) runbook: PathBuf,
    /// Parameter file (pinned).
    #[arg(long)]
    pub(crate) params: Option<PathBuf>,
    /// Set a parameter (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
    /// When the previous run is still going: skip the fire, or queue it until that run ends.
    #[arg(long, default_value = "skip", value_parser = ["skip", "queue"])]
    pub(crate) overlap: String,
    /// Fire times missed (no worker running, or waiting for a closed --window) by at most this much still fire; older ones are skipped.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub(crate) catch_up: std::time::Duration,
    /// Maintenance window, e.g. "01:00-05:00 Europe/Amsterdam": runs start only inside it.
    #[arg(long)]
    pub(crate) window: Option<String>,
    /// With --window: a run that is still going when the window closes pauses before its next
    /// disruptive step (`disruptive: true`) until the window opens again.
    #[arg(long, requires = "window")]
    pub(crate) window_pause: bool,
    /// The runs approve their approval steps automatically (recorded as such).
    #[arg(long)]
    pub(crate) auto_approve: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleNameArg {
    /// The schedule name.
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleShowArgs {
    /// The schedule name.
    pub(crate) name: String,
    /// Show times in the schedule's own zone (RFC 3339 with its offset) instead of UTC.
    #[arg(long)]
    pub(crate) local: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleUpdateArgs {
    /// The schedule name.
    pub(crate) name: String,
    /// The runbook file to pin (default: the file it was pinned from).
    #[arg(long)]
    pub(crate) runbook: Option<PathBuf>,
    /// Parameter file to pin (default: keep the pinned parameters).
    #[arg(long)]
    pub(crate) params: Option<PathBuf>,
    /// Who re-pins (audit trail).
    #[arg(long, default_value_t = default_user())]
    pub(crate) by: String,
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleNextArgs {
    /// A schedule name, or a cron expression with --tz.
    pub(crate) name_or_cron: String,
    /// How many fire times.
    #[arg(short = 'n', long, default_value_t = 5)]
    pub(crate) count: usize,
    /// Zone for a cron expression.
    #[arg(long, default_value = "UTC")]
    pub(crate) tz: String,
    /// Show times in the schedule's own zone (or --tz's) with its offset, instead of UTC.
    #[arg(long)]
    pub(crate) local: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Runs driven at once.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// How often to look for due schedules and runs.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) poll: std::time::Duration,
    /// Exit once nothing is left to drive (for batch jobs and tests).
    #[arg(long)]
    pub(crate) exit_when_idle: bool,
    /// A name for this worker in lease owner ids and the audit trail.
    #[arg(long)]
    pub(crate) name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Create a fleet from a fleet file and drive it: targets start under its rate control,
    /// each as an ordinary run linked to the fleet.
    Run(FleetFileArgs),
    /// Predict, per wave, the targets, their unprotected windows and the durations, changing
    /// nothing (read-only steps are run against ARM, as `fogbook plan` does). Exits 1 when a
    /// target's run would stop before changing anything (named at the end), so `fogbook
    /// fleet plan F && fogbook fleet run F` starts no such fleet.
    Plan(FleetFileArgs),
    /// Show a fleet (by id, or the newest with that name) and its targets; no FLEET: every fleet.
    Status(FleetOptArg),
    /// The table of a fleet's targets: status, run, start, end, unprotected windows.
    Report(FleetArg),
    /// Continue a fleet where it stopped (after a crash, an approval, waiting runs).
    Resume(FleetResumeArgs),
    /// Cancel a fleet: no new target starts, running targets stop at their next safe point.
    Cancel(FleetCancelArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FleetFileArgs {
    /// The fleet file (YAML; README "Fleets").
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct FleetArg {
    /// The fleet's id (or its name: the newest fleet with that name).
    pub(crate) fleet: String,
}

#[derive(Debug, Args)]
pub(crate) struct FleetOptArg {
    /// The fleet's id (or its name: the newest fleet with that name).
    pub(crate) fleet: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct FleetResumeArgs {
    /// The fleet's id (or its name: the newest fleet with that name).
    pub(crate) fleet: String,
    /// Approve the next wave that waits for an approval (recorded with --by).
    #[arg(long, requires = "by")]
    pub(crate) approve: bool,
    /// Who approves.
    #[arg(long)]
    pub(crate) by: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct FleetCancelArgs {
    /// The fleet's id (or its name: the newest fleet with that name).
    pub(crate) fleet: String,
    /// Who cancels (recorded in the audit trail).
    #[arg(long, default_value = "cli")]
    pub(crate) by: String,
}
