//! The shipped runbooks the chaos runner exercises: every `runbooks/<name>.yaml` that has
//! parameters in `examples/<name>.yaml`.

use std::path::{Path, PathBuf};

/// A runbook with its example parameters and the estate they go with.
#[derive(Clone, Debug)]
pub(crate) struct Runbook {
    pub(crate) name: String,
    pub(crate) file: PathBuf,
    pub(crate) params: PathBuf,
    pub(crate) estate: PathBuf,
    /// (step id, activity) in file order.
    pub(crate) steps: Vec<(String, String)>,
}

impl Runbook {
    /// `run FILE --params P --auto-approve`.
    pub(crate) fn run_args(&self) -> Vec<String> {
        vec![
            "run".to_owned(),
            self.file.display().to_string(),
            "--params".to_owned(),
            self.params.display().to_string(),
            "--auto-approve".to_owned(),
        ]
    }

    /// The emulator's operationId of the POST a (forced) failover step sends, if `step` is
    /// one.
    pub(crate) fn failover_operation(&self, step: &str) -> Option<&'static str> {
        self.steps
            .iter()
            .find(|(id, _)| id == step)
            .and_then(|(_, uses)| match uses.as_str() {
                "fog.failover" => Some("InstanceFailoverGroups_Failover"),
                "fog.force_failover" => Some("InstanceFailoverGroups_ForceFailoverAllowDataLoss"),
                _ => None,
            })
    }

    /// Whether `step` is a (forced) failover: a POST that must never be sent twice.
    pub(crate) fn is_failover_step(&self, step: &str) -> bool {
        self.steps
            .iter()
            .any(|(id, uses)| id == step && (uses == "fog.failover" || uses == "fog.force_failover"))
    }
}

/// The estate a parameter file goes with: a comment line `... sim serve --estate PATH` in
/// the file names it (relative to the repository root); otherwise `examples/estate.yaml`.
fn estate_for(root: &Path, params_text: &str) -> PathBuf {
    for line in params_text.lines() {
        let t = line.trim_start();
        if !t.starts_with('#') {
            continue;
        }
        if let Some((_, rest)) = t.split_once("sim serve --estate ")
            && let Some(p) = rest.split_whitespace().next()
        {
            return root.join(p);
        }
    }
    root.join("examples/estate.yaml")
}

/// `(id, uses)` of each step, read from the runbook text (`- id:` then `uses:`).
fn steps_of(text: &str) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(id) = t.strip_prefix("- id:") {
            steps.push((id.trim().to_owned(), String::new()));
        } else if let (Some(uses), Some(last)) = (t.strip_prefix("uses:"), steps.last_mut())
            && last.1.is_empty()
        {
            last.1 = uses.trim().to_owned();
        }
    }
    steps
}

/// Every runbook with example parameters, sorted by name; `only` filters by name.
pub(crate) fn discover(root: &Path, only: &[String]) -> Result<Vec<Runbook>, String> {
    let dir = root.join("examples");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".yaml"))
        else {
            continue;
        };
        if name == "estate" {
            continue;
        }
        let file = root.join("runbooks").join(format!("{name}.yaml"));
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let params_text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let estate = estate_for(root, &params_text);
        if !estate.exists() {
            eprintln!("chaos: skipping {name}: its estate {} does not exist", estate.display());
            continue;
        }
        found.push(Runbook {
            name: name.to_owned(),
            file,
            params: path,
            estate,
            steps: steps_of(&text),
        });
    }
    if let Some(unknown) = only.iter().find(|o| !found.iter().any(|r: &Runbook| &r.name == *o)) {
        return Err(format!(
            "--runbooks: no runbook `{unknown}` with example parameters under {} (runbooks/{unknown}.yaml and examples/{unknown}.yaml)",
            dir.display()
        ));
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    if found.is_empty() {
        return Err(format!("no runbook with example parameters under {}", dir.display()));
    }
    Ok(found)
}
