//! The one piece of the SQL data plane the emulator models: renaming a database
//! (`ALTER DATABASE [old] MODIFY NAME = [new]`), which Azure Resource Manager cannot do for a
//! managed database (ManagedDatabases has no rename or move-to-name operation; the REST
//! specs' `databases/{db}/move` is Azure SQL Database's). A test's stand-in for `sqlcmd`
//! sends the statement's two names to `POST /_sim/sql/rename-database`.
//!
//! As SQL Server: a database of a failover group cannot be renamed ("Database rename isn't
//! supported for databases in failover group"); the new name must be free (Msg 1801); the
//! old one must exist (Msg 911). `guarded` stands for the runbook's
//! `IF DB_ID(new) IS NOT NULL AND DB_ID(old) IS NULL PRINT ... ELSE ALTER ...`: when the
//! rename already happened, the guarded statement does nothing instead of failing with 911.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::emulator::Emulator;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    /// The instance's FQDN (`name.zone.database.windows.net`) or name.
    server: String,
    from: String,
    to: String,
    /// The statement skips the rename when it already happened.
    #[serde(default)]
    guarded: bool,
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// `POST /_sim/sql/rename-database`: `{"renamed": true}`, `{"renamed": false}` when a
/// guarded statement found the rename done, or an error.
pub(crate) async fn rename_database(State(emu): State<Arc<Emulator>>, body: axum::body::Bytes) -> Response {
    let request: Rename = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidRename", e.to_string()),
    };
    let name = request
        .server
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut core = emu.lock();
    let Some(inst) = core
        .world
        .instances
        .values_mut()
        .find(|i| i.name.eq_ignore_ascii_case(&name))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "ServerNotFound",
            format!("No managed instance named '{name}'."),
        );
    };
    let has = |n: &str| inst.databases.iter().any(|d| d.name.eq_ignore_ascii_case(n));
    let (from, to) = (request.from.as_str(), request.to.as_str());
    let renamed = match (has(from), has(to)) {
        (false, true) if request.guarded => false,
        (false, _) => {
            return error(
                StatusCode::NOT_FOUND,
                "911",
                format!("Database '{from}' does not exist. Make sure that the name is entered correctly."),
            );
        }
        (true, true) => {
            return error(
                StatusCode::CONFLICT,
                "1801",
                format!("Database '{to}' already exists. Choose a different database name."),
            );
        }
        (true, false) => {
            let Some(db) = inst.databases.iter_mut().find(|d| d.name.eq_ignore_ascii_case(from)) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "911",
                    format!("Database '{from}' does not exist."),
                );
            };
            if let Some(group) = &db.failover_group {
                return error(
                    StatusCode::BAD_REQUEST,
                    // The documented limitation; SQL Server's message number for it is not
                    // published, so the emulator names it.
                    "DatabaseRenameInFailoverGroupNotSupported",
                    format!(
                        "Database rename isn't supported for databases in failover group '{group}': delete the failover group, rename the database, then re-create the group."
                    ),
                );
            }
            db.name = to.to_owned();
            true
        }
    };
    emu.persist_or_log(&core);
    Json(serde_json::json!({ "renamed": renamed })).into_response()
}
