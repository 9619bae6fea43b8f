//! Problems a new user found trying the README (task `opfix`): each test runs the binary
//! as that user did and checks what they saw.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{Sandbox, code, fixture, stderr, stdout};
use crate::report_html::{finished_rehearsal, root};

/// `resume RUN --retry-failed` gives a failed `--sim` rehearsal a fresh attempt (it was
/// refused as "already failed": the rehearsal's lease was claimed before the step reopened).
#[test]
fn retry_failed_continues_a_failed_rehearsal() {
    let sb = Sandbox::new();
    let password = sb.path("admin-password.txt");
    let args = [
        "run".to_owned(),
        root().join("runbooks/change-primary-region.yaml").display().to_string(),
        "--params".to_owned(),
        root().join("examples/change-primary-region.yaml").display().to_string(),
        "--set".to_owned(),
        format!("admin_password_file={}", password.display()),
        "--sim".to_owned(),
        "--auto-approve".to_owned(),
    ];
    let out = sb.cmd().args(&args).output().unwrap();
    assert_eq!(
        code(&out),
        1,
        "the run fails without its password file: {}",
        stderr(&out)
    );
    let run = sb.last_run_id();
    assert_eq!(sb.run_status(&run), "failed");

    std::fs::copy(root().join("examples/sim-admin-password.txt"), &password).unwrap();
    let out = sb.run(&["resume", &run, "--retry-failed"]);
    let err = stderr(&out);
    assert!(!err.contains("has already failed"), "{err}");
    assert!(err.contains("gets a fresh attempt"), "{err}");
    assert_eq!(code(&out), 0, "{err}");
    assert_eq!(sb.run_status(&run), "succeeded");
}

/// A lease too short to renew, or a margin as long as the lease, is a usage error (exit 2)
/// before anything is created.
#[test]
fn a_lease_too_short_or_a_margin_too_long_is_refused_at_parsing() {
    let sb = Sandbox::new();
    let rb = fixture("long-wait.yaml").display().to_string();
    let run = ["run", rb.as_str(), "--set", "duration=1ms"];
    for lease in [
        vec!["--lease-ttl", "0s"],
        vec!["--lease-ttl", "1ms"],
        vec!["--lease-ttl", "2s", "--lease-margin", "2s"],
        vec!["--lease-ttl", "2s", "--lease-margin", "3s"],
    ] {
        let args: Vec<&str> = lease.iter().chain(&run).copied().collect();
        let out = sb.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--lease"), "{args:?}: {}", stderr(&out));
        assert!(!sb.db().exists(), "{args:?} created the database");
    }
    let out = sb.run(&[
        "--lease-ttl",
        "2s",
        "--lease-margin",
        "1s",
        run[0],
        run[1],
        run[2],
        run[3],
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let help = stdout(&sb.run(&["run", "--help"]));
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("At least 500ms"), "{help}");
    assert!(help.contains("shorter than --lease-ttl"), "{help}");
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A driver stopped past its lease with nobody taking over says so when it continues
/// (exit 4), not that another process took the run over, and names `fogbook resume RUN`.
#[test]
fn a_driver_stopped_past_its_lease_with_no_competitor_says_so() {
    let sb = Sandbox::new();
    let long_wait = fixture("long-wait.yaml").display().to_string();
    let child = sb.spawn(
        &["run", &long_wait, "--set", "duration=120s"],
        &[("FOGBOOK_LEASE_TTL", "2s")],
    );
    sb.wait_for("the wait step to run", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row("SELECT status FROM steps WHERE step_id = 'nap'", [], |r| {
                r.get::<_, String>(0)
            })
            .is_ok_and(|s| s == "running")
    });
    let run = sb.last_run_id();
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    let expiry = || -> i64 {
        sb.sql()
            .query_row("SELECT lease_expires_at FROM runs WHERE id = ?1", [&run], |r| r.get(0))
            .unwrap()
    };
    let start = Instant::now();
    while now_ms() <= expiry() + 500 {
        assert!(start.elapsed() < Duration::from_secs(30), "the lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(pid, Signal::SIGCONT).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 4, "{err}");
    assert!(!err.contains("another process took the run over"), "{err}");
    assert!(err.contains("expired while this process was stopped"), "{err}");
    assert!(err.contains(&format!("`fogbook resume {run}` continues it")), "{err}");
}

/// `runs --status stalled` lists the runs `runs` shows as stalled (and only those), and
/// `runs --format json` says `stalled` of each run.
#[test]
fn runs_filters_and_reports_stalled_runs() {
    let sb = Sandbox::new();
    let done = sb.run(&[
        "run",
        &fixture("long-wait.yaml").display().to_string(),
        "--set",
        "duration=1ms",
    ]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    let finished = sb.last_run_id();
    let long_wait = fixture("long-wait.yaml").display().to_string();
    let mut child = sb.spawn(&["run", &long_wait, "--set", "duration=120s"], &[]);
    sb.wait_for("the wait step to run", Duration::from_secs(20), |sb| {
        sb.sql()
            .query_row(
                "SELECT COUNT(*) FROM steps WHERE step_id = 'nap' AND status = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n == 1)
    });
    let run = sb.last_run_id();
    child.kill().unwrap();
    child.wait().unwrap();

    let out = sb.run(&["runs", "--status", "stalled"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&run) && text.contains("stalled"), "{text}");
    assert!(!text.contains(&finished), "{text}");

    let out = sb.run(&["--format", "json", "runs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    let stalled_of = |id: &str| {
        runs.iter()
            .find(|r| r["id"] == id)
            .map(|r| r["stalled"].clone())
            .unwrap()
    };
    assert_eq!(stalled_of(&run), Value::Bool(true), "{doc}");
    assert_eq!(stalled_of(&finished), Value::Bool(false), "{doc}");
}

/// `report --html FILE` creates the file readable by its owner only (mode 0600), as the
/// state database is.
#[test]
fn the_html_report_is_written_owner_only() {
    let sb = Sandbox::new();
    let run = finished_rehearsal(&sb);
    let file = sb.path("report.html");
    let out = sb.run(&["report", &run, "--html", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    // The rehearsal's emulator state beside the database holds the estate and its journal.
    let sim_dir = sb.path("state.db.sim");
    let mut saved = 0;
    for entry in std::fs::read_dir(&sim_dir).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}: mode {mode:o}", path.display());
        saved += 1;
    }
    assert!(saved > 0, "no emulator state in {}", sim_dir.display());
}

/// The manual page's NAME line names the program once.
#[test]
fn the_man_page_name_line_reads_once() {
    let sb = Sandbox::new();
    let out = sb.run(&["man"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = stdout(&out);
    let name = page
        .lines()
        .skip_while(|l| !l.starts_with(".SH NAME"))
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    assert!(name.starts_with("fogbook \\- Durable runbooks"), "{name}");
    assert!(!name.contains("fogbook:"), "{name}");
}

/// Runs a hint's command as a shell would (quoting included), with this build's binary for
/// its leading `fogbook`; the sandbox's `FOGBOOK_DB` names another database, so only a
/// `--db` in the hint finds the run.
fn paste(sb: &Sandbox, hint: &str) -> std::process::Output {
    let line = hint
        .trim()
        .strip_prefix("fogbook ")
        .unwrap_or_else(|| panic!("not a command: {hint}"));
    std::process::Command::new("sh")
        .args(["-c", &format!("\"$FOGBOOK_BIN\" {line}")])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FOGBOOK_BIN", env!("CARGO_BIN_EXE_fogbook"))
        .env("FOGBOOK_DB", sb.db())
        .env("NO_COLOR", "1")
        .env("USER", "tester")
        .current_dir(sb.dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A run started with `--db PATH` that waits at an approval prints `approve` and `resume`
/// hints that carry `--db PATH`, and those exact commands approve it and finish it.
#[test]
fn hints_carry_the_db_given_on_the_command_line() {
    let sb = Sandbox::new();
    let db = sb.path("my state.db");
    let out_file = sb.path("out.txt");
    let out = sb.run(&[
        "--db",
        db.to_str().unwrap(),
        "run",
        &fixture("gated.yaml").display().to_string(),
        "--set",
        &format!("out={}", out_file.display()),
    ]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert!(!sb.db().exists(), "the run went to --db, not FOGBOOK_DB");
    let hint = |label: &str| {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` hint: {err}"))
            .trim()
            .to_owned()
    };
    let approve = hint("approve:");
    let resume = hint("then:");
    assert!(approve.starts_with("fogbook --db '"), "{approve}");
    assert!(approve.contains(db.to_str().unwrap()), "{approve}");

    let sh = paste(&sb, &approve.replace("NAME", "alice"));
    assert_eq!(code(&sh), 0, "{approve}: {}", stderr(&sh));
    let sh = paste(&sb, &resume);
    assert_eq!(code(&sh), 0, "{resume}: {}", stderr(&sh));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap().trim(), "version-one");
    assert!(!sb.db().exists());
}

/// The README a new user reads: every command `--help` lists has a row in its Commands
/// table, every shipped runbook a row in its runbooks table, no stale "being added", and
/// how to put `fogbook` on the PATH comes before the first block that calls it directly.
#[test]
fn the_readme_lists_every_command_and_runbook_and_says_how_to_install() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = |title: &str| {
        let start = readme.find(title).unwrap_or_else(|| panic!("README has no {title}"));
        let rest = &readme[start + title.len()..];
        rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
    };
    let commands = section("## Commands\n");
    let sb = Sandbox::new();
    let help = stdout(&sb.run(&["--help"]));
    let listed: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(listed.contains(&"plan") && listed.contains(&"bench"), "{help}");
    for command in listed {
        assert!(
            commands.lines().any(|l| l.starts_with(&format!("| `{command}"))
                || (l.starts_with("| `skip`") && l.contains(&format!("`{command}")))),
            "the Commands table has no row for `{command}`"
        );
    }
    let runbooks = section("## The shipped runbooks\n");
    for entry in std::fs::read_dir(root().join("runbooks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert!(
                runbooks.contains(&format!("| `{name}` |")),
                "the runbooks table has no row for `{name}`"
            );
        }
    }
    assert!(
        !readme.contains("being added"),
        "README still says something is being added"
    );
    let install = readme
        .find("cargo install --locked --path .")
        .expect("README says how to install fogbook");
    let first_direct = readme.find("\nfogbook ").expect("a block calls fogbook directly");
    assert!(
        install < first_direct,
        "the install step comes after the first direct call"
    );
}

/// A driver stopped past its lease while another process took the run over names the new
/// holder as such in its log line (`new_owner=`), and says another process took it over.
#[test]
fn a_driver_whose_run_was_taken_over_names_the_new_owner() {
    let sb = Sandbox::new();
    let long_wait = fixture("long-wait.yaml").display().to_string();
    let ttl = [("FOGBOOK_LEASE_TTL", "2s")];
    // Frozen between writes (stopped inside one, a lease renewal, A would keep B's takeover
    // out of the SQLite file), holding a live lease.
    let (a, run, first) = sb.frozen_driver(&["run", &long_wait, "--set", "duration=120s"], &ttl, "nap");
    let owner = || -> Option<String> {
        sb.sql()
            .query_row("SELECT lease_owner FROM runs WHERE id = ?1", [&run], |r| r.get(0))
            .unwrap()
    };
    let pid = Pid::from_raw(i32::try_from(a.id()).unwrap());
    let expiry = || -> i64 {
        sb.sql()
            .query_row("SELECT lease_expires_at FROM runs WHERE id = ?1", [&run], |r| r.get(0))
            .unwrap()
    };
    let start = Instant::now();
    while now_ms() <= expiry() + 500 {
        assert!(start.elapsed() < Duration::from_secs(30), "the lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = sb.spawn(&["resume", &run], &ttl);
    sb.wait_for("B to take the run over", Duration::from_secs(30), |_| {
        if let Some(status) = b.try_wait().unwrap() {
            let mut err = String::new();
            b.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("B ended ({status}) without taking the run over: {err}");
        }
        owner().is_some_and(|o| o != first)
    });
    let second = owner().unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    let out = a.wait_with_output().unwrap();
    b.kill().unwrap();
    b.wait().unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 4, "{err}");
    assert!(err.contains("another process took the run over"), "{err}");
    assert!(err.contains(&second), "{err}");
    assert!(err.contains("lost the lease; stopping"), "{err}");
    assert!(err.contains(&format!("new_owner={second}")), "{err}");
}
