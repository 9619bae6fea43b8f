//! The parser never panics: every corpus file and documented example, cut and mutated at
//! many places, gives a runbook or diagnostics. A small deterministic generator stands in
//! for a fuzzer, so the test is reproducible and fast.

use std::path::Path;

use fogbook_engine::expr::{Expr, Template};
use fogbook_engine::runbook;

/// A xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

const SPICE: &[&str] = &[
    "\t",
    "\n",
    " ",
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "&a ",
    "*a",
    "<<: ",
    "#",
    "${{",
    "}}",
    "!",
    "==",
    "&&",
    "params.",
    "steps.",
    ".outputs",
    "\u{0}",
    "\u{7f}",
    "é",
    "\u{feff}",
    "---\n",
    "? ",
    "|",
    ">",
    "%YAML 1.2\n",
    "99999999999999999999",
    "-1",
    "1.5",
    "null",
    "~",
    "true",
    "yes",
];

fn seeds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_runbooks");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        // The alias bomb is slow by design (it runs the parser up to its budget).
        .filter(|p| !p.to_string_lossy().contains("alias-bomb"))
        .collect();
    files.sort();
    let mut out: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable"))
        .collect();
    let readme = include_str!("../../runbooks/README.md");
    for block in readme.split("```yaml\n").skip(1) {
        if let Some(end) = block.find("```") {
            out.push(block[..end].to_owned());
        }
    }
    out
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 => chars.truncate(at),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            _ => {
                let spice: Vec<char> = SPICE[rng.below(SPICE.len())].chars().collect();
                let at = at.min(chars.len());
                chars.splice(at..at, spice);
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mutated_runbooks_never_panic() {
    let mut rng = Rng(0x5eed_f00d_00c5);
    let seeds = seeds();
    assert!(seeds.len() > 50);
    let mut refused = 0usize;
    for seed in &seeds {
        for _ in 0..20 {
            let text = mutate(&mut rng, seed);
            match runbook::parse(&text, "mutant.yaml") {
                Ok(rb) => assert!(!rb.steps.is_empty()),
                Err(d) => {
                    assert!(!d.is_empty(), "refused without a diagnostic:\n{text}");
                    refused += 1;
                }
            }
            let _ = runbook::parse_params(&text, "mutant.yaml");
        }
    }
    assert!(refused > 0);
}

#[test]
fn mutated_expressions_never_panic() {
    let mut rng = Rng(42);
    let seeds = [
        "${{ params.a == 'x' && !(steps.b-c.outputs.items[0].name != \"y\") || contains(params.l, 1.5e3) }}",
        "prefix ${{ coalesce(steps.x.outputs.id, run.id) }} mid ${{ len(params.list) >= -3 }} end",
        "${{ 'it''s' }}${{ \"a\\\"b\" }}",
    ];
    for seed in seeds {
        for _ in 0..500 {
            let text = mutate(&mut rng, seed);
            let _ = Expr::parse(&text);
            let _ = Template::parse(&text);
        }
    }
}

#[test]
fn deep_and_long_expressions_are_refused_not_overflowed() {
    let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(Expr::parse(&deep).is_err());
    let nots = format!("{}true", "!".repeat(10_000));
    assert!(Expr::parse(&nots).is_err());
    let long = vec!["true"; 5_000].join(" && ");
    assert!(Expr::parse(&long).is_err());
    let calls = format!("{}1{}", "len(".repeat(1000), ")".repeat(1000));
    assert!(Expr::parse(&calls).is_err());
}
