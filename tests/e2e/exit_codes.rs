//! Issue 13: every exit code of the table in `src/exit.rs`, produced by the real binary, and
//! the table `--help` prints is the README's.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, code, fixture, stderr, stdout};

/// Waits until step `step` of the sandbox's run is running (the condition, not a time).
fn running(sb: &Sandbox, step: &str) {
    sb.wait_for(&format!("step {step} to run"), Duration::from_secs(30), |sb| {
        sb.sql()
            .query_row(
                "SELECT count(*) FROM steps WHERE step_id = ?1 AND status = 'running'",
                [step],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
    });
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README's exit-code rows as (code, meaning).
fn readme_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = text.find("### Exit codes").expect("README has `### Exit codes`");
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').splitn(2, '|').map(str::trim).collect();
            (cells[0].to_owned(), cells[1].trim_end_matches('|').trim().to_owned())
        })
        .collect()
}

/// The `Exit codes:` section of `fogbook --help` as (code, meaning), wrapped lines joined.
fn help_rows(help: &str) -> Vec<(String, String)> {
    let section = &help[help.find("Exit codes:").expect("--help has `Exit codes:`")..];
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in section.lines().skip(1) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            break;
        }
        let first = trimmed.split_whitespace().next().unwrap_or_default();
        if line.starts_with("  ") && !line.starts_with("   ") && first.parse::<u8>().is_ok() {
            rows.push((first.to_owned(), trimmed[first.len()..].trim().to_owned()));
        } else if let Some(last) = rows.last_mut() {
            last.1.push(' ');
            last.1.push_str(trimmed);
        }
    }
    rows
}

#[test]
fn help_prints_the_readme_exit_code_table() {
    let sb = Sandbox::new();
    let help = sb.run(&["--help"]);
    assert_eq!(code(&help), 0);
    let readme = readme_rows();
    assert!(readme.len() >= 9, "{readme:?}");
    assert_eq!(help_rows(&stdout(&help)), readme);
}

#[test]
fn exit_0_success_and_1_a_failed_run() {
    let sb = Sandbox::new();
    let ok = sb.run(&["validate", &fixture("window.yaml").display().to_string()]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let out = sb.path("out.txt").display().to_string();
    let failed = sb.run(&[
        "run",
        &fixture("buggy.yaml").display().to_string(),
        "--set",
        &format!("out={out}"),
    ]);
    assert_eq!(code(&failed), 1, "{}", stderr(&failed));
    assert!(stderr(&failed).contains("failed at step `b`"), "{}", stderr(&failed));
}

#[test]
fn exit_2_bad_input() {
    let sb = Sandbox::new();
    let ok = sb.run(&["run", &fixture("window.yaml").display().to_string()]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let unknown = sb.run(&["status", "no-such-run"]);
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    let missing = sb.run(&["--db", &sb.path("nothing-here.db").display().to_string(), "runs"]);
    assert_eq!(code(&missing), 2, "{}", stderr(&missing));
    assert!(stderr(&missing).contains("no state database"), "{}", stderr(&missing));
}

#[test]
fn exit_3_waiting_for_an_approval_and_for_the_maintenance_window() {
    let sb = Sandbox::new();
    let out = sb.path("out.txt").display().to_string();
    let approval = sb.run(&[
        "run",
        &fixture("gated.yaml").display().to_string(),
        "--set",
        &format!("out={out}"),
    ]);
    assert_eq!(code(&approval), 3, "{}", stderr(&approval));

    // A run whose pausing maintenance window (as a schedule records it) is closed now waits
    // before its disruptive step.
    let sb = Sandbox::new();
    let rb = sb.write(
        "disruptive.yaml",
        "runbook: disruptive\nversion: 1\nsteps:\n  - id: change\n    uses: command\n    disruptive: true\n    with: { program: \"true\" }\n",
    );
    let created = sb.run(&["run", "--detach", &rb.display().to_string()]);
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    let run = sb.last_run_id();
    let now_min = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
        % 1440;
    let (start, end) = ((now_min + 120) % 1440, (now_min + 121) % 1440);
    let window =
        serde_json::json!({ "start_min": start, "end_min": end, "tz": "UTC", "text": "a minute two hours from now" });
    rusqlite::Connection::open(sb.db())
        .unwrap()
        .execute("UPDATE runs SET window = ?2 WHERE id = ?1", [&run, &window.to_string()])
        .unwrap();
    let waits = sb.run(&["resume", &run]);
    assert_eq!(code(&waits), 3, "{}", stderr(&waits));
    assert!(stderr(&waits).contains("maintenance window"), "{}", stderr(&waits));
}

#[test]
fn exit_4_a_driver_whose_lease_was_taken_over() {
    let sb = Sandbox::new();
    let rb = fixture("long-wait.yaml").display().to_string();
    let child = sb.spawn(&["--lease-ttl", "2s", "run", &rb, "--set", "duration=60s"], &[]);
    running(&sb, "nap");
    let run = sb.last_run_id();
    // Another process takes the run over: its lease now names someone else.
    let far = i64::MAX / 2;
    rusqlite::Connection::open(sb.db())
        .unwrap()
        .execute(
            "UPDATE runs SET lease_owner = 'someone-else', lease_expires_at = ?2 WHERE id = ?1",
            rusqlite::params![run, far],
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a lost lease is busy (4), not bad input: {err}"
    );
    assert!(err.contains("someone-else"), "{err}");
}

#[test]
fn exit_5_cancelled() {
    let sb = Sandbox::new();
    let out = sb.path("out.txt").display().to_string();
    let child = sb.spawn(
        &[
            "run",
            "--wait",
            &fixture("gated.yaml").display().to_string(),
            "--set",
            &format!("out={out}"),
        ],
        &[],
    );
    running(&sb, "confirm");
    let run = sb.last_run_id();
    let cancel = sb.run(&["cancel", &run, "--by", "dave", "--reason", "not tonight"]);
    assert_eq!(code(&cancel), 0, "{}", stderr(&cancel));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

#[test]
fn exit_6_the_state_database_failed() {
    // A file that is not a database, for a reading and a writing command.
    let sb = Sandbox::new();
    std::fs::write(
        sb.db(),
        "this is not a SQLite database, it is a shopping list\n".repeat(200),
    )
    .unwrap();
    for args in [vec!["runs"], vec!["run", &fixture("window.yaml").display().to_string()]] {
        let out = sb.run(&args);
        assert_eq!(code(&out), 6, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--db"), "says what to do: {}", stderr(&out));
    }
}

#[test]
fn exit_6_a_read_only_database_for_a_writing_command() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let out = sb.path("out.txt").display().to_string();
    let waiting = sb.run(&[
        "run",
        &fixture("gated.yaml").display().to_string(),
        "--set",
        &format!("out={out}"),
    ]);
    assert_eq!(code(&waiting), 3, "{}", stderr(&waiting));
    let run = sb.last_run_id();
    // Read-only for everyone, run as an unprivileged user (root writes through file modes).
    std::fs::set_permissions(sb.db(), std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = sb.cmd();
    cmd.args(["approve", &run, "confirm", "--by", "alice"]);
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0 {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let approve = cmd.output().unwrap();
    assert_eq!(code(&approve), 6, "{}", stderr(&approve));
}

#[test]
fn exit_130_interrupted() {
    let sb = Sandbox::new();
    let rb = fixture("long-wait.yaml").display().to_string();
    let child = sb.spawn(&["run", &rb, "--set", "duration=60s"], &[]);
    running(&sb, "nap");
    kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
}

#[test]
fn exit_70_fogbook_cannot_start_its_threads() {
    // A process limit of one: the process exists, none of its threads can be started
    // (root is exempt from the limit, so the command runs as `nobody` then).
    let sb = Sandbox::new();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nproc=1").arg(env!("CARGO_BIN_EXE_fogbook")).args(["runs"]);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("FOGBOOK_DB", sb.db())
        .current_dir("/");
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0 {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().expect("prlimit (util-linux)");
    let err = stderr(&out);
    assert_eq!(code(&out), 70, "{err}");
    assert!(err.contains("cannot start the async runtime"), "{err}");
    assert!(!err.contains("panicked"), "an error, not a panic: {err}");
}
