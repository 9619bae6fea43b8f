//! Contract tests against the Azure REST API specifications: every error code the emulator can
//! answer is in the per-operation error map (`contract/error-codes.txt`) with a citation (a spec
//! file and operationId, ARM's own, or a public page where Azure answers it), and every response
//! of the operations served has the spec's required fields and enum values.
//!
//! The schema facts here are transcribed by hand; `sdk.rs` checks the same responses against
//! Azure's own client models. `scripts/refresh-spec` checks the map's spec citations against a
//! local spec clone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

const ERROR_CODES: &str = include_str!("contract/error-codes.txt");

/// One line of the error map: the emulator answers `status` `code` for `operations` (`*`: any),
/// on the authority of `source`.
pub(crate) struct ErrorLine {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) source: String,
    pub(crate) operations: Vec<String>,
    pub(crate) url: Option<String>,
}

/// The lines of the error map, or what is wrong with one (with its line number).
pub(crate) fn error_map() -> Result<Vec<ErrorLine>, String> {
    let mut lines = Vec::new();
    for (n, line) in ERROR_CODES.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [status, code, source, operations, rest @ ..] = fields.as_slice() else {
            return Err(format!(
                "line {}: want STATUS CODE SOURCE OPERATIONS [URL]: {line}",
                n + 1
            ));
        };
        let status = status
            .parse::<u16>()
            .ok()
            .filter(|s| (400..600).contains(s))
            .ok_or_else(|| format!("line {}: `{status}` is not an error status", n + 1))?;
        let url = match rest {
            [] => None,
            [url] => Some((*url).to_owned()),
            _ => return Err(format!("line {}: more than one URL: {line}", n + 1)),
        };
        lines.push(ErrorLine {
            status,
            code: (*code).to_owned(),
            source: (*source).to_owned(),
            operations: operations.split(',').map(str::to_owned).collect(),
            url,
        });
    }
    Ok(lines)
}

/// Whether the map lists `status` `code` for `operation`.
pub(crate) fn listed(map: &[ErrorLine], operation: &str, status: u16, code: &str) -> bool {
    map.iter()
        .any(|l| l.status == status && l.code == code && l.operations.iter().any(|o| o == "*" || o == operation))
}

/// Every code the file accounts for.
fn accounted() -> BTreeSet<String> {
    error_map().expect("error map").into_iter().map(|l| l.code).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read sim/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_code(text: &str) -> bool {
    text.len() > 3
        && text.starts_with(|c: char| c.is_ascii_uppercase())
        && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The first string literal after each `marker` (within a short window, so that a call spread
/// over several lines is seen), when it looks like an error code; with `whole_statement`, every
/// such literal up to the end of the statement (`let code = if … { "A" } else { "B" };`).
fn codes_after(source: &str, marker: &str, whole_statement: bool, out: &mut BTreeSet<String>) {
    for (at, _) in source.match_indices(marker) {
        let window = &source[at + marker.len()..];
        let window = &window[..window.len().min(400)];
        let window = if whole_statement {
            window.split(';').next().unwrap_or_default()
        } else {
            window
        };
        // Literals are the odd pieces between quotes; in a whole statement only the values of
        // its blocks count (`{ "A" }`), not literals in its conditions.
        let pieces: Vec<&str> = window.split('"').collect();
        let literals = (1..pieces.len())
            .step_by(2)
            .filter(|&i| !whole_statement || pieces[i - 1].trim_end().ends_with('{'))
            .map(|i| pieces[i]);
        for literal in literals.take(if whole_statement { usize::MAX } else { 1 }) {
            if is_code(literal) {
                out.insert(literal.to_owned());
            }
        }
    }
}

/// The error codes written in the emulator's ARM code (the admin API under `/_sim/` is not ARM).
fn emulator_codes() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut codes = BTreeSet::new();
    for file in files.iter().filter(|f| !f.ends_with("admin.rs")) {
        let source = std::fs::read_to_string(file).expect("read source");
        for marker in [
            "bad_request(",
            "conflict(",
            "invalid_group(",
            "ArmError::new(",
            "unauthorized(",
            "code: ",
            "StatusCode::TOO_MANY_REQUESTS,",
            "StatusCode::BAD_GATEWAY,",
            "StatusCode::SERVICE_UNAVAILABLE,",
            "StatusCode::GATEWAY_TIMEOUT,",
            "StatusCode::INTERNAL_SERVER_ERROR,",
        ] {
            codes_after(&source, marker, false, &mut codes);
        }
        codes_after(&source, "let code = if", true, &mut codes);
    }
    codes
}

#[test]
fn every_error_code_the_emulator_answers_is_accounted_for() {
    let codes = emulator_codes();
    // The scan must see the codes of every family, or it proves nothing.
    for sample in [
        "InstanceFailoverGroupAlreadyExists",
        "ManagedInstanceUpdateSloFromVersionlessToVersionedNotAllowed",
        "NetcfgSubnetRangesOverlap",
        "SubscriptionRequestsThrottled",
        "PlannedFailoverTimedOut",
        "BadGateway",
    ] {
        assert!(codes.contains(sample), "the scan missed {sample}: {codes:?}");
    }
    let known = accounted();
    let unaccounted: Vec<_> = codes.difference(&known).collect();
    assert!(
        unaccounted.is_empty(),
        "codes neither in a spec list nor accounted for in contract/error-codes.txt: {unaccounted:?}"
    );
}

#[test]
fn every_line_of_the_error_map_is_well_formed() {
    let map = error_map().unwrap_or_else(|e| panic!("contract/error-codes.txt: {e}"));
    assert!(map.len() > 50, "the map lost its lines: {}", map.len());
    let spec_files = [
        "InstanceFailoverGroups.json",
        "ManagedInstances.json",
        "ManagedDatabases.json",
    ];
    for line in &map {
        let what = format!("{} {} {}", line.status, line.code, line.source);
        let operation_ok = |op: &str| {
            op.split_once('_').is_some_and(|(group, name)| {
                !group.is_empty() && !name.is_empty() && group.chars().all(char::is_alphanumeric)
            })
        };
        match line.source.split_once(':') {
            Some(("spec", cited)) => {
                let (file, borrowed) = cited.split_once('#').map_or((cited, None), |(f, o)| (f, Some(o)));
                assert!(spec_files.contains(&file), "{what}: cites an unknown spec file {file}");
                // A spec citation names operations of that file (or borrows one of it).
                let group = file.trim_end_matches(".json");
                let owner = borrowed.unwrap_or(&line.operations[0]);
                assert!(
                    owner.starts_with(&format!("{group}_")),
                    "{what}: {owner} is not an operation of {file}"
                );
                if borrowed.is_none() {
                    for op in &line.operations {
                        assert!(
                            op.starts_with(&format!("{group}_")),
                            "{what}: {op} is not an operation of {file}"
                        );
                    }
                }
                assert!(line.url.is_none(), "{what}: a spec line takes no URL");
            }
            None if line.source == "arm" => {
                assert_eq!(line.operations, ["*"], "{what}: ARM's codes apply to every operation")
            }
            None if line.source == "observed" => {
                let url = line.url.as_deref().unwrap_or_default();
                assert!(
                    url.starts_with("https://"),
                    "{what}: an observed code cites a public page"
                );
            }
            None if line.source == "unsourced" || line.source == "emulator" => {}
            _ => panic!("{what}: unknown source"),
        }
        if line.source != "arm" {
            for op in &line.operations {
                assert!(operation_ok(op), "{what}: `{op}` is not an operationId");
            }
        }
    }
}

/// One fact of a definition: at `path` (dot-separated, `[]` for every element of an array)
/// the value is required, or one of an enum's values.
enum Fact {
    Required(&'static str),
    OneOf(&'static str, &'static [&'static str]),
}

use Fact::{OneOf, Required};

const PROVISIONING_NET: &[&str] = &["Succeeded", "Updating", "Deleting", "Failed"];
const RULE: &[Fact] = &[
    Required("properties.protocol"),
    Required("properties.access"),
    Required("properties.direction"),
    OneOf("properties.protocol", &["Tcp", "Udp", "Icmp", "Esp", "*", "Ah"]),
    OneOf("properties.access", &["Allow", "Deny"]),
    OneOf("properties.direction", &["Inbound", "Outbound"]),
    OneOf("properties.provisioningState", PROVISIONING_NET),
];

/// Facts of the spec's definitions (Microsoft.Sql 2025-01-01 `ManagedInstance`,
/// `InstanceFailoverGroup`, `ManagedDatabase`, `LocationCapabilities`; Microsoft.Network
/// `VirtualNetwork`, `Subnet`, `VirtualNetworkPeering`, `NetworkSecurityGroup`, `SecurityRule`).
const INSTANCE: &[Fact] = &[
    Required("id"),
    Required("name"),
    Required("type"),
    Required("location"),
    Required("sku.name"),
    OneOf(
        "properties.provisioningState",
        &["Created", "InProgress", "Succeeded", "Failed", "Canceled"],
    ),
    OneOf("properties.licenseType", &["LicenseIncluded", "BasePrice"]),
    OneOf("properties.proxyOverride", &["Proxy", "Redirect", "Default"]),
    OneOf(
        "properties.databaseFormat",
        &["AlwaysUpToDate", "SQLServer2022", "SQLServer2025"],
    ),
    OneOf(
        "properties.currentBackupStorageRedundancy",
        &["Geo", "Local", "Zone", "GeoZone"],
    ),
    OneOf(
        "properties.requestedBackupStorageRedundancy",
        &["Geo", "Local", "Zone", "GeoZone"],
    ),
];
const GROUP: &[Fact] = &[
    Required("id"),
    Required("name"),
    Required("type"),
    Required("properties.readWriteEndpoint"),
    Required("properties.readWriteEndpoint.failoverPolicy"),
    Required("properties.partnerRegions"),
    Required("properties.managedInstancePairs"),
    OneOf("properties.readWriteEndpoint.failoverPolicy", &["Manual", "Automatic"]),
    OneOf("properties.readOnlyEndpoint.failoverPolicy", &["Disabled", "Enabled"]),
    OneOf("properties.replicationRole", &["Primary", "Secondary"]),
    OneOf("properties.partnerRegions[].replicationRole", &["Primary", "Secondary"]),
    OneOf("properties.secondaryType", &["Geo", "Standby"]),
];
const DATABASE: &[Fact] = &[
    Required("id"),
    Required("name"),
    Required("type"),
    Required("location"),
    OneOf(
        "properties.status",
        &[
            "Online",
            "Offline",
            "Shutdown",
            "Creating",
            "Inaccessible",
            "Restoring",
            "Updating",
            "Stopping",
            "Stopped",
            "Starting",
            "DbMoving",
            "DbCopying",
        ],
    ),
];
const VNET: &[Fact] = &[
    Required("id"),
    Required("location"),
    OneOf("properties.provisioningState", PROVISIONING_NET),
    OneOf("properties.subnets[].properties.provisioningState", PROVISIONING_NET),
    OneOf(
        "properties.virtualNetworkPeerings[].properties.peeringState",
        &["Initiated", "Connected", "Disconnected"],
    ),
    OneOf(
        "properties.virtualNetworkPeerings[].properties.peeringSyncLevel",
        &[
            "FullyInSync",
            "RemoteNotInSync",
            "LocalNotInSync",
            "LocalAndRemoteNotInSync",
        ],
    ),
];
const NSG: &[Fact] = &[
    Required("id"),
    Required("location"),
    OneOf("properties.provisioningState", PROVISIONING_NET),
    Required("properties.securityRules[].properties.protocol"),
    Required("properties.securityRules[].properties.access"),
    Required("properties.securityRules[].properties.direction"),
    Required("properties.defaultSecurityRules[].properties.protocol"),
    Required("properties.defaultSecurityRules[].properties.access"),
    Required("properties.defaultSecurityRules[].properties.direction"),
    OneOf(
        "properties.defaultSecurityRules[].properties.access",
        &["Allow", "Deny"],
    ),
    OneOf(
        "properties.defaultSecurityRules[].properties.direction",
        &["Inbound", "Outbound"],
    ),
];
const CAPABILITIES: &[Fact] = &[
    Required("name"),
    OneOf("status", &["Visible", "Available", "Default", "Disabled"]),
    Required("supportedManagedInstanceVersions[].supportedEditions[].supportedFamilies[].sku"),
    OneOf(
        "supportedManagedInstanceVersions[].supportedEditions[].status",
        &["Visible", "Available", "Default", "Disabled"],
    ),
];
const OPERATION: &[Fact] = &[OneOf("status", &["InProgress", "Succeeded", "Failed", "Canceled"])];

/// Every value at `path` (arrays fan out at `[]`); a missing step yields nothing.
fn values_at<'v>(value: &'v Value, path: &str) -> Vec<Option<&'v Value>> {
    let mut current: Vec<Option<&Value>> = vec![Some(value)];
    for step in path.split('.') {
        let (key, each) = match step.strip_suffix("[]") {
            Some(key) => (key, true),
            None => (step, false),
        };
        let mut next = Vec::new();
        for v in current {
            let field = v.and_then(|v| v.get(key));
            if each {
                next.extend(field.and_then(Value::as_array).into_iter().flatten().map(Some));
            } else {
                next.push(field);
            }
        }
        current = next;
    }
    current
}

/// The facts `body` breaks, one line each.
fn violations(what: &str, body: &Value, facts: &[Fact]) -> Vec<String> {
    let mut out = Vec::new();
    for fact in facts {
        match fact {
            Required(path) => {
                for v in values_at(body, path) {
                    if v.is_none_or(Value::is_null) {
                        out.push(format!("{what}: `{path}` is required"));
                    }
                }
            }
            OneOf(path, allowed) => {
                for v in values_at(body, path).into_iter().flatten() {
                    if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
                        out.push(format!("{what}: `{path}` = {v} is not one of {allowed:?}"));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_schema_check_catches_a_missing_field_and_a_wrong_enum() {
    let body = serde_json::json!({"id": "x", "name": "g", "type": "t", "properties": {
        "readWriteEndpoint": {"failoverPolicy": "Sometimes"},
        "partnerRegions": [{"replicationRole": "Tertiary"}]
    }});
    let found = violations("group", &body, GROUP);
    assert_eq!(found.len(), 3, "{found:#?}");
}

#[tokio::test]
async fn every_response_of_the_operations_served_has_the_spec_fields() {
    let sim = Sim::demo().await;
    let a = mi_id(EAST, "mi-fog-a");
    let vnet = vnet_id(EAST, "vnet-sql-eastus");
    let nsg = nsg_id(EAST, "nsg-mi-eastus");
    let mut bad = Vec::new();
    let mut check = |what: &str, body: &Value, facts: &[Fact]| bad.extend(violations(what, body, facts));
    let each = |reply: &Reply| reply.body["value"].as_array().cloned().unwrap_or_default();

    check("instance", &sim.get(&sql(&a)).await.body, INSTANCE);
    let all = sim
        .get(&sql(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Sql/managedInstances"
        )))
        .await;
    assert!(!each(&all).is_empty());
    for i in each(&all) {
        check("instance in list", &i, INSTANCE);
    }
    let dbs = sim.get(&sql(&format!("{a}/databases"))).await;
    for d in each(&dbs) {
        check("database", &d, DATABASE);
    }
    for (rg, location) in [(EAST, "eastus"), (WEST, "westus")] {
        check(
            "group view",
            &sim.get(&sql(&fog_path(rg, location, "fog-demo"))).await.body,
            GROUP,
        );
    }
    check("vnet", &sim.get(&net(&vnet)).await.body, VNET);
    let vnets = sim
        .get(&net(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks"
        )))
        .await;
    for v in each(&vnets) {
        check("vnet in list", &v, VNET);
    }
    check("nsg", &sim.get(&net(&nsg)).await.body, NSG);
    for r in each(&sim.get(&net(&format!("{nsg}/securityRules"))).await) {
        check("security rule", &r, RULE);
    }
    check(
        "capabilities",
        &sim.get(&sql(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Sql/locations/eastus/capabilities"
        )))
        .await
        .body,
        CAPABILITIES,
    );
    // A long-running operation's status resource, while running and when done.
    let scale = sim
        .patch(&sql(&a), serde_json::json!({"properties": {"vCores": 16}}))
        .await;
    let status_url = scale.header("azure-asyncoperation").expect("Azure-AsyncOperation");
    check("operation", &sim.get(&status_url).await.body, OPERATION);
    sim.advance("2h").await;
    check("operation", &sim.get(&status_url).await.body, OPERATION);
    assert!(bad.is_empty(), "{bad:#?}");
}
