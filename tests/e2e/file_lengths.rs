//! Source files stay small enough to read: no non-test Rust file is over 600 lines (counted
//! before its `#[cfg(test)]` module) unless its first line says why, as
//! `// Over 600 lines on purpose: <the reason>` (see `state/src/records.rs`). The test lists
//! every file over the limit, not only the first.

use std::path::{Path, PathBuf};

/// The most lines a source file has before its tests without a reason at its top.
const LIMIT: usize = 600;

/// The first line that excuses a longer file; a reason must follow it.
const REASON: &str = "// Over 600 lines on purpose:";

/// Folders never scanned: build output, version control, and test code (integration tests,
/// benches, fuzz targets).
const SKIPPED: &[&str] = &["target", ".git", "node_modules", "tests", "benches", "fuzz"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, skipped folders excluded.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The lines of `text` before its first `#[cfg(test)]` (all of them if it has none).
fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .count()
}

/// Whether the first line of `text` gives a reason to be long.
fn excused(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix(REASON))
        .is_some_and(|why| !why.trim().is_empty())
}

#[test]
fn no_source_file_is_over_600_lines_without_a_reason() {
    let root = repo();
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    assert!(files.len() > 50, "found the sources ({} files)", files.len());
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let n = code_lines(&text);
        if n > LIMIT && !excused(&text) {
            long.push(format!("{} ({n} lines)", f.strip_prefix(&root).unwrap().display()));
        }
    }
    assert!(
        long.is_empty(),
        "source files over {LIMIT} lines (before their tests) with no reason at their top; split \
         each where it does several things, or make its first line `{REASON} <why>`:\n  {}",
        long.join("\n  ")
    );
}

#[test]
fn the_count_stops_at_the_tests_and_a_reason_needs_words() {
    let text = format!(
        "//! A module.\n{}#[cfg(test)]\nmod tests {{}}\n",
        "fn f() {}\n".repeat(3)
    );
    assert_eq!(code_lines(&text), 4);
    assert_eq!(code_lines("a\nb\n"), 2);
    assert!(excused("// Over 600 lines on purpose: one table.\n"));
    assert!(!excused("// Over 600 lines on purpose:   \n"));
    assert!(!excused("//! A module.\n// Over 600 lines on purpose: too late.\n"));
}
