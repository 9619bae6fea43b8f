//! Fleets (issue 18): twenty change-secondary-region targets on a separately started
//! emulator, with an estate of twenty failover groups generated here. What the fleet did is
//! judged from the emulator's journal (which target's resources were touched, and when),
//! not from the fleet's own records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::common::{Sandbox, assert_audit_ok, code, stderr, stdout};
use crate::seed_runbooks::{Sim, journal, start_sim, state};

const SUB: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";
const TARGETS: usize = 20;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn item(i: usize) -> String {
    format!("t{i:02}")
}

const OPEN_RULES: &str = "
            rules:
              - {name: allow_redirect_inbound, priority: 1100, direction: Inbound, source_address_prefix: VirtualNetwork, destination_port_ranges: [\"11000-11999\"]}
              - {name: allow_geodr_inbound, priority: 1200, direction: Inbound, source_address_prefix: VirtualNetwork, destination_port_ranges: [\"5022\"]}
              - {name: allow_redirect_outbound, priority: 1100, direction: Outbound, destination_address_prefix: VirtualNetwork, destination_port_ranges: [\"11000-11999\"]}
              - {name: allow_geodr_outbound, priority: 1200, direction: Outbound, destination_address_prefix: VirtualNetwork, destination_port_ranges: [\"5022\"]}";

/// An estate of `n` failover groups `fog-tNN` (A `mi-a-tNN` in eastus, B `mi-b-tNN` in
/// westus) and, for each, an empty network in northeurope for the new secondary C. The
/// groups in `broken` get a C network whose address space overlaps A's: peering them is
/// refused (`VnetAddressSpacesOverlap`), so their runs fail before any window opens.
fn estate(n: usize, broken: &[usize]) -> String {
    let mut east = String::new();
    let mut west = String::new();
    let mut north = String::new();
    let mut groups = String::new();
    let (mut nsg_e, mut nsg_w, mut nsg_n) = (String::new(), String::new(), String::new());
    let (mut mi_e, mut mi_w) = (String::new(), String::new());
    for i in 0..n {
        let t = item(i);
        let c_net = if broken.contains(&i) { i } else { 200 + i };
        nsg_e.push_str(&format!("          - name: nsg-a-{t}{OPEN_RULES}\n"));
        nsg_w.push_str(&format!("          - name: nsg-b-{t}{OPEN_RULES}\n"));
        nsg_n.push_str(&format!("          - name: nsg-c-{t}\n"));
        east.push_str(&format!(
            "          - {{name: vnet-a-{t}, address_prefixes: [10.{i}.0.0/16], subnets: [{{name: snet-mi, address_prefix: 10.{i}.0.0/24, network_security_group: nsg-a-{t}}}]}}\n"
        ));
        west.push_str(&format!(
            "          - {{name: vnet-b-{t}, address_prefixes: [10.{}.0.0/16], subnets: [{{name: snet-mi, address_prefix: 10.{}.0.0/24, network_security_group: nsg-b-{t}}}]}}\n",
            100 + i,
            100 + i
        ));
        north.push_str(&format!(
            "          - {{name: vnet-c-{t}, address_prefixes: [10.{c_net}.0.0/16], subnets: [{{name: snet-mi, address_prefix: 10.{c_net}.0.0/24, network_security_group: nsg-c-{t}}}]}}\n"
        ));
        let zone = format!("9f4e1c2b7a{i:03}");
        mi_e.push_str(&format!(
            "          - {{name: mi-a-{t}, storage_gb: 256, dns_zone: {zone}, subnet: vnet-a-{t}/snet-mi, administrator_login: sqladmin, databases: [{{name: sales, size_gb: 4}}]}}\n"
        ));
        mi_w.push_str(&format!(
            "          - {{name: mi-b-{t}, storage_gb: 256, dns_zone: {zone}, subnet: vnet-b-{t}/snet-mi, administrator_login: sqladmin}}\n"
        ));
        groups.push_str(&format!(
            "      - {{name: fog-{t}, primary: rg-e/mi-a-{t}, secondary: rg-w/mi-b-{t}, read_write_policy: Manual}}\n"
        ));
    }
    format!(
        "epoch: 2026-11-26T08:00:00Z
throttling:
  reads: {{burst: 2000, per_second: 400}}
  writes: {{burst: 1000, per_second: 200}}
  deletes: {{burst: 1000, per_second: 200}}
subscriptions:
  - id: {SUB}
    resource_groups:
      - name: rg-e
        location: eastus
        network_security_groups:
{nsg_e}        virtual_networks:
{east}        managed_instances:
{mi_e}      - name: rg-w
        location: westus
        network_security_groups:
{nsg_w}        virtual_networks:
{west}        managed_instances:
{mi_w}      - name: rg-n
        location: northeurope
        network_security_groups:
{nsg_n}        virtual_networks:
{north}    failover_groups:
{groups}"
    )
}

/// The fleet file: every group's secondary moves to northeurope, a canary first, five at a
/// time, stopping after two failures.
fn fleet_file(n: usize) -> String {
    let items: Vec<String> = (0..n).map(item).collect();
    let rg = |g: &str| format!("{{subscription: {SUB}, resource_group: {g}");
    format!(
        "fleet: move-secondaries
runbook: {runbook}
params:
  admin_password_file: {password}
  delete_old_secondary: true
targets:
  over: [{items}]
  name: \"fog-${{{{ item }}}}\"
  params:
    failover_group: \"fog-${{{{ item }}}}\"
    primary: {a}, name: \"mi-a-${{{{ item }}}}\"}}
    old_secondary: {b}, name: \"mi-b-${{{{ item }}}}\"}}
    new_secondary: {c}, name: \"mi-c-${{{{ item }}}}\", location: northeurope, subnet_id: \"/subscriptions/{SUB}/resourceGroups/rg-n/providers/Microsoft.Network/virtualNetworks/vnet-c-${{{{ item }}}}/subnets/snet-mi\"}}
rate: {{max_concurrency: 5, max_errors: 2}}
waves: {{canary: 1}}
auto_approve: true
",
        runbook = root().join("runbooks/change-secondary-region.yaml").display(),
        password = root().join("examples/sim-admin-password.txt").display(),
        items = items.join(", "),
        a = rg("rg-e"),
        b = rg("rg-w"),
        c = rg("rg-n"),
    )
}

pub(crate) fn setup(broken: &[usize]) -> (Sandbox, Sim, PathBuf) {
    let sb = Sandbox::new();
    let estate = sb.write("estate.yaml", &estate(TARGETS, broken));
    let sim = start_sim(&estate, None);
    let fleet = sb.write("fleet.yaml", &fleet_file(TARGETS));
    (sb, sim, fleet)
}

pub(crate) fn env(sim: &Sim) -> [(&'static str, &str); 2] {
    [
        ("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()),
        ("FOGBOOK_ARM_TOKEN", "anything"),
    ]
}

/// The target (`tNN`) a journal entry touches: a path segment naming one of its resources.
fn target_of(entry: &Value) -> Option<usize> {
    let path = entry["path"].as_str()?.split('?').next()?;
    path.split('/').find_map(|seg| {
        let (_, t) = seg.rsplit_once("-t")?;
        (t.len() == 2).then(|| t.parse().ok()).flatten()
    })
}

/// Per target, the positions of its first and last mutation in the journal.
fn spans(journal: &[Value]) -> BTreeMap<usize, (usize, usize)> {
    let mut out: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (pos, e) in journal.iter().enumerate() {
        if let Some(t) = target_of(e) {
            out.entry(t).and_modify(|s| s.1 = pos).or_insert((pos, pos));
        }
    }
    out
}

/// The most targets in flight at once, from the journal: at each mutation, the targets whose
/// first mutation came before it and whose last came after.
fn max_in_flight(spans: &BTreeMap<usize, (usize, usize)>, len: usize) -> usize {
    (0..len)
        .map(|pos| spans.values().filter(|(a, b)| *a <= pos && pos <= *b).count())
        .max()
        .unwrap_or(0)
}

fn fleet_json(sb: &Sandbox, cmd: &str, fleet: &str) -> Value {
    let out = sb.run(&["fleet", cmd, fleet, "--format", "json"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn target_statuses(doc: &Value) -> Vec<String> {
    doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_owned())
        .collect()
}

/// The group's members in the emulator's state: (primary, secondary) instance names.
fn members(s: &Value, group: &str) -> Vec<String> {
    let g = &s["world"]["failover_groups"][group];
    let mut names: Vec<String> = ["primary", "secondary"]
        .iter()
        .map(|k| {
            g[k]["instance_id"]
                .as_str()
                .unwrap_or_default()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    names.retain(|n| !n.is_empty());
    names
}

#[test]
fn max_errors_stops_new_targets_and_lets_the_running_ones_finish() {
    // t02 and t03 are in the first wave after the canary; their runs fail at the peering.
    let (sb, sim, fleet) = setup(&[2, 3]);
    let out = sb.run_env(&["fleet", "run", fleet.to_str().unwrap()], &env(&sim));
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("2 targets failed (max_errors 2): no further target starts; the running ones finish"),
        "{text}"
    );

    let doc = fleet_json(&sb, "report", "move-secondaries");
    assert_eq!(doc["status"], "failed");
    let statuses = target_statuses(&doc);
    assert_eq!(statuses[2], "failed", "{statuses:?}");
    assert_eq!(statuses[3], "failed", "{statuses:?}");
    let started: Vec<usize> = (0..TARGETS).filter(|&i| statuses[i] != "pending").collect();
    for &i in &started {
        if i != 2 && i != 3 {
            assert_eq!(
                statuses[i], "succeeded",
                "target {i} was running and finishes: {statuses:?}"
            );
        }
    }
    let reason = doc["reason"].as_str().unwrap();
    let not_started = TARGETS - started.len();
    assert!(not_started > 0, "{statuses:?}");
    assert!(
        reason.contains(&format!("{not_started} target(s) not started")),
        "{reason}"
    );

    // From outside: the targets whose resources were touched are exactly the started ones.
    // The canary (t00) and the first five (t01-t05) start; each failure frees a slot, but
    // only the first one refills it (t06): from t07 on, nothing is touched.
    let journal = journal(&sim.url);
    let spans = spans(&journal);
    let touched: Vec<usize> = spans.keys().copied().collect();
    assert_eq!(
        touched, started,
        "targets touched in the journal vs started by the fleet"
    );
    assert!(
        touched.iter().all(|&t| t <= 6),
        "a target started after the second failure: {touched:?}"
    );
    assert!(max_in_flight(&spans, journal.len()) <= 5);
    // The running ones finished: each started target that did not fail was moved.
    let s = state(&sim.url);
    for &i in &started {
        let t = item(i);
        let expected = if i == 2 || i == 3 {
            vec![format!("mi-a-{t}"), format!("mi-b-{t}")]
        } else {
            vec![format!("mi-a-{t}"), format!("mi-c-{t}")]
        };
        assert_eq!(members(&s, &format!("fog-{t}")), expected);
    }
    // The targets are ordinary runs, visible with `runs`, and the trail holds the fleet's
    // decisions.
    let runs = sb.run(&["runs", "--format", "json"]);
    let runs: Value = serde_json::from_str(&stdout(&runs)).unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), started.len(), "{runs}");
    let table = stdout(&sb.run(&["fleet", "report", "move-secondaries"]));
    assert!(table.contains(&format!("{not_started} not started")), "{table}");
    assert_audit_ok(&sb);
}

fn spawn(sb: &Sandbox, sim: &Sim, args: &[&str], failpoint: Option<&str>, tag: &str) -> Child {
    let mut c = sb.cmd();
    c.args(args)
        .stdout(std::fs::File::create(sb.path(&format!("{tag}.out"))).unwrap())
        .stderr(std::fs::File::create(sb.path(&format!("{tag}.err"))).unwrap());
    for (k, v) in env(sim) {
        c.env(k, v);
    }
    if let Some(f) = failpoint {
        c.env("FOGBOOK_FAILPOINTS", f);
    }
    c.stdin(Stdio::null());
    c.spawn().unwrap()
}

fn fleet_exists(sb: &Sandbox) -> bool {
    sb.db().exists()
        && sb
            .sql()
            .query_row("SELECT count(*) FROM fleets", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|n| n > 0)
}

fn fleet_status(sb: &Sandbox) -> Option<String> {
    if !fleet_exists(sb) {
        return None;
    }
    sb.sql().query_row("SELECT status FROM fleets", [], |r| r.get(0)).ok()
}

fn args_for(sb: &Sandbox, fleet: &Path) -> Vec<String> {
    if fleet_exists(sb) {
        vec!["fleet".into(), "resume".into(), "move-secondaries".into()]
    } else {
        vec!["fleet".into(), "run".into(), fleet.display().to_string()]
    }
}

#[test]
fn killed_at_twenty_three_moments_the_fleet_starts_no_target_twice_and_never_runs_more_than_five() {
    let (sb, sim, fleet) = setup(&[]);
    let started = Instant::now();
    let mut kills = 0;
    // Three kills at chosen points of the driver: right after the canary's outcome was
    // recorded, right after a target's run was created and linked (before anything drives
    // it), and just before a start.
    for fp in [
        "fleet-after-finish:fog-t00",
        "fleet-after-start:fog-t01",
        "fleet-before-start:fog-t06",
    ] {
        let args = args_for(&sb, &fleet);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(&sb, &sim, &args, Some(fp), &format!("fp{kills}"));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "{fp}: {}",
            sb.lines_of(&format!("fp{kills}.err")).join("\n")
        );
        kills += 1;
    }
    // Twenty kills from outside at seeded random moments: each process is killed a random
    // 0-150 ms after the emulator journaled a new mutation (so each one makes progress, and
    // the fleet, about 200 mutations long, is still going at the twentieth kill).
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x000f_1ee7);
    for k in 0..60 {
        if kills >= 23 || fleet_status(&sb).as_deref() == Some("succeeded") {
            break;
        }
        let want = journal(&sim.url).len() + 1;
        let args = args_for(&sb, &fleet);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(&sb, &sim, &args, None, &format!("k{k}"));
        let waited = Instant::now();
        while journal(&sim.url).len() < want && child.try_wait().unwrap().is_none() {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "no progress after kill {kills}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The sleep only places the fault; nothing is asserted on time.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        if child.try_wait().unwrap().is_none() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 23, "only {kills} kills landed before the fleet ended");
    // Then resumed to the end.
    let mut done = false;
    for _ in 0..5 {
        let args = args_for(&sb, &fleet);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.run_env(&args, &env(&sim));
        if code(&out) == 0 {
            done = true;
            break;
        }
        assert_ne!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    }
    assert!(done, "the fleet did not finish");
    eprintln!(
        "{kills} kills, {:?}, {} mutations",
        started.elapsed(),
        journal(&sim.url).len()
    );

    let doc = fleet_json(&sb, "report", "move-secondaries");
    assert_eq!(doc["status"], "succeeded");
    assert!(target_statuses(&doc).iter().all(|s| s == "succeeded"));

    // From the emulator's journal: never more than five targets in flight, and each target
    // was moved exactly once (one applied delete of its old group, of its old secondary,
    // one applied create of its new group).
    let journal = journal(&sim.url);
    let spans = spans(&journal);
    assert_eq!(spans.len(), TARGETS);
    let most = max_in_flight(&spans, journal.len());
    assert!(most <= 5, "{most} targets in flight at once");
    assert!(most >= 3, "the fleet never ran targets side by side ({most})");
    for i in 0..TARGETS {
        let t = item(i);
        let count = |method: &str, tail: &str| {
            journal
                .iter()
                .filter(|e| {
                    e["method"] == method
                        && e["applied"] == true
                        && e["path"].as_str().unwrap().split('?').next().unwrap().ends_with(tail)
                })
                .count()
        };
        assert_eq!(count("DELETE", &format!("/managedInstances/mi-b-{t}")), 1, "{t}");
        assert!(count("DELETE", &format!("/instanceFailoverGroups/fog-{t}")) <= 1, "{t}");
    }
    let s = state(&sim.url);
    for i in 0..TARGETS {
        let t = item(i);
        assert_eq!(
            members(&s, &format!("fog-{t}")),
            vec![format!("mi-a-{t}"), format!("mi-c-{t}")]
        );
    }
    // One run per target: twenty runs in all, each linked to its target.
    let runs: i64 = sb
        .sql()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, TARGETS as i64);
    assert_audit_ok(&sb);
}

/// A fleet of `job` runs (no cloud): each target's run appends `RUN before` and `RUN after`
/// to `out.log`.
fn job_fleet(sb: &Sandbox, extra: &str) -> PathBuf {
    let out = sb.path("out.log");
    sb.write(
        "jobs.yaml",
        &format!(
            "fleet: jobs
runbook: {runbook}
params: {{out: {out}, pause: 10ms}}
targets:
  over: [a, b, c, d, e]
  name: \"job-${{{{ item }}}}\"
  params: {{group: \"g-${{{{ item }}}}\"}}
rate: {{max_concurrency: 2, max_errors: 1}}
{extra}",
            runbook = crate::common::fixture("job.yaml").display(),
            out = out.display(),
        ),
    )
}

/// The targets whose runs wrote to the log, from the log itself (not the fleet's records).
fn targets_in_log(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = sb
        .lines_of("out.log")
        .iter()
        .filter(|l| l.ends_with(" after"))
        .map(|l| {
            let run = l.split_whitespace().next().unwrap();
            let by: String = sb
                .sql()
                .query_row("SELECT name FROM fleet_targets WHERE run_id = ?1", [run], |r| r.get(0))
                .unwrap();
            by
        })
        .collect();
    names.sort();
    names
}

#[test]
fn waves_wait_for_an_approval_and_a_cancelled_fleet_starts_nothing_more() {
    let sb = Sandbox::new();
    let file = job_fleet(&sb, "waves: {canary: 1, size: 2, approval: true}\n");
    // The canary runs, then the fleet waits for the approval of wave 1.
    let out = sb.run(&["fleet", "run", file.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("wave 1 waits for approval: fogbook fleet resume"),
        "{}",
        stderr(&out)
    );
    assert_eq!(targets_in_log(&sb), ["job-a"]);
    // Approved, wave 1 (two targets) runs; the fleet waits again before wave 2.
    let out = sb.run(&["fleet", "resume", "jobs", "--approve", "--by", "alice"]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(targets_in_log(&sb), ["job-a", "job-b", "job-c"]);
    // Resumed without an approval, it still waits and starts nothing.
    let out = sb.run(&["fleet", "resume", "jobs"]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(targets_in_log(&sb), ["job-a", "job-b", "job-c"]);
    // Cancelled: nothing more starts, and the fleet says so.
    let out = sb.run(&["fleet", "cancel", "jobs", "--by", "bob"]);
    assert_eq!(code(&out), 5, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(targets_in_log(&sb), ["job-a", "job-b", "job-c"]);
    let doc = fleet_json(&sb, "status", "jobs");
    assert_eq!(doc["status"], "cancelled");
    assert_eq!(
        target_statuses(&doc),
        ["succeeded", "succeeded", "succeeded", "pending", "pending"]
    );
    let history: Vec<String> = sb
        .sql()
        .prepare("SELECT kind FROM events WHERE run_id LIKE 'fleet:%' ORDER BY gseq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for kind in [
        "fleet.waiting_for_approval",
        "fleet.wave_approved",
        "fleet.cancel_requested",
        "fleet.finished",
    ] {
        assert!(history.iter().any(|k| k == kind), "{kind} not in {history:?}");
    }
    assert_audit_ok(&sb);
}

#[test]
fn a_bad_fleet_file_names_every_problem_and_creates_nothing() {
    let sb = Sandbox::new();
    let file = job_fleet(&sb, "waves: {canary: 9, sise: 2}\n");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("pause: 10ms", "pause: 10");
    let file = sb.write("bad.yaml", &text);
    let out = sb.run(&["fleet", "run", file.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    let origin = file.display().to_string();
    assert!(
        err.contains(&format!(
            "{origin}:9:20: waves: unknown field `sise` in `waves` (did you mean `size`?)"
        )),
        "{err}"
    );
    assert!(!sb.db().exists(), "nothing was created");
    // Fixed, the targets' parameters are checked against the runbook, each at its place.
    let file = sb.write(
        "bad.yaml",
        &text.replace("sise", "size").replace("canary: 9", "canary: 1"),
    );
    let out = sb.run(&["fleet", "run", file.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("{origin}:5:10 (target `job-a`)")), "{err}");
    assert!(err.contains("pause"), "{err}");
    assert!(!sb.db().exists(), "nothing was created");
}

#[test]
fn fleet_plan_predicts_each_wave_and_changes_nothing() {
    let (sb, sim, fleet) = setup(&[2]);
    let out = sb.run_env(&["fleet", "plan", fleet.to_str().unwrap()], &env(&sim));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("canary wave: 1 target(s)"), "{text}");
    assert!(text.contains("wave 1: 19 target(s)"), "{text}");
    assert!(text.contains("total: about"), "{text}");
    let doc = sb.run_env(
        &["fleet", "plan", fleet.to_str().unwrap(), "--format", "json"],
        &env(&sim),
    );
    let doc: Value = serde_json::from_str(&stdout(&doc)).unwrap();
    let waves = doc["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 2);
    // Each target of the second wave takes as long as the canary: five at a time, four rounds.
    let one = waves[0]["hours"].as_f64().unwrap();
    let second = waves[1]["hours"].as_f64().unwrap();
    assert!(one > 0.0, "{doc}");
    assert!((second - 4.0 * one).abs() < 0.01 * one, "{doc}");
    assert!(journal(&sim.url).is_empty(), "plan sent mutating requests");
    assert!(!sb.db().exists(), "plan creates no database");
}

/// A target whose failover group is not there would stop at its first read: `fleet plan`
/// names it and exits 1, as `fogbook plan` does for one run, so `fleet plan F && fleet run F`
/// starts nothing.
#[test]
fn fleet_plan_exits_1_and_names_a_target_that_would_stop_before_any_change() {
    let (sb, sim, fleet) = setup(&[]);
    let text = std::fs::read_to_string(&fleet).unwrap().replace("t19]", "t19, t99]");
    let fleet = sb.write("fleet.yaml", &text);
    let out = sb.run_env(&["fleet", "plan", fleet.to_str().unwrap()], &env(&sim));
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("1 TARGET(S) WOULD STOP BEFORE CHANGING ANYTHING: fog-t99."),
        "{text}"
    );
    assert!(
        text.contains("  fog-t99: about") && text.contains("WOULD FAIL"),
        "{text}"
    );
    let doc = sb.run_env(
        &["fleet", "plan", fleet.to_str().unwrap(), "--format", "json"],
        &env(&sim),
    );
    assert_eq!(code(&doc), 1, "{}", stderr(&doc));
    let doc: Value = serde_json::from_str(&stdout(&doc)).unwrap();
    assert_eq!(
        doc["would_stop_before_any_change"],
        serde_json::json!(["fog-t99"]),
        "{doc}"
    );
    assert!(journal(&sim.url).is_empty(), "plan sent mutating requests");
    assert!(!sb.db().exists(), "plan creates no database");
}

#[test]
fn a_fleet_cancelled_while_driven_stops_its_running_target_and_starts_no_other() {
    let sb = Sandbox::new();
    let file = job_fleet(&sb, "");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("pause: 10ms", "pause: 3s")
        .replace("max_concurrency: 2", "max_concurrency: 1");
    let file = sb.write("jobs.yaml", &text);
    let driver = sb.spawn(&["fleet", "run", file.to_str().unwrap()], &[]);
    // The first target's run has written its first line: it is in its pause.
    sb.wait_for("the first target to start", Duration::from_secs(20), |sb| {
        sb.lines_of("out.log").len() == 1
    });
    let out = sb.run(&["fleet", "cancel", "jobs", "--by", "carol"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let out = driver.wait_with_output().unwrap();
    assert_eq!(code(&out), 5, "{}{}", stdout(&out), stderr(&out));
    // From the log: the running target stopped before its second step, nothing else ran.
    let lines = sb.lines_of("out.log");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let doc = fleet_json(&sb, "status", "jobs");
    assert_eq!(doc["status"], "cancelled");
    assert_eq!(
        target_statuses(&doc),
        ["cancelled", "pending", "pending", "pending", "pending"]
    );
    assert_audit_ok(&sb);
}

/// A fleet whose targets are an estate query: the failover groups whose primary is in
/// eastus. Of six groups, t00-t03 have their primary in eastus (rg-e) and t04, t05 in westus
/// (their eastus member is the secondary): the query, run through the emulator when the
/// fleet is created, finds the first four, and `fleet plan` shows them. What it found is
/// frozen into the fleet: with the emulator gone, the fleet resumes after its approval and
/// finishes exactly those four.
#[test]
fn targets_from_an_estate_query_are_found_once_and_frozen_into_the_fleet() {
    let sb = Sandbox::new();
    let mut text = estate(6, &[]);
    for t in ["t04", "t05"] {
        text = text.replace(
            &format!("primary: rg-e/mi-a-{t}, secondary: rg-w/mi-b-{t}"),
            &format!("primary: rg-w/mi-b-{t}, secondary: rg-e/mi-a-{t}"),
        );
        // Databases are listed on the primary only.
        let line = text
            .lines()
            .find(|l| l.contains(&format!("name: mi-a-{t},")))
            .unwrap()
            .to_owned();
        text = text.replace(&line, &line.replace(", databases: [{name: sales, size_gb: 4}]", ""));
    }
    let estate = sb.write("estate.yaml", &text);
    let sim = start_sim(&estate, None);
    let out = sb.path("out.log");
    let file = sb.write(
        "query.yaml",
        &format!(
            "fleet: eastus-groups
runbook: {runbook}
params: {{out: {out}, pause: 10ms}}
targets:
  query: {{groups: {{primary_location: eastus, subscriptions: [{SUB}]}}}}
  name: \"job-${{{{ item.name }}}}\"
  params: {{group: \"${{{{ item.resource_group }}}}/${{{{ item.name }}}}\"}}
rate: {{max_concurrency: 2, max_errors: 1}}
waves: {{canary: 1, approval: true}}
",
            runbook = crate::common::fixture("job.yaml").display(),
            out = out.display(),
        ),
    );
    let expected = ["job-fog-t00", "job-fog-t01", "job-fog-t02", "job-fog-t03"];

    let plan = sb.run_env(&["fleet", "plan", file.to_str().unwrap()], &env(&sim));
    assert_eq!(code(&plan), 0, "{}{}", stdout(&plan), stderr(&plan));
    let text = stdout(&plan);
    assert!(text.contains("4 target(s)"), "{text}");
    assert!(
        text.contains("fog-t00 (6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7/rg-e), fog-t01"),
        "{text}"
    );
    assert!(!text.contains("fog-t04") && !text.contains("fog-t05"), "{text}");
    assert!(!sb.db().exists(), "plan creates no database");

    // Created: the canary runs, then the fleet waits for the approval of wave 1.
    let run = sb.run_env(&["fleet", "run", file.to_str().unwrap()], &env(&sim));
    assert_eq!(code(&run), 3, "{}{}", stdout(&run), stderr(&run));
    assert_eq!(targets_in_log(&sb), ["job-fog-t00"]);
    let stored: Vec<String> = sb
        .sql()
        .prepare("SELECT name FROM fleet_targets ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, expected);

    // The emulator is gone: a resume that queried again would fail; it finishes the four.
    drop(sim);
    let resumed = sb.run(&["fleet", "resume", "eastus-groups", "--approve", "--by", "alice"]);
    assert_eq!(code(&resumed), 0, "{}{}", stdout(&resumed), stderr(&resumed));
    assert_eq!(targets_in_log(&sb), expected);
    assert_audit_ok(&sb);
}

/// A query that finds nothing (no group's primary is in that region) creates nothing and
/// says what it looked for.
#[test]
fn an_estate_query_that_finds_nothing_creates_nothing() {
    let sb = Sandbox::new();
    let estate = sb.write("estate.yaml", &estate(2, &[]));
    let sim = start_sim(&estate, None);
    let file = sb.write(
        "query.yaml",
        &format!(
            "fleet: none
runbook: {runbook}
params: {{out: {out}}}
targets:
  query: {{groups: {{primary_location: westus, subscriptions: [{SUB}], resource_groups: [rg-w]}}}}
  name: \"${{{{ item.name }}}}\"
  params: {{group: \"${{{{ item.name }}}}\"}}
rate: {{max_concurrency: 1, max_errors: 1}}
",
            runbook = crate::common::fixture("job.yaml").display(),
            out = sb.path("out.log").display(),
        ),
    );
    let out = sb.run_env(&["fleet", "run", file.to_str().unwrap()], &env(&sim));
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the query found no target: no failover groups whose primary is in westus"),
        "{err}"
    );
    assert!(err.contains("nothing was started"), "{err}");
    assert!(!sb.db().exists(), "nothing was created");
}
