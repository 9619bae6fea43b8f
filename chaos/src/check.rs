//! The global invariants, checked from outside: the emulator's journal (the independent
//! effect counter), its final estate, and what `fogbook report/status/audit verify` say.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What an uninterrupted run of a runbook yields.
#[derive(Clone, Debug)]
pub(crate) struct Baseline {
    /// The final estate, reduced to what the procedure decides.
    pub(crate) summary: Value,
    /// The applied mutations, as `METHOD short-path`, in first-occurrence order.
    pub(crate) order: Vec<String>,
    /// (method, path) of every applied Microsoft.Sql mutation → how many operations.
    pub(crate) sql_ops: BTreeMap<String, usize>,
    /// (kind, opened by, closed by) of every window.
    pub(crate) windows: Vec<(String, String, String)>,
    /// Real duration of the uninterrupted run.
    pub(crate) duration_ms: u64,
}

/// The path without subscription prefix and query: `rg/Provider/type/name...`.
pub(crate) fn short_path(entry: &Value) -> String {
    let path = entry["path"].as_str().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    let path = match path.find("/resourceGroups/") {
        Some(i) => &path[i + "/resourceGroups/".len()..],
        None => path,
    };
    path.replace("/providers/", "/")
}

/// `METHOD short-path`.
pub(crate) fn key(entry: &Value) -> String {
    format!("{} {}", entry["method"].as_str().unwrap_or_default(), short_path(entry))
}

fn applied(e: &Value) -> bool {
    e["applied"].as_bool().unwrap_or(false)
}

fn is_sql(e: &Value) -> bool {
    e["path"].as_str().unwrap_or_default().contains("/Microsoft.Sql/")
}

/// A (forced) failover POST.
pub(crate) fn is_failover_post(e: &Value) -> bool {
    e["method"] == "POST" && is_sql(e)
}

/// The applied mutations in first-occurrence order.
pub(crate) fn order(journal: &[Value]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in journal.iter().filter(|e| applied(e)) {
        let k = key(e);
        if !seen.contains(&k) {
            seen.push(k);
        }
    }
    seen
}

/// For every applied Microsoft.Sql mutation (instance create/update/delete, group
/// create/delete, failover): how many distinct cloud operations it started. Identical
/// re-sends that re-attached to the running operation share its `operation_id`; a convergent
/// re-PUT of a state already reached answers 200 without an operation and starts nothing
/// (no seeding restart, no re-create), so it is not counted.
pub(crate) fn sql_ops(journal: &[Value]) -> BTreeMap<String, usize> {
    let mut ops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in journal.iter().filter(|e| applied(e) && is_sql(e)) {
        if let Some(op) = e["operation_id"].as_str() {
            ops.entry(key(e)).or_default().insert(op.to_owned());
        }
    }
    ops.into_iter().map(|(k, v)| (k, v.len())).collect()
}

fn name_of(id: &Value) -> String {
    id.as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn obj(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flat_map(|m| m.iter())
}

fn arr(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flat_map(|a| a.iter())
}

/// The estate reduced to what a procedure decides: instances (size, format, zone, state,
/// databases and their group), groups (primary, secondary, replication state, policy),
/// peerings, and NSG rules; no times, no operation ids.
pub(crate) fn summary(state: &Value) -> Value {
    let world = &state["world"];
    let mut instances = serde_json::Map::new();
    for (_, i) in obj(&world["instances"]) {
        let mut dbs: Vec<Value> = arr(&i["databases"])
            .map(|d| json!([d["name"], d["size_gb"], d["failover_group"], d["read_only"]]))
            .collect();
        dbs.sort_by_key(Value::to_string);
        instances.insert(
            i["name"].as_str().unwrap_or_default().to_owned(),
            json!({
                "location": i["location"], "sku_name": i["sku_name"], "tier": i["tier"],
                "v_cores": i["v_cores"], "storage_gb": i["storage_gb"],
                "database_format": i["database_format"], "dns_zone": i["dns_zone"],
                "provisioning_state": i["provisioning_state"], "state": i["state"],
                "subnet": i["subnet_id"], "databases": dbs,
            }),
        );
    }
    let mut groups = serde_json::Map::new();
    for (name, g) in obj(&world["failover_groups"]) {
        groups.insert(
            name.clone(),
            json!({
                "primary": name_of(&g["primary"]["instance_id"]),
                "secondary": name_of(&g["secondary"]["instance_id"]),
                "replication_state": g["replication_state"],
                "read_write_policy": g["read_write_policy"],
            }),
        );
    }
    let mut vnets = serde_json::Map::new();
    for (_, v) in obj(&world["virtual_networks"]) {
        let mut peerings: Vec<String> = arr(&v["peerings"])
            .map(|p| {
                format!(
                    "{}->{}",
                    p["name"].as_str().unwrap_or_default(),
                    name_of(&p["remote_id"])
                )
            })
            .collect();
        peerings.sort();
        vnets.insert(v["name"].as_str().unwrap_or_default().to_owned(), json!(peerings));
    }
    let mut nsgs = serde_json::Map::new();
    for (_, n) in obj(&world["security_groups"]) {
        let mut rules: Vec<String> = arr(&n["rules"])
            .map(|r| {
                format!(
                    "{} {} {} {} {} {}",
                    r["direction"],
                    r["access"],
                    r["protocol"],
                    r["priority"],
                    r["destination_port_ranges"],
                    r["destination_port_range"]
                )
            })
            .collect();
        rules.sort();
        nsgs.insert(n["name"].as_str().unwrap_or_default().to_owned(), json!(rules));
    }
    json!({ "instances": instances, "groups": groups, "vnets": vnets, "nsgs": nsgs })
}

/// Human-readable differences between two summaries (first few).
pub(crate) fn diff(expected: &Value, got: &Value) -> String {
    let mut out = Vec::new();
    for part in ["instances", "groups", "vnets", "nsgs"] {
        let (e, g) = (&expected[part], &got[part]);
        let names: BTreeSet<&String> = obj(e).chain(obj(g)).map(|(k, _)| k).collect();
        for n in names {
            if e.get(n) != g.get(n) {
                out.push(format!(
                    "{part}.{n}: expected {} got {}",
                    e.get(n).map_or("(absent)".to_owned(), Value::to_string),
                    g.get(n).map_or("(absent)".to_owned(), Value::to_string)
                ));
            }
        }
    }
    out.truncate(4);
    out.join("; ")
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub(crate) fn ms(v: &Value) -> Option<i128> {
    let t = OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() / 1_000_000)
}

/// The windows of a report as (kind, opened by, closed by).
pub(crate) fn window_keys(report: &Value) -> Vec<(String, String, String)> {
    arr(&report["windows"])
        .map(|w| {
            (
                w["kind"].as_str().unwrap_or_default().to_owned(),
                w["opened_by"].as_str().unwrap_or_default().to_owned(),
                w["closed_by"].as_str().unwrap_or("(open)").to_owned(),
            )
        })
        .collect()
}

/// Journal invariants that hold whatever the outcome. Pushes one line per violation.
pub(crate) fn journal_invariants(journal: &[Value], base: &Baseline, succeeded: bool, v: &mut Vec<String>) {
    // 1. A (forced) failover POST is never sent again once one was applied, and is applied at
    //    most once.
    let mut applied_posts: BTreeMap<String, u64> = BTreeMap::new();
    for e in journal.iter().filter(|e| is_failover_post(e)) {
        let k = key(e);
        if let Some(first) = applied_posts.get(&k) {
            v.push(format!(
                "failover sent twice: journal #{} `{k}` ({} applied={}) after #{first} was applied",
                e["seq"], e["status"], e["applied"]
            ));
        } else if applied(e) {
            applied_posts.insert(k, e["seq"].as_u64().unwrap_or(0));
        }
    }
    // 2. No Microsoft.Sql mutation started more operations than in the uninterrupted run: no
    //    delete twice, no create re-sent as a new operation, no seeding restarted.
    for (k, n) in sql_ops(journal) {
        let expected = base.sql_ops.get(&k).copied().unwrap_or(0);
        if n > expected {
            v.push(format!(
                "`{k}` started {n} operation(s), the uninterrupted run {expected}"
            ));
        }
    }
    if succeeded {
        // 3. Every Microsoft.Sql effect of the procedure happened (exactly the baseline's
        //    operations), and the mutations came in the procedure's order.
        let got = sql_ops(journal);
        if got != base.sql_ops {
            let missing: Vec<&String> = base.sql_ops.keys().filter(|k| !got.contains_key(*k)).collect();
            if !missing.is_empty() {
                v.push(format!("effects missing from the journal: {missing:?}"));
            }
        }
        let o = order(journal);
        if o != base.order {
            v.push(format!(
                "mutations out of the procedure's order: {o:?}, expected {:?}",
                base.order
            ));
        }
    }
}

/// Window invariants: the report's windows against the baseline, the status view, and the
/// journal's timestamps. `succeeded`: every window must be closed and match the baseline.
pub(crate) fn window_invariants(
    report: &Value,
    status: &Value,
    journal: &[Value],
    base: &Baseline,
    succeeded: bool,
    v: &mut Vec<String>,
) {
    let keys = window_keys(report);
    if succeeded && keys != base.windows {
        v.push(format!("windows {keys:?}, expected {:?}", base.windows));
    }
    let status_windows: Vec<Value> = arr(&status["windows"])
        .map(|w| {
            json!([
                w["kind"],
                w["opened_by"],
                w["opened_at"],
                w["closed_by"],
                w["closed_at"]
            ])
        })
        .collect();
    let report_windows: Vec<Value> = arr(&report["windows"])
        .map(|w| {
            json!([
                w["kind"],
                w["opened_by"],
                w["opened_at"],
                w["closed_by"],
                w["closed_at"]
            ])
        })
        .collect();
    if status_windows != report_windows {
        v.push("`status` and `report` disagree on the windows".to_owned());
    }
    // The group's delete and re-create, as the emulator saw them.
    let group_delete = journal
        .iter()
        .filter(|e| applied(e) && e["method"] == "DELETE" && short_path(e).contains("/instanceFailoverGroups/"))
        .filter_map(|e| ms(&e["real_time"]))
        .min();
    let group_create = journal
        .iter()
        .filter(|e| applied(e) && e["method"] == "PUT" && short_path(e).contains("/instanceFailoverGroups/"))
        .filter_map(|e| ms(&e["real_time"]))
        .max();
    for w in arr(&report["windows"]) {
        let what = format!(
            "window {} opened by {}",
            w["kind"].as_str().unwrap_or_default(),
            w["opened_by"].as_str().unwrap_or_default()
        );
        let open = w["open"].as_bool().unwrap_or(true);
        if open {
            if succeeded {
                v.push(format!("{what} still open after the run succeeded"));
            }
            continue;
        }
        let (Some(o), Some(c)) = (ms(&w["opened_at"]), ms(&w["closed_at"])) else {
            v.push(format!("{what}: unreadable times {w}"));
            continue;
        };
        let d = w["duration_ms"].as_i64().map(i128::from);
        if c < o || d.is_none_or(|d| d < 0) {
            v.push(format!("{what}: negative duration {w}"));
        }
        if d.is_some_and(|d| d != c - o) {
            v.push(format!("{what}: duration {d:?} ms but closed − opened = {} ms", c - o));
        }
        // The unprotected period really contains the delete of the group and the accepted
        // re-create (seeding ends later still): a crash neither closed nor re-opened it.
        if let Some(del) = group_delete
            && o > del + 2
        {
            v.push(format!("{what}: opened at {o} after the group's DELETE at {del}"));
        }
        if let Some(put) = group_create
            && group_delete.is_some()
            && c + 2 < put
        {
            v.push(format!("{what}: closed at {c} before the group's PUT at {put}"));
        }
    }
}

/// "No effect started twice", counted from the requests themselves: a Microsoft.Sql
/// mutation identical to an earlier applied one (method, path with query, SHA-256 of the
/// body) is a second start of the same effect (or, refused, an attempt at one), unless the
/// answer to the earlier one was lost: the emulator dropped it (`connection_dropped`), or an engine kill, pause, group
/// signal or emulator stop (`disruptions`, ms since the epoch) came between the two. A
/// client that re-sends after a lost answer re-attaches (or finds the state reached); one
/// that re-sends an answered request, or a frozen driver that wakes up and sends its retry
/// after another driver went on, starts the effect again.
pub(crate) fn repeated_requests(journal: &[Value], disruptions: &[i128], v: &mut Vec<String>) {
    let mut last: BTreeMap<(String, String, String), &Value> = BTreeMap::new();
    for e in journal.iter().filter(|e| is_sql(e)) {
        let k = (
            e["method"].as_str().unwrap_or_default().to_owned(),
            e["path"].as_str().unwrap_or_default().to_owned(),
            e["body_sha256"].as_str().unwrap_or_default().to_owned(),
        );
        if let Some(prev) = last.get(&k) {
            let lost = prev["connection_dropped"] == true
                || match (ms(&prev["real_time"]), ms(&e["real_time"])) {
                    (Some(a), Some(b)) => disruptions.iter().any(|d| *d + 50 >= a && *d <= b + 50),
                    _ => true,
                };
            if !lost {
                v.push(format!(
                    "`{}` sent again: journal #{} ({} applied={}) is identical to #{} (applied, {} at {}), whose answer was not lost",
                    key(e),
                    e["seq"],
                    e["status"],
                    e["applied"],
                    prev["seq"],
                    prev["status"],
                    prev["real_time"].as_str().unwrap_or_default()
                ));
            }
        }
        if applied(e) {
            last.insert(k, e);
        }
    }
}

/// The pid in a lease owner id (`host:pid:start[:tag]`).
fn pid_of(owner: &Value) -> Option<u32> {
    owner.as_str()?.split(':').nth(1)?.parse().ok()
}

/// One driver per run, from the audit trail (`fogbook history RUN`): every lease event names
/// a driver the runner started, and every takeover is from a process the runner killed,
/// froze or signalled (a live, unfrozen holder is never displaced). A competing process
/// takes the lease only from such a process (its `resume` or `run` found the holder gone:
/// with workers killed at moments of their own, a competitor drawn before a kill may start
/// after it on a loaded machine); from then on it is one of the run's drivers.
pub(crate) fn lease_invariants(
    history: &Value,
    drivers: &BTreeSet<u32>,
    competitors: &BTreeSet<u32>,
    killed_or_frozen: &BTreeSet<u32>,
    v: &mut Vec<String>,
) {
    let mut held = 0;
    // Competitors that took the lease from a process the runner had killed or frozen.
    let mut took_over: BTreeSet<u32> = BTreeSet::new();
    for e in arr(&history["events"]) {
        let kind = e["kind"].as_str().unwrap_or_default();
        if !kind.starts_with("lease.") {
            continue;
        }
        let owner = &e["data"]["owner"];
        let from_gone = kind == "lease.taken_over"
            && pid_of(&e["data"]["previous_owner"]).is_some_and(|p| killed_or_frozen.contains(&p));
        match pid_of(owner) {
            Some(pid) if competitors.contains(&pid) && (from_gone || took_over.contains(&pid)) => {
                took_over.insert(pid);
            }
            Some(pid) if competitors.contains(&pid) => {
                v.push(format!(
                    "a competing process took the lease: event #{} {kind} {owner}",
                    e["seq"]
                ));
            }
            Some(pid) if drivers.contains(&pid) => {}
            _ => v.push(format!(
                "event #{} {kind}: {owner} is no process the runner started",
                e["seq"]
            )),
        }
        if kind == "lease.acquired" || kind == "lease.taken_over" {
            held += 1;
        }
        if kind == "lease.taken_over" {
            let previous = &e["data"]["previous_owner"];
            if !pid_of(previous).is_some_and(|p| killed_or_frozen.contains(&p)) {
                v.push(format!(
                    "event #{}: the lease was taken over from {previous}, which the runner neither killed, froze nor signalled",
                    e["seq"]
                ));
            }
        }
    }
    if held == 0 {
        v.push("no lease event in the audit trail: nobody drove the run?".to_owned());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::{lease_invariants, repeated_requests};

    const GROUP: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/locations/westus/instanceFailoverGroups/fog?api-version=1";

    fn entry(seq: u64, method: &str, at_ms: u32, status: u16, dropped: bool) -> Value {
        json!({
            "seq": seq, "method": method, "path": GROUP, "body_sha256": "e3b0",
            "real_time": format!("2026-12-01T10:00:{:02}.{:03}Z", at_ms / 1000, at_ms % 1000),
            "status": status, "applied": (200..300).contains(&status), "connection_dropped": dropped,
        })
    }

    fn at(ms: u32) -> i128 {
        let t = time::OffsetDateTime::parse("2026-12-01T10:00:00Z", &time::format_description::well_known::Rfc3339)
            .unwrap();
        t.unix_timestamp_nanos() / 1_000_000 + i128::from(ms)
    }

    #[test]
    fn an_answered_request_sent_again_is_a_violation_whether_or_not_it_is_applied() {
        for second in [202, 400] {
            let journal = [
                entry(1, "DELETE", 1000, 202, false),
                entry(2, "DELETE", 3000, second, false),
            ];
            let mut v = Vec::new();
            repeated_requests(&journal, &[], &mut v);
            assert_eq!(v.len(), 1, "{v:?}");
            assert!(v[0].contains("sent again: journal #2"), "{v:?}");
        }
    }

    #[test]
    fn a_request_sent_again_after_a_lost_answer_is_allowed() {
        // Dropped by the emulator after it applied the first.
        let journal = [
            entry(1, "DELETE", 1000, 202, true),
            entry(2, "DELETE", 3000, 202, false),
        ];
        let mut v = Vec::new();
        repeated_requests(&journal, &[], &mut v);
        assert!(v.is_empty(), "{v:?}");
        // A kill between the two; a kill before the first does not explain the second.
        let journal = [
            entry(1, "DELETE", 1000, 202, false),
            entry(2, "DELETE", 3000, 202, false),
        ];
        repeated_requests(&journal, &[at(2000)], &mut v);
        assert!(v.is_empty(), "{v:?}");
        repeated_requests(&journal, &[at(500)], &mut v);
        assert_eq!(v.len(), 1, "{v:?}");
        // Another method on the same path is another request.
        let journal = [entry(1, "DELETE", 1000, 202, false), entry(2, "PUT", 3000, 202, false)];
        let mut v = Vec::new();
        repeated_requests(&journal, &[], &mut v);
        assert!(v.is_empty(), "{v:?}");
    }

    fn event(seq: u64, kind: &str, owner: u32, previous: Option<u32>) -> Value {
        let mut data = json!({ "owner": format!("vm:{owner}:1") });
        if let Some(p) = previous {
            data["previous_owner"] = json!(format!("vm:{p}:1"));
        }
        json!({ "seq": seq, "kind": kind, "data": data })
    }

    #[test]
    fn the_lease_goes_only_to_drivers_and_is_taken_only_from_killed_or_frozen_ones() {
        let drivers: BTreeSet<u32> = [10, 11].into();
        let competitors: BTreeSet<u32> = [20].into();
        let killed: BTreeSet<u32> = [10].into();
        let judge = |events: Vec<Value>| {
            let mut v = Vec::new();
            lease_invariants(&json!({ "events": events }), &drivers, &competitors, &killed, &mut v);
            v
        };
        let ok = judge(vec![
            event(2, "lease.acquired", 10, None),
            event(5, "lease.taken_over", 11, Some(10)),
            event(9, "lease.released", 11, None),
        ]);
        assert!(ok.is_empty(), "{ok:?}");
        let competitor = judge(vec![
            event(2, "lease.acquired", 11, None),
            event(5, "lease.taken_over", 20, Some(11)),
        ]);
        assert!(
            competitor
                .iter()
                .any(|m| m.contains("competing process took the lease")),
            "{competitor:?}"
        );
        let first = judge(vec![event(2, "lease.acquired", 20, None)]);
        assert!(
            first.iter().any(|m| m.contains("competing process took the lease")),
            "{first:?}"
        );
        // A competitor that found the holder killed takes the run over and drives it on.
        let after_a_kill = judge(vec![
            event(2, "lease.acquired", 10, None),
            event(5, "lease.taken_over", 20, Some(10)),
            event(9, "lease.released", 20, None),
        ]);
        assert!(after_a_kill.is_empty(), "{after_a_kill:?}");
        let displaced = judge(vec![
            event(2, "lease.acquired", 11, None),
            event(5, "lease.taken_over", 10, Some(11)),
        ]);
        assert!(displaced.iter().any(|m| m.contains("neither killed")), "{displaced:?}");
        assert!(!judge(vec![]).is_empty(), "no lease event at all");
    }
}
