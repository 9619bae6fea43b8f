//! A colleague's finding (session 7): the next commands written by the engine and the store
//! (a fleet's reasons, the reject-after-fail refusal, the commit failure) and some of the
//! CLI's own (`store copy`, the pages of `serve`) said `fogbook …` without the `--db` they
//! were given, sending the operator to the default store. Each now names the same `--db`,
//! a PostgreSQL URL with its password as `***`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Output;

use fogbook_testpg::TestPostgres;

use crate::common::{Sandbox, code, http_get, stderr, stdout};

/// Each target waits for an approval of its own.
const APPROVAL: &str = "runbook: appr
version: 1
params:
  group: { type: string, default: g }
steps:
  - id: ok
    uses: approval
    with: { message: \"go ${{ params.group }}\" }
";

/// Fails at its first step, before the approval it would have asked for.
const FAILS_FIRST: &str = "runbook: fails-first
version: 1
steps:
  - id: bad
    uses: command
    with: { program: \"false\", on_ambiguous: rerun }
  - id: gate
    uses: approval
    with: { message: go }
";

/// `fogbook --db DB ARGS…` in the sandbox (whose own `FOGBOOK_DB` names another file).
fn on(sb: &Sandbox, db: &str, args: &[&str]) -> Output {
    let mut full = vec!["--db", db];
    full.extend_from_slice(args);
    sb.run_env(&full, &[("FOGBOOK_LOCAL_DIR", &sb.dir.path().display().to_string())])
}

/// The newest run of the store `db`.
fn newest_run(sb: &Sandbox, db: &str) -> String {
    let out = on(sb, db, &["runs", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
    doc["runs"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", stdout(&out)))
        .to_owned()
}

/// The hints of a fleet, a reject after a failure and the run on `db`, each with `fb` (the
/// `fogbook --db …` prefix) in front of its command.
fn fleet_and_reject_hints(sb: &Sandbox, db: &str, fb: &str) {
    let runbook = sb.write("appr.yaml", APPROVAL);
    let fleet = sb.write(
        "fleet.yaml",
        &format!(
            "fleet: jobs
runbook: {}
targets:
  over: [a, b]
  name: \"job-${{{{ item }}}}\"
  params: {{group: \"g-${{{{ item }}}}\"}}
rate: {{max_concurrency: 1, max_errors: 1}}
waves: {{canary: 1, size: 1, approval: true}}
",
            runbook.display()
        ),
    );
    // The canary's run waits for its approval: so does the fleet.
    let out = on(sb, db, &["fleet", "run", fleet.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let runs_wait = format!("approve them, then {fb} fleet resume ");
    assert!(stderr(&out).contains(&runs_wait), "{}", stderr(&out));
    let status = on(sb, db, &["fleet", "status", "jobs"]);
    assert!(stdout(&status).contains(&runs_wait), "{}", stdout(&status));

    let run = newest_run(sb, db);
    assert_eq!(code(&on(sb, db, &["approve", &run, "ok", "--by", "alice"])), 0);
    assert_eq!(code(&on(sb, db, &["resume", &run])), 0);
    // Wave 1 waits for the operator's approval.
    let out = on(sb, db, &["fleet", "resume", "jobs"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let wave = format!("wave 1 waits for approval: {fb} fleet resume ");
    assert!(stderr(&out).contains(&wave), "{}", stderr(&out));
    let report = on(sb, db, &["fleet", "report", "jobs"]);
    assert!(stdout(&report).contains(&wave), "{}", stdout(&report));

    // A failed run has no pending approval left to reject: cancel it, on the same store.
    let failing = sb.write("fails.yaml", FAILS_FIRST);
    let out = on(sb, db, &["run", failing.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let run = newest_run(sb, db);
    let out = on(sb, db, &["reject", &run, "gate", "--by", "bob", "--reason", "no"]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains(&format!("to end the run: {fb} cancel {run}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_hint_names_the_sqlite_file_given_with_db() {
    let sb = Sandbox::new();
    let db = sb.path("other.db").display().to_string();
    let fb = format!("fogbook --db {db}");
    fleet_and_reject_hints(&sb, &db, &fb);

    // The read-only page of `serve --db` names the same store in its approve command.
    let runbook = sb.path("appr.yaml");
    assert_eq!(code(&on(&sb, &db, &["run", runbook.to_str().unwrap()])), 3);
    let run = newest_run(&sb, &db);
    let mut child = sb.spawn(&["--db", &db, "serve", "--listen", "127.0.0.1:0"], &[]);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (status, page) = http_get(line.trim(), "/", false);
    let (fleets_status, fleets) = http_get(line.trim(), "/fleets", false);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("<code>{fb} approve {run} ok --by NAME</code>")),
        "{page}"
    );
    assert_eq!(fleets_status, 200, "{fleets}");
    assert!(fleets.contains(&format!("{fb} fleet resume ")), "{fleets}");

    // A store copied away once: copying it again names the store to unmark, not the default.
    let copy = |to: &str| on(&sb, &db, &["store", "copy", "--from", &db, "--to", to]);
    let out = copy(&sb.path("first.db").display().to_string());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = copy(&sb.path("second.db").display().to_string());
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains(&format!("`{fb} store unmark --reason TEXT`")),
        "{}",
        stderr(&out)
    );
    assert!(
        !Path::new(&sb.db()).exists(),
        "nothing touched the sandbox's default store"
    );
}

#[test]
fn every_hint_names_the_postgres_url_given_with_db_with_its_password_masked() {
    let server = TestPostgres::start();
    let url = server.create_database("hints");
    let password = server.password().to_owned();
    let sb = Sandbox::new();
    let masked = url.replace(&format!(":{password}@"), ":***@");
    let fb = format!("fogbook --db '{masked}'");
    fleet_and_reject_hints(&sb, &url, &fb);
    assert!(
        !Path::new(&sb.db()).exists(),
        "nothing touched the sandbox's default store"
    );
}
