//! Unprotected windows: opening, closing and the limit-exceeded mark.

use serde_json::json;

use super::Store;
use super::steps::Events;
use crate::audit::{self, NewEvent};
use crate::error::SqlContext;
use crate::sql::{OptionalExt, Tx, params};
use crate::{Millis, StateError, WindowKind};

impl Store {
    /// Marks that `max_unprotected` was reported for this window, with its audit event.
    pub async fn mark_window_limit_exceeded(
        &self,
        run_id: &str,
        window_id: i64,
        limit: String,
        now: Millis,
    ) -> Result<bool, StateError> {
        let run_id = run_id.to_owned();
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE windows SET limit_notified = 1 WHERE id = ?1 AND run_id = ?2 AND limit_notified = 0",
                    params![window_id, run_id],
                )
                .during("marking a window limit")?;
            if changed > 0 {
                audit::append(
                    tx,
                    &run_id,
                    now,
                    NewEvent::run("window.limit_exceeded", json!({ "window": window_id, "limit": limit })),
                )?;
            }
            Ok(changed > 0)
        })
        .await
    }
}

pub(super) fn open_window<'a>(
    tx: &dyn Tx,
    run_id: &str,
    kind: WindowKind,
    step: &'a str,
    subject: Option<&str>,
    now: Millis,
    events: &mut Events<'a>,
) -> Result<(), StateError> {
    let already: Option<i64> = tx
        .query_row(
            "SELECT id FROM windows WHERE run_id = ?1 AND kind = ?2 AND closed_at IS NULL",
            params![run_id, kind.as_str()],
            |r| r.get(0),
        )
        .optional()
        .during("reading windows")?;
    if already.is_some() {
        // A retried attempt of the opening step: the window has been open since the first.
        return Ok(());
    }
    let id: i64 = tx
        .query_row(
            "INSERT INTO windows (run_id, kind, opened_step, opened_at, subject) VALUES (?1, ?2, ?3, ?4, ?5)
             RETURNING id",
            params![run_id, kind.as_str(), step, now, subject],
            |r| r.get(0),
        )
        .during("opening a window")?;
    events.push((
        now,
        NewEvent::step(
            "window.opened",
            step,
            None,
            json!({ "kind": kind, "window": id, "subject": subject }),
        ),
    ));
    Ok(())
}

pub(super) fn close_window<'a>(
    tx: &dyn Tx,
    run_id: &str,
    kind: WindowKind,
    step: &'a str,
    now: Millis,
    events: &mut Events<'a>,
) -> Result<(), StateError> {
    let open: Option<(i64, i64)> = tx
        .query_row(
            "SELECT id, opened_at FROM windows WHERE run_id = ?1 AND kind = ?2 AND closed_at IS NULL",
            params![run_id, kind.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .during("reading windows")?;
    let Some((id, opened_at)) = open else {
        return Ok(());
    };
    // A window never closes before it opened: a clock stepped back between the two reads
    // an earlier time, and a stored negative duration would be a lie about the outage.
    let closed_at = now.max(opened_at);
    if closed_at != now {
        tracing::warn!(
            window = id,
            opened_at,
            now,
            "the clock reads a time before the window opened; its close is recorded at its open"
        );
    }
    tx.execute_later(
        "UPDATE windows SET closed_step = ?2, closed_at = ?3 WHERE id = ?1",
        params![id, step, closed_at],
    )
    .during("closing a window")?;
    events.push((
        closed_at,
        NewEvent::step(
            "window.closed",
            step,
            None,
            json!({ "kind": kind, "window": id, "duration_ms": closed_at - opened_at }),
        ),
    ));
    Ok(())
}
