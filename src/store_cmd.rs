//! `fogbook store copy`: a whole state store into an empty one (SQLite to PostgreSQL, or
//! back), with the audit chain unchanged.
//!
//! The order of checks makes the copy safe: the source is read in one consistent read and
//! its chain verified (a damaged source is refused, not carried over as valid); a run or
//! fleet some live process drives is refused by name; only then is the target opened, and
//! the store writes every row in one transaction after checking, inside it, that the target
//! is empty. The copy is then verified on the target, and both chain heads are printed.
//!
//! The source is marked `copying` before it is read and `moved` once the target committed
//! (a failed copy takes the mark off): a moved store refuses every command that writes or
//! drives ([`refuse_moved`]), so two stores never drive one estate. `fogbook store unmark`
//! takes the mark off an abandoned copy.

use std::str::FromStr;
use std::sync::Arc;

use fogbook_engine::Clock;
use fogbook_state::pg::StoreUrl;
use fogbook_state::{CopyOutcome, CopyProgress, MarkRefused, MovedMark, Store, format_ms};
use serde_json::json;

use crate::cli::{Cli, Format, StoreCopyArgs, StoreUnmarkArgs};
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

/// A store named by `--from` or `--to`; a value fogbook cannot use is bad input.
fn parse(flag: &str, value: &str) -> Result<StoreUrl, Exit> {
    StoreUrl::from_str(value).map_err(|e| {
        output::error(
            &format!("{flag}: {e}"),
            Some("pass a SQLite file (`sqlite:PATH` or a path) or a postgres:// URL"),
        );
        Exit::BadInput
    })
}

/// Opens the source: an existing SQLite file (read-only where it cannot be written; a
/// missing file is an error, never created) or a PostgreSQL database.
fn open_source(url: &StoreUrl) -> Result<Store, Exit> {
    match url {
        StoreUrl::Sqlite(path) => {
            if !path.exists() {
                output::error(
                    &format!("no state database at {} (--from)", path.display()),
                    Some("check the path given with --from: it names the database your runs are in now"),
                );
                return Err(Exit::BadInput);
            }
            Store::open_read_only(path).map_err(fail)
        }
        StoreUrl::Postgres(_) => Store::open_url(url).map_err(fail),
    }
}

pub(crate) async fn copy(cli: &Cli, args: &StoreCopyArgs) -> Exit {
    let (from, to) = match (parse("--from", &args.from), parse("--to", &args.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    if from.to_string() == to.to_string() {
        output::error(
            &format!("--from and --to name the same store ({from})"),
            Some("pass as --to the new, empty database to copy into"),
        );
        return Exit::BadInput;
    }
    crate::error::note_copy_store("the copy's source (--from / FOGBOOK_COPY_FROM)", &from);
    let source = match open_source(&from) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let exit = mark_and_copy(cli, &source, &from, &to).await;
    source.close().await;
    exit
}

/// Marks the source `copying`, copies, then marks it `moved` (or, when the copy did not
/// happen, takes the mark off again, so a failed copy leaves the source as usable as it was).
async fn mark_and_copy(cli: &Cli, source: &Store, from: &StoreUrl, to: &StoreUrl) -> Exit {
    if let StoreUrl::Sqlite(path) = from
        && std::fs::OpenOptions::new().read(true).write(true).open(path).is_err()
    {
        // Nothing can drive runs from a file this user cannot write either.
        output::note(
            cli.quiet,
            &format!("{from} is read-only here: it is copied without being marked as moved; keep it read-only"),
        );
        return copy_into(cli, source, from, to).await.0;
    }
    let by = fogbook_engine::owner::Owner::this_process(None).as_str().to_owned();
    let now = fogbook_engine::SystemClock.now_ms();
    let mark = match source.mark_copying(to.to_string(), by, now).await {
        Err(e) => return fail(e),
        Ok(Err(MarkRefused::AlreadyMarked(mark))) => {
            let (message, hint) = moved_text(&mark, &format!("{from}"), &output::fogbook_on(from));
            output::error(&format!("{message}; nothing was copied"), Some(&hint));
            return Exit::BadInput;
        }
        Ok(Ok(mark)) => mark,
    };
    let (exit, settled) = copy_into(cli, source, from, to).await;
    if !settled {
        // The target may hold the whole copy: the source keeps its mark (it takes on nothing
        // new), lest two stores drive the same runs.
        return exit;
    }
    let now = fogbook_engine::SystemClock.now_ms();
    let ended = if exit == Exit::Success {
        source.end_copy(mark.id, true, None, now).await
    } else {
        let reason = format!("the copy into {to} did not complete (exit {})", exit.code());
        source.end_copy(mark.id, false, Some(reason), now).await
    };
    match ended {
        Ok(()) if exit == Exit::Success => {
            output::note(
                cli.quiet,
                &format!(
                    "{from} is marked as moved to {to}: it refuses every command that writes or drives runs; use --db with the target from now on"
                ),
            );
            exit
        }
        Ok(()) => {
            output::note(
                cli.quiet,
                &format!("{from} is not marked as moved: it is usable as before"),
            );
            exit
        }
        Err(e) => {
            output::error_chain(
                &e,
                Some(&format!(
                    "the copy's mark on {from} could not be updated (it says a copy into {to} is in progress): if the copy succeeded use the target; otherwise `{} store unmark --reason TEXT` takes the mark off",
                    output::fogbook_on(from)
                )),
            );
            exit.worst(Exit::StoreFailed)
        }
    }
}

/// What a moved store says (the error line, and the hint): where its runs went, and when;
/// `fb` is the prefix of a command on that store ([`output::fogbook`] for `--db`'s).
fn moved_text(mark: &MovedMark, store: &str, fb: &str) -> (String, String) {
    let message = if mark.done {
        format!(
            "{store} was moved to {} at {} by a `store copy` ({}); its runs are driven there now",
            mark.target,
            format_ms(mark.moved_at.unwrap_or(mark.started_at)),
            mark.by
        )
    } else {
        format!(
            "{store} is being copied to {} (since {}, by a `store copy` on {}), or that copy was interrupted",
            mark.target,
            format_ms(mark.started_at),
            mark.by
        )
    };
    (message, moved_hint(mark, fb))
}

/// What to do on a moved store (or one being copied).
pub(crate) fn moved_hint(mark: &MovedMark, fb: &str) -> String {
    let unmark = format!("{fb} store unmark --reason TEXT");
    if mark.done {
        format!(
            "pass the target to --db (or FOGBOOK_DB) for this and every command; only if that copy was abandoned and the target is not used, `{unmark}` makes this store drive runs again"
        )
    } else {
        format!(
            "wait for the copy to end; if its process is gone, check whether {} holds the runs: if it does, use it with --db; if not, `{unmark}` makes this store usable again",
            mark.target
        )
    }
}

/// Refuses a store marked as moved for a command that writes or drives runs (exit 2, a
/// refused operator action), naming where the runs went.
pub(crate) fn refuse_moved(cli: &Cli, store: &Store) -> Result<(), Exit> {
    let Some(mark) = store.moved() else {
        return Ok(());
    };
    let (message, hint) = moved_text(mark, &crate::database::describe(cli), output::fogbook());
    output::error(
        &format!("{message}; this command writes or drives runs, so it is refused here"),
        Some(&format!(
            "{hint}; the reads (`status`, `runs`, `history`, `report`, `audit verify`) still work on this store"
        )),
    );
    Err(Exit::BadInput)
}

/// Says, for a command that only reads, that the store was moved (even with `-q`: what it
/// shows is no longer where the runs are driven).
pub(crate) fn note_moved(cli: &Cli, store: &Store) {
    if let Some(mark) = store.moved() {
        let (message, _) = moved_text(mark, &crate::database::describe(cli), output::fogbook());
        output::always(&format!("note: {message}; this shows the store as it was at the copy"));
    }
}

/// `fogbook store unmark`: takes the moved mark off the store `--db` names.
pub(crate) async fn unmark(cli: &Cli, args: &StoreUnmarkArgs) -> Exit {
    let store = match crate::database::open_existing_with(cli, Store::open) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (by, _) = crate::cli::identity(args.by.as_deref());
    let now = fogbook_engine::SystemClock.now_ms();
    let exit = match store.unmark(by.clone(), args.reason.clone(), now).await {
        Err(e) => fail(e),
        Ok(None) => {
            output::error(
                &format!(
                    "{} is not marked as moved; nothing was changed",
                    crate::database::describe(cli)
                ),
                Some("`store unmark` is only for a store that `fogbook store copy` marked"),
            );
            Exit::BadInput
        }
        Ok(Some(mark)) => {
            output::data(&format!(
                "{} is no longer marked as moved to {} (taken off by {by}: {}); it drives runs again: make sure nothing uses {}",
                crate::database::describe(cli),
                mark.target,
                args.reason,
                mark.target
            ));
            Exit::Success
        }
    };
    store.close().await;
    exit
}

/// Copies the source into the target; returns the exit, and whether it is known that the
/// copy was committed or not (`false`: the answer to the target's COMMIT was lost and the
/// target does not show the copy either, so it may or may not hold it).
async fn copy_into(cli: &Cli, source: &Store, from: &StoreUrl, to: &StoreUrl) -> (Exit, bool) {
    let mut unanswered = None;
    let exit = copy_from(cli, source, from, to, &mut unanswered).await;
    let Some((source_head, source_count)) = unanswered else {
        return (exit, true);
    };
    // Read the target again, on a new connection, under its write lock (so the copy's
    // transaction has ended, committed or not): the source's chain head there is the copy,
    // committed; an empty chain is no copy at all.
    output::note(
        cli.quiet,
        &format!("the answer to the copy's COMMIT was lost; reading {to} again to learn whether it holds the copy…"),
    );
    let settled = match Store::open_url(to) {
        Ok(target) => {
            let chain = target.settled_chain().await;
            target.close().await;
            chain.ok()
        }
        Err(_) => None,
    };
    match settled {
        Some((head, count)) if head == source_head && count == source_count => {
            output::data(&format!(
                "copied {from} into {to}: the answer to the copy's COMMIT was lost, but {to} holds it (its chain head is the source's, {head}, with {count} events); run `{} audit verify` to check it whole",
                output::fogbook_on(to)
            ));
            (Exit::Success, true)
        }
        Some((_, 0)) => {
            output::error(
                &format!("the copy into {to} was not committed: {to} holds nothing; nothing was copied"),
                Some("copy again once the target's server answers steadily"),
            );
            (Exit::StoreFailed, true)
        }
        _ => {
            output::error(
                &format!(
                    "cannot tell whether the copy into {to} was committed: the answer to its COMMIT was lost, and {to} cannot be read now"
                ),
                Some(&format!(
                    "{from} stays marked as being copied (it takes on no new work). Check the target with `{} audit verify`: if its chain head is {source_head}, the copy is complete: use {to} from now on; if it holds no runs, run `{} store unmark --reason TEXT` and copy again",
                    output::fogbook_on(to),
                    output::fogbook_on(from)
                )),
            );
            (Exit::StoreFailed, false)
        }
    }
}

/// The copy itself. When the answer to the target's COMMIT was lost, sets `unanswered` to
/// the source's chain head and event count, to learn from the target whether it holds them.
async fn copy_from(
    cli: &Cli,
    source: &Store,
    from: &StoreUrl,
    to: &StoreUrl,
    unanswered: &mut Option<(String, i64)>,
) -> Exit {
    output::note(cli.quiet, &format!("reading {from} and verifying its audit chain…"));
    let now = fogbook_engine::SystemClock.now_ms();
    let snap = match source.copy_snapshot(now).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Some(f) = &snap.audit().failure {
        output::error(
            &format!(
                "the audit chain of {from} does not verify: run {} event #{}: {}; nothing was copied",
                f.run_id, f.seq, f.reason
            ),
            Some(&format!(
                "a copy would carry the damage over as if it were valid: run `{} audit verify` to see it, and copy from a backup that verifies",
                output::fogbook_on(from)
            )),
        );
        return Exit::StoreFailed;
    }
    let (live, gone): (Vec<_>, Vec<_>) = snap
        .live_leases()
        .iter()
        .partition(|l| !fogbook_engine::owner::is_dead(&l.owner));
    if !live.is_empty() {
        let names: Vec<String> = live
            .iter()
            .map(|l| {
                format!(
                    "{} is being driven by {} (lease valid until {})",
                    l.stream,
                    l.owner,
                    format_ms(l.expires_at)
                )
            })
            .collect();
        output::error(
            &format!("{from} is in use; nothing was copied:\n  {}", names.join("\n  ")),
            Some(&format!(
                "stop the workers of this database and let each run finish or stop it (Ctrl-C or SIGTERM on the `run` or `resume` process that drives it; `{} resume RUN` continues it after the copy), then copy again; a run whose process died on another host is free once its lease expires",
                output::fogbook_on(to)
            )),
        );
        return Exit::Busy;
    }
    for l in &gone {
        output::note(
            cli.quiet,
            &format!(
                "{}: its driver {} is gone; copied as it is (`{} {}` continues it on the target)",
                l.stream,
                l.owner,
                output::fogbook_on(to),
                l.stream.strip_prefix("fleet:").map_or_else(
                    || format!("resume {}", l.stream),
                    |fleet| format!("fleet resume {fleet}")
                )
            ),
        );
    }
    let (source_head, source_count) = {
        let (h, n) = snap.chain();
        (h.to_owned(), n)
    };
    crate::error::note_copy_store("the copy's target (--to / FOGBOOK_COPY_TO)", to);
    let target = match Store::open_url(to) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    output::note(cli.quiet, &format!("copying into {to} (one transaction)…"));
    let quiet = cli.quiet;
    let progress: CopyProgress = Arc::new(move |table, done, total| {
        if done == total {
            output::note(quiet, &format!("  {table}: {total} rows"));
        }
    });
    let outcome = target.copy_restore(snap, progress).await;
    let exit = match outcome {
        // Not "nothing was copied": the server may have committed it.
        Err(e) if e.commit_unanswered() => {
            output::error_chain(&e, None);
            *unanswered = Some((source_head.clone(), source_count));
            Exit::StoreFailed
        }
        Err(e) => fail(e),
        Ok(CopyOutcome::TargetNotEmpty(found)) => {
            let held: Vec<String> = found.iter().map(|(t, n)| format!("{t}: {n}")).collect();
            output::error(
                &format!(
                    "{to} already holds fogbook data ({}); nothing was written",
                    held.join(", ")
                ),
                Some(
                    "copy into a new, empty database (e.g. `createdb fogbook_new`, or a new SQLite path); fogbook never overwrites a store",
                ),
            );
            Exit::BadInput
        }
        Ok(CopyOutcome::Copied {
            counts,
            chain_head,
            chain_count,
        }) => {
            report(
                cli,
                &target,
                from,
                to,
                &counts,
                (&source_head, source_count),
                (&chain_head, chain_count),
            )
            .await
        }
    };
    target.close().await;
    exit
}

/// Verifies the copy and prints the summary: rows per table, and both chain heads.
async fn report(
    cli: &Cli,
    target: &Store,
    from: &StoreUrl,
    to: &StoreUrl,
    counts: &[(&'static str, usize)],
    source: (&str, i64),
    copy: (&str, i64),
) -> Exit {
    let verified = match target.verify_audit(None).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let same = source == copy && verified.head == source.0;
    if cli.format == Format::Json {
        output::json(
            "store_copy",
            &json!({
                "from": from.to_string(),
                "to": to.to_string(),
                "rows": counts.iter().map(|(t, n)| json!({"table": t, "rows": n})).collect::<Vec<_>>(),
                "source_head": source.0,
                "source_events": source.1,
                "copy_head": copy.0,
                "copy_events": copy.1,
                "copy_verifies": verified.failure.is_none(),
            }),
        );
    } else {
        let mut text = format!("copied {from} into {to}\n");
        for (table, n) in counts {
            text.push_str(&format!("  {table:<16} {n:>8}\n"));
        }
        text.push_str(&format!(
            "chain head  source {} ({} events)\n            copy   {} ({} events)\n",
            source.0, source.1, copy.0, copy.1
        ));
        match &verified.failure {
            None => text.push_str("audit verify on the copy: ok"),
            Some(f) => text.push_str(&format!(
                "audit verify on the copy: FAILED: run {} event #{}: {}",
                f.run_id, f.seq, f.reason
            )),
        }
        output::data(&text);
    }
    if verified.failure.is_some() || !same {
        output::error(
            "the copy does not verify as the source did",
            Some("do not use the copy: keep using the source, and report this as a bug of fogbook"),
        );
        return Exit::StoreFailed;
    }
    Exit::Success
}
