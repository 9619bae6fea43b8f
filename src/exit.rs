//! The exit codes: one table that the process, `--help` (its after-help text) and the README's
//! table all come from (a test compares the README with [`EXIT_CODES`]).

/// What a command asks the process to exit with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Exit {
    Success = 0,
    RunFailed = 1,
    BadInput = 2,
    Waiting = 3,
    Busy = 4,
    Cancelled = 5,
    StoreFailed = 6,
    Internal = 70,
    Interrupted = 130,
}

impl Exit {
    /// The number the process exits with.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// How bad an outcome is, for a command over many runs that reports the worst
    /// (`resume --all`): a failure of fogbook itself outranks a refusal, which outranks a
    /// run's own outcome; an interruption outranks everything (the operator asked to stop).
    fn severity(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Waiting => 1,
            Self::Cancelled => 2,
            Self::RunFailed => 3,
            Self::Busy => 4,
            Self::BadInput => 5,
            Self::StoreFailed => 6,
            Self::Internal => 7,
            Self::Interrupted => 8,
        }
    }

    /// The worse of two outcomes (see [`Exit::severity`]).
    pub(crate) fn worst(self, other: Self) -> Self {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

/// Every exit code with what it means: the one table `--help` and the README show.
pub(crate) const EXIT_CODES: &[(Exit, &str)] = &[
    (
        Exit::Success,
        "success (the run succeeded, the command did what was asked)",
    ),
    (
        Exit::RunFailed,
        "the run failed (a step failed for good; `fogbook report RUN` says why); `audit verify` found a bad event; `plan` found that a run would stop before changing anything (a read failed: the step and why are printed)",
    ),
    (
        Exit::BadInput,
        "bad input or usage: invalid runbook, parameters or arguments, unknown run or step, no database at --db, a refused operator action",
    ),
    (
        Exit::Waiting,
        "the run is waiting: for an approval (`fogbook approve RUN STEP --by NAME`, then `fogbook resume RUN`) or for its maintenance window (a worker resumes it when the window opens)",
    ),
    (
        Exit::Busy,
        "busy: another live process drives the run, another run holds a resource it needs, the run is being cancelled, or this process lost the run's lease while driving it and stopped without sending anything more",
    ),
    (Exit::Cancelled, "the run was cancelled"),
    (
        Exit::StoreFailed,
        "the state database failed: it cannot be opened, read or written (not a database, damaged, read-only, disk full, a schema this fogbook does not know); the message names the cause",
    ),
    (
        Exit::Internal,
        "fogbook itself could not start (the OS refused its threads: a process limit, too little memory); nothing was done",
    ),
    (
        Exit::Interrupted,
        "interrupted (Ctrl-C, SIGTERM): the run stopped at a safe point; `fogbook resume RUN` continues it. The services (`worker`, `serve`, `sim serve`) exit 0 when these signals stop them: that is how they end",
    ),
];

/// Where the after-help text is wrapped (below clap's `max_term_width`).
const HELP_WIDTH: usize = 92;

/// The after-help text of `fogbook --help`: the exit codes, one a line.
pub(crate) fn help_text() -> String {
    let mut text = String::from("Exit codes:");
    for (exit, meaning) in EXIT_CODES {
        // Wrapped here with a hanging indent (clap would wrap it flush left).
        let mut line = format!("\n  {:<4}", exit.code());
        let mut width = line.len() - 1;
        for word in meaning.split(' ') {
            if width + 1 + word.len() > HELP_WIDTH {
                text.push_str(&line);
                line = format!("\n{:7}", "");
                width = 7;
            } else {
                line.push(' ');
                width += 1;
            }
            line.push_str(word);
            width += word.len();
        }
        text.push_str(&line);
    }
    text
}

/// The README's table (`### Exit codes`), as it must read.
#[cfg(test)]
pub(crate) fn markdown_table() -> String {
    let mut text = String::from("| code | meaning |\n|---|---|\n");
    for (exit, meaning) in EXIT_CODES {
        text.push_str(&format!("| {} | {meaning} |\n", exit.code()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_table_is_the_const() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let start = readme.find("### Exit codes").expect("README has `### Exit codes`");
        let table: String = readme[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            table,
            markdown_table(),
            "README's exit-code table differs from src/exit.rs EXIT_CODES; paste the expected one"
        );
    }

    #[test]
    fn every_code_is_in_the_table_once() {
        let all = [
            Exit::Success,
            Exit::RunFailed,
            Exit::BadInput,
            Exit::Waiting,
            Exit::Busy,
            Exit::Cancelled,
            Exit::StoreFailed,
            Exit::Internal,
            Exit::Interrupted,
        ];
        for exit in all {
            assert_eq!(EXIT_CODES.iter().filter(|(e, _)| *e == exit).count(), 1, "{exit:?}");
        }
        assert_eq!(EXIT_CODES.len(), all.len());
    }

    #[test]
    fn the_worst_outcome_wins_in_any_order() {
        let outcomes = [Exit::Waiting, Exit::RunFailed, Exit::Success, Exit::Busy];
        let forward = outcomes.iter().fold(Exit::Success, |w, e| w.worst(*e));
        let backward = outcomes.iter().rev().fold(Exit::Success, |w, e| w.worst(*e));
        assert_eq!(forward, Exit::Busy);
        assert_eq!(backward, Exit::Busy);
    }
}
