//! The one place that sends each command to the function that does it.

use fogbook_engine::runbook;
use fogbook_state::RunStatus;

use crate::cli::{Cli, Command, Format};
use crate::database::{with_read_store, with_store};
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::{operator_cmd, output, report};

pub(crate) async fn dispatch(cli: Cli) -> Exit {
    output::json_errors(cli.format == Format::Json);
    if cli.format == Format::Csv && !matches!(cli.command, Command::History(_)) {
        return fail(CliError::usage(
            "--format csv is only available for `history`",
            Some("use --format text or --format json"),
        ));
    }
    match &cli.command {
        Command::Validate(args) => crate::validate_cmd::validate(&cli, args),
        Command::Schema => {
            output::data(&serde_json::to_string_pretty(&runbook::json_schema()).unwrap_or_default());
            Exit::Success
        }
        Command::Run(args) => crate::run_cmd::run(&cli, args).await,
        Command::Plan(args) => crate::plan_cmd::plan(&cli, args).await,
        Command::Bench(args) => crate::bench::bench(&cli, args).await,
        Command::Resume(args) => crate::resume_cmd::resume(&cli, args).await,
        Command::Status(a) => {
            with_read_store(&cli, |store| report::status(&cli, store, a.run_id.clone(), a.watch)).await
        }
        Command::Runs(a) => {
            let mut statuses = Vec::new();
            let mut stalled = false;
            for s in &a.status {
                if s.trim().eq_ignore_ascii_case("stalled") {
                    stalled = true;
                    continue;
                }
                match s.parse::<RunStatus>() {
                    Ok(st) => statuses.push(st),
                    Err(e) => {
                        return fail(CliError::usage(
                            e,
                            Some("statuses: pending, running, stalled, waiting, succeeded, failed, cancelled"),
                        ));
                    }
                }
            }
            with_read_store(&cli, |store| report::runs(&cli, store, statuses, stalled, a.limit)).await
        }
        Command::History(a) => with_read_store(&cli, |store| report::history(&cli, store, a.run_id.clone())).await,
        Command::Report(a) => match &a.html {
            Some(path) => {
                with_read_store(&cli, |store| async move {
                    crate::html::write_report(&store, &a.run_id, path, cli.lease_ttl, cli.quiet).await
                })
                .await
            }
            None => with_read_store(&cli, |store| report::report(&cli, store, a.run_id.clone())).await,
        },
        Command::Serve(args) => crate::serve::serve(&cli, args).await,
        Command::Approvals => with_read_store(&cli, |store| operator_cmd::approvals(&cli, store)).await,
        Command::Approve(a) => with_store(&cli, |store| operator_cmd::approve(&cli, store, a)).await,
        Command::Reject(a) => with_store(&cli, |store| operator_cmd::reject(&cli, store, a)).await,
        Command::Cancel(a) => with_store(&cli, |store| operator_cmd::cancel(&cli, store, a)).await,
        Command::Skip(a) => with_store(&cli, |store| operator_cmd::skip(&cli, store, a)).await,
        Command::Complete(a) => with_store(&cli, |store| operator_cmd::complete(&cli, store, a)).await,
        Command::RetryFrom(a) => with_store(&cli, |store| operator_cmd::retry_from(&cli, store, a)).await,
        Command::Repin(a) => with_store(&cli, |store| operator_cmd::repin(&cli, store, a)).await,
        Command::Window(crate::cli::WindowCommand::Close(a)) => {
            with_store(&cli, |store| operator_cmd::window_close(&cli, store, a)).await
        }
        Command::Sim(crate::cli::SimCommand::Serve(args)) => crate::sim_cmd::serve(args).await,
        Command::Store(crate::cli::StoreCommand::Copy(args)) => crate::store_cmd::copy(&cli, args).await,
        Command::Store(crate::cli::StoreCommand::Unmark(args)) => crate::store_cmd::unmark(&cli, args).await,
        Command::Schedule(cmd) => crate::schedule_cmd::dispatch(&cli, cmd).await,
        Command::Worker(args) => crate::schedule_cmd::worker(&cli, args).await,
        Command::Fleet(cmd) => crate::fleet_cmd::dispatch(&cli, cmd).await,
        Command::Completions(args) => crate::help::completions(args),
        Command::Man => crate::help::man(),
        Command::Audit(crate::cli::AuditCommand::Verify { run_id, since_head }) => {
            let (run_id, since) = (run_id.clone(), since_head.clone());
            with_read_store(&cli, |store| report::verify(&cli, store, run_id, since)).await
        }
    }
}
