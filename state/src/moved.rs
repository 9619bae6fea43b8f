//! A store whose runs were copied to another one (`fogbook store copy`) and must no longer
//! drive them: the "moved" mark.
//!
//! The copy marks its source `copying` before it reads the snapshot, so no command started
//! after that instant writes to the source and the copy misses nothing; once the target has
//! committed, the mark becomes `moved`; a copy that fails ends it as `failed`, which leaves
//! the source as usable as before. A mark in state `copying` or `moved` is the store's
//! *current* mark: the commands that write or drive refuse the store and name the target,
//! and the reads say the store was moved. `fogbook store unmark` ends a current mark (state
//! `unmarked`, who, when and why), when the copy is abandoned. Rows of `store_moves` are
//! never deleted: they are the store's record of where its runs went.
//!
//! The current mark is read when the store is opened ([`Store::moved`]), so a refusal costs
//! no round trip per write.

use crate::error::SqlContext;
use crate::sql::{OptionalExt, params};
use crate::{Millis, StateError, Store};

/// The current mark: where the runs went, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedMark {
    /// The row's id.
    pub id: i64,
    /// The store the runs were copied to (a file, or a URL with its password masked).
    pub target: String,
    /// `true` once the target committed the copy; `false` while the copy was (or, after a
    /// crash of `store copy`, may have been) in progress.
    pub done: bool,
    /// Who copied (the process: `host:pid:start`).
    pub by: String,
    /// When the copy began.
    pub started_at: Millis,
    /// When the target committed the copy.
    pub moved_at: Option<Millis>,
}

pub(crate) const CURRENT: &str = "SELECT id, target, state, by, started_at, moved_at FROM store_moves
     WHERE state IN ('copying', 'moved') ORDER BY id DESC LIMIT 1";

/// The current mark of a PostgreSQL database, read on the connection that migrated it.
pub(crate) fn current_pg(client: &mut postgres::Client) -> Result<Option<MovedMark>, postgres::Error> {
    let Some(r) = client.query_opt(CURRENT, &[])? else {
        return Ok(None);
    };
    Ok(Some(MovedMark {
        id: r.try_get(0)?,
        target: r.try_get(1)?,
        done: r.try_get::<_, String>(2)? == "moved",
        by: r.try_get(3)?,
        started_at: r.try_get(4)?,
        moved_at: r.try_get(5)?,
    }))
}

pub(crate) fn current(tx: &dyn crate::sql::Tx) -> Result<Option<MovedMark>, StateError> {
    tx.query_row(CURRENT, params![], |r| {
        Ok(MovedMark {
            id: r.get(0)?,
            target: r.get(1)?,
            done: r.get::<String>(2)? == "moved",
            by: r.get(3)?,
            started_at: r.get(4)?,
            moved_at: r.get(5)?,
        })
    })
    .optional()
    .during("reading the store's moved mark")
}

/// Refuses new drive work in a write transaction (a lease taken, runs claimed, a run created,
/// a schedule fired) while the store has a current mark, `copying` or `moved`: read in the
/// transaction, so a process that opened the store before the copy is refused too, and a
/// copy reads a store that takes on nothing new.
pub(crate) fn refuse_new_work(tx: &dyn crate::sql::Tx) -> Result<(), StateError> {
    match current(tx)? {
        Some(mark) => Err(StateError::StoreMoved { mark }),
        None => Ok(()),
    }
}

/// The number of events of the store's own audit stream ([`crate::STORE_STREAM`]), which no
/// row counts: the copy of a store carries them over with the rest of the chain, and the
/// stream goes on from there.
pub(crate) fn stream_count(tx: &dyn crate::sql::Tx) -> Result<i64, StateError> {
    tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?1",
        params![crate::STORE_STREAM],
        |r| r.get(0),
    )
    .during("reading the store's audit stream")
}

/// Why [`Store::mark_copying`] did not mark the store.
#[derive(Clone, Debug)]
pub enum MarkRefused {
    /// The store is already marked (moved, or a copy of it is in progress).
    AlreadyMarked(MovedMark),
}

impl Store {
    /// The mark that was current when this store was opened: `Some` when its runs were
    /// copied to another store, which drives them now.
    pub fn moved(&self) -> Option<&MovedMark> {
        self.moved.as_ref()
    }

    /// The current mark, read now (not when the store was opened): a worker that opened the
    /// store before a copy asks this at every poll.
    pub async fn moved_now(&self) -> Result<Option<MovedMark>, StateError> {
        self.read(current).await
    }

    /// Marks this store `copying` to `target` (read fresh, in one write transaction): from
    /// now on every command that writes or drives refuses it. Refused when it already has
    /// a current mark.
    pub async fn mark_copying(
        &self,
        target: String,
        by: String,
        now: Millis,
    ) -> Result<Result<MovedMark, MarkRefused>, StateError> {
        self.write(move |tx| {
            if let Some(mark) = current(tx)? {
                return Ok(Err(MarkRefused::AlreadyMarked(mark)));
            }
            let id: i64 = tx
                .query_row(
                    "INSERT INTO store_moves (target, state, by, started_at) VALUES (?1, 'copying', ?2, ?3)
                     RETURNING id",
                    params![target, by, now],
                    |r| r.get(0),
                )
                .during("marking the store as being copied")?;
            Ok(Ok(MovedMark {
                id,
                target,
                done: false,
                by,
                started_at: now,
                moved_at: None,
            }))
        })
        .await
    }

    /// Ends the copy of mark `id`: `moved` (the target committed) or `failed` (nothing
    /// was copied; `reason` says why), which leaves the store usable again.
    pub async fn end_copy(&self, id: i64, moved: bool, reason: Option<String>, now: Millis) -> Result<(), StateError> {
        self.write(move |tx| {
            if moved {
                tx.execute(
                    "UPDATE store_moves SET state = 'moved', moved_at = ?2 WHERE id = ?1 AND state = 'copying'",
                    params![id, now],
                )
            } else {
                tx.execute(
                    "UPDATE store_moves SET state = 'failed', ended_at = ?2, reason = ?3 WHERE id = ?1 AND state = 'copying'",
                    params![id, now, reason],
                )
            }
            .during("ending the store's copy mark")?;
            Ok(())
        })
        .await
    }

    /// Takes the current mark off (state `unmarked`, with who, when and why), so the store
    /// drives runs again; `None` when it had none. Audited as `store.unmarked` in the store's
    /// own stream ([`crate::STORE_STREAM`]): who, why, and the mark taken off.
    pub async fn unmark(&self, by: String, reason: String, now: Millis) -> Result<Option<MovedMark>, StateError> {
        self.write(move |tx| {
            let Some(mark) = current(tx)? else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE store_moves SET state = 'unmarked', ended_at = ?2, ended_by = ?3, reason = ?4 WHERE id = ?1",
                params![mark.id, now, by, reason],
            )
            .during("taking the store's moved mark off")?;
            let data = serde_json::json!({
                "by": by,
                "reason": reason,
                "mark": mark.id,
                "target": mark.target,
                "state": if mark.done { "moved" } else { "copying" },
                "copied_by": mark.by,
            });
            crate::audit::append(
                tx,
                crate::audit::STORE_STREAM,
                now,
                crate::audit::NewEvent::run("store.unmarked", data),
            )?;
            Ok(Some(mark))
        })
        .await
    }
}
