//! The text that describes the code stays true to the files: every repository path a document
//! or a code comment cites exists, every `docs/<name>.md §N` citation names a section that exists,
//! and every file or module ARCHITECTURE.md's code map names is there. Each test lists every
//! broken citation it finds (file, line, what is missing), not only the first.

use std::path::{Path, PathBuf};

/// Top-level folders and files a citation starts from.
const ROOTS: &[&str] = &[
    "src/",
    "engine/",
    "activities/",
    "state/",
    "sim/",
    "chaos/",
    "tests/",
    "docs/",
    "scripts/",
    "runbooks/",
    "examples/",
    "fuzz/",
    ".ci/",
    ".config/",
    "README.md",
    "ARCHITECTURE.md",
];

/// Folders never scanned: build output and version control.
const SKIPPED: &[&str] = &["target", ".git", "node_modules"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends with `ext`, build output excluded, sorted.
fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                files(&path, ext, out);
            }
        } else if name.ends_with(ext) {
            out.push(path);
        }
    }
    out.sort();
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// The repository paths cited in `line`: a token of path characters that starts with one of
/// [`ROOTS`] and is not the tail of a longer path or a URL.
fn cited_paths(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for root in ROOTS {
        let mut from = 0;
        while let Some(i) = line[from..].find(root) {
            let start = from + i;
            from = start + root.len();
            if line[..start]
                .chars()
                .next_back()
                .is_some_and(|c| path_char(c) || c == ':')
            {
                continue;
            }
            let token: String = line[start..].chars().take_while(|c| path_char(*c)).collect();
            let token = token.trim_end_matches('.').to_owned();
            if !token.contains("..") {
                out.push(token);
            }
        }
    }
    out
}

/// The bare document names cited in `line` (`DESIGN.md`, `ARM.md`): a token of path characters
/// without a folder that ends with `.md`.
fn cited_documents(line: &str) -> Vec<String> {
    line.split(|c: char| !path_char(c))
        .filter(|t| t.ends_with(".md") && t.len() > 3 && !t.contains('/'))
        .map(str::to_owned)
        .collect()
}

/// The relative targets of Markdown links in `line` (`[text](target)`), URLs and anchors
/// excluded.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = line[from..].find("](") {
        let start = from + i + 2;
        from = start;
        let target: String = line[start..]
            .chars()
            .take_while(|c| !matches!(c, ')' | '#' | ' '))
            .collect();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target);
        }
    }
    out
}

/// Whether `cited` exists from the repository root or from one of `bases` (the citing
/// document's folder, or the crate of the citing source file).
fn exists(cited: &str, bases: &[PathBuf]) -> bool {
    let cited = cited.trim_end_matches('/');
    repo().join(cited).exists() || bases.iter().any(|b| b.join(cited).exists())
}

/// The folders a citation in `file` may be relative to, besides the repository root.
fn bases_of(file: &Path) -> Vec<PathBuf> {
    let root = repo();
    let mut bases = Vec::new();
    if let Some(dir) = file.parent() {
        bases.push(dir.to_path_buf());
    }
    // A source file's crate: the first folder of its path.
    if let Ok(rel) = file.strip_prefix(&root)
        && let Some(first) = rel.components().next()
    {
        bases.push(root.join(first));
    }
    bases
}

fn rel(file: &Path) -> String {
    file.strip_prefix(repo()).unwrap_or(file).display().to_string()
}

/// The documents and the comment lines of the source files, as (file, line number, text).
fn cited_text() -> Vec<(PathBuf, usize, String)> {
    let mut docs = Vec::new();
    files(&repo(), ".md", &mut docs);
    let mut sources = Vec::new();
    files(&repo(), ".rs", &mut sources);
    let mut out = Vec::new();
    for file in docs {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            out.push((file.clone(), n + 1, line.to_owned()));
        }
    }
    for file in sources {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if let Some(i) = line.find("//") {
                out.push((file.clone(), n + 1, line[i..].to_owned()));
            }
        }
    }
    out
}

/// Every repository path cited in README.md, ARCHITECTURE.md, docs/*.md (every Markdown file
/// of the repository) and in code comments exists, and every bare document name a code
/// comment cites (`DESIGN.md`) is at the root, in `docs/` or beside the citing file.
#[test]
fn every_cited_path_exists() {
    let mut missing = Vec::new();
    for (file, n, line) in cited_text() {
        let bases = bases_of(&file);
        let is_doc = file.extension().is_some_and(|e| e == "md");
        let mut cited = cited_paths(&line);
        if is_doc {
            cited.extend(link_targets(&line));
        }
        // Documents may cite documents of other repositories by name; code comments may not.
        let documents = if is_doc { Vec::new() } else { cited_documents(&line) };
        for name in documents {
            if !exists(&name, &bases) && !exists(&format!("docs/{name}"), &bases) {
                missing.push(format!(
                    "{}:{n} cites `{name}`, which is in no folder it could mean",
                    rel(&file)
                ));
            }
        }
        for path in cited {
            if !exists(&path, &bases) {
                missing.push(format!("{}:{n} cites `{path}`, which does not exist", rel(&file)));
            }
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "{} citation(s) of missing paths (fix the path or the text):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// The section numbers of `doc`: the first word of each heading, without a trailing dot
/// (`## 3. Durability contract` is `3`, `### 3.1 Paths` is `3.1`).
fn section_numbers(doc: &str) -> Vec<String> {
    doc.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .map(|w| w.trim_end_matches('.').to_owned())
        .collect()
}

/// Every `docs/<name>.md §N` citation (in documents and code comments; a bare `<name>.md §N`
/// means the one in `docs/`) names a section `N` that the document has.
#[test]
fn every_cited_section_exists() {
    let mut missing = Vec::new();
    for (file, n, line) in cited_text() {
        for (at, _) in line.match_indices('§') {
            // The document is the path token just before the `§` (quotes and spaces aside).
            let before = line[..at].trim_end_matches([' ', '`']);
            let start = before.rfind(|c: char| !path_char(c)).map_or(0, |i| i + 1);
            let name = &before[start..];
            if !name.ends_with(".md") {
                continue;
            }
            let after = &line[at + '§'.len_utf8()..];
            let section: String = after
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let section = section.trim_end_matches('.');
            if section.is_empty() {
                continue;
            }
            let path = if name.contains('/') {
                name.to_owned()
            } else {
                format!("docs/{name}")
            };
            let Ok(doc) = std::fs::read_to_string(repo().join(&path)) else {
                missing.push(format!(
                    "{}:{n} cites {name} §{section}, and {path} does not exist",
                    rel(&file)
                ));
                continue;
            };
            if !section_numbers(&doc).iter().any(|s| s == section) {
                missing.push(format!(
                    "{}:{n} cites {name} §{section}, which has no such section",
                    rel(&file)
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} citation(s) of missing sections:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// The backticked names in a code-map section that name files or folders: `x.rs`, `dir/`,
/// `a/b.rs`, and in the `scripts/` section every bare name (the scripts have no extension).
fn named_files(section: &str, scripts: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (i, token) in section.split('`').enumerate() {
        if i % 2 == 0 || token.is_empty() || !token.chars().all(path_char) {
            continue;
        }
        let is_file = token.ends_with(".rs") || token.ends_with(".md") || token.ends_with('/');
        let is_script = scripts && token.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        if is_file || is_script {
            out.push(token.to_owned());
        }
    }
    out
}

/// Whether some path under `base` ends with `name` (a code map names files relative to their
/// crate, or to the folder the sentence is about: `lro.rs` in `activities/` is
/// `activities/src/arm/lro.rs`).
fn found_under(base: &Path, name: &str) -> bool {
    let name = name.trim_end_matches('/');
    if base.join(name).exists() || base.join("src").join(name).exists() || repo().join(name).exists() {
        return true;
    }
    let suffix = format!("/{name}");
    let mut all = Vec::new();
    walk(base, &mut all);
    all.iter().any(|p| p.to_string_lossy().ends_with(&suffix))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let skipped = SKIPPED.iter().any(|s| entry.file_name() == *s);
        if !skipped {
            if path.is_dir() {
                walk(&path, out);
            }
            out.push(path);
        }
    }
}

/// Every file and folder ARCHITECTURE.md's code map names (each `### \`dir/\`` section, its
/// names relative to that folder) exists.
#[test]
fn architecture_code_map_matches_the_files() {
    let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let map = text
        .split("\n## Code map")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has a `## Code map` section");
    let mut checked = 0;
    let mut missing = Vec::new();
    for section in map.split("\n### ").skip(1) {
        let heading = section.lines().next().unwrap_or_default();
        let Some(base) = heading.split('`').nth(1) else {
            continue;
        };
        let base_dir = repo().join(base.trim_end_matches('/'));
        assert!(
            base_dir.is_dir(),
            "ARCHITECTURE.md's code map has a section for `{base}`, which is not a folder"
        );
        let body = &section[heading.len()..];
        for name in named_files(body, base == "scripts/") {
            checked += 1;
            if !found_under(&base_dir, &name) {
                missing.push(format!("`{name}` (in the `{base}` section)"));
            }
        }
    }
    assert!(
        checked > 20,
        "the code map names only {checked} files: did its format change?"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map names {} file(s) or folder(s) that do not exist:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// A quote of code in a document stays what the code says: every ```` ```rust ```` block of a
/// Markdown file whose paragraph names a source file (`` `path/to/file.rs` ``) is found in that
/// file, line by line in order (indentation aside).
#[test]
fn quoted_code_is_in_the_file() {
    let mut docs = Vec::new();
    files(&repo(), ".md", &mut docs);
    let mut checked = 0;
    let mut drifted = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim() != "```rust" {
                i += 1;
                continue;
            }
            let start = i;
            let end = (start + 1..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap_or(lines.len());
            i = end + 1;
            // The source file the paragraph before the block names, if any.
            let paragraph = lines[..start]
                .iter()
                .rev()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty());
            let source = paragraph
                .flat_map(|l| l.split('`').skip(1).step_by(2))
                .find(|t| t.ends_with(".rs") && t.chars().all(path_char) && repo().join(t).is_file());
            let Some(source) = source else { continue };
            checked += 1;
            let code = std::fs::read_to_string(repo().join(source)).unwrap();
            let mut code_lines = code.lines().map(str::trim);
            for quoted in lines[start + 1..end].iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
                if !code_lines.any(|l| l == quoted) {
                    drifted.push(format!(
                        "{}:{} quotes `{quoted}` from {source}, which no longer has it (in this order)",
                        rel(&doc),
                        start + 1
                    ));
                    break;
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no quoted code found: did docs/RELIABILITY.md's quote of fog.rs move?"
    );
    assert!(drifted.is_empty(), "quoted code has drifted:\n{}", drifted.join("\n"));
}
