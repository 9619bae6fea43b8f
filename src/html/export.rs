//! `fogbook report RUN --html FILE`.

use std::path::Path;
use std::time::Duration;

use fogbook_state::Store;

use super::run_view::report_document;
use super::view::{PageClock, RunView};
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::output;

/// Writes the self-contained HTML report of a run to `path` (`-` for stdout).
/// A run is shown `stalled` as `status` shows it: by the lease clock and `lease_ttl`.
pub(crate) async fn write_report(store: &Store, run_id: &str, path: &Path, lease_ttl: Duration, quiet: bool) -> Exit {
    let now = fogbook_engine::Clock::now_ms(&*crate::schedule_cmd::clock());
    let clock = match PageClock::read(store, now, lease_ttl).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let view = match RunView::load(store, run_id, clock).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let doc = report_document(&view);
    if path == Path::new("-") {
        output::data(&doc);
        return Exit::Success;
    }
    match write_private(path, doc.as_bytes()) {
        Ok(()) => {
            output::note(
                quiet,
                &format!("wrote the HTML report of run {run_id} to {}", path.display()),
            );
            Exit::Success
        }
        Err(e) => fail(CliError::usage(
            format!("cannot write the HTML report to {}: {e}", path.display()),
            Some("pass --html a path in a writable directory (or - for stdout)"),
        )),
    }
}

/// Writes `bytes` to `path`, creating the file with mode 0600 (owner only, as the state
/// database): the report holds the run's data.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.flush()
}
