//! Issue 17: on PostgreSQL, `resume` and the operator actions judge whether a run's driver is
//! live by the lease clock (the database server's), as `status` does: on a host whose clock
//! runs ten minutes ahead, `resume` refuses a driven run naming its driver (exit 4); on one
//! whose clock runs ten minutes behind, it takes over a run whose lease expired (by the
//! database) and finishes it, and `approve` says nobody drives it.

use serde_json::Value;

use crate::common::{code, stderr, stdout};
use crate::pg_backend::OnPostgres;

#[test]
fn resume_on_a_skewed_host_neither_steals_a_live_run_nor_refuses_an_expired_one() {
    let pg = OnPostgres::start("resumeclock");
    let db = &pg.db;
    let clock_file = db.sb.write("clock-offset", "600000\n");
    let clock = clock_file.display().to_string();
    let skewed = [("FOGBOOK_TEST_CLOCK_FILE", clock.as_str())];
    // The driver waits in the foreground at the approval `gate`, renewing its lease.
    let (mut driver, run) = db.driver_at_the_gate(&[]);
    let owner = db
        .text("SELECT lease_owner FROM runs WHERE id = ?1", &[&run])
        .expect("the driver holds the lease");

    // Ten minutes ahead: the driver's lease looks expired to this host, not to the database.
    let out = db.run_env(&["resume", &run], &skewed);
    assert_eq!(code(&out), 4, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains(&owner), "{}", stderr(&out));
    assert_eq!(
        db.text("SELECT lease_owner FROM runs WHERE id = ?1", &[&run])
            .as_deref(),
        Some(owner.as_str()),
        "the live driver kept its lease"
    );

    // The driver is gone; its run's lease is held by a process on another host and expired a
    // minute ago by the database's clock. This host's clock runs ten minutes behind.
    driver.kill();
    db.expire_the_lease_elsewhere(&run);
    std::fs::write(&clock_file, "-600000\n").unwrap();

    let approved = db.run_env(&["approve", &run, "gate", "--format", "json"], &skewed);
    assert_eq!(code(&approved), 0, "{}", stderr(&approved));
    let doc: Value = serde_json::from_str(&stdout(&approved)).unwrap();
    let next = doc["next"].as_str().unwrap_or_default();
    assert!(next.contains("nobody drives run"), "{doc}");

    let out = db.run_env(&["resume", &run], &skewed);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(db.run_status(&run), "succeeded");
    let lines = std::fs::read_to_string(db.sb.path("effects.txt")).unwrap();
    for step in ["first", "second", "third", "fragile"] {
        let n = lines.lines().filter(|l| l.starts_with(&format!("{step} "))).count();
        assert_eq!(n, 1, "{step} ran {n} times: {lines}");
    }
    db.assert_audit_ok();
}
