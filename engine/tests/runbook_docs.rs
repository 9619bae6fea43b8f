//! The format reference (`runbooks/README.md`) and the shipped runbooks stay valid.

use fogbook_engine::runbook;

/// The ```yaml blocks of a Markdown file, with the line each starts on.
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```yaml") => current = Some((i + 2, String::new())),
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_complete_example_in_the_format_reference_is_valid() {
    let readme = include_str!("../../runbooks/README.md");
    let mut checked = 0;
    for (line, block) in yaml_blocks(readme) {
        // Fragments (a step, a `retry:` block, a parameter file) are not whole runbooks.
        if !block.starts_with("runbook:") {
            continue;
        }
        let origin = format!("runbooks/README.md (block at line {line})");
        if let Err(d) = runbook::parse(&block, &origin) {
            panic!("an example in the format reference is invalid:\n{d}");
        }
        checked += 1;
    }
    assert!(checked >= 3, "expected at least 3 complete examples, found {checked}");
}

#[test]
fn every_fragment_in_the_format_reference_is_yaml() {
    let readme = include_str!("../../runbooks/README.md");
    for (line, block) in yaml_blocks(readme) {
        // A parameter file is a parameter file; everything else must at least be YAML that
        // the parser accepts as a document (checked through parse_params, which only reads).
        let origin = format!("runbooks/README.md (block at line {line})");
        let wrapped = if block.starts_with("  - ") {
            format!("steps:\n{block}")
        } else {
            block.clone()
        };
        if let Err(d) = runbook::parse_params(&wrapped, &origin) {
            panic!("a YAML block in the format reference does not parse:\n{d}");
        }
    }
}

#[test]
fn the_example_parameter_file_fits_its_declarations() {
    let readme = include_str!("../../runbooks/README.md");
    let blocks = yaml_blocks(readme);
    let decls = blocks
        .iter()
        .find(|(_, b)| b.starts_with("params:"))
        .map(|(_, b)| b.clone())
        .expect("a params: example");
    let file = blocks
        .iter()
        .find(|(_, b)| b.starts_with("# params.yaml"))
        .map(|(_, b)| b.clone())
        .expect("a parameter file example");
    let rb_text =
        format!("runbook: p\nversion: 1\n{decls}steps:\n  - id: a\n    uses: wait\n    with: {{ duration: 1s }}\n");
    let rb = runbook::parse(&rb_text, "params example").expect("valid declarations");
    let given = runbook::parse_params(&file, "params.yaml").expect("valid file");
    let mut given = given;
    for set in ["size=32", "primary.name=mi-sales-2"] {
        let (k, v) = runbook::parse_set(set).expect("valid --set");
        given.insert(k, v);
    }
    let values = runbook::resolve_params(&rb, given, "params.yaml").expect("valid values");
    assert_eq!(values["size"], 32);
    assert_eq!(values["primary"]["name"], "mi-sales-2");
    assert_eq!(values["primary"]["resource_group"], "rg-sales");
    assert_eq!(values["delete_old"], false);
    assert!(values["location"].is_null());
}

#[test]
fn every_shipped_runbook_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("runbooks/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("readable");
        let origin = format!("runbooks/{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("?"));
        if let Err(d) = runbook::parse(&text, &origin) {
            failures.push(d.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "invalid shipped runbooks:\n{}",
        failures.join("\n")
    );
}
