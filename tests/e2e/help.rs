//! Issue 13: help that is easy to read (global options under their own heading, a command's
//! help without the global options it ignores), shell completions and the manual page.

use crate::common::{Sandbox, code, stderr, stdout};

const STORE_AND_ARM: &[&str] = &[
    "--db",
    "--lease-ttl",
    "--lease-margin",
    "--arm-endpoint",
    "--auth",
    "--format",
];

/// The text of `fogbook ARGS --help`.
fn help(sb: &Sandbox, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let out = sb.run(&all);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn global_options_stand_under_their_own_heading() {
    let sb = Sandbox::new();
    for args in [&[][..], &["run"], &["resume"], &["status"]] {
        let text = help(&sb, args);
        let heading = text
            .find("Global options:")
            .unwrap_or_else(|| panic!("{args:?}: no `Global options:` heading:\n{text}"));
        let db = text
            .find("--db <DB>")
            .unwrap_or_else(|| panic!("{args:?}: no --db:\n{text}"));
        assert!(db > heading, "{args:?}: --db is listed before the heading:\n{text}");
    }
    let run = help(&sb, &["run"]);
    let options = &run[..run.find("Global options:").unwrap()];
    assert!(options.contains("--sim"), "run's own options come first:\n{run}");
    assert!(
        !options.contains("--lease-ttl"),
        "no global option among run's own:\n{run}"
    );
}

#[test]
fn a_command_shows_only_the_options_it_uses() {
    let sb = Sandbox::new();
    let serve = help(&sb, &["sim", "serve"]);
    for option in STORE_AND_ARM {
        assert!(
            !serve.contains(option),
            "`sim serve --help` lists {option}, which it ignores:\n{serve}"
        );
    }
    assert!(serve.contains("--time-scale"), "{serve}");
    assert!(
        serve.contains("unlike `run --sim` (3600)"),
        "sim serve says why its time scale differs from run --sim:\n{serve}"
    );
    // Hidden, not refused: FOGBOOK_DB or --db given to every command keeps working.
    let out = sb.run(&["sim", "serve", "--db", "x.db", "--help"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let schema = help(&sb, &["schema"]);
    assert!(!schema.contains("--db"), "{schema}");
    let status = help(&sb, &["status"]);
    assert!(status.contains("--db") && status.contains("--lease-ttl"), "{status}");
    assert!(!status.contains("--arm-endpoint"), "status never calls ARM:\n{status}");
    // csv belongs to `history`.
    assert!(!status.contains("csv"), "{status}");
    assert!(help(&sb, &["history"]).contains("csv"));
}

#[test]
fn completions_are_generated_for_each_shell() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = sb.run(&["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for word in ["fogbook", "resume", "retry-from", "lease-ttl"] {
            assert!(script.contains(word), "{shell} completions lack `{word}`");
        }
    }
    // The bash script is valid bash.
    let script = sb.write("fogbook.bash", &stdout(&sb.run(&["completions", "bash"])));
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let bad = sb.run(&["completions", "tcsh"]);
    assert_eq!(code(&bad), 2, "an unknown shell is a usage error");
}

#[test]
fn man_prints_a_manual_page() {
    let sb = Sandbox::new();
    let out = sb.run(&["man"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH fogbook 1"), "{page}");
    for word in ["resume", "retry\\-from", "Exit codes"] {
        assert!(page.contains(word), "the manual page lacks `{word}`");
    }
}

/// Item 12 of the new user's report: `worker --help` answers what running workers needs,
/// without reading docs/DEPLOYMENT.md: its wait for PostgreSQL at startup, its exit 2 on a
/// moved store (and the systemd setting that goes with it), how long a takeover takes after
/// a worker dies (SIGTERM alone hands its runs over at once), and how to point it at the
/// emulator.
#[test]
fn worker_help_says_how_it_waits_exits_hands_over_and_meets_the_emulator() {
    let sb = Sandbox::new();
    let text = help(&sb, &["worker"]);
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needed in [
        "does not answer at startup",
        "fail at once",
        "exit 2, naming the target",
        "RestartPreventExitStatus=2",
        "within one --lease-ttl plus --lease-margin and one --poll",
        "FOGBOOK_ARM_ENDPOINT",
        "FOGBOOK_ARM_TOKEN",
        "fogbook sim serve",
    ] {
        assert!(flat.contains(needed), "`worker --help` lacks `{needed}`:\n{text}");
    }
    assert!(
        !flat.contains("takes them over at once)"),
        "true only of SIGTERM:\n{text}"
    );
}
