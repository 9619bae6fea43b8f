//! Issue 17: on PostgreSQL, the web page (`fogbook serve`) and the HTML report judge whether
//! a run's driver is live by the lease clock (the database server's), as `status` does: on a
//! host whose clock runs ten minutes ahead, a driven run is shown driven; on one whose clock
//! runs ten minutes behind, a run whose lease expired (by the database) is shown stalled.

use std::io::{BufRead, BufReader};

use serde_json::Value;

use crate::common::{Started, code, http_get, stderr, stdout};
use crate::pg_backend::{Db, OnPostgres};

/// The status the run's page shows (`<span … id="run-status">STATUS</span>`).
fn page_status(url: &str, run: &str) -> String {
    let (status, page) = http_get(url, &format!("/runs/{run}"), false);
    assert_eq!(status, 200, "{page}");
    let at = page
        .find("id=\"run-status\">")
        .unwrap_or_else(|| panic!("no run status in {page}"));
    let rest = &page[at + "id=\"run-status\">".len()..];
    rest[..rest.find('<').unwrap()].to_owned()
}

/// The status `status --format json` shows on this host's clock.
fn cli_state(db: &Db, run: &str, clock: &str) -> String {
    let out = db.run_env(
        &["status", run, "--format", "json"],
        &[("FOGBOOK_TEST_CLOCK_FILE", clock)],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    doc["state"].as_str().unwrap().to_owned()
}

#[test]
fn the_page_judges_stalled_by_the_database_clock_as_status_does() {
    let pg = OnPostgres::start("pageclock");
    let db = &pg.db;
    let clock_file = db.sb.write("clock-offset", "600000\n");
    let clock = clock_file.display().to_string();
    // The driver waits in the foreground at the approval `gate`, renewing its lease.
    let (mut driver, run) = db.driver_at_the_gate(&[]);

    // The page's host clock runs ten minutes ahead (read at every request).
    let mut serve = Started::new(db.spawn(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("FOGBOOK_TEST_CLOCK_FILE", &clock)],
    ));
    let mut line = String::new();
    BufReader::new(serve.child().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "serve printed `{url}`");

    assert_eq!(page_status(&url, &run), "running");
    assert_eq!(cli_state(db, &run, &clock), "running");
    let (status, list) = http_get(&url, "/", false);
    assert_eq!(status, 200, "{list}");
    assert!(
        list.contains(&format!("data-run=\"{run}\" data-status=\"running\"")),
        "{list}"
    );
    let (status, stalled) = http_get(&url, "/?status=stalled", false);
    assert_eq!(status, 200, "{stalled}");
    assert!(!stalled.contains(&format!("data-run=\"{run}\"")), "{stalled}");
    // The HTML report of the same host says the same.
    let report = db.run_env(&["report", &run, "--html", "-"], &[("FOGBOOK_TEST_CLOCK_FILE", &clock)]);
    assert_eq!(code(&report), 0, "{}", stderr(&report));
    assert!(
        stdout(&report).contains("id=\"run-status\">running<"),
        "{}",
        stdout(&report)
    );

    // The driver is gone; its run's lease is now held by a process on another host, and it
    // expired a minute ago by the database's clock. This host's clock runs ten minutes behind.
    driver.kill();
    db.expire_the_lease_elsewhere(&run);
    std::fs::write(&clock_file, "-600000\n").unwrap();

    assert_eq!(page_status(&url, &run), "stalled");
    assert_eq!(cli_state(db, &run, &clock), "stalled");
    let (status, stalled) = http_get(&url, "/?status=stalled", false);
    assert_eq!(status, 200, "{stalled}");
    assert!(
        stalled.contains(&format!("data-run=\"{run}\" data-status=\"stalled\"")),
        "{stalled}"
    );
    let report = db.run_env(&["report", &run, "--html", "-"], &[("FOGBOOK_TEST_CLOCK_FILE", &clock)]);
    assert_eq!(code(&report), 0, "{}", stderr(&report));
    assert!(
        stdout(&report).contains("id=\"run-status\">stalled<"),
        "{}",
        stdout(&report)
    );
}
