//! Issue 17: on PostgreSQL, `status` judges whether a run's driver is live by the database
//! server's clock (which every host's leases are written by): an operator on a host whose
//! clock runs ten minutes ahead sees a driven run as driven, not stalled (`status`, `runs`).

use serde_json::Value;

use crate::common::{code, fixture, stderr, stdout};
use crate::pg_backend::OnPostgres;

#[test]
fn status_on_a_host_whose_clock_runs_ahead_sees_a_driven_run_as_driven() {
    let pg = OnPostgres::start("statusclock");
    let db = &pg.db;
    // The driver waits in the foreground at the approval `gate`, renewing its lease.
    let (mut driver, run) = db.driver_at_the_gate(&[]);

    // This host's clock, for `status`, runs ten minutes ahead.
    let clock = db.sb.write("clock-offset", "600000\n").display().to_string();
    let out = db.run_env(
        &["status", &run, "--format", "json"],
        &[("FOGBOOK_TEST_CLOCK_FILE", &clock)],
    );
    let runs = db.run_env(
        &["runs", "--status", "stalled", "--format", "json"],
        &[("FOGBOOK_TEST_CLOCK_FILE", &clock)],
    );
    driver.kill();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["stalled"], false, "{doc}");
    assert_ne!(doc["state"], "stalled", "{doc}");
    // `runs --status stalled` lists none: the run is driven.
    assert_eq!(code(&runs), 0, "{}", stderr(&runs));
    assert!(!stdout(&runs).contains(&run), "{}", stdout(&runs));
}

/// The same for a fleet: `fleet status` on a host whose clock runs ten minutes ahead sees a
/// fleet whose driver holds a live lease (by the database's clock) as driven, not stalled.
#[test]
fn fleet_status_on_a_host_whose_clock_runs_ahead_sees_a_driven_fleet_as_driven() {
    let pg = OnPostgres::start("fleetclock");
    let db = &pg.db;
    let out = db.sb.path("out.log");
    let file = db.sb.write(
        "jobs.yaml",
        &format!(
            "fleet: jobs
runbook: {runbook}
params: {{out: {out}, pause: 10ms}}
targets:
  over: [a, b, c]
  name: \"job-${{{{ item }}}}\"
  params: {{group: \"g-${{{{ item }}}}\"}}
rate: {{max_concurrency: 1, max_errors: 1}}
waves: {{canary: 1, size: 2, approval: true}}
",
            runbook = fixture("job.yaml").display(),
            out = out.display(),
        ),
    );
    // The canary runs, then the fleet waits for the approval of wave 1.
    let ran = db.run(&["fleet", "run", file.to_str().unwrap()]);
    assert_eq!(code(&ran), 3, "{}{}", stdout(&ran), stderr(&ran));
    // A driver on another host holds the fleet's lease for a minute by the database's clock.
    let held = db.query(
        "UPDATE fleets SET status = 'running', reason = NULL, lease_owner = 'elsewhere:4242:1',
            lease_expires_at = CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT) + 60000
         RETURNING id",
        &[],
    );
    assert_eq!(held.len(), 1);

    let clock = db.sb.write("clock-offset", "600000\n").display().to_string();
    let status = db.run_env(
        &["fleet", "status", "jobs", "--format", "json"],
        &[("FOGBOOK_TEST_CLOCK_FILE", &clock)],
    );
    assert_eq!(code(&status), 0, "{}", stderr(&status));
    let doc: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(doc["stalled"], false, "{doc}");
    let list = db.run_env(
        &["fleet", "status", "--format", "json"],
        &[("FOGBOOK_TEST_CLOCK_FILE", &clock)],
    );
    assert_eq!(code(&list), 0, "{}", stderr(&list));
    let doc: Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(doc["fleets"][0]["stalled"], false, "{doc}");
}
