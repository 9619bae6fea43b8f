//! Microsoft.Sql: managed instances, managed databases and instance failover groups, one
//! module per resource type; this module holds the names and checks they share.

mod databases;
mod groups;
mod instances;

pub(crate) use databases::{delete_database, get_database, instance_metrics, list_databases, put_database};
pub(crate) use groups::{delete_group, failover_group, get_group, list_groups, put_group};
pub(crate) use instances::{
    delete_instance, get_instance, list_all_instances, list_instances, patch_instance, put_instance,
};

use axum::http::StatusCode;

use super::context::Ctx;
use crate::arm_error::ArmError;
use crate::ids;
use crate::rules;

const INSTANCE_TYPE: &str = "Microsoft.Sql/managedInstances";
const GROUP_TYPE: &str = "Microsoft.Sql/locations/instanceFailoverGroups";
const SKUS: &[&str] = &["GP_Gen5", "GP_G8IM", "GP_G8IH", "BC_Gen5", "BC_G8IM", "BC_G8IH"];
pub(crate) const VCORES: &[u32] = &[4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 56, 64, 80, 96, 128];

fn instance_key(sub: &str, rg: &str, name: &str) -> String {
    ids::key(&ids::instance(sub, rg, name))
}

fn require_rg(ctx: &Ctx<'_>, sub: &str, rg: &str) -> Result<(), ArmError> {
    if ctx.world().has_resource_group(sub, rg) {
        Ok(())
    } else {
        Err(ArmError::resource_group_not_found(rg))
    }
}

/// An invalid vCores value: the spec's `ManagedInstances_CreateOrUpdate` and `_Update` list
/// `InvalidVcoreValue` with status 405.
fn check_vcores(v: u32) -> Result<(), ArmError> {
    if VCORES.contains(&v) {
        Ok(())
    } else {
        Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidVcoreValue",
            format!("vCore value {v} is not valid. Please specify a valid vCore value: one of {VCORES:?}."),
        ))
    }
}

/// An invalid storage size: the spec lists `InvalidStorageSizeValue` with status 405.
fn check_storage(gb: u32) -> Result<(), ArmError> {
    if (32..=32768).contains(&gb) && gb.is_multiple_of(32) {
        Ok(())
    } else {
        Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidStorageSizeValue",
            format!(
                "Invalid storage size: {gb} GB. Storage size must be specified between 32 and 32768 gigabytes, in increments of 32 GB."
            ),
        ))
    }
}

fn canonical_sku(name: &str) -> Result<&'static str, ArmError> {
    SKUS.iter()
        .copied()
        .find(|s| s.eq_ignore_ascii_case(name))
        .ok_or_else(|| ArmError::invalid_parameter(format!("SKU name '{name}' is not one of {SKUS:?}.")))
}

fn canonical_format(text: &str) -> Result<&'static str, ArmError> {
    rules::canonical_format(text)
        .ok_or_else(|| ArmError::invalid_parameter(format!("databaseFormat '{text}' is not a known update policy.")))
}

fn conflicting(ctx: &Ctx<'_>, key: &str, name: &str) -> Result<(), ArmError> {
    if let Some(op) = ctx.world().running_operation_on(key) {
        return Err(ArmError::conflict(
            "ConflictingManagedInstanceOperation",
            format!(
                "An operation ({}) is in progress on managed instance '{name}'; wait for it to finish.",
                op.id
            ),
        ));
    }
    Ok(())
}
