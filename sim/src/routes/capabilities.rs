//! `Capabilities_ListByLocation`: what a location offers for managed instances, in the shape
//! `az sql mi create` and `az sql mi update` read to turn `--edition` and `--family` into a sku.
//!
//! The emulator offers the same everywhere: General Purpose and Business Critical on Gen5,
//! premium-series (G8IM) and memory-optimized premium-series (G8IH), the vCores and storage it
//! accepts (`sql.rs`), and the three update policies. Values Azure varies per region (zone
//! redundancy, instance pools, maintenance configurations) are reported as unsupported.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::context::Ctx;
use super::response::ArmResponse;
use super::sql::VCORES;
use crate::arm_error::ArmError;
use crate::regions;

/// `(tier, family, sku)`, as `sql.rs` accepts them.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("GeneralPurpose", "Gen5", "GP_Gen5"),
    ("GeneralPurpose", "G8IM", "GP_G8IM"),
    ("GeneralPurpose", "G8IH", "GP_G8IH"),
    ("BusinessCritical", "Gen5", "BC_Gen5"),
    ("BusinessCritical", "G8IM", "BC_G8IM"),
    ("BusinessCritical", "G8IH", "BC_G8IH"),
];

fn size(limit: u32) -> Value {
    json!({"limit": limit, "unit": "Gigabytes"})
}

fn family(name: &str, sku: &str) -> Value {
    let vcores: Vec<Value> = VCORES
        .iter()
        .map(|v| {
            json!({
                "name": format!("VCore{v}"),
                "value": v,
                "includedMaxSize": size(32),
                "supportedStorageSizes": [{
                    "minValue": size(32), "maxValue": size(32768), "scaleSize": size(32), "status": "Available"
                }],
                "instancePoolSupported": false,
                "standaloneSupported": true,
                "supportedMaintenanceConfigurations": [],
                "status": "Available"
            })
        })
        .collect();
    json!({
        "name": name,
        "sku": sku,
        "supportedLicenseTypes": [{"name": "LicenseIncluded"}, {"name": "BasePrice"}],
        "supportedVcoresValues": vcores,
        "zoneRedundant": false,
        "status": "Available"
    })
}

fn edition(tier: &str) -> Value {
    let families: Vec<Value> = FAMILIES
        .iter()
        .filter(|(t, _, _)| *t == tier)
        .map(|(_, f, sku)| family(f, sku))
        .collect();
    json!({
        "name": tier,
        "supportedFamilies": families,
        "supportedStorageCapabilities": [
            {"storageAccountType": "GRS", "status": "Default"},
            {"storageAccountType": "LRS", "status": "Available"},
            {"storageAccountType": "ZRS", "status": "Available"},
            {"storageAccountType": "GZRS", "status": "Available"}
        ],
        "status": if tier == "GeneralPurpose" { "Default" } else { "Available" }
    })
}

/// The capabilities of `location`. `?include=` narrows Azure's answer; the emulator always
/// answers with the managed-instance part, which is all it has.
pub(crate) fn location(_ctx: &Ctx<'_>, _sub: &str, location: &str) -> Result<ArmResponse, ArmError> {
    let body = json!({
        "name": regions::display(location),
        "supportedServerVersions": [],
        "supportedManagedInstanceVersions": [{
            "name": "12.0",
            "supportedEditions": [edition("GeneralPurpose"), edition("BusinessCritical")],
            "supportedInstancePoolEditions": [],
            "status": "Default"
        }],
        "status": "Available"
    });
    ArmResponse::json(StatusCode::OK, &body)
}
