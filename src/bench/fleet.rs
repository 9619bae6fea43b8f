//! `fogbook bench`'s fleet figure (issue 18, docs/PERFORMANCE.md "Fleets"): `groups`
//! failover groups have their secondary moved (`change-secondary-region`) by one
//! `fogbook fleet run`, `concurrency` at a time, against an emulator in this process whose
//! subscription's other clients spend half of the read budget (`other_clients: 0.5`).
//!
//! Everything is counted at the emulator, never from fogbook's own records:
//! - **throttled**: the requests it answered 429 (`GET /_sim/requests`);
//! - **requests per completed runbook**: every ARM request it received, divided by the
//!   targets whose run succeeded;
//! - **the oracle's minimum**: the same requests, except that each long-running operation
//!   (`GET /_sim/state`: when it started and when it ended) is polled exactly once per
//!   `Retry-After` interval the emulator gives (a simulated minute, or its 50 ms floor in real
//!   time, whichever is longer) instead of the status reads fogbook sent.

use std::path::Path;
use std::time::{Duration, Instant};

use fogbook_sim::{Estate, SimConfig};
use serde::Serialize;
use serde_json::{Value, json};

use super::cloud::{BenchError, Context, Scratch, admin, fail, fogbook};

const SUBSCRIPTION: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";
/// Ten simulated hours per real second: an instance creation (hours) takes a real second or
/// two, and the emulator's `Retry-After` is at its 50 ms floor (30 simulated minutes).
const TIME_SCALE: f64 = 36_000.0;
/// The emulator's shortest `Retry-After`, in real time (`sim/src/routes/response.rs`).
const RETRY_AFTER_FLOOR: Duration = Duration::from_millis(50);
/// The longest `Retry-After` the emulator gives while an operation runs: a simulated minute.
const RETRY_AFTER_SIM_MAX_S: f64 = 60.0;
/// The share of the read budget the competing client spends.
const OTHER_CLIENTS_READS: f64 = 0.5;
/// How long the fleet may take before the bench gives up.
const FLEET_TIMEOUT: Duration = Duration::from_secs(1800);

/// The fleet figure.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FleetFigure {
    pub(crate) groups: u32,
    pub(crate) concurrency: u32,
    pub(crate) other_clients_reads: f64,
    pub(crate) succeeded: u64,
    pub(crate) seconds: f64,
    /// ARM requests the emulator received for the fleet.
    pub(crate) requests: u64,
    /// Of which answered 429 (target: 0).
    pub(crate) throttled: u64,
    /// Of which status reads of long-running operations (`Azure-AsyncOperation`).
    pub(crate) polls: u64,
    /// Long-running operations the emulator ran.
    pub(crate) operations: u64,
    /// The oracle's polls: one per `Retry-After` interval of each operation.
    pub(crate) oracle_polls: u64,
    pub(crate) requests_per_runbook: f64,
    pub(crate) oracle_per_runbook: f64,
    /// `requests_per_runbook / oracle_per_runbook` (target: at most 1.2).
    pub(crate) ratio: f64,
}

/// An estate of `n` failover groups `fog-tNNN` (A in eastus, B in westus) and, for each, an
/// empty network in northeurope for the new secondary C. Address spaces never overlap.
fn estate(n: u32) -> String {
    const OPEN_RULES: &str = "
            rules:
              - {name: allow_redirect_inbound, priority: 1100, direction: Inbound, source_address_prefix: VirtualNetwork, destination_port_ranges: [\"11000-11999\"]}
              - {name: allow_geodr_inbound, priority: 1200, direction: Inbound, source_address_prefix: VirtualNetwork, destination_port_ranges: [\"5022\"]}
              - {name: allow_redirect_outbound, priority: 1100, direction: Outbound, destination_address_prefix: VirtualNetwork, destination_port_ranges: [\"11000-11999\"]}
              - {name: allow_geodr_outbound, priority: 1200, direction: Outbound, destination_address_prefix: VirtualNetwork, destination_port_ranges: [\"5022\"]}";
    let (mut nsg_e, mut nsg_w, mut nsg_n) = (String::new(), String::new(), String::new());
    let (mut east, mut west, mut north) = (String::new(), String::new(), String::new());
    let (mut mi_e, mut mi_w, mut groups) = (String::new(), String::new(), String::new());
    // Each group gets a /24 of its own in three distinct /8s.
    let net = |first: u32, i: u32| format!("{first}.{}.{}.0/24", i / 256, i % 256);
    for i in 0..n {
        let t = format!("t{i:03}");
        nsg_e.push_str(&format!("          - name: nsg-a-{t}{OPEN_RULES}\n"));
        nsg_w.push_str(&format!("          - name: nsg-b-{t}{OPEN_RULES}\n"));
        nsg_n.push_str(&format!("          - name: nsg-c-{t}\n"));
        for (out, side, first) in [(&mut east, "a", 10), (&mut west, "b", 11), (&mut north, "c", 12)] {
            let p = net(first, i);
            out.push_str(&format!(
                "          - {{name: vnet-{side}-{t}, address_prefixes: [{p}], subnets: [{{name: snet-mi, address_prefix: {p}, network_security_group: nsg-{side}-{t}}}]}}\n"
            ));
        }
        let zone = format!("9f4e1c2b7{i:04}");
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
  reads: {{burst: 250, per_second: 25, other_clients: {OTHER_CLIENTS_READS}}}
subscriptions:
  - id: {SUBSCRIPTION}
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

/// The fleet file: every group's secondary moves to northeurope, `concurrency` at a time.
fn fleet_file(n: u32, concurrency: u32, runbook: &Path, password: &Path) -> String {
    let items: Vec<String> = (0..n).map(|i| format!("t{i:03}")).collect();
    let rg = |g: &str| format!("{{subscription: {SUBSCRIPTION}, resource_group: {g}");
    format!(
        "fleet: bench-move-secondaries
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
    new_secondary: {c}, name: \"mi-c-${{{{ item }}}}\", location: northeurope, subnet_id: \"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-n/providers/Microsoft.Network/virtualNetworks/vnet-c-${{{{ item }}}}/subnets/snet-mi\"}}
rate: {{max_concurrency: {concurrency}, max_errors: \"100%\"}}
auto_approve: true
",
        runbook = runbook.display(),
        password = password.display(),
        items = items.join(", "),
        a = rg("rg-e"),
        b = rg("rg-w"),
        c = rg("rg-n"),
    )
}

/// The oracle's polls of one operation that ran `duration_sim_s` simulated seconds: one per
/// `Retry-After` interval (at least one).
fn oracle_polls(duration_sim_s: f64) -> u64 {
    let interval = RETRY_AFTER_SIM_MAX_S.max(RETRY_AFTER_FLOOR.as_secs_f64() * TIME_SCALE);
    ((duration_sim_s / interval).ceil() as u64).max(1)
}

fn sim_ms(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Measures the fleet figure with `groups` groups, `concurrency` at a time.
pub(crate) async fn fleet(dir: &Path, groups: u32, concurrency: u32) -> Result<FleetFigure, BenchError> {
    let scratch = Scratch::new(dir, "fleet")?;
    let estate = Estate::from_yaml_str(&estate(groups)).context("the fleet bench's estate does not load")?;
    let mut config = SimConfig::new(estate);
    config.time_scale = TIME_SCALE;
    let sim = fogbook_sim::start(config)
        .await
        .context("cannot start the ARM emulator")?;
    let url = sim.base_url();
    let result = measure(&scratch, &url, groups, concurrency).await;
    sim.shutdown().await;
    result
}

async fn measure(scratch: &Scratch, url: &str, groups: u32, concurrency: u32) -> Result<FleetFigure, BenchError> {
    let root = std::env::current_dir().context("no current directory")?;
    let runbook = scratch.join("change-secondary-region.yaml");
    std::fs::write(&runbook, include_str!("../../runbooks/change-secondary-region.yaml"))
        .context("cannot write the runbook")?;
    let password = scratch.join("password.txt");
    std::fs::write(&password, include_str!("../../examples/sim-admin-password.txt"))
        .context("cannot write the password file")?;
    let fleet = scratch.join("fleet.yaml");
    std::fs::write(&fleet, fleet_file(groups, concurrency, &runbook, &password))
        .context("cannot write the fleet file")?;
    let db = scratch.join("fleet.db");
    let before = admin(url, "GET", "/_sim/requests", None).await?;
    let started = Instant::now();
    let mut cmd = fogbook(&db, url)?;
    cmd.current_dir(&root).arg("fleet").arg("run").arg(&fleet);
    let child = cmd.spawn().context("cannot start fogbook fleet run")?;
    let out = tokio::time::timeout(FLEET_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| fail(format!("the fleet did not end within {} s", FLEET_TIMEOUT.as_secs())))?
        .context("fogbook fleet run")?;
    let seconds = started.elapsed().as_secs_f64();
    let after = admin(url, "GET", "/_sim/requests", None).await?;
    let state = admin(url, "GET", "/_sim/state", None).await?;
    let count = |doc: &Value, pred: &dyn Fn(&str, u64) -> bool| -> u64 {
        doc["counts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| pred(c["operation"].as_str().unwrap_or(""), c["status"].as_u64().unwrap_or(0)))
                    .map(|c| c["count"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let delta = |pred: &dyn Fn(&str, u64) -> bool| count(&after, pred).saturating_sub(count(&before, pred));
    let requests = delta(&|_, _| true);
    let throttled = delta(&|_, s| s == 429);
    let polls = delta(&|op, s| op == "AzureAsyncOperation_Get" && s != 429);
    let ops: Vec<&Value> = state["world"]["operations"]
        .as_object()
        .map(|m| m.values().collect())
        .unwrap_or_default();
    let oracle: u64 = ops
        .iter()
        .filter_map(|op| {
            let start = sim_ms(&op["started"])?;
            let end = sim_ms(&op["finished"]).or_else(|| sim_ms(&op["ends"]))?;
            Some(oracle_polls((end - start).max(0.0) / 1000.0))
        })
        .sum();
    let db_text = db.display().to_string();
    let succeeded = {
        let conn_out = fogbook(&db, url)?
            .args(["fleet", "status", "bench-move-secondaries", "--format", "json"])
            .stdout(std::process::Stdio::piped())
            .output()
            .await
            .context("fogbook fleet status")?;
        let doc: Value = serde_json::from_slice(&conn_out.stdout).unwrap_or(Value::Null);
        count_succeeded(&doc)
    };
    if succeeded == 0 {
        return Err(fail(format!(
            "no target of the fleet succeeded (database {db_text}): {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let per = |n: u64| n as f64 / succeeded as f64;
    let oracle_total = requests - throttled - polls + oracle;
    Ok(FleetFigure {
        groups,
        concurrency,
        other_clients_reads: OTHER_CLIENTS_READS,
        succeeded,
        seconds,
        requests,
        throttled,
        polls,
        operations: ops.len() as u64,
        oracle_polls: oracle,
        requests_per_runbook: per(requests),
        oracle_per_runbook: per(oracle_total),
        ratio: requests as f64 / oracle_total.max(1) as f64,
    })
}

/// Succeeded targets in `fleet status FLEET --format json`.
fn count_succeeded(doc: &Value) -> u64 {
    doc["targets"]
        .as_array()
        .map(|t| t.iter().filter(|t| t["status"] == json!("succeeded")).count() as u64)
        .unwrap_or(0)
}

/// The figure in words.
pub(crate) fn render(f: &FleetFigure) -> String {
    format!(
        "fleet: {} groups moved (change-secondary-region), {} at a time, while other clients spend {:.0} % of the read budget: {} succeeded in {:.1} s\n  \
         throttled for fogbook: {} (target 0)\n  \
         ARM requests per completed runbook: {:.1}; the oracle's minimum: {:.1} (one poll per Retry-After interval of each of {} operations); ratio {:.2} (target ≤ 1.2)",
        f.groups,
        f.concurrency,
        f.other_clients_reads * 100.0,
        f.succeeded,
        f.seconds,
        f.throttled,
        f.requests_per_runbook,
        f.oracle_per_runbook,
        f.operations,
        f.ratio
    )
}

/// The fleet phase of `fogbook bench` (skipped with `--fleet-groups 0`).
pub(crate) async fn run_phase(
    cli: &crate::cli::Cli,
    args: &crate::cli::BenchArgs,
) -> Result<Option<FleetFigure>, crate::exit::Exit> {
    if args.fleet_groups == 0 {
        return Ok(None);
    }
    crate::output::note(
        cli.quiet,
        &format!(
            "fleet: {} groups moved, {} at a time, other clients spending half of the reads …",
            args.fleet_groups, args.fleet_concurrency
        ),
    );
    match fleet(&args.dir, args.fleet_groups, args.fleet_concurrency.max(1)).await {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            crate::output::error_chain(&e, None);
            Err(crate::exit::Exit::BadInput)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_estate_loads_and_the_oracle_polls_once_per_interval() {
        Estate::from_yaml_str(&estate(3)).expect("estate");
        // The interval is 30 simulated minutes at this scale (the 50 ms floor).
        assert_eq!(oracle_polls(0.0), 1);
        assert_eq!(oracle_polls(1800.0), 1);
        assert_eq!(oracle_polls(1801.0), 2);
        assert_eq!(oracle_polls(4.0 * 3600.0), 8);
    }
}
