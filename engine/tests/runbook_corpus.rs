//! The bad-input corpus: every file in `bad_runbooks/` must be refused, and what the user
//! is told is snapshotted. See `bad_runbooks/README.md` for the layout.

use std::path::Path;

use fogbook_engine::runbook;

fn read(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).expect("readable corpus file");
    let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
    (text, format!("bad_runbooks/{name}"))
}

#[test]
fn bad_runbooks_are_refused_with_every_error() {
    insta::glob!("bad_runbooks/[0-9]*.yaml", |path| {
        let (text, origin) = read(path);
        let diags = match runbook::parse(&text, &origin) {
            Ok(rb) => panic!("{origin} was accepted: {rb:#?}"),
            Err(d) => d,
        };
        assert!(!diags.is_empty(), "{origin}: refused without a diagnostic");
        assert!(
            diags.iter().any(|d| !d.is_warning()),
            "{origin}: refused with warnings only"
        );
        for d in &diags {
            assert!(
                d.line.is_some() || !d.path.is_empty(),
                "{origin}: a diagnostic names neither a line nor a path: {d}"
            );
        }
        // The list of activities grows as activities land; the snapshots should not churn.
        insta::with_settings!({ filters => vec![(r"known activities: [^\n]*", "known activities: [..]")] }, {
            insta::assert_snapshot!(diags.to_string());
        });
    });
}

#[test]
fn params_base_is_valid() {
    let text = include_str!("bad_runbooks/params-base.yaml");
    let rb = runbook::parse(text, "params-base.yaml").expect("params-base.yaml is valid");
    assert!(rb.warnings.is_empty(), "{:?}", rb.warnings);
}

#[test]
fn bad_parameter_files_are_refused() {
    let base = include_str!("bad_runbooks/params-base.yaml");
    let rb = runbook::parse(base, "bad_runbooks/params-base.yaml").expect("params-base.yaml is valid");
    insta::glob!("bad_runbooks/params-[0-9]*.yaml", |path| {
        let (text, origin) = read(path);
        let result =
            runbook::parse_params(&text, &origin).and_then(|given| runbook::resolve_params(&rb, given, &origin));
        let diags = match result {
            Ok(v) => panic!("{origin} was accepted: {v:#}"),
            Err(d) => d,
        };
        assert!(!diags.is_empty(), "{origin}: refused without a diagnostic");
        insta::assert_snapshot!(diags.to_string());
    });
}
