//! A new user's findings (session 7) about the operator-facing texts: `schedule show` wrote
//! its history as raw JSON and left out the parameters and the last fire; `fleet report`'s
//! ENDED was when the fleet noticed a run's end, not when it ended; the hint after an
//! ambiguous interruption dropped `--db`; the run page said "throughout" of a run that had
//! not finished and did not call a stopped run with an open window stalled.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, code, fixture, http_get, stderr, stdout};
use crate::newuser_stops::{driver_in_seed, rehearsal};

fn wall_now() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    fogbook_state::format_ms(i64::try_from(ms).unwrap())
}

fn stop(child: Child) {
    kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), Signal::SIGTERM).unwrap();
    child.wait_with_output().unwrap();
}

#[test]
fn schedule_show_says_in_words_what_fires_when_with_what_and_what_became_of_the_last_fire() {
    let sb = Sandbox::new();
    let out_file = sb.path("effects.txt").display().to_string();
    let add = sb.run(&[
        "schedule",
        "add",
        "--name",
        "every-second",
        "--cron",
        "* * * * * *",
        &fixture("job.yaml").display().to_string(),
        "--set",
        &format!("out={out_file}"),
        "--set",
        "pause=10ms",
    ]);
    assert_eq!(code(&add), 0, "{}", stderr(&add));
    assert_eq!(code(&sb.run(&["schedule", "pause", "every-second"])), 0);
    assert_eq!(code(&sb.run(&["schedule", "resume", "every-second"])), 0);

    let show = sb.run(&["schedule", "show", "every-second"]);
    assert_eq!(code(&show), 0, "{}", stderr(&show));
    let text = stdout(&show);
    assert!(!text.contains('{') && !text.contains('"'), "no raw JSON: {text}");
    assert!(
        text.contains("fires: a run of runbook job at cron `* * * * * *` (UTC)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("params: group=g, out={out_file}, pause=10ms")),
        "{text}"
    );
    assert!(text.contains("last fire: never"), "{text}");
    assert!(
        text.contains("  created by ") && text.contains(": runbook job (sha256 "),
        "{text}"
    );
    assert!(
        text.contains("  paused by ") && text.contains("  resumed by "),
        "{text}"
    );

    let worker = sb.spawn(&["worker", "--poll", "100ms"], &[]);
    sb.wait_for("a scheduled run's effect", Duration::from_secs(15), |sb| {
        sb.lines_of("effects.txt").iter().any(|l| l.ends_with(" after"))
    });
    stop(worker);
    // The run whose effect is in the file (not the schedule's own record of it).
    let effect = sb.lines_of("effects.txt");
    let run = effect
        .iter()
        .find(|l| l.ends_with(" after"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let text = stdout(&sb.run(&["schedule", "show", "every-second"]));
    let last = text.lines().find(|l| l.starts_with("last fire: ")).expect(&text);
    assert!(!text.contains('{'), "{text}");
    assert!(last.contains(" as run ") && last.contains("fogbook status"), "{last}");
    assert!(
        text.lines().any(|l| l.contains(&format!("as run {run}"))),
        "the history names the run whose effect we saw: {text}"
    );

    let json = sb.run(&["schedule", "show", "every-second", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["schedule"]["name"], "every-second");
}

#[test]
fn fleet_report_ends_a_target_when_its_run_ended_not_when_the_fleet_noticed() {
    let sb = Sandbox::new();
    let runbook = sb.write(
        "appr.yaml",
        "runbook: appr
version: 1
params:
  group: { type: string, default: g }
steps:
  - id: ok
    uses: approval
    with: { message: go }
  - id: after
    uses: command
    with: { program: \"true\", on_ambiguous: rerun }
",
    );
    let fleet = sb.write(
        "fleet.yaml",
        &format!(
            "fleet: jobs
runbook: {}
targets:
  over: [a]
  name: \"job-${{{{ item }}}}\"
  params: {{group: \"g-${{{{ item }}}}\"}}
rate: {{max_concurrency: 1, max_errors: 1}}
",
            runbook.display()
        ),
    );
    let out = sb.run(&["fleet", "run", fleet.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "the target waits for its approval: {}", stderr(&out));
    let run = sb.last_run_id();
    assert_eq!(code(&sb.run(&["approve", &run, "ok", "--by", "alice"])), 0);
    let before = wall_now();
    let resumed = sb.run(&["resume", &run]);
    let after = wall_now();
    assert_eq!(code(&resumed), 0, "{}", stderr(&resumed));
    // Before the fleet notices, its report says how the run ended, not what the fleet saw.
    let report = stdout(&sb.run(&["fleet", "report", "jobs"]));
    let row = report.lines().find(|l| l.starts_with("job-a")).expect(&report);
    assert_eq!(
        row.split_whitespace().nth(2),
        Some("succeeded"),
        "STATUS of an ended run: {report}"
    );
    // The fleet notices an hour later (its clock stepped, not waited for).
    let clock = sb.write("clock", "3600000");
    let out = sb.run_env(
        &["fleet", "resume", "jobs"],
        &[("FOGBOOK_TEST_CLOCK_FILE", clock.to_str().unwrap())],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let report = stdout(&sb.run(&["fleet", "report", "jobs"]));
    let row: Vec<&str> = report
        .lines()
        .find(|l| l.starts_with("job-a"))
        .expect(&report)
        .split_whitespace()
        .collect();
    let ended = row[5];
    assert!(
        before.as_str() <= ended && ended <= after.as_str(),
        "ENDED {ended} is when the run ended (between {before} and {after}): {report}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&sb.run(&["fleet", "report", "jobs", "--format", "json"]).stdout).unwrap();
    assert_eq!(doc["targets"][0]["ended_at"], ended, "{doc}");
}

#[test]
fn the_hint_after_an_ambiguous_interruption_names_the_same_store() {
    let sb = Sandbox::new();
    let db = sb.db().display().to_string();
    let dir = sb.dir.path().display().to_string();
    let child = sb.spawn(
        &[
            "--db",
            &db,
            "run",
            &fixture("slow-command.yaml").display().to_string(),
            "--set",
            &format!("dir={dir}"),
        ],
        &[],
    );
    sb.wait_for("the command to start", Duration::from_secs(20), |sb| {
        sb.lines_of("invocations") == ["started"]
    });
    stop(child);
    let run = sb.last_run_id();
    sb.write("release", "");
    let resumed = sb.run(&["--db", &db, "resume", &run]);
    assert_eq!(code(&resumed), 1, "{}", stderr(&resumed));
    let err = stderr(&resumed);
    assert!(err.contains("AmbiguousInterruption"), "{err}");
    assert!(
        err.contains(&format!("fogbook --db {db} resume {run} --retry-failed")),
        "{err}"
    );
    assert!(err.contains(&format!("fogbook --db {db} cancel {run}")), "{err}");
    assert!(
        !err.contains(&format!("fogbook resume {run}")),
        "every hint names the store: {err}"
    );
    let status = stdout(&sb.run(&["--db", &db, "status", &run]));
    assert!(
        status.contains(&format!("fogbook --db {db} resume {run} --retry-failed")),
        "{status}"
    );
    assert!(!status.contains(&format!("fogbook resume {run}")), "{status}");
}

#[test]
fn the_page_of_an_unfinished_run_says_so_of_its_windows() {
    let sb = Sandbox::new();
    let journal = sb.path("journal.txt").display().to_string();
    let out = sb.run(&["run", &rehearsal(), "--set", &format!("journal={journal}")]);
    assert_eq!(code(&out), 3, "the run stops at its approval: {}", stderr(&out));
    let run = sb.last_run_id();
    let file = sb.path("waiting.html");
    let out = sb.run(&["report", &run, "--html", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(!page.contains("throughout"), "{page}");
    assert!(page.contains("None so far (the run has not finished)"), "{page}");
}

#[test]
fn the_page_of_a_run_stopped_in_its_unprotected_window_shows_it_stalled_and_the_window_open() {
    let sb = Sandbox::new();
    let (child, run) = driver_in_seed(&sb);
    stop(child);
    assert_eq!(sb.run_status(&run), "pending");
    let opened: String = sb
        .sql()
        .query_row(
            "SELECT opened_at FROM windows WHERE run_id = ?1 AND kind = 'unprotected'",
            [&run],
            |r| r.get::<_, i64>(0),
        )
        .map(fogbook_state::format_ms)
        .unwrap();
    let file = sb.path("stopped.html");
    let out = sb.run(&["report", &run, "--html", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(
        page.contains("id=\"run-status\">stalled<"),
        "the page calls it stalled, as `status` does: {page}"
    );
    assert!(page.contains(&format!("still open, since {opened}")), "{page}");
    assert!(!page.contains("throughout"), "{page}");
    let status = stdout(&sb.run(&["status", &run]));
    assert!(status.contains("status: stalled"), "{status}");

    // The web page's list agrees, and its `stalled` filter finds the run.
    let mut server = sb.spawn(&["serve", "--listen", "127.0.0.1:0"], &[]);
    let mut url = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let (code_of, list) = http_get(url.trim(), "/?status=stalled", false);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code_of, 200, "{list}");
    assert!(
        list.contains(&format!("data-run=\"{run}\" data-status=\"stalled\"")),
        "{list}"
    );
}
