//! Writes to managed databases: `ManagedDatabases_Delete`.
//!
//! A database that is part of a failover group (on either member) cannot be deleted: the
//! group must be deleted first. Deleting a database that does not exist answers 204, as
//! Azure does. The delete is applied when accepted (200): the runbooks that re-create a
//! group empty the former secondary this way, and the journal counts each DELETE.

use axum::http::StatusCode;

use super::context::Ctx;
use super::response::ArmResponse;
use crate::arm_error::ArmError;
use crate::ids;

/// `DELETE .../managedInstances/{instance}/databases/{name}`.
pub(crate) fn delete_database(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    instance: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let key = ids::key(&ids::instance(sub, rg, instance));
    let inst = ctx
        .world()
        .instances
        .get(&key)
        .ok_or_else(|| ArmError::not_found("Microsoft.Sql/managedInstances", instance, rg))?;
    let Some(db) = inst.databases.iter().find(|d| d.name.eq_ignore_ascii_case(name)) else {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    };
    if let Some(group) = &db.failover_group {
        return Err(ArmError::bad_request(
            "OperationNotAllowedInCurrentGeodrConfiguration",
            format!(
                "Database '{}' on managed instance '{}' is part of failover group '{group}'; delete the failover group first.",
                db.name, inst.name
            ),
        ));
    }
    if let Some(inst) = ctx.world_mut().instances.get_mut(&key) {
        inst.databases.retain(|d| !d.name.eq_ignore_ascii_case(name));
    }
    Ok(ArmResponse::empty(StatusCode::OK))
}
