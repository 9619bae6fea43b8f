//! `fogbook store copy`: a whole state store into an empty one (SQLite to PostgreSQL, or
//! back), with the audit chain unchanged.
//!
//! The order of checks makes the copy safe: the source is read in one consistent read and
//! its chain verified (a damaged source is refused, not carried over as valid); a run or
//! fleet some live process drives is refused by name; only then is the target opened, and
//! the store writes every row in one transaction after checking, inside it, that the target
//! is empty. The copy is then verified on the target, and both chain heads are printed.

use std::str::FromStr;
use std::sync::Arc;

use fogbook_engine::Clock;
use fogbook_state::pg::StoreUrl;
use fogbook_state::{CopyOutcome, CopyProgress, Store, format_ms};
use serde_json::json;

use crate::cli::{Cli, Format, StoreCopyArgs};
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
    let exit = copy_from(cli, &source, &from, &to).await;
    source.close().await;
    exit
}

async fn copy_from(cli: &Cli, source: &Store, from: &StoreUrl, to: &StoreUrl) -> Exit {
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
                "a copy would carry the damage over as if it were valid: run `fogbook audit verify --db {from}` to see it, and copy from a backup that verifies"
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
            Some(
                "stop the workers of this database and let each run finish or stop it (Ctrl-C or SIGTERM on its `fogbook run`/`resume`; `fogbook resume RUN --db TARGET` continues it after the copy), then copy again; a run whose process died on another host is free once its lease expires",
            ),
        );
        return Exit::Busy;
    }
    for l in &gone {
        output::note(
            cli.quiet,
            &format!(
                "{}: its driver {} is gone; copied as it is (`fogbook resume` continues it on the target)",
                l.stream, l.owner
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
