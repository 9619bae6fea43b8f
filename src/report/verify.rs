//! `fogbook audit verify`: the hash chain and the rows it agrees with.

use fogbook_state::Store;
use serde_json::json;

use crate::cli::{Cli, Format};
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

pub(crate) async fn verify(cli: &Cli, store: Store, run_id: Option<String>, since: Option<String>) -> Exit {
    let report = match store.verify_audit_since(run_id.as_deref(), since.as_deref()).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let ok = report.failure.is_none();
    if cli.format == Format::Json {
        output::json("audit_verification", &json!({ "ok": ok, "report": report }));
    } else if let Some(f) = &report.failure {
        // A row that disagrees with the trail may have no event of its own (seq 0).
        let at = if f.seq > 0 {
            format!(" event #{}", f.seq)
        } else {
            String::new()
        };
        output::data(&format!("FAILED: run {}{at}: {}", f.run_id, f.reason));
    } else {
        output::data(&format!(
            "ok: {} in {} verify, and the runs, steps and windows agree with them\nhead: {} (keep it elsewhere; `audit verify --since-head {}` proves the trail was not cut since)",
            output::plural(report.events, "event", "events"),
            output::plural(report.runs, "stream", "streams"),
            report.head,
            report.head
        ));
    }
    if ok { Exit::Success } else { Exit::RunFailed }
}
