//! Claiming runs for a worker (issue 17): the runs among a worker's candidates that are
//! still free, locked `FOR UPDATE SKIP LOCKED` in the claiming transaction, so workers on
//! several hosts that look at once each get distinct runs instead of all racing for the
//! oldest.

use crate::Millis;
use crate::sql::{Tx, params};

/// The ids among `candidates` (oldest first, at most `limit`) whose runs can still be
/// driven and whose lease is free, expired at `lease_now`, or held by one of `dead` (owners
/// proven gone), each row locked until the caller's transaction ends; rows another
/// transaction has locked are skipped, not waited for.
pub(crate) fn free_runs(
    tx: &dyn Tx,
    candidates: &[String],
    dead: &[String],
    lease_now: Millis,
    limit: usize,
) -> crate::sql::Result<Vec<String>> {
    let ids = serde_json::to_string(candidates).unwrap_or_else(|_| "[]".to_owned());
    let dead = serde_json::to_string(dead).unwrap_or_else(|_| "[]".to_owned());
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    tx.query_map(
        "SELECT id FROM runs
         WHERE id IN (SELECT jsonb_array_elements_text(CAST(?1 AS TEXT)::jsonb))
           AND status IN ('pending', 'running', 'waiting')
           AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?2
                OR lease_owner IN (SELECT jsonb_array_elements_text(CAST(?3 AS TEXT)::jsonb)))
         ORDER BY created_at, id
         LIMIT ?4
         FOR UPDATE SKIP LOCKED",
        params![ids, lease_now, dead, limit],
        |r| r.get(0),
    )
}
