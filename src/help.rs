//! The command line as people and shells see it: the clap command with each subcommand's help
//! showing only the global options it uses, `fogbook completions SHELL` and `fogbook man`.

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::Exit;
use crate::output;

/// The global options of the store, the lease, ARM and the output format (`-v`, `-q` and
/// `--color` concern logging and stay everywhere).
const STORE: &[&str] = &["db"];
const LEASE: &[&str] = &["lease_ttl", "lease_margin"];
const ARM: &[&str] = &["arm_endpoint", "auth"];
const FORMAT: &[&str] = &["format"];

/// The global options each command ignores, hidden from its help (they are still accepted, so
/// `FOGBOOK_DB` and friends in the environment never break a command that does not read them).
const IGNORED: &[(&[&str], &[&[&str]])] = &[
    (&["schema"], &[STORE, LEASE, ARM, FORMAT]),
    (&["validate"], &[STORE, LEASE, ARM]),
    (&["plan"], &[STORE, LEASE]),
    (&["history"], &[LEASE, ARM]),
    (&["report"], &[LEASE, ARM]),
    (&["runs"], &[ARM]),
    (&["status"], &[ARM]),
    (&["approvals"], &[LEASE, ARM]),
    (&["approve"], &[ARM]),
    (&["reject"], &[ARM]),
    (&["skip"], &[ARM]),
    (&["complete"], &[ARM]),
    (&["retry-from"], &[ARM]),
    (&["repin"], &[ARM]),
    (&["cancel"], &[ARM]),
    (&["window", "close"], &[ARM]),
    (&["audit", "verify"], &[LEASE, ARM]),
    (&["schedule", "add"], &[LEASE, ARM]),
    (&["schedule", "list"], &[LEASE, ARM]),
    (&["schedule", "show"], &[LEASE, ARM]),
    (&["schedule", "next"], &[LEASE, ARM]),
    (&["schedule", "pause"], &[LEASE, ARM]),
    (&["schedule", "resume"], &[LEASE, ARM]),
    (&["schedule", "remove"], &[LEASE, ARM]),
    (&["schedule", "update"], &[LEASE, ARM]),
    (&["bench"], &[LEASE, ARM]),
    (&["store", "copy"], &[STORE, LEASE, ARM]),
    (&["store", "unmark"], &[LEASE, ARM]),
    (&["sim", "serve"], &[STORE, LEASE, ARM, FORMAT]),
    (&["serve"], &[ARM, FORMAT]),
    (&["completions"], &[STORE, LEASE, ARM, FORMAT]),
    (&["man"], &[STORE, LEASE, ARM, FORMAT]),
];

/// The clap command of `fogbook`, each subcommand's help without the global options it
/// ignores.
pub(crate) fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (path, groups) in IGNORED {
        // clap gives a subcommand a global option only when it has no option of that id, so a
        // hidden copy put there first is the one it keeps (and its value still reaches `Cli`).
        let hidden: Vec<clap::Arg> = groups
            .iter()
            .flat_map(|g| g.iter())
            .filter_map(|id| cmd.get_arguments().find(|a| a.get_id() == *id))
            .map(|a| a.clone().hide(true))
            .collect();
        cmd = hide_in(cmd, path, &hidden);
    }
    cmd
}

fn hide_in(cmd: clap::Command, path: &[&str], hidden: &[clap::Arg]) -> clap::Command {
    let Some((first, rest)) = path.split_first() else {
        return cmd.args(hidden.iter().cloned());
    };
    if cmd.find_subcommand(first).is_none() {
        return cmd;
    }
    cmd.mut_subcommand(*first, |sub| hide_in(sub, rest, hidden))
}

/// Parses the process's arguments (exits with clap's message and code 2 on a usage error).
pub(crate) fn parse() -> Cli {
    let mut cmd = command();
    let mut matches = cmd.get_matches_mut();
    let db_given = matches.value_source("db") == Some(clap::parser::ValueSource::CommandLine);
    let cli = Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit());
    output::set_invocation(db_given.then_some(cli.db.as_path()));
    if let Some(margin) = cli.lease_margin
        && margin >= cli.lease_ttl
    {
        cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--lease-margin ({}ms) must be shorter than --lease-ttl ({}ms): the margin is the part of the lease kept free of cloud requests; omit it for a quarter of the lease",
                margin.as_millis(),
                cli.lease_ttl.as_millis()
            ),
        )
        .exit();
    }
    cli
}

/// `fogbook completions SHELL`.
pub(crate) fn completions(args: &CompletionsArgs) -> Exit {
    let mut cmd = command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "fogbook", &mut script);
    output::data(&String::from_utf8_lossy(&script));
    Exit::Success
}

/// `fogbook man`.
pub(crate) fn man() -> Exit {
    let mut page = Vec::new();
    if let Err(e) = clap_mangen::Man::new(command()).render(&mut page) {
        output::error(&format!("cannot render the manual page: {e}"), None);
        return Exit::Internal;
    }
    output::data(&String::from_utf8_lossy(&page));
    Exit::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path in [`IGNORED`] names a real command and every id a real global option, so
    /// a renamed command or option cannot silently show again.
    #[test]
    fn every_hidden_option_exists() {
        let mut cmd = Cli::command();
        cmd.build();
        for (path, groups) in IGNORED {
            let mut sub = &cmd;
            for name in *path {
                sub = sub
                    .find_subcommand(name)
                    .unwrap_or_else(|| panic!("no command {path:?}"));
            }
            for id in groups.iter().flat_map(|g| g.iter()) {
                assert!(
                    sub.get_arguments().any(|a| a.get_id() == *id),
                    "{path:?} has no option {id}"
                );
            }
        }
        command().debug_assert();
    }
}
