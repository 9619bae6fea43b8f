//! What a group of writes will check, read with the group's `BEGIN` (issue 17, batching).
//!
//! A driver's transition checks its lease and the steps it ends or starts before it changes
//! anything; on PostgreSQL each check was a round trip of its own, so 1,000 runs stepping
//! at once cost ~1,000 round trips per step even when their writes shared one commit. The
//! writes that declare their [`Keys`] (the hot path: `advance`, progress, status, lease
//! renewals) get those rows read for the whole group in the same round trip as `BEGIN`,
//! the server's clock, the write lock and the chain head ([`super::thread`]) (with whether
//! the store was marked as moved, which every driver write refuses), and then
//! decide from them without asking the server again.
//!
//! Why it is exact: the rows are read under the write lock every write transaction of
//! every process takes first, so nobody else changes them until the commit; inside the
//! group, a write's own changes are the only ones, and [`Prefetched::forget`] drops what
//! was read of a write's runs once it ran (all of it after a write that declared none).
//! Each row is handed out once ([`Prefetched::take_run`]): a second check in the same write
//! reads the row itself.

use std::collections::HashMap;

use tokio_postgres::SimpleQueryMessage;

use crate::sql::{Keys, RunAhead, StepAhead};

/// The rows read ahead for one group, until the writes that read them have run.
#[derive(Debug, Default)]
pub(crate) struct Prefetched {
    runs: HashMap<String, RunAhead>,
    steps: HashMap<(String, String), StepAhead>,
    /// The runs of the write running now, the only ones it is handed ([`Prefetched::serve`]).
    serving: Vec<String>,
}

/// An id as an SQL literal, when it is plain enough to be written into the statement
/// text (the group's `BEGIN` is one simple query, which takes no parameters). Run ids are
/// UUIDs and step ids names; anything else is simply not read ahead.
fn literal(id: &str) -> Option<String> {
    let plain =
        !id.is_empty() && id.len() <= 200 && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    plain.then(|| format!("'{id}'"))
}

impl Prefetched {
    /// The statements that read the rows `keys` name, to follow the group's `BEGIN` in the
    /// same simple query (empty when there is nothing to read). Each row starts with a tag
    /// naming its statement: `r` a run, `s` a step, `e` a step's last end in the trail.
    pub(crate) fn sql<'a>(keys: impl IntoIterator<Item = &'a Keys>) -> String {
        let mut runs = Vec::new();
        let mut steps = Vec::new();
        for (run, step_ids) in keys.into_iter().flat_map(|k| &k.runs) {
            let Some(run) = literal(run) else { continue };
            steps.extend(
                step_ids
                    .iter()
                    .filter_map(|s| literal(s))
                    .map(|s| format!("({run}, {s})")),
            );
            runs.push(run);
        }
        if runs.is_empty() {
            return String::new();
        }
        let mut sql = format!(
            "; SELECT 'r', id, lease_owner, lease_expires_at, cancel_requested, lease_epoch, audit_count, status,
                      EXISTS (SELECT 1 FROM store_moves WHERE state = 'moved')
               FROM runs WHERE id IN ({})",
            runs.join(", ")
        );
        if !steps.is_empty() {
            let pairs = steps.join(", ");
            sql.push_str(&format!(
                "; SELECT 's', run_id, step_id, status FROM steps WHERE (run_id, step_id) IN ({pairs})\
                 ; SELECT DISTINCT ON (run_id, step_id) 'e', run_id, step_id, kind FROM events
                   WHERE (run_id, step_id) IN ({pairs})
                     AND kind IN ('step.completed', 'step.skipped', 'step.retry_requested')
                   ORDER BY run_id, step_id, seq DESC"
            ));
        }
        sql
    }

    /// The rows [`Prefetched::sql`] answered, among the other rows of `answer` (untagged).
    pub(crate) fn read(answer: &[SimpleQueryMessage]) -> Self {
        let mut read = Self::default();
        let mut ends = Vec::new();
        for row in answer.iter().filter_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.len() >= 4 => Some(r),
            _ => None,
        }) {
            let text = |i: usize| row.get(i).map(str::to_owned);
            let int = |i: usize| row.get(i).and_then(|v| v.parse::<i64>().ok());
            match row.get(0) {
                Some("r") if row.len() == 9 => {
                    let (Some(id), Some(epoch), Some(audit_count), Some(status), Some(moved)) =
                        (text(1), int(5), int(6), text(7), text(8))
                    else {
                        continue;
                    };
                    read.runs.insert(
                        id,
                        RunAhead {
                            owner: text(2),
                            expires_at: int(3),
                            cancel: int(4).is_some_and(|c| c != 0),
                            epoch,
                            audit_count,
                            status,
                            moved: moved == "t",
                        },
                    );
                }
                Some("s") => {
                    if let (Some(run), Some(step), Some(status)) = (text(1), text(2), text(3)) {
                        read.steps.insert((run, step), StepAhead { status, last_end: None });
                    }
                }
                Some("e") => {
                    if let (Some(run), Some(step), Some(kind)) = (text(1), text(2), text(3)) {
                        ends.push(((run, step), kind));
                    }
                }
                _ => {}
            }
        }
        for (key, kind) in ends {
            if let Some(step) = read.steps.get_mut(&key) {
                step.last_end = Some(kind);
            }
        }
        read
    }

    /// Hands the next write (which declared `keys`) the rows of its own runs only; a write
    /// that declared none is handed nothing (it may read a row after changing it).
    pub(crate) fn serve(&mut self, keys: Option<&Keys>) {
        self.serving = keys
            .map(|k| k.runs.iter().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default();
    }

    /// The lease row of `run_id`, once, to the write it was read for.
    pub(crate) fn take_run(&mut self, run_id: &str) -> Option<RunAhead> {
        if !self.serving.iter().any(|r| r == run_id) {
            return None;
        }
        self.runs.remove(run_id)
    }

    /// The step `step_id` of `run_id`, once, to the write it was read for.
    pub(crate) fn take_step(&mut self, run_id: &str, step_id: &str) -> Option<StepAhead> {
        if !self.serving.iter().any(|r| r == run_id) {
            return None;
        }
        self.steps.remove(&(run_id.to_owned(), step_id.to_owned()))
    }

    /// Forgets what was read of the runs a write declared (it may have changed them), or
    /// everything after a write that declared none.
    pub(crate) fn forget(&mut self, keys: Option<&Keys>) {
        match keys {
            None => {
                self.runs.clear();
                self.steps.clear();
            }
            Some(keys) => {
                for (run, _) in &keys.runs {
                    self.runs.remove(run);
                    self.steps.retain(|(r, _), _| r != run);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_plain_are_not_read_ahead() {
        let keys = Keys::run("r'1; DROP TABLE runs", ["a".to_owned()]);
        assert_eq!(Prefetched::sql([&keys]), "");
        let keys = Keys::run("0190-ab_c.d:e", ["step 'x'".to_owned(), "b".to_owned()]);
        let sql = Prefetched::sql([&keys]);
        assert!(sql.contains("IN ('0190-ab_c.d:e')"), "{sql}");
        assert!(
            sql.contains("('0190-ab_c.d:e', 'b')") && !sql.contains("step 'x'"),
            "{sql}"
        );
    }
}
