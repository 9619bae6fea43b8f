//! Issue 13: colour on stderr follows `--color` and `NO_COLOR`, and reaches the ✓/✗ lines.

use crate::common::{Sandbox, code, fixture, stderr};

const ESC: &str = "\x1b[";

/// stderr of a run of `window.yaml` with `args` before `run` and the environment changed.
fn run_stderr(args: &[&str], set: &[(&str, &str)], unset: &[&str]) -> String {
    let sb = Sandbox::new();
    let mut cmd = sb.cmd();
    cmd.args(args).arg("run").arg(fixture("window.yaml"));
    for (k, v) in set {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("spawn fogbook");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn color_always_colours_the_step_lines() {
    // The sandbox sets NO_COLOR; --color always is the operator's explicit word and wins.
    let err = run_stderr(&["--color", "always"], &[], &[]);
    let done: Vec<&str> = err.lines().filter(|l| l.contains('✓')).collect();
    assert!(!done.is_empty(), "{err}");
    for line in done {
        assert!(line.contains(ESC), "a ✓ line without colour: {line:?}");
    }
}

#[test]
fn auto_colours_only_without_no_color_and_never_not_at_all() {
    // CLICOLOR_FORCE makes auto colour a pipe, so NO_COLOR's effect can be seen.
    let forced = run_stderr(&[], &[("CLICOLOR_FORCE", "1")], &["NO_COLOR"]);
    assert!(
        forced.lines().filter(|l| l.contains('✓')).all(|l| l.contains(ESC)),
        "{forced:?}"
    );
    let no_color = run_stderr(&["--color", "auto"], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], &[]);
    assert!(!no_color.contains(ESC), "NO_COLOR=1 with auto: {no_color:?}");
    let never = run_stderr(&["--color", "never"], &[("CLICOLOR_FORCE", "1")], &["NO_COLOR"]);
    assert!(!never.contains(ESC), "--color never: {never:?}");
}
