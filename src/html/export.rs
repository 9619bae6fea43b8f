//! `fogbook report RUN --html FILE`.

use std::path::Path;

use fogbook_state::Store;

use super::run_view::report_document;
use super::view::RunView;
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

/// Writes the self-contained HTML report of a run to `path` (`-` for stdout).
pub(crate) async fn write_report(store: &Store, run_id: &str, path: &Path, quiet: bool) -> Exit {
    let now = fogbook_engine::Clock::now_ms(&fogbook_engine::SystemClock);
    let view = match RunView::load(store, run_id, now).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let doc = report_document(&view);
    if path == Path::new("-") {
        output::data(&doc);
        return Exit::Success;
    }
    match std::fs::write(path, doc) {
        Ok(()) => {
            output::note(
                quiet,
                &format!("wrote the HTML report of run {run_id} to {}", path.display()),
            );
            Exit::Success
        }
        Err(e) => {
            output::error(
                &format!("cannot write the HTML report to {}: {e}", path.display()),
                Some("pass --html a path in a writable directory (or - for stdout)"),
            );
            Exit::BadInput
        }
    }
}
