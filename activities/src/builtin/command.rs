//! The `command` activity: runs a local program (no shell) with a filtered environment and
//! captures its exit code and output.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
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

/// How long a program has to exit after SIGTERM when fogbook stops, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long fogbook waits for its own stop request after a program died of SIGINT, SIGTERM
/// or SIGHUP: a stop sent to a whole cgroup (systemd's default `KillMode=control-group`)
/// reaches both at once, and the program's death is then part of the stop (the step is
/// interrupted, `on_ambiguous` decides on resume), not a failure.
const STOP_NOTICE: Duration = Duration::from_secs(1);

/// `command`: runs a local program and captures its exit code, stdout and stderr.
///
/// Before the program starts, the step records that it is about to run it. If the process
/// dies while the program runs, the step is re-entered with that record and no result:
/// the program may or may not have done its work. `on_ambiguous` decides: `fail` (the
/// default) stops the run for an operator; `rerun` runs the program again (for idempotent
/// programs only). An attempt whose save of that record fails does not start the program
/// and records `not_started` instead, so a later attempt runs it.
///
/// The program runs in its own process group with a scrubbed environment: `PATH`, `HOME`,
/// `LANG`, `LC_*`, `TZ`, `USER`, `LOGNAME`, `TMPDIR`, `TERM`, plus the step's `env:`. A
/// signal to fogbook's process group (Ctrl-C, a service stop) therefore reaches fogbook
/// alone; fogbook then stops the program itself (SIGTERM to its group, SIGKILL after 5 s)
/// and leaves the step to `on_ambiguous` on resume.
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
                     have finished its work, so it is not run again (on_ambiguous: fail)",
                    ctx.step_id(),
                    self.program,
                ),
            });
        }
        // Never a program after a failed save: the save records `not_started` instead if it
        // can, so a later attempt runs the program rather than stopping as ambiguous.
        let at = rfc3339(ctx.now());
        ctx.save_before_effect(
            json!({ "phase": "started", "at": at, "attempt": ctx.attempt() }),
            json!({ "phase": "not_started", "at": at, "attempt": ctx.attempt() }),
        )
        .await?;

        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| inherited(name)))
            .envs(&self.env)
            .process_group(0)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // Started only while the driver holds the run's lease, as a cloud request is sent.
        ctx.fence().await?;
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
        // The program has its own process group, so a signal to fogbook's group does not
        // reach it; when fogbook is asked to stop, it stops the program itself. The step
        // stays running with its "started" record, and `on_ambiguous` decides on resume.
        let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let done = async { tokio::join!(child.wait(), read_out, read_err) };
        tokio::pin!(done);
        let (status, out, err) = tokio::select! {
            biased;
            r = &mut done => r,
            () = ctx.cancelled() => {
                stop_group(&self.program, group, done).await;
                return Err(ActivityError::Interrupted);
            }
        };
        let status = status.map_err(|e| {
            ActivityError::failed(
                "CommandWaitFailed",
                format!("waiting for `{}` failed: {e}", self.program),
            )
        })?;
        if killed_by_a_stop_signal(status) && tokio::time::timeout(STOP_NOTICE, ctx.cancelled()).await.is_ok() {
            return Err(ActivityError::Interrupted);
        }
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

fn killed_by_a_stop_signal(status: std::process::ExitStatus) -> bool {
    status
        .signal()
        .and_then(|s| Signal::try_from(s).ok())
        .is_some_and(|s| matches!(s, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP))
}

fn inherited(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| INHERITED.contains(&n) || n.starts_with("LC_"))
}

/// Stops the program's process group: SIGTERM, then SIGKILL when it has not exited after
/// [`STOP_GRACE`]. `done` is the program's wait (with its output readers).
async fn stop_group<F: std::future::Future>(program: &str, group: Option<Pid>, done: std::pin::Pin<&mut F>) {
    let mut done = done;
    let Some(group) = group else { return };
    tracing::warn!(
        "stopping `{program}`: SIGTERM to its process group (SIGKILL after {STOP_GRACE:?}); \
         on resume, the step's on_ambiguous decides whether it runs again"
    );
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, done.as_mut()).await.is_ok() {
        return;
    }
    tracing::warn!("`{program}` outlived SIGTERM by {STOP_GRACE:?}: SIGKILL to its process group");
    let _ = killpg(group, Signal::SIGKILL);
    // A process that left the group may still hold the output pipes; it is not waited for.
    let _ = tokio::time::timeout(STOP_GRACE, done).await;
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
