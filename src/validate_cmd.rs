//! `fogbook validate`: checks runbooks (and optionally parameters) and reports every error.

use fogbook_engine::runbook;
use serde_json::json;

use crate::cli::{Cli, Format, ValidateArgs};
use crate::exit::Exit;
use crate::input::read_params_quiet;
use crate::output;

pub(crate) fn validate(cli: &Cli, args: &ValidateArgs) -> Exit {
    let mut results = Vec::new();
    let mut all_ok = true;
    for file in &args.files {
        let origin = file.display().to_string();
        let outcome = match std::fs::read_to_string(file) {
            Err(e) => Err(format!("{origin}: cannot read: {e}")),
            Ok(text) => match runbook::parse(&text, &origin) {
                Err(d) => Err(d.to_string()),
                Ok(rb) if args.params.is_some() || !args.set.is_empty() => {
                    match read_params_quiet(&rb, args.params.as_deref(), &args.set) {
                        Ok(()) => Ok(rb),
                        Err(e) => Err(e),
                    }
                }
                Ok(rb) => Ok(rb),
            },
        };
        match outcome {
            Ok(rb) => {
                for w in &rb.warnings {
                    output::always(&w.to_string());
                }
                if cli.format != Format::Json {
                    output::data(&format!(
                        "{origin}: ok ({} v{}, {} steps)",
                        rb.name,
                        rb.version,
                        rb.steps.len()
                    ));
                }
                let warnings: Vec<String> = rb.warnings.iter().map(ToString::to_string).collect();
                results.push(json!({ "file": origin, "ok": true, "runbook": rb.name, "steps": rb.steps.len(), "warnings": warnings }));
            }
            Err(errors) => {
                all_ok = false;
                output::always(&errors);
                results.push(json!({ "file": origin, "ok": false, "errors": errors.lines().collect::<Vec<_>>() }));
            }
        }
    }
    if cli.format == Format::Json {
        output::json("validation", &json!({ "ok": all_ok, "files": results }));
    }
    if all_ok { Exit::Success } else { Exit::BadInput }
}
