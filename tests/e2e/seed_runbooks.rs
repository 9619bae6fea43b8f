//! The shipped runbooks end to end against a separately started `fogbook sim serve`: the final
//! estate, the order of the mutating ARM calls in the emulator's journal and the recorded
//! windows; then the same runs with the engine SIGKILLed at every step boundary and inside the
//! long operations, and with the emulator itself restarted mid-run (`--state`). Whatever the
//! crashes, the final estate equals the uninterrupted one, no failover, forced failover or
//! delete is sent twice, no seeding restarts, and window durations include the downtime.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::common::{Sandbox, assert_audit_ok, code, stderr, stdout};

pub(crate) const SUB: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";
/// 36000×: a 4-hour instance create takes 0.4 s.
const FAST: u32 = 36_000;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn demo_estate() -> PathBuf {
    root().join("examples/estate.yaml")
}

fn unpaired_estate() -> PathBuf {
    root().join("examples/estate-unpaired.yaml")
}

// ------------------------------------------------------------------------------------------
// The emulator as a separate process, and its admin API over a plain TcpStream.

/// A running `fogbook sim serve`; killed on drop.
pub(crate) struct Sim {
    pub(crate) url: String,
    port: u16,
    child: Child,
    _stdout: BufReader<ChildStdout>,
    estate: PathBuf,
    state: Option<PathBuf>,
    time_scale: u32,
    dir: tempfile::TempDir,
}

pub(crate) fn start_sim(estate: &Path, state: Option<&Path>) -> Sim {
    start_sim_scaled(estate, state, FAST)
}

fn start_sim_scaled(estate: &Path, state: Option<&Path>, time_scale: u32) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let (child, out, url) = spawn_sim(dir.path(), estate, state, time_scale, None);
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    Sim {
        url,
        port,
        child,
        _stdout: out,
        estate: estate.to_owned(),
        state: state.map(Path::to_owned),
        time_scale,
        dir,
    }
}

fn spawn_sim(
    dir: &Path,
    estate: &Path,
    state: Option<&Path>,
    time_scale: u32,
    port: Option<u16>,
) -> (Child, BufReader<ChildStdout>, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fogbook"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(dir.join("sim.log")).unwrap())
        .args(["sim", "serve", "--estate"])
        .arg(estate)
        .arg("--port-file")
        .arg(dir.join("sim.url"))
        .args(["--time-scale", &time_scale.to_string()]);
    if let Some(s) = state {
        c.arg("--state").arg(s);
    }
    if let Some(p) = port {
        c.args(["--listen", &format!("127.0.0.1:{p}")]);
    }
    let mut child = c.spawn().expect("spawn sim serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line.trim().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "sim serve printed {url:?}: {}",
        std::fs::read_to_string(dir.join("sim.log")).unwrap_or_default()
    );
    (child, out, url)
}

impl Sim {
    /// Stops the emulator: SIGKILL, or SIGTERM for a clean shutdown.
    fn stop(&mut self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
        let status = self.child.wait().unwrap();
        match signal {
            Signal::SIGKILL => assert_eq!(status.signal(), Some(9)),
            _ => assert!(status.success(), "sim serve on {signal}: {status:?}"),
        }
    }

    /// Starts the stopped emulator again on the same port with the same state file.
    fn start_again(&mut self) {
        let (child, out, url) = spawn_sim(
            self.dir.path(),
            &self.estate,
            self.state.as_deref(),
            self.time_scale,
            Some(self.port),
        );
        assert_eq!(url, self.url, "restarted on the same port");
        self.child = child;
        self._stdout = out;
    }

    pub(crate) fn journal(&self) -> Vec<Value> {
        journal(&self.url)
    }

    pub(crate) fn state(&self) -> Value {
        state(&self.url)
    }

    fn advance(&self, duration: &str) {
        let (status, body) = http(
            &self.url,
            "POST",
            "/_sim/clock/advance",
            Some(&json!({ "duration": duration })),
        );
        assert_eq!(status, 200, "{body}");
    }

    pub(crate) fn set_faults(&self, faults: &Value) {
        let (status, body) = http(&self.url, "PUT", "/_sim/faults", Some(faults));
        assert_eq!(status, 200, "{body}");
    }

    /// The environment that points fogbook at this emulator.
    pub(crate) fn env(&self) -> [(&'static str, &str); 2] {
        [
            ("FOGBOOK_ARM_ENDPOINT", self.url.as_str()),
            ("FOGBOOK_ARM_TOKEN", "anything"),
        ]
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request (so the answer is never chunked): status and body.
fn http(url: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

pub(crate) fn get_json(url: &str, path: &str) -> Value {
    let (status, body) = http(url, "GET", path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

pub(crate) fn journal(url: &str) -> Vec<Value> {
    get_json(url, "/_sim/journal")["entries"].as_array().unwrap().clone()
}

pub(crate) fn state(url: &str) -> Value {
    get_json(url, "/_sim/state")
}

/// A journal entry as `METHOD rg/Provider/type/name...` (no subscription, no query).
fn short(entry: &Value) -> String {
    let path = entry["path"].as_str().unwrap();
    let path = path.split('?').next().unwrap();
    let path = path
        .trim_start_matches(&format!("/subscriptions/{SUB}/resourceGroups/"))
        .replace("/providers/", "/");
    format!("{} {path}", entry["method"].as_str().unwrap())
}

pub(crate) fn mutations(journal: &[Value]) -> Vec<String> {
    journal.iter().map(short).collect()
}

/// The Microsoft.Sql mutations: instance creates, scales, deletes, group writes, failovers.
pub(crate) fn sql_mutations(journal: &[Value]) -> Vec<String> {
    mutations(journal)
        .into_iter()
        .filter(|m| m.contains("/Microsoft.Sql/"))
        .collect()
}

/// The mutations with repeats removed (first occurrence order).
fn first_occurrences(list: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    for m in list {
        if !seen.contains(m) {
            seen.push(m.clone());
        }
    }
    seen
}

// ------------------------------------------------------------------------------------------
// The estate, reduced to what a procedure decides (no times, no operation ids).

fn name_of(id: &Value) -> String {
    id.as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn summary(state: &Value) -> Value {
    let world = &state["world"];
    let mut instances = serde_json::Map::new();
    for i in world["instances"].as_object().unwrap().values() {
        let dbs: Vec<Value> = i["databases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!([d["name"], d["size_gb"], d["failover_group"], d["read_only"]]))
            .collect();
        instances.insert(
            i["name"].as_str().unwrap().to_owned(),
            json!({
                "location": i["location"], "sku_name": i["sku_name"], "tier": i["tier"],
                "v_cores": i["v_cores"], "storage_gb": i["storage_gb"],
                "database_format": i["database_format"], "dns_zone": i["dns_zone"],
                "next_gen": i["next_gen"],
                "provisioning_state": i["provisioning_state"], "state": i["state"],
                "subnet": i["subnet_id"], "databases": dbs,
            }),
        );
    }
    let mut groups = serde_json::Map::new();
    for (name, g) in world["failover_groups"].as_object().unwrap() {
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
    for v in world["virtual_networks"].as_object().unwrap().values() {
        let mut peerings: Vec<String> = v["peerings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}->{}", p["name"].as_str().unwrap(), name_of(&p["remote_id"])))
            .collect();
        peerings.sort();
        vnets.insert(v["name"].as_str().unwrap().to_owned(), json!(peerings));
    }
    let mut nsgs = serde_json::Map::new();
    for n in world["security_groups"].as_object().unwrap().values() {
        let mut rules: Vec<String> = n["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {} {}",
                    r["direction"].as_str().unwrap(),
                    r["access"].as_str().unwrap(),
                    r["protocol"].as_str().unwrap(),
                    r["priority"],
                    r["destination_port_ranges"],
                    r["destination_port_range"]
                )
            })
            .collect();
        rules.sort();
        nsgs.insert(n["name"].as_str().unwrap().to_owned(), json!(rules));
    }
    json!({ "instances": instances, "groups": groups, "vnets": vnets, "nsgs": nsgs })
}

/// (primary, secondary, replication state) of a group, or None when it does not exist.
pub(crate) fn group(s: &Value, name: &str) -> Option<(String, String, String)> {
    let g = s["groups"].get(name)?;
    Some((
        g["primary"].as_str().unwrap().to_owned(),
        g["secondary"].as_str().unwrap().to_owned(),
        g["replication_state"].as_str().unwrap().to_owned(),
    ))
}

pub(crate) fn pair(primary: &str, secondary: &str) -> Option<(String, String, String)> {
    Some((primary.to_owned(), secondary.to_owned(), "CATCH_UP".to_owned()))
}

pub(crate) fn instance<'a>(s: &'a Value, name: &str) -> &'a Value {
    &s["instances"][name]
}

pub(crate) fn db_names(s: &Value, name: &str) -> Vec<String> {
    let mut v: Vec<String> = instance(s, name)["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[0].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

pub(crate) const DEMO_DBS: &[&str] = &["audit", "hr", "inventory", "sales"];

/// Both NSGs carry the four geo-replication rules, and the two VNets peer each other.
pub(crate) fn assert_networked(s: &Value, a: &str, b: &str) {
    for region in [a, b] {
        let rules = s["nsgs"][format!("nsg-mi-{region}")].as_array().unwrap();
        for dir in ["Inbound", "Outbound"] {
            for port in ["5022", "11000-11999"] {
                assert!(
                    rules.iter().any(|r| {
                        let r = r.as_str().unwrap();
                        r.starts_with(&format!("{dir} Allow Tcp")) && r.contains(&format!("\"{port}\""))
                    }),
                    "{region}: no {dir} rule for {port}: {rules:?}"
                );
            }
        }
    }
    let peer = |x: &str, y: &str| {
        s["vnets"][format!("vnet-sql-{x}")]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(&format!("->vnet-sql-{y}")))
    };
    assert!(
        peer(a, b) && peer(b, a),
        "{a} and {b} not peered both ways: {}",
        s["vnets"]
    );
}

// ------------------------------------------------------------------------------------------
// The seven runbooks, their parameters and what each must yield.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rb {
    Configure,
    ChangeSecondary,
    ChangePrimary,
    UpdatePolicy,
    ScaleUp,
    ScaleDown,
    Failover,
    ForceFailover,
}

impl Rb {
    fn file(self) -> &'static str {
        match self {
            Self::Configure => "configure-failover-group",
            Self::ChangeSecondary => "change-secondary-region",
            Self::ChangePrimary => "change-primary-region",
            Self::UpdatePolicy => "change-update-policy",
            Self::ScaleUp | Self::ScaleDown => "scale",
            Self::Failover => "failover",
            Self::ForceFailover => "force-failover",
        }
    }

    fn estate(self) -> PathBuf {
        if self == Self::Configure {
            unpaired_estate()
        } else {
            demo_estate()
        }
    }

    fn run_args(self) -> Vec<String> {
        let mut a = vec![
            "run".to_owned(),
            root()
                .join(format!("runbooks/{}.yaml", self.file()))
                .display()
                .to_string(),
            "--params".to_owned(),
            root()
                .join(format!("examples/{}.yaml", self.file()))
                .display()
                .to_string(),
            "--auto-approve".to_owned(),
        ];
        let sets: &[&str] = match self {
            Self::ChangeSecondary | Self::ChangePrimary => &["admin_password_file"],
            Self::ScaleDown => &["v_cores=4", "storage_gb=256"],
            _ => &[],
        };
        for s in sets {
            a.push("--set".to_owned());
            if *s == "admin_password_file" {
                a.push(format!(
                    "admin_password_file={}",
                    root().join("examples/sim-admin-password.txt").display()
                ));
            } else {
                a.push((*s).to_owned());
            }
        }
        a
    }

    /// The steps a `when` skips with these parameters.
    fn skipped(self) -> &'static [&'static str] {
        match self {
            Self::ScaleUp => &["scale-secondary-after"],
            Self::ScaleDown => &["scale-secondary-first"],
            Self::Failover => &["fail-back"],
            _ => &[],
        }
    }

    /// The steps that run, in order (see [`runbook_steps`]).
    fn steps(self) -> Vec<(String, bool)> {
        runbook_steps(self.file(), self.skipped())
    }

    /// The mutating calls the procedure makes, in order.
    fn expected_journal(self) -> Vec<String> {
        let fog = |rg: &str, loc: &str| format!("{rg}/Microsoft.Sql/locations/{loc}/instanceFailoverGroups/fog-demo");
        let mi = |rg: &str, name: &str| format!("{rg}/Microsoft.Sql/managedInstances/{name}");
        let peer = |a: &str, b: &str| {
            [
                format!(
                    "PUT rg-sql-{a}/Microsoft.Network/virtualNetworks/vnet-sql-{a}/virtualNetworkPeerings/vnet-sql-{a}-to-vnet-sql-{b}"
                ),
                format!(
                    "PUT rg-sql-{b}/Microsoft.Network/virtualNetworks/vnet-sql-{b}/virtualNetworkPeerings/vnet-sql-{b}-to-vnet-sql-{a}"
                ),
            ]
        };
        let rules = |region: &str| {
            [
                "allow_redirect_inbound",
                "allow_geodr_inbound",
                "allow_redirect_outbound",
                "allow_geodr_outbound",
            ]
            .map(|r| {
                format!("PUT rg-sql-{region}/Microsoft.Network/networkSecurityGroups/nsg-mi-{region}/securityRules/{r}")
            })
        };
        let mut v: Vec<String> = Vec::new();
        match self {
            Self::Configure => {
                v.extend(peer("eastus", "westus"));
                v.extend(rules("eastus"));
                v.extend(rules("westus"));
                v.push(format!("PUT {}", fog("rg-sql-eastus", "eastus")));
                v.push(format!("POST {}/failover", fog("rg-sql-westus", "westus")));
                v.push(format!("POST {}/failover", fog("rg-sql-eastus", "eastus")));
            }
            Self::ChangeSecondary => {
                v.push(format!("PUT {}", mi("rg-sql-northeurope", "mi-fog-c")));
                v.extend(peer("eastus", "northeurope"));
                v.extend(rules("northeurope"));
                v.push(format!("DELETE {}", fog("rg-sql-eastus", "eastus")));
                v.push(format!("PUT {}", fog("rg-sql-eastus", "eastus")));
                v.push(format!("DELETE {}", mi("rg-sql-westus", "mi-fog-b")));
            }
            Self::ChangePrimary => {
                v.push(format!("PUT {}", mi("rg-sql-northeurope", "mi-fog-c")));
                v.extend(peer("westus", "northeurope"));
                v.extend(rules("northeurope"));
                v.push(format!("POST {}/failover", fog("rg-sql-westus", "westus")));
                v.push(format!("DELETE {}", fog("rg-sql-westus", "westus")));
                v.push(format!("PUT {}", fog("rg-sql-westus", "westus")));
                v.push(format!("POST {}/failover", fog("rg-sql-northeurope", "northeurope")));
                v.push(format!("DELETE {}", mi("rg-sql-eastus", "mi-fog-a")));
            }
            Self::UpdatePolicy | Self::ScaleUp => {
                v.push(format!("PATCH {}", mi("rg-sql-westus", "mi-fog-b")));
                v.push(format!("PATCH {}", mi("rg-sql-eastus", "mi-fog-a")));
            }
            Self::ScaleDown => {
                v.push(format!("PATCH {}", mi("rg-sql-eastus", "mi-fog-a")));
                v.push(format!("PATCH {}", mi("rg-sql-westus", "mi-fog-b")));
            }
            Self::Failover => v.push(format!("POST {}/failover", fog("rg-sql-westus", "westus"))),
            Self::ForceFailover => v.push(format!(
                "POST {}/forceFailoverAllowDataLoss",
                fog("rg-sql-westus", "westus")
            )),
        }
        v
    }

    /// The windows, as (kind, opened by, closed by).
    fn expected_windows(self) -> Vec<(String, String, String)> {
        let w = |o: &str, c: &str| {
            vec![
                ("unprotected".to_owned(), o.to_owned(), c.to_owned()),
                ("listener_unavailable".to_owned(), o.to_owned(), c.to_owned()),
            ]
        };
        match self {
            Self::ChangeSecondary => w("delete-old-group", "create-new-group"),
            Self::ChangePrimary => w("delete-group", "create-group"),
            _ => Vec::new(),
        }
    }

    /// Whose databases the unprotected window concerns: the primary while the group is gone
    /// (for change-primary-region, B: the primary of that moment, after the first failover).
    fn unprotected_databases_of(self) -> Option<&'static str> {
        match self {
            Self::ChangeSecondary => Some("mi-fog-a"),
            Self::ChangePrimary => Some("mi-fog-b"),
            _ => None,
        }
    }

    /// What the procedure yields, checked on the estate summary.
    fn check_final(self, s: &Value) {
        let a = instance(s, "mi-fog-a");
        let b = instance(s, "mi-fog-b");
        match self {
            Self::Configure => {
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-a", "mi-fog-b"), "failed back to A");
                assert_networked(s, "eastus", "westus");
                assert_eq!(db_names(s, "mi-fog-b"), DEMO_DBS, "B holds the replicas");
            }
            Self::ChangeSecondary => {
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-a", "mi-fog-c"));
                assert!(b.is_null(), "B deleted: {b}");
                let c = instance(s, "mi-fog-c");
                assert_eq!(c["location"], "northeurope");
                assert_eq!(c["dns_zone"], a["dns_zone"], "C in A's DNS zone");
                for k in ["sku_name", "v_cores", "storage_gb", "database_format"] {
                    assert_eq!(c[k], a[k], "C like A: {k}");
                }
                assert_eq!(db_names(s, "mi-fog-c"), DEMO_DBS);
                assert_networked(s, "eastus", "northeurope");
            }
            Self::ChangePrimary => {
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-c", "mi-fog-b"));
                assert!(a.is_null(), "A deleted: {a}");
                let c = instance(s, "mi-fog-c");
                assert_eq!(c["location"], "northeurope");
                assert_eq!(c["dns_zone"], b["dns_zone"], "C in B's DNS zone");
                for k in ["sku_name", "v_cores", "storage_gb", "database_format"] {
                    assert_eq!(c[k], b[k], "C like B: {k}");
                }
                assert_eq!(db_names(s, "mi-fog-c"), DEMO_DBS);
                assert_networked(s, "westus", "northeurope");
            }
            Self::UpdatePolicy => {
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-a", "mi-fog-b"));
                assert_eq!(a["database_format"], "SQLServer2025");
                assert_eq!(b["database_format"], "SQLServer2025");
            }
            Self::ScaleUp | Self::ScaleDown => {
                let (v, gb) = if self == Self::ScaleUp { (16, 1024) } else { (4, 256) };
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-a", "mi-fog-b"));
                for i in [a, b] {
                    assert_eq!(
                        (i["v_cores"].as_i64(), i["storage_gb"].as_i64()),
                        (Some(v), Some(gb)),
                        "{i}"
                    );
                    assert_eq!(i["sku_name"], "GP_Gen5");
                    assert_eq!(i["provisioning_state"], "Succeeded");
                }
            }
            Self::Failover | Self::ForceFailover => {
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-b", "mi-fog-a"));
            }
        }
        for (name, i) in s["instances"].as_object().unwrap() {
            assert_eq!(i["provisioning_state"], "Succeeded", "{name}");
        }
    }
}

/// What the end-to-end and kill tests need to know of a procedure: the shipped runbook, its
/// parameters and estate, and what it must yield. Implemented by [`Rb`] here and by the
/// procedures of `procedures.rs`.
pub(crate) trait Procedure: Copy + std::fmt::Debug + Send + 'static {
    /// `fogbook run` arguments (runbook, parameters, `--auto-approve`).
    fn run_args(self) -> Vec<String>;
    /// The estate the emulator starts from.
    fn estate(self) -> PathBuf;
    /// The steps that run, in order, and whether each has an `after-progress` kill point.
    fn steps(self) -> Vec<(String, bool)>;
    /// The mutating calls, in order.
    fn expected_journal(self) -> Vec<String>;
    /// The windows, as (kind, opened by, closed by).
    fn expected_windows(self) -> Vec<(String, String, String)>;
    /// Whose databases the unprotected window concerns.
    fn unprotected_databases_of(self) -> Option<&'static str>;
    /// What the procedure yields, checked on the estate summary.
    fn check_final(self, s: &Value);
    /// The step that creates a group and the group's name, whose listeners the run reports.
    fn listeners_of(self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// Further checks of a finished uninterrupted run (its report, its outputs).
    fn check_run(self, _sb: &Sandbox, _run: &str) {}
}

impl Procedure for Rb {
    fn run_args(self) -> Vec<String> {
        Rb::run_args(self)
    }
    fn estate(self) -> PathBuf {
        Rb::estate(self)
    }
    fn steps(self) -> Vec<(String, bool)> {
        Rb::steps(self)
    }
    fn expected_journal(self) -> Vec<String> {
        Rb::expected_journal(self)
    }
    fn expected_windows(self) -> Vec<(String, String, String)> {
        Rb::expected_windows(self)
    }
    fn unprotected_databases_of(self) -> Option<&'static str> {
        Rb::unprotected_databases_of(self)
    }
    fn check_final(self, s: &Value) {
        Rb::check_final(self, s)
    }
    fn listeners_of(self) -> Option<(&'static str, &'static str)> {
        (self == Self::Configure).then_some(("create-group", "fog-demo"))
    }
    fn check_run(self, sb: &Sandbox, run: &str) {
        // A run that creates a group reports the follow-up checklist for its new secondary.
        let secondary = match self {
            Self::Configure | Self::ChangePrimary => "mi-fog-b",
            Self::ChangeSecondary => "mi-fog-c",
            _ => return,
        };
        assert_follow_up(sb, run, secondary);
    }
}

/// The run's report lists the follow-up checklist (logins with their SIDs, Agent jobs, the
/// Service Master Key) naming the new secondary.
pub(crate) fn assert_follow_up(sb: &Sandbox, run: &str, secondary: &str) {
    let text = stdout(&sb.run(&["report", run]));
    for item in [
        format!("follow_up_1_logins: create the logins on {secondary} with the same SIDs"),
        format!("follow_up_2_agent_jobs: create the SQL Agent jobs on {secondary}"),
        format!("follow_up_3_service_master_key: the Service Master Key was copied to {secondary}"),
    ] {
        assert!(text.contains(&item), "no `{item}` in the report: {text}");
    }
}

/// The steps of `runbooks/<file>.yaml` that run, in order, read from the file, and whether
/// each saves progress inside a long operation (an `after-progress` kill point). Failovers
/// are left out of `after-progress`: that point is the intent saved before the POST, and a
/// failover re-entered with an intent and no operation is ambiguous by design (see
/// `killed_inside_failover` for a kill inside the failover operation itself).
pub(crate) fn runbook_steps(file: &str, skipped: &[&str]) -> Vec<(String, bool)> {
    const LONG: &[&str] = &[
        "instance.create_like",
        "instance.scale",
        "instance.set_update_policy",
        "instance.delete",
        "fog.create",
        "fog.delete",
        "databases.delete_copies",
    ];
    let text = std::fs::read_to_string(root().join(format!("runbooks/{file}.yaml"))).unwrap();
    let mut steps: Vec<(String, bool)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(id) = t.strip_prefix("- id:") {
            steps.push((id.trim().to_owned(), false));
        } else if let (Some(uses), Some(last)) = (t.strip_prefix("uses:"), steps.last_mut()) {
            last.1 = LONG.contains(&uses.trim());
        }
    }
    steps.retain(|(id, _)| !skipped.contains(&id.as_str()));
    steps
}

// ------------------------------------------------------------------------------------------
// Driving the engine.

pub(crate) fn engine(sb: &Sandbox, sim: &Sim, args: &[String], failpoint: Option<&str>) -> Output {
    let mut c = sb.cmd();
    c.args(args);
    for (k, v) in sim.env() {
        c.env(k, v);
    }
    if let Some(f) = failpoint {
        c.env("FOGBOOK_FAILPOINTS", f);
    }
    c.output().expect("spawn fogbook")
}

/// The engine in the background, its output in files of the sandbox.
fn engine_bg(sb: &Sandbox, sim: &Sim, args: &[String], tag: &str) -> Child {
    let mut c = sb.cmd();
    c.args(args)
        .stdout(File::create(sb.path(&format!("{tag}.out"))).unwrap())
        .stderr(File::create(sb.path(&format!("{tag}.err"))).unwrap());
    for (k, v) in sim.env() {
        c.env(k, v);
    }
    c.spawn().expect("spawn fogbook")
}

pub(crate) fn resume_args(run: &str) -> Vec<String> {
    vec!["resume".to_owned(), run.to_owned()]
}

pub(crate) fn report(sb: &Sandbox, run: &str) -> Value {
    let out = sb.run(&["report", run, "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn windows(sb: &Sandbox, run: &str) -> Vec<(String, String, String)> {
    report(sb, run)["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w["open"], false, "{w}");
            (
                w["kind"].as_str().unwrap().to_owned(),
                w["opened_by"].as_str().unwrap().to_owned(),
                w["closed_by"].as_str().unwrap_or("(open)").to_owned(),
            )
        })
        .collect()
}

pub(crate) fn assert_windows<P: Procedure>(rb: P, sb: &Sandbox, run: &str) {
    assert_eq!(windows(sb, run), rb.expected_windows(), "{rb:?}: windows");
    let subjects: Vec<Value> = report(sb, run)["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "unprotected")
        .map(|w| w["databases_of"].clone())
        .collect();
    let expected: Vec<Value> = rb.unprotected_databases_of().map(|n| json!(n)).into_iter().collect();
    assert_eq!(subjects, expected, "{rb:?}: whose databases were unprotected");
}

/// (opened_at, closed_at) in ms of the run's unprotected window.
fn unprotected_ms(sb: &Sandbox, run: &str) -> (i64, i64) {
    sb.sql()
        .query_row(
            "SELECT opened_at, closed_at FROM windows WHERE run_id = ?1 AND kind = 'unprotected'",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn open_windows(sb: &Sandbox, run: &str) -> i64 {
    sb.sql()
        .query_row(
            "SELECT count(*) FROM windows WHERE run_id = ?1 AND kind = 'unprotected' AND closed_at IS NULL",
            [run],
            |r| r.get(0),
        )
        .unwrap()
}

fn step_progress(sb: &Sandbox, run: &str, step: &str) -> Option<String> {
    sb.sql()
        .query_row(
            "SELECT progress FROM steps WHERE run_id = ?1 AND step_id = ?2",
            [run, step],
            |r| r.get(0),
        )
        .ok()
        .flatten()
}

/// Waits for a condition (not a time); panics after `limit`.
fn wait_until(what: &str, limit: Duration, mut pred: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

/// An uninterrupted run on its own emulator: the final estate summary and the journal.
pub(crate) fn baseline<P: Procedure>(rb: P) -> (Value, Vec<String>) {
    let sb = Sandbox::new();
    let sim = start_sim(&rb.estate(), None);
    let out = engine(&sb, &sim, &rb.run_args(), None);
    assert_eq!(code(&out), 0, "{rb:?} baseline: {}", stderr(&out));
    (summary(&sim.state()), mutations(&sim.journal()))
}

/// The end-to-end test of one runbook.
pub(crate) fn end_to_end<P: Procedure>(rb: P) {
    let sb = Sandbox::new();
    let sim = start_sim(&rb.estate(), None);
    let before = summary(&sim.state());
    let out = engine(&sb, &sim, &rb.run_args(), None);
    assert_eq!(code(&out), 0, "{rb:?}: {}{}", stdout(&out), stderr(&out));
    let run = sb.last_run_id();
    assert_eq!(sb.run_status(&run), "succeeded");

    let after = summary(&sim.state());
    assert_ne!(before, after, "{rb:?} changed nothing");
    rb.check_final(&after);

    let journal = sim.journal();
    for e in &journal {
        assert_eq!(e["applied"], true, "{rb:?}: a mutation was refused: {e}");
    }
    assert_eq!(
        mutations(&journal),
        rb.expected_journal(),
        "{rb:?}: the mutating calls, in order"
    );

    assert_windows(rb, &sb, &run);
    // Each step ran once.
    for step in report(&sb, &run)["steps"].as_array().unwrap() {
        if step["status"] == "completed" {
            assert_eq!(step["attempts"], 1, "{rb:?}: {step}");
        }
    }
    // The executed steps are the ones this test's kill matrix covers.
    let ran: Vec<String> = report(&sb, &run)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "completed")
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let listed: Vec<String> = rb.steps().into_iter().map(|(s, _)| s).collect();
    assert_eq!(ran, listed, "{rb:?}: executed steps");
    if let Some((step, name)) = rb.listeners_of() {
        // The listener endpoints: read-write <group>.<dnsZone>.database.windows.net and
        // read-only <group>.secondary.<dnsZone>.database.windows.net.
        let output: String = sb
            .sql()
            .query_row(
                "SELECT output FROM steps WHERE run_id = ?1 AND step_id = ?2",
                [&run, step],
                |r| r.get(0),
            )
            .unwrap();
        let output: Value = serde_json::from_str(&output).unwrap();
        let rw = format!("{name}.9f4e1c2b7a3d5.database.windows.net");
        let ro = format!("{name}.secondary.9f4e1c2b7a3d5.database.windows.net");
        assert_eq!(output["read_write_listener"], rw.as_str());
        assert_eq!(output["read_only_listener"], ro.as_str());
        // ... and the run's report ends with them.
        let report = sb.run(&["report", &run]);
        let text = crate::common::stdout(&report);
        assert!(
            text.contains(&format!("read_write_listener: {rw}")) && text.contains(&format!("read_only_listener: {ro}")),
            "{text}"
        );
    }
    rb.check_run(&sb, &run);
    assert_audit_ok(&sb);
}

/// A kill the test made: how long the engine was down and whether the unprotected window
/// was open meanwhile.
pub(crate) struct Down {
    ms: u128,
    in_window: bool,
}

/// Runs `rb` killing the engine at each failpoint in turn (one per process: the first
/// `run`, then `resume`s), then resumes to the end. Returns the run id and the downtimes.
pub(crate) fn run_with_kills<P: Procedure>(
    sb: &Sandbox,
    sim: &Sim,
    rb: P,
    failpoints: &[String],
) -> (String, Vec<Down>) {
    let mut run: Option<String> = None;
    let mut downs = Vec::new();
    let mut died: Option<Instant> = None;
    for (i, fp) in failpoints.iter().enumerate() {
        let args = match &run {
            None => rb.run_args(),
            Some(r) => resume_args(r),
        };
        if let (Some(t), Some(r)) = (died, &run) {
            let in_window = open_windows(sb, r) > 0;
            if in_window {
                // While the engine is down, `status` shows the window open, with its age.
                let st = sb.run(&["status", r]);
                assert!(
                    stdout(&st).contains("OPEN unprotected window"),
                    "{rb:?} after {}: {}",
                    failpoints[i - 1],
                    stdout(&st)
                );
            }
            downs.push(Down {
                ms: t.elapsed().as_millis(),
                in_window,
            });
        }
        let out = engine(sb, sim, &args, Some(fp));
        died = Some(Instant::now());
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{rb:?}: kill #{i} at {fp} was not reached: {:?} {}",
            out.status,
            stderr(&out)
        );
        if run.is_none() {
            run = Some(sb.last_run_id());
        }
    }
    let run = run.expect("a run was created");
    let in_window = open_windows(sb, &run) > 0;
    downs.push(Down {
        ms: died.map_or(0, |t| t.elapsed().as_millis()),
        in_window,
    });
    // A kill right after the last step's end was committed finds the run over: the last
    // step's end and the run's are one transition.
    let last_ended =
        failpoints.last().is_some_and(|fp| fp.starts_with("after-finish:")) && sb.run_status(&run) == "succeeded";
    if !last_ended {
        let out = engine(sb, sim, &resume_args(&run), None);
        assert_eq!(code(&out), 0, "{rb:?}: final resume: {}", stderr(&out));
    }
    assert_eq!(sb.run_status(&run), "succeeded");
    (run, downs)
}

/// Checks a run that was interrupted against the uninterrupted one.
pub(crate) fn assert_same_outcome<P: Procedure>(
    rb: P,
    sb: &Sandbox,
    sim: &Sim,
    run: &str,
    downs: &[Down],
    base: &(Value, Vec<String>),
) {
    let after = summary(&sim.state());
    rb.check_final(&after);
    assert_eq!(after, base.0, "{rb:?}: the final estate equals the uninterrupted one");

    let journal = sim.journal();
    let all = mutations(&journal);
    // Every Microsoft.Sql mutation (instance create/scale/delete, group create/delete,
    // failover, forced failover) exactly once, in the procedure's order: nothing sent twice,
    // no seeding restarted, no create re-sent.
    assert_eq!(
        sql_mutations(&journal),
        base.1
            .iter()
            .filter(|m| m.contains("/Microsoft.Sql/"))
            .cloned()
            .collect::<Vec<_>>(),
        "{rb:?}: Microsoft.Sql mutations, each once and in order"
    );
    // Network writes are convergent PUTs and may be repeated, but in the same order.
    assert_eq!(first_occurrences(&all), base.1, "{rb:?}: the procedure's order");
    for e in &journal {
        assert_eq!(e["applied"], true, "{rb:?}: a mutation was refused: {e}");
    }

    assert_windows(rb, sb, run);
    if !rb.expected_windows().is_empty() && !downs.is_empty() {
        let (opened, closed) = unprotected_ms(sb, run);
        let down: u128 = downs.iter().filter(|d| d.in_window).map(|d| d.ms).sum();
        assert!(
            downs.iter().any(|d| d.in_window),
            "{rb:?}: no kill fell inside the window"
        );
        assert!(
            (closed - opened) as u128 >= down,
            "{rb:?}: window lasted {} ms, the engine was down {down} ms inside it",
            closed - opened
        );
    }
    assert_audit_ok(sb);
}

pub(crate) fn points<P: Procedure>(rb: P, kinds: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for (step, long) in rb.steps() {
        for k in kinds {
            if *k == "after-progress" && !long {
                continue;
            }
            v.push(format!("{k}:{step}"));
        }
    }
    v
}

/// SIGKILL at every step boundary (after-start, before-finish, after-finish) and right
/// after each long operation was saved (after-progress), one kill per process, in order.
pub(crate) fn killed_everywhere<P: Procedure>(rb: P, kinds: &[&str], except: &[&str]) {
    let base = std::thread::spawn(move || baseline(rb));
    let sb = Sandbox::new();
    let sim = start_sim(&rb.estate(), None);
    let mut points = points(rb, kinds);
    points.retain(|p| !except.contains(&p.as_str()));
    let (run, downs) = run_with_kills(&sb, &sim, rb, &points);
    let base = base.join().unwrap();
    assert_same_outcome(rb, &sb, &sim, &run, &downs, &base);
}

pub(crate) const ALL: &[&str] = &["after-start", "after-progress", "before-finish", "after-finish"];

// ------------------------------------------------------------------------------------------
// 1. One end-to-end test per runbook.

#[test]
fn configure_failover_group_end_to_end() {
    end_to_end(Rb::Configure);
}

#[test]
fn change_secondary_region_end_to_end() {
    end_to_end(Rb::ChangeSecondary);
}

#[test]
fn change_primary_region_end_to_end() {
    end_to_end(Rb::ChangePrimary);
}

#[test]
fn change_update_policy_end_to_end() {
    end_to_end(Rb::UpdatePolicy);
}

#[test]
fn scale_up_end_to_end_secondary_first() {
    end_to_end(Rb::ScaleUp);
}

#[test]
fn scale_down_end_to_end_primary_first() {
    end_to_end(Rb::ScaleDown);
}

#[test]
fn failover_end_to_end() {
    end_to_end(Rb::Failover);
}

#[test]
fn force_failover_end_to_end() {
    end_to_end(Rb::ForceFailover);
}

/// The one-way update-policy change without `confirm_one_way`, and a scale with a Next-gen
/// General Purpose side, stop at their first step: not one mutating request.
#[test]
fn refused_runs_send_no_mutation() {
    let sim = start_sim(&demo_estate(), None);
    let before = summary(&sim.state());
    for (rb, set, why) in [
        (Rb::UpdatePolicy, "confirm_one_way=false", "one-way"),
        (Rb::ScaleUp, "next_gen=true", "Next-gen General Purpose"),
    ] {
        let sb = Sandbox::new();
        let mut args = rb.run_args();
        args.extend(["--set".to_owned(), set.to_owned()]);
        let out = engine(&sb, &sim, &args, None);
        assert_eq!(code(&out), 1, "{rb:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{rb:?}: {}", stderr(&out));
        assert_eq!(sb.run_status(&sb.last_run_id()), "failed");
        assert_audit_ok(&sb);
    }
    assert_eq!(sim.journal(), Vec::<Value>::new(), "no mutating request");
    assert_eq!(summary(&sim.state()), before);
}

// ------------------------------------------------------------------------------------------
// 2. Crash-resume: SIGKILL at every step boundary and inside the long operations.

/// Every boundary but `before-finish` of the two network steps: re-attaching to their ten
/// already finished network operations costs a second each (the first poll of a re-attached
/// operation waits 1 s), and the same steps are killed there in both region moves.
#[test]
fn configure_failover_group_killed_everywhere() {
    killed_everywhere(
        Rb::Configure,
        ALL,
        &["before-finish:peer-networks", "before-finish:open-ports"],
    );
}

#[test]
fn change_secondary_region_killed_everywhere() {
    killed_everywhere(Rb::ChangeSecondary, ALL, &[]);
}

#[test]
fn change_primary_region_killed_everywhere() {
    killed_everywhere(Rb::ChangePrimary, ALL, &[]);
}

/// Before-finish on a fresh attempt of each step that changes the estate: the effect
/// happened, its outcome was not recorded; resume must not send it again.
#[test]
fn change_primary_region_killed_after_each_effect_before_its_record() {
    let rb = Rb::ChangePrimary;
    let base = std::thread::spawn(move || baseline(rb));
    let sb = Sandbox::new();
    let sim = start_sim(&rb.estate(), None);
    let effects = [
        "create-new-instance",
        "failover-to-secondary",
        "delete-group",
        "create-group",
        "failover-to-new-primary",
        "delete-old-primary",
    ];
    let points: Vec<String> = effects.iter().map(|s| format!("before-finish:{s}")).collect();
    let (run, downs) = run_with_kills(&sb, &sim, rb, &points);
    let base = base.join().unwrap();
    assert_same_outcome(rb, &sb, &sim, &run, &downs, &base);
}

#[test]
fn change_update_policy_killed_everywhere() {
    killed_everywhere(Rb::UpdatePolicy, ALL, &[]);
}

#[test]
fn scale_up_killed_everywhere() {
    killed_everywhere(Rb::ScaleUp, ALL, &[]);
}

#[test]
fn scale_down_killed_everywhere() {
    killed_everywhere(Rb::ScaleDown, ALL, &[]);
}

#[test]
fn failover_killed_everywhere() {
    killed_everywhere(Rb::Failover, ALL, &[]);
}

#[test]
fn force_failover_killed_everywhere() {
    killed_everywhere(Rb::ForceFailover, ALL, &[]);
}

/// SIGKILL while the (forced) failover operation is in flight: the POST was accepted and its
/// polling URL saved, the poll is held up by the emulator (latency fault), the engine dies.
/// Resume re-attaches to the same operation: one POST in the journal.
fn killed_inside_failover(rb: Rb, step: &str) {
    let base = std::thread::spawn(move || baseline(rb));
    let sb = Sandbox::new();
    let sim = start_sim(&rb.estate(), None);
    let first = engine(&sb, &sim, &rb.run_args(), Some(&format!("after-start:{step}")));
    assert_eq!(first.status.signal(), Some(9), "{}", stderr(&first));
    let run = sb.last_run_id();
    let slow = |op: &str| json!({ "operation": op, "latency_ms": 5000 });
    sim.set_faults(&json!({ "seed": 1, "rules": [slow("AzureAsyncOperation_Get"), slow("OperationResults_Get")] }));
    let mut child = engine_bg(&sb, &sim, &resume_args(&run), "inside");
    wait_until("the failover operation saved", Duration::from_secs(20), || {
        step_progress(&sb, &run, step).is_some_and(|p| p.contains("\"ops\""))
    });
    let posted = sql_mutations(&sim.journal());
    assert!(posted.iter().any(|m| m.starts_with("POST")), "{posted:?}");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    sim.set_faults(&json!({ "rules": [] }));
    let out = engine(&sb, &sim, &resume_args(&run), None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let output: String = sb
        .sql()
        .query_row(
            "SELECT output FROM steps WHERE run_id = ?1 AND step_id = ?2",
            [&run, step],
            |r| r.get(0),
        )
        .unwrap();
    let output: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(
        output["resolved_by"], "operation",
        "re-attached to the saved operation: {output}"
    );
    let base = base.join().unwrap();
    assert_same_outcome(rb, &sb, &sim, &run, &[], &base);
}

#[test]
fn failover_killed_while_the_failover_runs() {
    killed_inside_failover(Rb::Failover, "failover");
}

#[test]
fn force_failover_killed_while_the_forced_failover_runs() {
    killed_inside_failover(Rb::ForceFailover, "force-failover");
}

#[test]
fn change_primary_region_killed_while_failing_over_to_the_new_primary() {
    killed_inside_failover(Rb::ChangePrimary, "failover-to-new-primary");
}

// ------------------------------------------------------------------------------------------
// 3. The emulator restarts mid-run (with --state) while the engine waits on it.

/// Runs `rb` on an emulator at `time_scale` (slow enough that the phase lasts seconds) with a
/// state file; when `phase` holds (the engine waits on a long operation), stops the emulator
/// with `signal` and starts it again on the same port; moves the simulated clock on where the
/// test would otherwise wait.
fn emulator_restart(
    rb: Rb,
    time_scale: u32,
    signal: Signal,
    phase: &str,
    hurry: impl Fn(&Value) -> bool,
    in_flight: impl Fn(&Value) -> bool,
) {
    let base = std::thread::spawn(move || baseline(rb));
    let sb = Sandbox::new();
    let state_file = sb.path("sim-state.json");
    let mut sim = start_sim_scaled(&rb.estate(), Some(&state_file), time_scale);
    let mut args = vec!["-v".to_owned()];
    args.extend(rb.run_args());
    let mut child = engine_bg(&sb, &sim, &args, "restart");
    wait_until(phase, Duration::from_secs(30), || {
        let s = sim.state();
        if in_flight(&s) {
            return true;
        }
        if hurry(&s) {
            sim.advance("5h");
        }
        false
    });
    let journal_before = sim.journal();
    assert!(child.try_wait().unwrap().is_none(), "the engine waits on {phase}");
    sim.stop(signal);
    // The engine meets the emulator's absence (its next poll fails) and retries.
    let retries = || {
        std::fs::read_to_string(sb.path("restart.err"))
            .unwrap()
            .matches("arm.retry_scheduled")
            .count()
    };
    wait_until(
        "the engine to retry against the stopped emulator",
        Duration::from_secs(20),
        || retries() > 0,
    );
    sim.start_again();
    // The operation survived the restart and is still running.
    assert!(
        in_flight(&sim.state()),
        "{phase}: the operation did not survive the restart"
    );
    assert_eq!(sim.journal(), journal_before, "the journal survived the restart");
    sim.advance("5h");
    // Later long operations (seeding after an instance create) move on too.
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        let seeding = sim.state()["world"]["failover_groups"]
            .as_object()
            .unwrap()
            .values()
            .any(|g| g["replication_state"] == "SEEDING");
        let busy = sim.state()["world"]["instances"]
            .as_object()
            .unwrap()
            .values()
            .any(|i| i["provisioning_state"] == "InProgress");
        if seeding || busy {
            sim.advance("5h");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(sb.path("restart.err")).unwrap();
    assert_eq!(status.code(), Some(0), "{rb:?}: {err}");
    let run = sb.last_run_id();
    assert_eq!(sb.run_status(&run), "succeeded");
    let base = base.join().unwrap();
    assert_same_outcome(rb, &sb, &sim, &run, &[], &base);
}

fn seeding(s: &Value) -> bool {
    s["world"]["failover_groups"]["fog-demo"]["replication_state"] == "SEEDING"
}

fn creating_c(s: &Value) -> bool {
    s["world"]["instances"]
        .as_object()
        .unwrap()
        .values()
        .any(|i| i["name"] == "mi-fog-c" && i["provisioning_state"] == "InProgress")
}

#[test]
fn change_secondary_region_survives_an_emulator_sigkill_during_seeding() {
    emulator_restart(
        Rb::ChangeSecondary,
        3600,
        Signal::SIGKILL,
        "seeding of A-C",
        creating_c,
        |s| creating_done(s) && seeding(s),
    );
}

fn creating_done(s: &Value) -> bool {
    s["world"]["instances"]
        .as_object()
        .unwrap()
        .values()
        .any(|i| i["name"] == "mi-fog-c" && i["provisioning_state"] == "Succeeded")
}

#[test]
fn change_primary_region_survives_an_emulator_sigterm_during_instance_create() {
    emulator_restart(
        Rb::ChangePrimary,
        3600,
        Signal::SIGTERM,
        "the create of C",
        |_| false,
        creating_c,
    );
}

#[test]
fn configure_failover_group_survives_an_emulator_sigkill_during_seeding() {
    emulator_restart(
        Rb::Configure,
        600,
        Signal::SIGKILL,
        "seeding of A-B",
        |_| false,
        seeding,
    );
}
