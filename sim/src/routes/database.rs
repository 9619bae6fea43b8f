//! Writes to managed databases: `ManagedDatabases_Delete`.
//!
//! A database that is part of a failover group (on either member) cannot be deleted: the
//! group must be deleted first. Deleting a database that does not exist answers 204, as
//! Azure does. The delete is applied when accepted (202 with an operation that is already
//! over): the runbooks that re-create a group empty the former secondary this way, and the
//! journal counts each DELETE as one operation.

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
    let (location, id) = (inst.location.clone(), format!("{}/databases/{}", inst.id, db.name));
    if let Some(inst) = ctx.world_mut().instances.get_mut(&key) {
        inst.databases.retain(|d| !d.name.eq_ignore_ascii_case(name));
    }
    // Azure answers 202 with an operation to follow; the emulator's is over at once (like its
    // network writes), so the client's first poll finds it Succeeded, and the journal counts
    // the delete as one operation.
    let url = ctx.network_done(sub, &location, &id);
    let mut response = ArmResponse::empty(StatusCode::ACCEPTED)
        .with_header("retry-after", "1".to_owned())
        .with_header("retry-after-ms", "50".to_owned());
    response.operation_id = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .map(str::to_owned);
    Ok(response.with_header("azure-asyncoperation", url))
}
