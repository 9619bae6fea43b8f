//! Managed databases: GET, list, PUT and DELETE, and the instance metrics their sizes make.

use axum::http::StatusCode;

use super::{INSTANCE_TYPE, instance_key};
use crate::arm_error::ArmError;
use crate::ids;
use crate::lro::{OpKind, PollKind};
use crate::routes::context::{Ctx, NewOp, parse_body};
use crate::routes::render;
use crate::routes::response::ArmResponse;
use crate::wire::{List, ManagedDatabaseIn};
use crate::world::Instance;

pub(crate) fn list_databases(ctx: &Ctx<'_>, sub: &str, rg: &str, instance: &str) -> Result<ArmResponse, ArmError> {
    let inst = ctx
        .world()
        .instances
        .get(&instance_key(sub, rg, instance))
        .ok_or_else(|| ArmError::not_found(INSTANCE_TYPE, instance, rg))?;
    let value = inst
        .databases
        .iter()
        .map(|db| render::database(ctx.world(), inst, db))
        .collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

/// `Metrics_List` of an instance: `storage_space_used_mb` (Azure Monitor's "Storage space
/// used"), the sum of its databases' sizes, as one hourly average at the current time. Other
/// metric names are not served (the series is the same whatever `metricnames` asks).
pub(crate) fn instance_metrics(ctx: &Ctx<'_>, sub: &str, rg: &str, instance: &str) -> Result<ArmResponse, ArmError> {
    let inst = ctx
        .world()
        .instances
        .get(&instance_key(sub, rg, instance))
        .ok_or_else(|| ArmError::not_found(INSTANCE_TYPE, instance, rg))?;
    let used_mb: f64 = inst.databases.iter().map(|d| d.size_gb * 1024.0).sum();
    let now = ctx.now.rfc3339(ctx.world().epoch);
    let body = serde_json::json!({
        "cost": 0,
        "timespan": format!("{now}/{now}"),
        "interval": "PT1H",
        "namespace": "Microsoft.Sql/managedInstances",
        "resourceregion": inst.location,
        "value": [{
            "id": format!("{}/providers/Microsoft.Insights/metrics/storage_space_used_mb", inst.id),
            "type": "Microsoft.Insights/metrics",
            "name": { "value": "storage_space_used_mb", "localizedValue": "Storage space used" },
            "unit": "Count",
            "timeseries": [{ "metadatavalues": [], "data": [{ "timeStamp": now, "average": used_mb }] }],
            "errorCode": "Success",
        }],
    });
    ArmResponse::json(StatusCode::OK, &body)
}

pub(crate) fn get_database(
    ctx: &Ctx<'_>,
    sub: &str,
    rg: &str,
    instance: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let inst = ctx
        .world()
        .instances
        .get(&instance_key(sub, rg, instance))
        .ok_or_else(|| ArmError::not_found(INSTANCE_TYPE, instance, rg))?;
    let db = inst
        .databases
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| ArmError::not_found("Microsoft.Sql/managedInstances/databases", name, rg))?;
    ArmResponse::json(StatusCode::OK, &render::database(ctx.world(), inst, db))
}

/// Simulated time a database create or drop takes.
const DATABASE_CREATE_SECS: f64 = 120.0;
const DATABASE_DELETE_SECS: f64 = 60.0;

fn database_lock(instance_key: &str, name: &str) -> String {
    format!("{instance_key}/databases/{}", name.to_ascii_lowercase())
}

/// Databases are written on the primary only; the geo-secondary's replicas follow.
fn refuse_on_secondary(ctx: &Ctx<'_>, inst: &Instance) -> Result<(), ArmError> {
    if let Some(group) = ctx.world().group_of(&inst.id)
        && ids::key(&group.secondary.instance_id) == ids::key(&inst.id)
    {
        return Err(ArmError::bad_request(
            "OperationNotAllowedInCurrentGeodrConfiguration",
            format!(
                "Managed instance '{}' is the geo-secondary of failover group '{}'; create or drop databases on the primary.",
                inst.name, group.name
            ),
        ));
    }
    Ok(())
}

pub(crate) fn put_database(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    instance: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    let key = instance_key(sub, rg, instance);
    let lock = database_lock(&key, name);
    if let Some(response) = ctx.reattach(&lock) {
        return Ok(response);
    }
    let request: ManagedDatabaseIn = parse_body(body)?;
    let inst = ctx
        .world()
        .instances
        .get(&key)
        .cloned()
        .ok_or_else(|| ArmError::not_found(INSTANCE_TYPE, instance, rg))?;
    if let Some(db) = inst.databases.iter().find(|d| d.name.eq_ignore_ascii_case(name)) {
        // Nothing the emulator models can change on an existing database.
        return ArmResponse::json(StatusCode::OK, &render::database(ctx.world(), &inst, db));
    }
    if request.location.is_none() {
        return Err(ArmError::bad_request(
            "InvalidDatabaseCreateOrUpdateRequest",
            "The 'location' property is required to create a database.",
        ));
    }
    refuse_on_secondary(ctx, &inst)?;
    if ctx.world().running_operation_on(&lock).is_some() {
        return Err(ArmError::conflict(
            "ConflictingManagedInstanceOperation",
            format!("An operation is in progress on database '{name}'."),
        ));
    }
    if inst.state != "Ready" {
        return Err(ArmError::conflict(
            "ConflictingManagedInstanceOperation",
            format!(
                "Managed instance '{}' is not ready (state '{}').",
                inst.name, inst.state
            ),
        ));
    }
    let collation = request
        .properties
        .and_then(|p| p.collation)
        .unwrap_or_else(|| "SQL_Latin1_General_CP1_CI_AS".into());
    Ok(ctx.start(NewOp {
        kind: OpKind::DatabaseCreate {
            instance: key.clone(),
            database: name.to_owned(),
            collation,
        },
        poll: PollKind::ManagedInstance,
        subscription: inst.subscription.clone(),
        location: inst.location.clone(),
        resource_id: format!("{}/databases/{name}", inst.id),
        locks: vec![lock],
        duration: DATABASE_CREATE_SECS,
    }))
}

pub(crate) fn delete_database(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    instance: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let key = instance_key(sub, rg, instance);
    let lock = database_lock(&key, name);
    if let Some(response) = ctx.reattach(&lock) {
        return Ok(response);
    }
    let Some(inst) = ctx.world().instances.get(&key).cloned() else {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    };
    if !inst.databases.iter().any(|d| d.name.eq_ignore_ascii_case(name)) {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    }
    refuse_on_secondary(ctx, &inst)?;
    if ctx.world().running_operation_on(&lock).is_some() {
        return Err(ArmError::conflict(
            "ConflictingManagedInstanceOperation",
            format!("An operation is in progress on database '{name}'."),
        ));
    }
    Ok(ctx.start(NewOp {
        kind: OpKind::DatabaseDelete {
            instance: key.clone(),
            database: name.to_owned(),
        },
        poll: PollKind::ManagedInstance,
        subscription: inst.subscription.clone(),
        location: inst.location.clone(),
        resource_id: format!("{}/databases/{name}", inst.id),
        locks: vec![lock],
        duration: DATABASE_DELETE_SECS,
    }))
}
