//! Who drives a run: a lease owner id that names the host and process, and a check of
//! whether such a process still lives.
//!
//! The id is `host:pid:start`, where `start` is the process start time from
//! `/proc/<pid>/stat` (so a recycled pid is not mistaken for the original process). A
//! lease held by a process on this host that no longer exists can be taken over at once;
//! any other lease only after it expires.

use std::fmt;

/// The lease owner id of this process (plus a tag for several drivers in one process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    /// The id of this process, with `tag` appended when one process runs several drivers.
    pub fn this_process(tag: Option<&str>) -> Self {
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or_default();
        let mut id = format!("{}:{pid}:{start}", hostname());
        if let Some(tag) = tag {
            id.push(':');
            id.push_str(tag);
        }
        Self(id)
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `owner` (an id made by [`Owner::this_process`]) is provably gone: it names this
/// host and its process no longer exists (or the pid now belongs to a later process).
pub fn is_dead(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(host), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    match process_start(pid) {
        // Readable: gone when it is a zombie (None above) or the pid now belongs to a later
        // process (another start time).
        Some(s) => s != start,
        // Unreadable (`hidepid`, another user's process, no /proc): only the kernel's own
        // "no such process" proves it gone; permission denied means it lives.
        None => match i32::try_from(pid) {
            Ok(raw) => {
                matches!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
                    Err(nix::errno::Errno::ESRCH)
                ) || zombie(pid)
            }
            Err(_) => false,
        },
    }
}

/// Whether `/proc` says the process exited and waits to be reaped.
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.get(stat.rfind(')')? + 2..)?.starts_with(['Z', 'X'])))
        .unwrap_or(false)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
        .replace(':', "_")
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot). `None` when the
/// process does not exist or `/proc` is unavailable. A zombie (exited, not yet reaped)
/// counts as gone.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19).map(|s| (*s).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_dead() {
        let me = Owner::this_process(None);
        assert!(!is_dead(me.as_str()));
        let parts: Vec<&str> = me.as_str().split(':').collect();
        let ghost = format!("{}:{}:{}", parts[0], parts[1], "1");
        // Same pid with another start time: a recycled pid, so the original is gone —
        // except that it is this very process, which is never declared dead.
        assert!(!is_dead(&ghost));
        let other_host = "elsewhere:1:1";
        assert!(!is_dead(other_host), "a process on another host can't be proven gone");
        let gone = format!("{}:4194303:1", parts[0]);
        assert!(is_dead(&gone));
    }
}
