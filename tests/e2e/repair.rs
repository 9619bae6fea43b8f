//! Repair of a run in trouble: skip a step, or mark it done with an output the operator
//! supplies; each is audited and shown in the report, and no completed step runs again.

use serde_json::Value;

use crate::cancel::failed_inside_window;
use crate::common::{Sandbox, assert_audit_ok, code, stderr, stdout};

#[test]
fn skip_a_failed_step_and_the_run_goes_on_without_repeating_anything() {
    let sb = Sandbox::new();
    let run = failed_inside_window(&sb);
    let skip = sb.run(&["skip", &run, "reseed", "--by", "erin", "--reason", "reseeded by hand"]);
    assert_eq!(code(&skip), 0, "{}", stderr(&skip));
    assert_eq!(sb.step_status(&run, "reseed"), "skipped");
    assert_eq!(sb.run_status(&run), "pending");
    let resume = sb.run(&["resume", &run]);
    assert_eq!(code(&resume), 0, "{}", stderr(&resume));
    assert_eq!(
        sb.lines_of("effects.txt"),
        vec!["delete-group", "reseed", "create-group"],
        "each step ran once; the skipped one not again"
    );
    let again = sb.run(&["skip", &run, "delete-group", "--by", "erin"]);
    assert_eq!(code(&again), 2, "{}", stderr(&again));
    let report = stdout(&sb.run(&["report", &run]));
    assert!(
        report.contains("skipped") && report.contains("reseeded by hand"),
        "{report}"
    );
    assert_audit_ok(&sb);
}

#[test]
fn complete_a_failed_step_with_an_output_checked_against_its_fields() {
    let sb = Sandbox::new();
    let run = failed_inside_window(&sb);
    let partial = sb.write("partial.json", r#"{ "exit_code": 0 }"#);
    let refused = sb.run(&[
        "complete",
        &run,
        "reseed",
        "--output",
        &partial.display().to_string(),
        "--by",
        "erin",
    ]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("stdout, stderr"), "{}", stderr(&refused));
    assert_eq!(sb.step_status(&run, "reseed"), "failed");

    let full = sb.write("full.yaml", "exit_code: 0\nstdout: reseeded\nstderr: ''\n");
    let done = sb.run(&[
        "complete",
        &run,
        "reseed",
        "--output",
        &full.display().to_string(),
        "--by",
        "erin",
    ]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    let resume = sb.run(&["resume", &run]);
    assert_eq!(code(&resume), 0, "{}", stderr(&resume));
    assert_eq!(
        sb.lines_of("effects.txt"),
        vec!["delete-group", "reseed", "create-group"]
    );
    let output: String = sb
        .sql()
        .query_row(
            "SELECT output FROM steps WHERE run_id = ?1 AND step_id = 'reseed'",
            [&run],
            |r| r.get(0),
        )
        .unwrap();
    let output: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output["stdout"], "reseeded");
    let report = stdout(&sb.run(&["report", &run]));
    assert!(report.contains("completed by hand"), "{report}");
    assert_audit_ok(&sb);
}

#[test]
fn retry_from_refuses_to_repeat_a_completed_step_that_changes_something_unless_forced() {
    let sb = Sandbox::new();
    let run = failed_inside_window(&sb);
    let refused = sb.run(&["retry-from", &run, "delete-group", "--by", "erin"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("`delete-group` (command)"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert_eq!(sb.run_status(&run), "failed");

    // The cause is fixed outside; the run re-runs from the failed step on.
    sb.write("effects.txt.ok", "");
    let from = sb.run(&["retry-from", &run, "reseed", "--by", "erin", "--reason", "disk freed"]);
    assert_eq!(code(&from), 0, "{}", stderr(&from));
    assert_eq!(sb.step_status(&run, "reseed"), "pending");
    assert_eq!(sb.step_status(&run, "delete-group"), "completed");
    let resume = sb.run(&["resume", &run]);
    assert_eq!(code(&resume), 0, "{}", stderr(&resume));
    assert_eq!(
        sb.lines_of("effects.txt"),
        vec!["delete-group", "reseed", "reseed", "create-group"],
        "delete-group did not run again"
    );
    let report = stdout(&sb.run(&["report", &run]));
    assert!(
        report.contains("retry requested") && report.contains("disk freed"),
        "{report}"
    );
    assert_audit_ok(&sb);
}

fn run_buggy(sb: &Sandbox) -> String {
    let rb = sb.write(
        "buggy.yaml",
        &std::fs::read_to_string(crate::common::fixture("buggy.yaml")).unwrap(),
    );
    let out_file = sb.path("effects.txt").display().to_string();
    let out = sb.run(&["run", &rb.display().to_string(), "--set", &format!("out={out_file}")]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(sb.lines_of("effects.txt"), vec!["a", "b"]);
    sb.last_run_id()
}

#[test]
fn repin_continues_a_failed_run_with_the_fixed_runbook() {
    let sb = Sandbox::new();
    let run = run_buggy(&sb);
    let text = std::fs::read_to_string(sb.path("buggy.yaml")).unwrap();
    let fixed = sb.write("fixed.yaml", &text.replace("exit 3", "exit 0"));
    let repin = sb.run(&[
        "repin",
        &run,
        &fixed.display().to_string(),
        "--by",
        "erin",
        "--reason",
        "typo in b",
    ]);
    assert_eq!(code(&repin), 0, "{}", stderr(&repin));
    assert!(stderr(&repin).contains("--retry-failed"), "{}", stderr(&repin));
    let resume = sb.run(&["resume", &run, "--retry-failed", "--by", "erin"]);
    assert_eq!(code(&resume), 0, "{}", stderr(&resume));
    assert_eq!(
        sb.lines_of("effects.txt"),
        vec!["a", "b", "b", "c hello"],
        "a ran once; the fixed b ran; c used a's recorded output"
    );
    let report = stdout(&sb.run(&["report", &run]));
    assert!(report.contains("re-pinned") && report.contains("typo in b"), "{report}");
    assert_audit_ok(&sb);
}

#[test]
fn repin_is_refused_naming_the_step_that_blocks() {
    let sb = Sandbox::new();
    let run = run_buggy(&sb);
    let text = std::fs::read_to_string(sb.path("buggy.yaml")).unwrap();
    let changed_a = sb.write("changed-a.yaml", &text.replace("printf hello", "printf bonjour"));
    let out = sb.run(&["repin", &run, &changed_a.display().to_string(), "--by", "erin"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("step `a`"), "{}", stderr(&out));
    let no_field = sb.write(
        "no-field.yaml",
        &text.replace("exit 3", "exit 0").replace(
            "echo \\\"c ${{ steps.a.outputs.stdout }}",
            "echo \\\"c ${{ steps.a.outputs.stdot }}",
        ),
    );
    let out = sb.run(&["repin", &run, &no_field.display().to_string(), "--by", "erin"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("stdot"), "{}", stderr(&out));
    let pinned: String = sb
        .sql()
        .query_row("SELECT runbook_sha256 FROM runs WHERE id = ?1", [&run], |r| r.get(0))
        .unwrap();
    let resume = sb.run(&["resume", &run, "--retry-failed"]);
    assert_eq!(
        code(&resume),
        1,
        "still the old text: b fails again: {}",
        stderr(&resume)
    );
    assert_eq!(sb.lines_of("effects.txt"), vec!["a", "b", "b"]);
    assert!(!pinned.is_empty());
    assert_audit_ok(&sb);
}

#[test]
fn validate_refuses_an_output_field_that_does_not_exist() {
    let sb = Sandbox::new();
    let rb = sb.write(
        "typo.yaml",
        r#"runbook: typo
version: 1
steps:
  - id: a
    uses: command
    with: { program: "true" }
  - id: read
    uses: instance.get
    with: { instance: { subscription: s, resource_group: r, name: n } }
  - id: b
    uses: command
    with: { program: echo, args: ["${{ steps.a.outputs.stdot }}", "${{ steps.read.outputs.vcores }}"] }
"#,
    );
    let out = sb.run(&["validate", &rb.display().to_string()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("step `a` (command) has no output `stdot` (did you mean `stdout`?); its outputs are exit_code, stdout, stderr"),
        "{text}"
    );
    assert!(
        text.contains("step `read` (instance.get) has no output `vcores` (did you mean `v_cores`?)"),
        "{text}"
    );
    let run = sb.run(&["run", &rb.display().to_string()]);
    assert_eq!(code(&run), 2, "{}", stderr(&run));
    assert!(!sb.db().exists(), "nothing was created");
}

/// The commands of the ```sh block of README's "When a run goes wrong", continuation lines
/// joined, each as its words after `cargo run --locked --`.
fn readme_drill() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = &text[text.find("## When a run goes wrong").expect("README section")..];
    let block = after.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .map(|l| {
            let words = shell_words(l);
            assert_eq!(words[..4], ["cargo", "run", "--locked", "--"], "README command: {l}");
            words[4..].to_vec()
        })
        .collect()
}

/// Words of a command line, with "double quoted" words kept whole.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[test]
fn readme_drill_runs_as_written() {
    let sb = Sandbox::new();
    let db = sb.db().display().to_string();
    let journal = sb.path("journal.txt").display().to_string();
    let mut run = String::new();
    for (i, words) in readme_drill().iter().enumerate() {
        let args: Vec<String> = words
            .iter()
            .map(|w| {
                w.replace("/tmp/fogbook-demo.db", &db)
                    .replace("/tmp/fogbook-demo-journal.txt", &journal)
                    .replace("<RUN_ID>", &run)
            })
            .collect();
        let mut c = sb.cmd();
        c.current_dir(env!("CARGO_MANIFEST_DIR")).args(&args);
        let out = c.output().unwrap();
        let expected = if i == 0 { 3 } else { 0 };
        assert_eq!(code(&out), expected, "{args:?}: {}{}", stdout(&out), stderr(&out));
        if i == 0 {
            run = sb.last_run_id();
        }
        if args.first().is_some_and(|a| a == "approvals") {
            assert!(stdout(&out).contains(&run), "{}", stdout(&out));
        }
        if args.first().is_some_and(|a| a == "report") {
            assert!(
                stdout(&out).contains("approved") && stdout(&out).contains("change 4711"),
                "{}",
                stdout(&out)
            );
            assert!(
                stdout(&out).contains("by carol (--by)"),
                "the starter: {}",
                stdout(&out)
            );
        }
    }
    assert_eq!(sb.run_status(&run), "succeeded");
    assert_eq!(sb.lines_of("journal.txt"), vec!["deleted demo-fog", "created demo-fog"]);
}

/// The applied mutations of the emulator's journal, as `METHOD path`.
fn applied_mutations(url: &str) -> Vec<String> {
    crate::seed_runbooks::journal(url)
        .iter()
        .filter(|e| e["applied"] == serde_json::json!(true))
        .map(|e| {
            format!(
                "{} {}",
                e["method"].as_str().unwrap(),
                e["path"].as_str().unwrap().split('?').next().unwrap()
            )
        })
        .collect()
}

/// A drill: one change-primary-region run through a failed step, a repair, approvals by a
/// second person; a rejected approval on another run; a refused and a forced cancel; then
/// the audit chain and the report. Effects are counted from the emulator's journal.
#[test]
fn drill_a_region_move_through_trouble() {
    let sb = Sandbox::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sim = crate::seed_runbooks::start_sim(&root.join("examples/estate.yaml"), None);
    let env = [
        ("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()),
        ("FOGBOOK_ARM_TOKEN", "anything"),
    ];
    let arm = |args: &[&str]| sb.run_env(args, &env);
    // The new instance's database listing fails (HTTP 500) until the fault is lifted.
    sim.set_faults(&serde_json::json!({ "seed": 1, "rules": [
        { "operation": "ManagedDatabases_ListByInstance", "error_rate": 1.0, "error_status": 500 }
    ] }));
    let rb = root.join("runbooks/change-primary-region.yaml").display().to_string();
    let params = root.join("examples/change-primary-region.yaml").display().to_string();
    let password = format!(
        "admin_password_file={}",
        root.join("examples/sim-admin-password.txt").display()
    );
    let out = arm(&["run", &rb, "--params", &params, "--set", &password, "--by", "carol"]);
    assert_eq!(code(&out), 1, "fails at the database listing: {}", stderr(&out));
    let run = sb.last_run_id();
    assert_eq!(sb.step_status(&run, "new-instance-is-empty"), "failed");
    let created = applied_mutations(&sim.url);
    assert!(created.iter().any(|m| m.starts_with("PUT ")), "{created:?}");

    // Repair: re-running the completed create is refused without --force; forced, the
    // create goes through its saved operation (read back, not sent again) and the failed
    // read runs again.
    let refused = arm(&["retry-from", &run, "create-new-instance", "--by", "ann"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    sim.set_faults(&serde_json::json!({ "rules": [] }));
    let repair = arm(&[
        "retry-from",
        &run,
        "create-new-instance",
        "--force",
        "--by",
        "ann",
        "--reason",
        "listing fixed",
    ]);
    assert_eq!(code(&repair), 0, "{}", stderr(&repair));
    assert_eq!(applied_mutations(&sim.url), created, "the repair itself sends nothing");

    // Every approval by a second person, then the run goes on to the end.
    let first = arm(&["resume", &run]);
    let mut exit = code(&first);
    assert_eq!(exit, 3, "on to the first approval: {}", stderr(&first));
    let mut approvals = 0;
    while exit == 3 {
        let list: Value = serde_json::from_slice(&sb.run(&["approvals", "--format", "json"]).stdout).unwrap();
        let step = list["approvals"][0]["step"].as_str().unwrap().to_owned();
        let ok = sb.run(&["approve", &run, &step, "--by", "ann", "--reason", "drill"]);
        assert_eq!(code(&ok), 0, "{}", stderr(&ok));
        approvals += 1;
        let out = arm(&["resume", &run]);
        exit = code(&out);
        assert!(exit == 0 || exit == 3, "{}", stderr(&out));
    }
    assert_eq!(approvals, 3);
    assert_eq!(sb.run_status(&run), "succeeded");
    let mutations = applied_mutations(&sim.url);
    let mut unique = mutations.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), mutations.len(), "no mutation sent twice: {mutations:?}");

    // Another run: its approval is rejected.
    let demo = root.join("runbooks/demo-rehearsal.yaml").display().to_string();
    let journal = format!("journal={}", sb.path("journal.txt").display());
    let out = sb.run(&["run", &demo, "--set", &journal, "--by", "carol"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rejected = sb.last_run_id();
    let reject = sb.run(&["reject", &rejected, "confirm", "--by", "bob", "--reason", "not tonight"]);
    assert_eq!(code(&reject), 0, "{}", stderr(&reject));
    assert_eq!(sb.run_status(&rejected), "cancelled");

    // A third, killed inside its unprotected window: the cancel is refused, then forced.
    let mut c = sb.cmd();
    c.args(["run", &demo, "--set", &journal, "--auto-approve"])
        .env("FOGBOOK_FAILPOINTS", "after-finish:delete-old-group");
    let killed = c.output().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(9));
    let third = sb.last_run_id();
    let refused = sb.run(&["cancel", &third, "--by", "dave"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    let forced = sb.run(&[
        "cancel",
        &third,
        "--by",
        "dave",
        "--force",
        "--reason",
        "drill ends here",
    ]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert!(stdout(&sb.run(&["status", &third])).contains("ABANDONED OPEN"));
    assert_eq!(
        sb.lines_of("journal.txt"),
        vec!["deleted demo-fog"],
        "the rejected run changed nothing"
    );

    // The trail verifies, and the report tells who did what.
    crate::common::assert_audit_ok(&sb);
    let report = stdout(&sb.run(&["report", &run]));
    for what in [
        "started                by carol (--by)",
        "retry requested",
        "listing fixed",
        "approved",
    ] {
        assert!(report.contains(what), "report lacks `{what}`: {report}");
    }
    let report = stdout(&sb.run(&["report", &rejected]));
    assert!(
        report.contains("rejected") && report.contains("not tonight"),
        "{report}"
    );
}

#[test]
fn errors_at_three_in_the_morning_name_the_real_cause() {
    let sb = Sandbox::new();
    let out = sb.run(&["schedule", "next", "0 25 * * *"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("field 2 (hour) is `25`: 25 is outside 0-23"),
        "{}",
        stderr(&out)
    );
    let out = sb.run(&["schedule", "next", "0 2 * * *", "--tz", "Mars/Base"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--tz takes an IANA zone name"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("five fields"), "{}", stderr(&out));

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rb = root.join("runbooks/scale.yaml").display().to_string();
    let params = root.join("examples/scale.yaml").display().to_string();
    let out = sb.run(&["validate", &rb, "--params", &params, "--set", "v_cores=abc"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--set: v_cores: expected an integer"),
        "blamed on --set, not on the file: {}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(&params).unwrap();
    let line = text.lines().position(|l| l.starts_with("v_cores:")).unwrap() + 1;
    let bad = sb.write("bad-params.yaml", &text.replace("v_cores: 16", "v_cores: lots"));
    let out = sb.run(&["validate", &rb, "--params", &bad.display().to_string()]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(&format!("bad-params.yaml:{line}:1: v_cores: expected an integer")),
        "the parameter's line and column: {}",
        stderr(&out)
    );
}
