//! The exit codes.

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
