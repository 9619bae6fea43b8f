use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::process::Stdio;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::rfc3339;
use crate::{ActivityCtx, ActivityError};

/// Captured output beyond this many bytes per stream is cut (the tail is kept).
const MAX_CAPTURE: usize = 64 * 1024;

/// The variables a program inherits from fogbook's environment (and every `LC_*`). All
/// others are withheld, fogbook's credentials above all; a runbook adds its own in `env:`.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "TMPDIR", "TERM"];

/// `command`: runs a local program and captures its exit code, stdout and stderr.
///
/// Before the program starts, the step records that it is about to run it. If the process
/// dies while the program runs, the step is re-entered with that record and no result:
/// the program may or may not have done its work. `on_ambiguous` decides: `fail` (the
/// default) stops the run for an operator; `rerun` runs the program again (for idempotent
/// programs only).
///
/// The program runs with a scrubbed environment: `PATH`, `HOME`, `LANG`, `LC_*`, `TZ`,
/// `USER`, `LOGNAME`, `TMPDIR`, `TERM`, plus the step's `env:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Command {
    /// The program (looked up in `PATH` when it has no `/`).
    program: String,
    /// Arguments, passed as they are (no shell).
    #[serde(default)]
    args: Vec<String>,
    /// Variables set for the program, on top of the few it inherits (`PATH`, `HOME`,
    /// `LANG`, `LC_*`, `TZ`, `USER`, `LOGNAME`, `TMPDIR`, `TERM`). fogbook's credential
    /// variables may not be named.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {
        "not": { "enum": crate::secrets::CREDENTIAL_VARIABLES },
        "description": "fogbook's Azure credential variables never reach a command",
    }))]
    env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    cwd: Option<String>,
    /// Exit codes that count as success.
    #[serde(default = "default_ok_codes")]
    ok_exit_codes: Vec<i32>,
    /// What to do when re-entered after an interruption while the program ran.
    #[serde(default)]
    on_ambiguous: OnAmbiguous,
}

fn default_ok_codes() -> Vec<i32> {
    vec![0]
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum OnAmbiguous {
    /// Stop the run for an operator (default).
    #[default]
    Fail,
    /// Run the program again.
    Rerun,
}

impl Command {
    pub(crate) async fn run(self, ctx: &ActivityCtx) -> Result<serde_json::Value, ActivityError> {
        // Validation refuses these already; a stored input from before that check is refused
        // here, before anything runs.
        if let Some(name) = self
            .env
            .keys()
            .find(|k| crate::secrets::CREDENTIAL_VARIABLES.contains(&k.as_str()))
        {
            return Err(ActivityError::invalid(format!(
                "`env` names `{name}`, one of fogbook's credential variables, which never reach a command; \
                 remove it from the step (give the program its own credential another way)"
            )));
        }
        // Ambiguous only when this very attempt started the program and was interrupted: a
        // retry after a clean failure, or a step an operator re-opened, is a new attempt.
        if let Some(p) = ctx.progress()
            && p.get("phase").and_then(|v| v.as_str()) == Some("started")
            && p.get("attempt").and_then(serde_json::Value::as_u64) == Some(u64::from(ctx.attempt()))
            && self.on_ambiguous == OnAmbiguous::Fail
        {
            let since = p.get("at").and_then(|v| v.as_str()).unwrap_or("an earlier attempt");
            return Err(ActivityError::Ambiguous {
                message: format!(
                    "step `{}` was interrupted while `{}` was running (started {since}); it may or may not \
                     have finished its work, so it is not run again (on_ambiguous: fail). Check its effect, then \
                     `fogbook resume {} --retry-failed` to run it again, or `fogbook cancel {}`",
                    ctx.step_id(),
                    self.program,
                    ctx.run_id(),
                    ctx.run_id()
                ),
            });
        }
        ctx.save_progress(json!({ "phase": "started", "at": rfc3339(ctx.now()), "attempt": ctx.attempt() }))
            .await?;

        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| inherited(name)))
            .envs(&self.env)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            ActivityError::failed("CommandNotStarted", format!("could not start `{}`: {e}", self.program))
        })?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        // The program is allowed to finish even when the engine is asked to stop: killing
        // it half-way would leave exactly the ambiguity this activity tries to avoid. Only
        // a step timeout (which drops this future) kills it.
        let (status, out, err) = tokio::join!(child.wait(), read_out, read_err);
        let status = status.map_err(|e| {
            ActivityError::failed(
                "CommandWaitFailed",
                format!("waiting for `{}` failed: {e}", self.program),
            )
        })?;
        let code = status.code();
        let output = json!({
            "exit_code": code,
            "stdout": tail(&out),
            "stderr": tail(&err),
        });
        match code {
            Some(c) if self.ok_exit_codes.contains(&c) => Ok(output),
            _ => {
                let how = code.map_or_else(|| "was killed by a signal".to_owned(), |c| format!("exited with {c}"));
                let stderr_tail = tail(&err);
                let detail = stderr_tail.lines().last().unwrap_or("").to_owned();
                Err(ActivityError::Failed {
                    code: "CommandFailed".to_owned(),
                    message: if detail.is_empty() {
                        format!("`{}` {how}", self.program)
                    } else {
                        format!("`{}` {how}: {detail}", self.program)
                    },
                    output: Some(output),
                })
            }
        }
    }
}

fn inherited(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| INHERITED.contains(&n) || n.starts_with("LC_"))
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(MAX_CAPTURE);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_is_inherited() {
        for name in [
            "PATH", "HOME", "LANG", "LC_ALL", "LC_TIME", "TZ", "USER", "LOGNAME", "TMPDIR", "TERM",
        ] {
            assert!(inherited(OsStr::new(name)), "{name}");
        }
        for name in crate::secrets::CREDENTIAL_VARIABLES.iter().chain(&[
            "FOGBOOK_DB",
            "SSH_AUTH_SOCK",
            "AWS_SECRET_ACCESS_KEY",
            "PATHX",
            "LC",
        ]) {
            assert!(!inherited(OsStr::new(name)), "{name}");
        }
    }
}
