//! Test helpers: start the emulator on 127.0.0.1:0 and talk raw HTTP to it.

use std::path::PathBuf;

use fogbook_sim::{Estate, SimConfig, SimHandle};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub(crate) const DEMO: &str = include_str!("../../../examples/estate.yaml");
pub(crate) const SUB: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";
pub(crate) const SQL: &str = "api-version=2025-01-01";
pub(crate) const NET: &str = "api-version=2025-07-01";

pub(crate) fn rg_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}

pub(crate) fn mi_id(rg: &str, name: &str) -> String {
    format!("{}/providers/Microsoft.Sql/managedInstances/{name}", rg_path(rg))
}

pub(crate) fn fog_path(rg: &str, location: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Sql/locations/{location}/instanceFailoverGroups/{name}",
        rg_path(rg)
    )
}

pub(crate) fn vnet_id(rg: &str, name: &str) -> String {
    format!("{}/providers/Microsoft.Network/virtualNetworks/{name}", rg_path(rg))
}

pub(crate) fn nsg_id(rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/networkSecurityGroups/{name}",
        rg_path(rg)
    )
}

pub(crate) const EAST: &str = "rg-sql-eastus";
pub(crate) const WEST: &str = "rg-sql-westus";
pub(crate) const NORTH: &str = "rg-sql-northeurope";

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts an ARM error with this status and code.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert!(
            self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message in {}",
            self.body
        );
    }
}

pub(crate) struct Sim {
    pub(crate) handle: SimHandle,
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
}

impl Sim {
    pub(crate) async fn demo() -> Sim {
        Sim::start(config(DEMO)).await
    }

    pub(crate) async fn start(config: SimConfig) -> Sim {
        let handle = fogbook_sim::start(config).await.expect("start emulator");
        let base = handle.base_url();
        let client = reqwest::Client::builder().build().expect("client");
        Sim { handle, client, base }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.try_send(method, path, body).await.expect("request completes")
    }

    pub(crate) async fn try_send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Result<Reply> {
        let mut request = self.client.request(method, self.url(path)).bearer_auth("test-token");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        Ok(Reply { status, headers, body })
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    pub(crate) async fn post(&self, path: &str) -> Reply {
        self.send(Method::POST, path, None).await
    }

    pub(crate) async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        assert!(response.status().is_success(), "admin {path}: {}", response.status());
        let bytes = response.bytes().await.expect("admin body");
        if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("admin json")
        }
    }

    pub(crate) async fn advance(&self, duration: &str) -> Value {
        self.admin(
            Method::POST,
            "/_sim/clock/advance",
            Some(json!({ "duration": duration })),
        )
        .await
    }

    pub(crate) async fn advance_secs(&self, seconds: f64) -> Value {
        self.admin(Method::POST, "/_sim/clock/advance", Some(json!({ "seconds": seconds })))
            .await
    }

    pub(crate) async fn journal(&self) -> Vec<Value> {
        let journal = self.admin(Method::GET, "/_sim/journal", None).await;
        journal["entries"].as_array().cloned().unwrap_or_default()
    }

    pub(crate) async fn state(&self) -> Value {
        self.admin(Method::GET, "/_sim/state", None).await
    }

    /// Polls the `Azure-AsyncOperation` URL of an accepted request, advancing the simulated
    /// clock by exactly `Retry-After` real seconds (times the scale) between polls, until the
    /// operation is terminal. Returns the final status resource and the number of polls.
    pub(crate) async fn wait(&self, accepted: &Reply, time_scale: f64) -> (Value, u32) {
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "not accepted: {}", accepted.body);
        let url = accepted
            .header("azure-asyncoperation")
            .expect("Azure-AsyncOperation header");
        let mut polls = 0;
        loop {
            let status = self.get(&url).await;
            polls += 1;
            assert_eq!(status.status, StatusCode::OK);
            let state = status.body["status"].as_str().expect("status").to_owned();
            if state != "InProgress" {
                return (status.body, polls);
            }
            let retry: f64 = status
                .header("retry-after")
                .expect("Retry-After while running")
                .parse()
                .expect("integer");
            assert!(retry >= 1.0);
            assert!(polls < 1000, "operation never finished");
            self.advance_secs(retry * time_scale).await;
        }
    }

    /// Advances the clock a long way and checks that the operation succeeded.
    pub(crate) async fn finish(&self, accepted: &Reply) -> Value {
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "not accepted: {}", accepted.body);
        self.advance("30d").await;
        let url = accepted
            .header("azure-asyncoperation")
            .expect("Azure-AsyncOperation header");
        let status = self.get(&url).await;
        assert_eq!(status.body["status"], "Succeeded", "{}", status.body);
        status.body
    }
}

pub(crate) fn config(estate: &str) -> SimConfig {
    SimConfig::new(Estate::from_yaml_str(estate).expect("estate"))
}

pub(crate) fn sql(path: &str) -> String {
    format!("{path}?{SQL}")
}

pub(crate) fn net(path: &str) -> String {
    format!("{path}?{NET}")
}

/// The PUT body that creates an instance like B (same size) in northeurope.
pub(crate) fn instance_c_body(dns_partner: Option<&str>) -> Value {
    let mut props = json!({
        "administratorLogin": "sqladmin",
        "administratorLoginPassword": "S3cret!pass",
        "subnetId": format!("{}/subnets/snet-mi", vnet_id(NORTH, "vnet-sql-northeurope")),
        "licenseType": "LicenseIncluded",
        "vCores": 8,
        "storageSizeInGB": 512,
        "databaseFormat": "SQLServer2022"
    });
    if let Some(partner) = dns_partner {
        props["dnsZonePartner"] = json!(partner);
    }
    json!({
        "location": "northeurope",
        "sku": {"name": "GP_Gen5", "tier": "GeneralPurpose", "family": "Gen5", "capacity": 8},
        "properties": props
    })
}

/// A group PUT body.
pub(crate) fn group_body(primary: &str, partner: &str, partner_region: &str) -> Value {
    json!({"properties": {
        "readWriteEndpoint": {"failoverPolicy": "Manual"},
        "readOnlyEndpoint": {"failoverPolicy": "Disabled"},
        "partnerRegions": [{"location": partner_region}],
        "managedInstancePairs": [{"primaryManagedInstanceId": primary, "partnerManagedInstanceId": partner}],
        "secondaryType": "Geo"
    }})
}

/// Opens northeurope for geo-replication with westus: peerings both ways and NSG rules.
pub(crate) async fn connect_north_to_west(sim: &Sim) {
    let west = vnet_id(WEST, "vnet-sql-westus");
    let north = vnet_id(NORTH, "vnet-sql-northeurope");
    let r = sim
        .put(
            &net(&format!("{west}/virtualNetworkPeerings/westus-to-northeurope")),
            json!({"properties": {"allowVirtualNetworkAccess": true, "remoteVirtualNetwork": {"id": north}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = sim
        .put(
            &net(&format!("{north}/virtualNetworkPeerings/northeurope-to-westus")),
            json!({"properties": {"allowVirtualNetworkAccess": true, "remoteVirtualNetwork": {"id": west}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    open_geo_ports(sim, NORTH, "nsg-mi-northeurope").await;
}

/// Adds the four geo-replication rules to an NSG.
pub(crate) async fn open_geo_ports(sim: &Sim, rg: &str, nsg: &str) {
    let id = nsg_id(rg, nsg);
    for (name, priority, direction) in [
        ("allow_geodr_inbound", 1200, "Inbound"),
        ("allow_geodr_outbound", 1200, "Outbound"),
    ] {
        let r = sim
            .put(
                &net(&format!("{id}/securityRules/{name}")),
                json!({"properties": {
                    "protocol": "Tcp", "access": "Allow", "priority": priority, "direction": direction,
                    "sourcePortRange": "*", "sourceAddressPrefix": "VirtualNetwork",
                    "destinationAddressPrefix": "VirtualNetwork",
                    "destinationPortRanges": ["5022", "11000-11999"]
                }}),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    }
}

pub(crate) fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
