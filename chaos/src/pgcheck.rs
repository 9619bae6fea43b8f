//! The checks a PostgreSQL trial adds to the SQLite trials' invariants: the worker cut off
//! from the database wrote nothing after its takeover (fenced), and a schedule's one fire
//! made exactly one run.

use std::path::Path;

use serde_json::Value;

use crate::proc::{Env, query_json};

/// The worker cut off from the database wrote nothing for the run after its lease was taken
/// over, until it took the lease again by the rules (an audited takeover of its own).
pub(crate) fn fenced(history: &Value, pid: u32, v: &mut Vec<String>) {
    let pid_of = |o: &Value| {
        o.as_str()
            .and_then(|o| o.split(':').nth(1))
            .and_then(|p| p.parse::<u32>().ok())
    };
    let mut displaced = false;
    for e in history["events"].as_array().into_iter().flatten() {
        let kind = e["kind"].as_str().unwrap_or_default();
        let owner = pid_of(&e["data"]["owner"]).or_else(|| pid_of(&e["owner"]));
        if kind == "lease.taken_over" && pid_of(&e["data"]["previous_owner"]) == Some(pid) {
            displaced = true;
            continue;
        }
        if owner == Some(pid) {
            if kind == "lease.acquired" || kind == "lease.taken_over" {
                displaced = false;
            } else if displaced {
                v.push(format!(
                    "the worker cut off from the database ({pid}) wrote after its lease was taken over: event #{} {kind}",
                    e["seq"]
                ));
            }
        }
    }
}

/// A schedule trial: the schedule fired once, and its one run is the trial's run.
pub(crate) fn schedule_fired_once(env: &Env, db: &Path, history: &Value, v: &mut Vec<String>) -> Result<(), String> {
    // Runs the schedule made (their `run.created` names it): a competing `fogbook run`
    // started after the scheduled run ended may make a run of its own, rightly.
    let runs = query_json(env, db, &["runs"])?;
    let mut fired = 0;
    for id in runs["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
    {
        let trail = query_json(env, db, &["history", id])?;
        if made_by_schedule(&trail) {
            fired += 1;
        }
    }
    if fired != 1 {
        v.push(format!("the schedule's one fire made {fired} runs"));
    }
    let created = history["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "run.created")
        .count();
    if created != 1 {
        v.push(format!("{created} run.created events for the schedule's run"));
    }
    Ok(())
}

/// Whether a run's trail says a schedule created it.
fn made_by_schedule(history: &Value) -> bool {
    history["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "run.created")
        .is_some_and(|e| e["data"]["schedule"].is_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{fenced, made_by_schedule};

    #[test]
    fn only_a_run_the_schedule_created_counts_as_its_fire() {
        let fired = json!({ "events": [
            { "seq": 1, "kind": "run.created", "data": { "schedule": "chaos", "runbook": "scale" } },
        ]});
        let competitor = json!({ "events": [
            { "seq": 1, "kind": "run.created", "data": { "schedule": null, "runbook": "scale" } },
        ]});
        assert!(made_by_schedule(&fired));
        assert!(!made_by_schedule(&competitor));
    }

    fn ev(seq: u64, kind: &str, data: serde_json::Value) -> serde_json::Value {
        json!({ "seq": seq, "kind": kind, "data": data })
    }

    #[test]
    fn a_cut_off_worker_that_writes_after_its_takeover_is_caught() {
        let history = json!({ "events": [
            ev(1, "lease.acquired", json!({ "owner": "h:10:1:host1" })),
            ev(2, "lease.taken_over", json!({ "owner": "h:20:1:host2", "previous_owner": "h:10:1:host1" })),
            ev(3, "lease.released", json!({ "owner": "h:10:1:host1" })),
        ]});
        let mut v = Vec::new();
        fenced(&history, 10, &mut v);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("event #3 lease.released"), "{v:?}");
    }

    #[test]
    fn a_cut_off_worker_may_take_the_lease_back_by_the_rules() {
        let history = json!({ "events": [
            ev(1, "lease.acquired", json!({ "owner": "h:10:1:host1" })),
            ev(2, "lease.taken_over", json!({ "owner": "h:20:1:host2", "previous_owner": "h:10:1:host1" })),
            ev(3, "lease.taken_over", json!({ "owner": "h:10:1:host1", "previous_owner": "h:20:1:host2" })),
            ev(4, "lease.released", json!({ "owner": "h:10:1:host1" })),
        ]});
        let mut v = Vec::new();
        fenced(&history, 10, &mut v);
        assert!(v.is_empty(), "{v:?}");
    }
}
