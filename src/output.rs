//! The only module that writes to stdout (data) and prints errors to stderr.
//!
//! stdout carries data only: a report, a table, or JSON with a `schema_version`. A closed
//! pipe (`fogbook runs | head -1`) ends the process quietly with success. stderr goes through
//! anstream, which drops colour codes when colour is off ([`set_color`]).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use serde::Serialize;

/// How this invocation names fogbook in the commands its hints print: `fogbook`, with
/// `--db PATH` when that was given on the command line ([`set_invocation`]).
static INVOCATION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Whether the `--db` of [`INVOCATION`] had a secret replaced by `***`: the printed commands
/// then need the real URL, which [`fogbook`] says once, on stderr.
static INVOCATION_MASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records the state database given on the command line (`None`: from `FOGBOOK_DB` or the
/// default, which a pasted hint finds again without saying it). A PostgreSQL URL goes into
/// the hints with its password as `***`: a hint never prints a secret.
pub(crate) fn set_invocation(db_on_command_line: Option<&std::path::Path>) {
    let mut prefix = "fogbook".to_owned();
    if let Some(db) = db_on_command_line.filter(|db| *db != std::path::Path::new("fogbook.db")) {
        let raw = db.to_string_lossy();
        let shown = masked_db(&raw);
        INVOCATION_MASKED.store(shown != raw, std::sync::atomic::Ordering::Relaxed);
        prefix.push_str(" --db ");
        prefix.push_str(&shell_word(&shown));
    }
    let _ = INVOCATION.set(prefix);
}

/// `--db` as the hints show it: a path as is, a PostgreSQL URL with its password masked (an
/// unreadable URL, whose password cannot be told apart, as `URL`).
fn masked_db(raw: &str) -> String {
    use std::str::FromStr;
    match fogbook_state::pg::StoreUrl::from_str(raw) {
        Ok(url) if raw.contains("://") => url.to_string(),
        Ok(_) => raw.to_owned(),
        Err(_) if raw.contains("://") => "URL".to_owned(),
        Err(_) => raw.to_owned(),
    }
}

/// The `fogbook …` prefix of a command a hint prints, for this invocation: `fogbook`, or
/// `fogbook --db PATH` when `--db` was given on the command line, so that the pasted
/// command reads the same state database. When that `--db` is a URL whose password is
/// shown as `***`, the first use says so on stderr (once per process).
pub(crate) fn fogbook() -> &'static str {
    if INVOCATION_MASKED.load(std::sync::atomic::Ordering::Relaxed) {
        say_masked();
    }
    INVOCATION.get().map_or("fogbook", String::as_str)
}

/// `fogbook --db STORE`: the prefix of a command on another store than this invocation's
/// (`store copy`'s source or target), its password shown as `***` (said once, as by
/// [`fogbook`]).
pub(crate) fn fogbook_on(store: &fogbook_state::pg::StoreUrl) -> String {
    let shown = store.to_string();
    if matches!(store, fogbook_state::pg::StoreUrl::Postgres(_)) && shown.contains("***") {
        say_masked();
    }
    format!("fogbook --db {}", shell_word(&shown))
}

/// The prefix of the commands that drive runs of `store`: this invocation's, or, once the
/// store was moved (`store copy`), `fogbook --db TARGET`, where its runs are driven now (a
/// `resume` here is refused).
pub(crate) fn fogbook_driving(store: &fogbook_state::Store) -> String {
    match store.moved().filter(|m| m.done) {
        Some(mark) => {
            if mark.target.contains("***") {
                say_masked();
            }
            format!("fogbook --db {}", shell_word(&mark.target))
        }
        None => fogbook().to_owned(),
    }
}

/// Says once per process that the printed commands show a password as `***`.
fn say_masked() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        anstream::eprintln!(
            "note: the fogbook commands printed here show the password of --db as `***`: \
             put the real URL back before running one, or better, set FOGBOOK_DB to the URL \
             and leave --db out (a password on the command line lands in shell history and logs)"
        );
    });
}

/// `text` written by the engine or the store, with each next command it names given this
/// invocation's prefix ([`fogbook`]). The libraries cannot know the `--db` the operator
/// used, so they write a next command as `fogbook SUBCOMMAND …` (what an operator of the
/// default store runs; reasons stored in the database keep that form), and the CLI passes
/// their texts through here before it prints them ([`error`] does for every error). Only `fogbook` as a word followed by the name of one
/// of our subcommands is rewritten: "changed outside fogbook" and a command that already
/// says `fogbook --db …` stay as they are.
pub(crate) fn commands(text: &str) -> String {
    if INVOCATION.get().is_none_or(|p| p == "fogbook") || !text.contains("fogbook ") {
        return text.to_owned();
    }
    with_prefix(text, fogbook)
}

/// [`commands`] with the prefix from `prefix` (called only when a command is found).
fn with_prefix(text: &str, prefix: impl Fn() -> &'static str) -> String {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(at) = rest.find("fogbook ") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let word_start = !before.ends_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_');
        let tail = &after["fogbook ".len()..];
        let sub = tail
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .next()
            .unwrap_or("");
        if word_start && cli.find_subcommand(sub).is_some() {
            out.push_str(prefix());
            out.push(' ');
        } else {
            out.push_str("fogbook ");
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// `word` as one shell word: as is when it has only safe characters, else single-quoted.
pub(crate) fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@,%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `n` and the noun that fits it (`1 drive`, `2 drives`).
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The version of every JSON document fogbook prints.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Writes `text` (plus a newline) to stdout.
pub(crate) fn data(text: &str) {
    let mut out = std::io::stdout().lock();
    let result = out.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            out.write_all(b"\n")
        }
    });
    if let Err(e) = result.and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
    }
}

/// Writes `value` as pretty JSON, with `schema_version` first, to stdout.
pub(crate) fn json<T: Serialize>(kind: &str, value: &T) {
    let text = json_text(kind, value);
    if !text.is_empty() {
        data(&text);
    }
}

/// The document [`json`] writes (empty, with the error printed, when it cannot be encoded).
pub(crate) fn json_text<T: Serialize>(kind: &str, value: &T) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("schema_version".to_owned(), SCHEMA_VERSION.into());
    doc.insert("kind".to_owned(), kind.into());
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => doc.extend(map),
        Ok(other) => {
            doc.insert("data".to_owned(), other);
        }
        Err(e) => {
            error(&format!("cannot encode JSON output: {e}"), None);
            return String::new();
        }
    }
    let mut doc = serde_json::Value::Object(doc);
    rfc3339_times(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Subtrees that carry a runbook's or an activity's own data, left exactly as stored.
const OPAQUE: &[&str] = &[
    "data", "params", "input", "output", "progress", "error", "results", "by",
];

/// Every time of fogbook's own rows (`at`, `*_at`) stored as epoch milliseconds becomes RFC
/// 3339 text, with the milliseconds beside it as `*_ms`, so tools read one time format.
fn rfc3339_times(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if OPAQUE.contains(&key.as_str()) {
                    continue;
                }
                let Some(v) = map.get_mut(&key) else { continue };
                if (key == "at" || key.ends_with("_at"))
                    && let Some(ms) = v.as_i64()
                {
                    *v = fogbook_state::format_ms(ms).into();
                    map.insert(format!("{key}_ms"), ms.into());
                    continue;
                }
                rfc3339_times(v);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rfc3339_times),
        _ => {}
    }
}

/// Whether errors go to stdout as JSON (`--format json`), set once by the command dispatch.
static JSON_ERRORS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets whether stderr is coloured: `--color always|never`, or with `auto` when stderr is a
/// terminal and `NO_COLOR` is unset (`CLICOLOR_FORCE` forces it). Returns whether it is.
pub(crate) fn set_color(choice: crate::cli::ColorChoice) -> bool {
    use anstream::ColorChoice as C;
    let resolved = match choice {
        crate::cli::ColorChoice::Always => C::AlwaysAnsi,
        crate::cli::ColorChoice::Never => C::Never,
        crate::cli::ColorChoice::Auto => anstream::AutoStream::choice(&std::io::stderr()),
    };
    resolved.write_global();
    resolved != C::Never
}

/// Errors become JSON documents on stdout (`--format json`).
pub(crate) fn json_errors(on: bool) {
    JSON_ERRORS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// `error: …`, then the causes, then a blank line and `hint: …`. Under `--format json`, a
/// JSON document of kind `error` on stdout instead (the exit code is unchanged).
pub(crate) fn error(message: &str, hint: Option<&str>) {
    // The store's and the engine's messages name `fogbook …` without this invocation's --db.
    let message = &commands(message);
    let hint = hint.map(commands);
    let hint = hint.as_deref();
    if JSON_ERRORS.load(std::sync::atomic::Ordering::Relaxed) {
        let lines: Vec<&str> = message.lines().collect();
        json(
            "error",
            &serde_json::json!({
                "error": lines.first().copied().unwrap_or_default(),
                "details": lines.get(1..).unwrap_or_default().iter().map(|l| l.trim()).collect::<Vec<_>>(),
                "hint": hint,
            }),
        );
        return;
    }
    let mut err = anstream::stderr().lock();
    let red = anstyle::AnsiColor::Red.on_default().bold();
    let _ = writeln!(err, "{red}error:{red:#} {message}");
    if let Some(h) = hint {
        let _ = writeln!(err, "\nhint: {h}");
    }
}

/// Prints an error with its chain of causes.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static), hint: Option<&str>) {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    error(&text, hint);
}

/// A line on stderr (progress, notes), unless quiet.
pub(crate) fn note(quiet: bool, text: &str) {
    if !quiet {
        anstream::eprintln!("{text}");
    }
}

/// A line on stderr even when quiet (the run id, warnings that change what happens).
pub(crate) fn always(text: &str) {
    anstream::eprintln!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_message_names_its_next_command_with_this_invocations_db() {
        let e = fogbook_state::StateError::NotCommitted {
            run_id: "RUN1".to_owned(),
            what: "the start of step `a`".to_owned(),
            source: std::sync::Arc::from(Box::<dyn std::error::Error + Send + Sync>::from("disk full")),
        };
        let text = with_prefix(&e.to_string(), || "fogbook --db other.db");
        assert!(text.ends_with("run `fogbook --db other.db resume RUN1`"), "{text}");
        // Only a subcommand after `fogbook` is a command; a prefix already given stays.
        let text = "changed outside fogbook or by a newer fogbook: run `fogbook audit verify`; `fogbook --db x status`";
        assert_eq!(
            with_prefix(text, || "fogbook --db y"),
            "changed outside fogbook or by a newer fogbook: run `fogbook --db y audit verify`; `fogbook --db x status`"
        );
        assert_eq!(
            with_prefix("nofogbook resume R", || "fogbook --db y"),
            "nofogbook resume R"
        );
    }
}
