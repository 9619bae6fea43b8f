//! The fleet pages of `fogbook serve` (issue 18: "`fleet report` is a table and a page"):
//! `/fleets` lists every fleet with its counts, `/fleets/{id}` shows each target with its
//! status, its run (linked to the run's page) and its run's unprotected windows, and the
//! fleet's rate control and why it stopped. What is expected is read from the database's
//! tables, the page is fetched over plain HTTP on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::process::Child;

use crate::common::{Sandbox, code, http_get, stderr, stdout};

/// Each target opens an unprotected window and closes it; the target of group `g-b` fails
/// on the closing step (its window stays open).
const TARGET: &str = r#"runbook: windowed
version: 1
params:
  group: { type: string }
limits: { max_unprotected: 1h }
locks: ["fog/${{ params.group }}"]
steps:
  - id: delete-group
    uses: command
    unprotected: opens
    with: { program: "true", on_ambiguous: rerun }
  - id: create-group
    uses: command
    unprotected: closes
    with:
      program: sh
      args: ["-c", "test \"$G\" != g-b"]
      env: { G: "${{ params.group }}" }
      on_ambiguous: rerun
"#;

/// A `fogbook serve` we started, killed and reaped when the test ends.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(sb: &Sandbox) -> Server {
    let mut child = sb.spawn(&["serve", "--listen", "127.0.0.1:0"], &[]);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "serve printed `{url}`");
    Server(child, url)
}

/// The `<tr>` of the page whose opening tag carries `attr`.
fn row<'a>(page: &'a str, attr: &str) -> &'a str {
    let start = page.find(attr).unwrap_or_else(|| panic!("no {attr} in {page}"));
    let start = page[..start].rfind("<tr").unwrap();
    let end = start + page[start..].find("</tr>").unwrap();
    &page[start..end]
}

#[test]
fn fleet_pages_list_fleets_and_show_each_target_with_its_run_and_windows() {
    let sb = Sandbox::new();
    let runbook = sb.write("windowed.yaml", TARGET);
    let file = sb.write(
        "wins.yaml",
        &format!(
            "fleet: wins
runbook: {}
targets:
  over: [a, b, c]
  name: \"t-${{{{ item }}}}\"
  params: {{group: \"g-${{{{ item }}}}\"}}
rate: {{max_concurrency: 1, max_errors: 1}}
",
            runbook.display()
        ),
    );
    let out = sb.run(&["fleet", "run", file.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let (fleet, reason): (String, String) = sb
        .sql()
        .query_row("SELECT id, reason FROM fleets", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let run_of = |t: &str| -> Option<String> {
        sb.sql()
            .query_row("SELECT run_id FROM fleet_targets WHERE name = ?1", [t], |r| r.get(0))
            .unwrap()
    };
    let (run_a, run_b) = (run_of("t-a").unwrap(), run_of("t-b").unwrap());
    assert_eq!(run_of("t-c"), None, "t-c must not start after t-b failed");

    let server = serve(&sb);
    // The runs page links to the fleets.
    let (status, page) = http_get(&server.1, "/", false);
    assert_eq!(status, 200);
    assert!(page.contains("<a href=\"/fleets\">Fleets</a>"), "{page}");

    // `/fleets`: the fleet, its runbook, status, counts and link.
    let (status, page) = http_get(&server.1, "/fleets", false);
    assert_eq!(status, 200, "{page}");
    let tr = row(&page, &format!("data-fleet=\"{fleet}\""));
    assert!(tr.contains("data-status=\"failed\""), "{tr}");
    assert!(tr.contains(&format!("<a href=\"/fleets/{fleet}\">")), "{tr}");
    assert!(tr.contains("<td>wins</td><td>windowed</td>"), "{tr}");
    let counts: Vec<&str> = tr
        .split("<td class=\"num\">")
        .skip(1)
        .map(|c| &c[..c.find('<').unwrap()])
        .collect();
    // succeeded, failed, running, waiting, not started
    assert_eq!(counts, ["1", "1", "0", "0", "1"], "{tr}");
    let (status, live) = http_get(&server.1, "/fleets?fragment=1", false);
    assert_eq!(status, 200);
    assert!(
        live.contains(&format!("data-fleet=\"{fleet}\"")) && !live.contains("<nav>"),
        "{live}"
    );

    // `/fleets/{id}`: every target with its status, its run's link and its windows.
    let (status, page) = http_get(&server.1, &format!("/fleets/{fleet}"), false);
    assert_eq!(status, 200, "{page}");
    let a = row(&page, "data-target=\"t-a\"");
    assert!(a.contains("data-status=\"succeeded\""), "{a}");
    assert!(a.contains(&format!("<a href=\"/runs/{run_a}\">")), "{a}");
    assert!(a.contains("class=\"window closed\">closed after"), "{a}");
    let b = row(&page, "data-target=\"t-b\"");
    assert!(b.contains("data-status=\"failed\""), "{b}");
    assert!(b.contains(&format!("<a href=\"/runs/{run_b}\">")), "{b}");
    let b_open: i64 = sb
        .sql()
        .query_row(
            "SELECT count(*) FROM windows WHERE run_id = ?1 AND closed_at IS NULL",
            [&run_b],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(b_open, 1, "t-b's run failed on the step that closes its window");
    assert!(b.contains("class=\"window open-window\">OPEN for"), "{b}");
    let c = row(&page, "data-target=\"t-c\"");
    assert!(c.contains("data-status=\"pending\""), "{c}");
    assert!(!c.contains("/runs/"), "{c}");
    // The fleet's rate control and why it stopped, as `fleet report` says them.
    assert!(
        page.contains("at most 1 at once; no new start after 1 failed"),
        "{page}"
    );
    assert!(page.contains(&esc(&reason)), "reason `{reason}` not in {page}");
    let report = stdout(&sb.run(&["fleet", "report", &fleet]));
    assert!(report.contains(&reason), "{report}");
    // The linked run page exists.
    let (status, _) = http_get(&server.1, &format!("/runs/{run_b}"), false);
    assert_eq!(status, 200);
    // The page refreshes itself from its fragment.
    assert!(
        page.contains(&format!("data-src=\"/fleets/{fleet}?fragment=1\"")),
        "{page}"
    );
    let (status, live) = http_get(&server.1, &format!("/fleets/{fleet}?fragment=1"), false);
    assert_eq!(status, 200);
    assert!(
        live.contains("data-target=\"t-a\"") && !live.contains("<nav>"),
        "{live}"
    );

    // An unknown fleet is the problem page.
    let (status, page) = http_get(&server.1, "/fleets/fleet-nope", false);
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("id=\"problem\""), "{page}");
}

/// The HTML escaping of the pages (`&`, `<`, `>`, `"`, `'`).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The issue's fleet on the emulator (twenty change-secondary-region targets, t02 and t03
/// failing at the peering): its page shows every target as `fleet report` does, each
/// started target's run linked, and each run's unprotected windows (counted in the
/// database's `windows` table).
#[test]
fn fleet_page_of_an_emulator_fleet_matches_fleet_report_target_by_target() {
    let (sb, sim, file) = crate::fleet::setup(&[2, 3]);
    let out = sb.run_env(&["fleet", "run", file.to_str().unwrap()], &crate::fleet::env(&sim));
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let out = sb.run(&["fleet", "report", "move-secondaries", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let fleet = doc["fleet_id"].as_str().unwrap();

    let server = serve(&sb);
    let (status, page) = http_get(&server.1, &format!("/fleets/{fleet}"), false);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("2 failed"), "{page}");
    assert!(
        page.contains("at most 5 at once; no new start after 2 failed; a canary wave of 1"),
        "{page}"
    );
    let targets = doc["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 20);
    let mut closed_windows = 0;
    for t in targets {
        let name = t["name"].as_str().unwrap();
        let tr = row(&page, &format!("data-target=\"{name}\""));
        let st = t["status"].as_str().unwrap();
        assert!(tr.contains(&format!("data-status=\"{st}\"")), "{st}: {tr}");
        match t["run_id"].as_str() {
            Some(run) => {
                assert!(tr.contains(&format!("<a href=\"/runs/{run}\">")), "{tr}");
                let (closed, open): (i64, i64) = sb
                    .sql()
                    .query_row(
                        "SELECT count(closed_at), count(*) - count(closed_at) FROM windows \
                         WHERE run_id = ?1 AND kind = 'unprotected'",
                        [run],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                assert_eq!(tr.matches("closed after").count() as i64, closed, "{tr}");
                assert_eq!(tr.matches("OPEN for").count() as i64, open, "{tr}");
                closed_windows += closed;
            }
            None => assert!(!tr.contains("/runs/"), "{tr}"),
        }
    }
    assert!(
        closed_windows > 0,
        "the succeeded targets' runs had unprotected windows"
    );
    let (status, list) = http_get(&server.1, "/fleets", false);
    assert_eq!(status, 200);
    assert!(
        row(&list, &format!("data-fleet=\"{fleet}\"")).contains("data-status=\"failed\""),
        "{list}"
    );
}
