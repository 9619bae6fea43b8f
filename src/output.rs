//! The only module that writes to stdout (data) and prints errors to stderr.
//!
//! stdout carries data only: a report, a table, or JSON with a `schema_version`. A closed
//! pipe (`fogbook runs | head -1`) ends the process quietly with success.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use serde::Serialize;

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
    serde_json::to_string_pretty(&serde_json::Value::Object(doc)).unwrap_or_default()
}

/// `error: …`, then the causes, then a blank line and `hint: …`.
pub(crate) fn error(message: &str, hint: Option<&str>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
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
        eprintln!("{text}");
    }
}

/// A line on stderr even when quiet (the run id, warnings that change what happens).
pub(crate) fn always(text: &str) {
    eprintln!("{text}");
}
