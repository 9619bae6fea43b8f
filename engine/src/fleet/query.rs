//! Running a fleet file's estate query (`targets: { query: ... }`) through ARM, once, when
//! the fleet is created or planned.

use std::sync::Arc;

use fogbook_activities::{ActivityCtx, ActivityError, ApprovalRecord, BoxFuture, Env, StepHost};
use tokio_util::sync::CancellationToken;

use super::file::FleetFile;

/// Nothing is saved or approved: listing is read-only.
struct ListHost;

impl StepHost for ListHost {
    fn save_progress(&self, _progress: serde_json::Value) -> BoxFuture<'_, Result<(), ActivityError>> {
        Box::pin(async { Ok(()) })
    }

    fn approval(&self) -> BoxFuture<'_, Result<Option<ApprovalRecord>, ActivityError>> {
        Box::pin(async { Ok(None) })
    }

    fn auto_approve(&self) -> BoxFuture<'_, Result<ApprovalRecord, ActivityError>> {
        Box::pin(async { Err(ActivityError::invalid("an estate query approves nothing")) })
    }

    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

/// Runs `file`'s query, if it has one, and fills its targets with what it found (see
/// [`FleetFile::expand`]). Returns the groups found (empty without a query). The error
/// says what failed: an ARM error, or the file's problems with what was found.
pub async fn resolve_query(file: &mut FleetFile, env: &Env) -> Result<Vec<serde_json::Value>, String> {
    let Some(q) = file.query.clone() else {
        return Ok(Vec::new());
    };
    let ctx = ActivityCtx::new(
        "(fleet query)",
        "targets.query",
        1,
        None,
        Arc::new(ListHost),
        CancellationToken::new(),
    );
    let mut found = Vec::new();
    for sub in &q.subscriptions {
        let groups = fogbook_activities::find_failover_groups(&ctx, env, sub, &q.resource_groups, &q.primary_location)
            .await
            .map_err(|e| format!("the fleet's target query ({}) failed: {e}", q.describe()))?;
        found.extend(groups);
    }
    file.expand(&found).map_err(|d| d.to_string())?;
    Ok(found)
}
