//! Microsoft.Sql: managed instances, managed databases and instance failover groups.

use axum::http::StatusCode;

use super::context::{Ctx, NewOp, group_lock, parse_body};
use super::render;
use super::response::ArmResponse;
use crate::arm_error::ArmError;
use crate::durations;
use crate::estate::{derived_dns_zone, tier_and_family};
use crate::ids;
use crate::lro::{self, GroupChange, InstanceChange, OpKind, PollKind};
use crate::regions;
use crate::rules;
use crate::wire::{FailoverGroupIn, List, ManagedDatabaseIn, ManagedInstanceIn};
use crate::world::{FailoverGroup, Instance, Member, Role};

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

// ----- managed instances -----------------------------------------------------------------

pub(crate) fn get_instance(ctx: &Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let inst = ctx
        .world()
        .instances
        .get(&instance_key(sub, rg, name))
        .ok_or_else(|| ArmError::not_found(INSTANCE_TYPE, name, rg))?;
    ArmResponse::json(StatusCode::OK, &render::instance(ctx.world(), inst))
}

pub(crate) fn list_all_instances(ctx: &Ctx<'_>, sub: &str) -> Result<ArmResponse, ArmError> {
    let value = ctx
        .world()
        .instances
        .values()
        .filter(|i| i.subscription.eq_ignore_ascii_case(sub))
        .map(|i| render::instance(ctx.world(), i))
        .collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

pub(crate) fn list_instances(ctx: &Ctx<'_>, sub: &str, rg: &str) -> Result<ArmResponse, ArmError> {
    require_rg(ctx, sub, rg)?;
    let value = ctx
        .world()
        .instances
        .values()
        .filter(|i| i.subscription.eq_ignore_ascii_case(sub) && i.resource_group.eq_ignore_ascii_case(rg))
        .map(|i| render::instance(ctx.world(), i))
        .collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

pub(crate) fn put_instance(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    require_rg(ctx, sub, rg)?;
    let request: ManagedInstanceIn = parse_body(body)?;
    let key = instance_key(sub, rg, name);
    if let Some(response) = ctx.reattach(&key) {
        return Ok(response);
    }
    if ctx.world().instances.contains_key(&key) {
        return update_instance(ctx, &key, request);
    }
    create_instance(ctx, sub, rg, name, request)
}

fn create_instance(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    name: &str,
    request: ManagedInstanceIn,
) -> Result<ArmResponse, ArmError> {
    let location = regions::normalize(
        &request
            .location
            .ok_or_else(|| ArmError::invalid_parameter("The 'location' property is required."))?,
    );
    let props = request.properties.unwrap_or_default();
    let sku = request.sku.unwrap_or_default();
    let sku_name = canonical_sku(
        sku.name
            .as_deref()
            .ok_or_else(|| ArmError::invalid_parameter("The 'sku.name' property is required."))?,
    )?;
    let (tier, family) = tier_and_family(sku_name);
    let v_cores = props.v_cores.or(sku.capacity).unwrap_or(8);
    check_vcores(v_cores)?;
    let storage_gb = props.storage_size_in_gb.unwrap_or(32);
    check_storage(storage_gb)?;
    let subnet_id = props
        .subnet_id
        .ok_or_else(|| ArmError::invalid_parameter("The 'properties.subnetId' property is required."))?;
    let (vnet, subnet) = ctx
        .world()
        .subnet(&subnet_id)
        .ok_or_else(|| ArmError::invalid_parameter(format!("The subnet '{subnet_id}' does not exist.")))?;
    if !subnet
        .delegations
        .iter()
        .any(|d| d.service_name.eq_ignore_ascii_case("Microsoft.Sql/managedInstances"))
    {
        return Err(ArmError::bad_request(
            "SubnetMissingRequiredDelegation",
            format!(
                "Subnet '{}' must be delegated to Microsoft.Sql/managedInstances.",
                subnet.name
            ),
        ));
    }
    if vnet.location != location {
        return Err(ArmError::bad_request(
            "VnetInWrongRegion",
            format!(
                "The virtual network '{}' of subnet '{}' is in region '{}', not in the instance's region '{location}'. Use a subnet in '{location}'.",
                vnet.name, subnet.name, vnet.location
            ),
        ));
    }
    if let Some(other) = ctx
        .world()
        .instances
        .values()
        .find(|i| i.name.eq_ignore_ascii_case(name))
    {
        return Err(ArmError::bad_request(
            "NameAlreadyExists",
            format!(
                "The name '{name}' is already in use by '{}'; managed instance names are global. Choose another name.",
                other.id
            ),
        ));
    }
    let id = ids::instance(sub, rg, name);
    let dns_zone = match &props.dns_zone_partner {
        Some(partner_id) => ctx
            .world()
            .instance(partner_id)
            .map(|p| p.dns_zone.clone())
            .ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidManagedServerDnsZonePartner",
                    format!("The DNS zone partner '{partner_id}' does not exist."),
                )
            })?,
        None => derived_dns_zone(&format!("{id}@{}", ctx.now.0)),
    };
    let database_format = match &props.database_format {
        Some(f) => canonical_format(f)?,
        None => "SQLServer2022",
    };
    let key = ids::key(&id);
    let instance = Instance {
        id: id.clone(),
        subscription: sub.to_owned(),
        resource_group: rg.to_owned(),
        name: name.to_owned(),
        location: location.clone(),
        sku_name: sku_name.to_owned(),
        tier: sku.tier.unwrap_or(tier),
        family: sku.family.unwrap_or(family),
        v_cores,
        storage_gb,
        database_format: database_format.to_owned(),
        next_gen: props.is_general_purpose_v2.unwrap_or(false),
        dns_zone,
        subnet_id,
        instance_pool_id: props.instance_pool_id,
        provisioning_state: "InProgress".into(),
        state: "Creating".into(),
        administrator_login: props.administrator_login,
        collation: props.collation.unwrap_or_else(|| "SQL_Latin1_General_CP1_CI_AS".into()),
        license_type: props.license_type.or_else(|| Some("LicenseIncluded".into())),
        tags: request.tags.unwrap_or_default(),
        created: ctx.now,
        databases: Vec::new(),
    };
    ctx.world_mut().instances.insert(key.clone(), instance);
    Ok(ctx.start(NewOp {
        kind: OpKind::InstanceCreate { instance: key.clone() },
        poll: PollKind::ManagedInstance,
        subscription: sub.to_owned(),
        location,
        resource_id: id,
        locks: vec![key],
        duration: durations::INSTANCE_CREATE,
    }))
}

pub(crate) fn patch_instance(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    let request: ManagedInstanceIn = parse_body(body)?;
    let key = instance_key(sub, rg, name);
    if let Some(response) = ctx.reattach(&key) {
        return Ok(response);
    }
    if !ctx.world().instances.contains_key(&key) {
        return Err(ArmError::not_found(INSTANCE_TYPE, name, rg));
    }
    update_instance(ctx, &key, request)
}

fn update_instance(ctx: &mut Ctx<'_>, key: &str, request: ManagedInstanceIn) -> Result<ArmResponse, ArmError> {
    let inst = ctx
        .world()
        .instances
        .get(key)
        .cloned()
        .ok_or_else(|| ArmError::invalid_parameter("The managed instance disappeared."))?;
    conflicting(ctx, key, &inst.name)?;
    let props = request.properties.unwrap_or_default();
    let sku = request.sku.unwrap_or_default();
    if let Some(subnet_id) = &props.subnet_id
        && ids::key(subnet_id) != ids::key(&inst.subnet_id)
    {
        return Err(ArmError::bad_request(
            "SubnetIdCantBeUpdated",
            "The subnet of a managed instance cannot be changed with this request.",
        ));
    }
    let mut change = InstanceChange::default();
    if let Some(v) = props.v_cores.or(sku.capacity).filter(|v| *v != inst.v_cores) {
        check_vcores(v)?;
        change.v_cores = Some(v);
    }
    if let Some(gb) = props.storage_size_in_gb.filter(|gb| *gb != inst.storage_gb) {
        check_storage(gb)?;
        if f64::from(gb) < inst.used_gb() {
            return Err(ArmError::bad_request(
                "ManagedInstanceInvalidStorageSizeLessThenCurrentSizeUsed",
                format!(
                    "Storage size {gb} GB is less than the {} GB currently used.",
                    inst.used_gb()
                ),
            ));
        }
        change.storage_gb = Some(gb);
    }
    if let Some(name) = sku.name.as_deref() {
        let sku_name = canonical_sku(name)?;
        if sku_name != inst.sku_name {
            let (tier, family) = tier_and_family(sku_name);
            change.sku_name = Some(sku_name.to_owned());
            if tier != inst.tier {
                change.tier = Some(tier);
            }
            change.family = Some(family);
        }
    }
    if let Some(text) = props.database_format.as_deref() {
        let format = canonical_format(text)?;
        if format != inst.database_format {
            rules::check_format_change(ctx.world(), &inst, format)?;
            change.database_format = Some(format.to_owned());
        }
    }
    if let Some(next_gen) = props.is_general_purpose_v2.filter(|g| *g != inst.next_gen) {
        crate::tier::check_next_gen_change(ctx.world(), &inst, next_gen)?;
        change.next_gen = Some(next_gen);
    }
    // Tags and the license type change at once, as ARM does for such properties.
    if let Some(target) = ctx.world_mut().instances.get_mut(key) {
        if let Some(tags) = request.tags {
            target.tags = tags;
        }
        if let Some(license) = props.license_type {
            target.license_type = Some(license);
        }
    }
    if change == InstanceChange::default() {
        let inst = ctx
            .world()
            .instances
            .get(key)
            .ok_or_else(|| ArmError::invalid_parameter("The managed instance disappeared."))?;
        return ArmResponse::json(StatusCode::OK, &render::instance(ctx.world(), inst));
    }
    let scale = change.v_cores.is_some()
        || change.storage_gb.is_some()
        || change.sku_name.is_some()
        || change.next_gen.is_some();
    let mut duration: f64 = 0.0;
    if scale {
        duration = duration.max(if change.tier.is_some() {
            durations::INSTANCE_TIER_CHANGE
        } else {
            durations::INSTANCE_SCALE
        });
    }
    if change.database_format.is_some() {
        duration = duration.max(durations::INSTANCE_UPDATE_POLICY);
    }
    if let Some(target) = ctx.world_mut().instances.get_mut(key) {
        target.provisioning_state = "InProgress".into();
    }
    Ok(ctx.start(NewOp {
        kind: OpKind::InstanceUpdate {
            instance: key.to_owned(),
            change,
        },
        poll: PollKind::ManagedInstance,
        subscription: inst.subscription.clone(),
        location: inst.location.clone(),
        resource_id: inst.id.clone(),
        locks: vec![key.to_owned()],
        duration,
    }))
}

pub(crate) fn delete_instance(ctx: &mut Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let key = instance_key(sub, rg, name);
    if let Some(response) = ctx.reattach(&key) {
        return Ok(response);
    }
    let Some(inst) = ctx.world().instances.get(&key).cloned() else {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    };
    if let Some(group) = ctx.world().group_of(&inst.id) {
        return Err(ArmError::bad_request(
            "OperationNotAllowedInCurrentGeodrConfiguration",
            format!(
                "Managed instance '{name}' is in failover group '{}'; delete the group first.",
                group.name
            ),
        ));
    }
    if let Some(op) = ctx.world().running_operation_on(&key) {
        if matches!(op.kind, OpKind::InstanceCreate { .. }) {
            let id = op.id.clone();
            let now = ctx.now;
            lro::cancel(
                ctx.world_mut(),
                &id,
                now,
                "The create operation was canceled by a delete request.",
            );
        } else {
            conflicting(ctx, &key, name)?;
        }
    }
    if let Some(target) = ctx.world_mut().instances.get_mut(&key) {
        target.provisioning_state = "InProgress".into();
        target.state = "Deleting".into();
    }
    Ok(ctx.start(NewOp {
        kind: OpKind::InstanceDelete { instance: key.clone() },
        poll: PollKind::ManagedInstance,
        subscription: inst.subscription.clone(),
        location: inst.location.clone(),
        resource_id: inst.id.clone(),
        locks: vec![key],
        duration: durations::INSTANCE_DELETE,
    }))
}

// ----- managed databases -----------------------------------------------------------------

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

// ----- instance failover groups ----------------------------------------------------------

fn group_at<'w>(
    ctx: &'w Ctx<'_>,
    sub: &str,
    rg: &str,
    location: &str,
    name: &str,
) -> Option<(&'w FailoverGroup, Role)> {
    let group = ctx.world().failover_groups.get(&name.to_ascii_lowercase())?;
    let role = group.role_at(sub, rg, location)?;
    Some((group, role))
}

pub(crate) fn get_group(
    ctx: &Ctx<'_>,
    sub: &str,
    rg: &str,
    location: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let (group, role) =
        group_at(ctx, sub, rg, location, name).ok_or_else(|| ArmError::not_found(GROUP_TYPE, name, rg))?;
    ArmResponse::json(StatusCode::OK, &render::group_view(group, role))
}

pub(crate) fn list_groups(ctx: &Ctx<'_>, sub: &str, rg: &str, location: &str) -> Result<ArmResponse, ArmError> {
    require_rg(ctx, sub, rg)?;
    let value = ctx
        .world()
        .failover_groups
        .values()
        .filter_map(|g| g.role_at(sub, rg, location).map(|role| render::group_view(g, role)))
        .collect();
    ArmResponse::json(StatusCode::OK, &List { value })
}

fn invalid_group(code: &str, message: impl Into<String>) -> ArmError {
    ArmError::bad_request(code, message)
}

/// The validated body of a group PUT.
struct GroupRequest {
    change: GroupChange,
    partner_region: String,
    primary_id: String,
    partner_id: String,
    secondary_type: Option<String>,
}

fn parse_group_request(body: &[u8]) -> Result<GroupRequest, ArmError> {
    let request: FailoverGroupIn = parse_body(body)?;
    let props = request.properties.ok_or_else(|| {
        invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestInvalid",
            "The 'properties' object is required.",
        )
    })?;
    let rw = props.read_write_endpoint.ok_or_else(|| {
        invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteEndpoint",
            "The 'readWriteEndpoint' property is required.",
        )
    })?;
    let policy = match rw.failover_policy.as_deref() {
        Some(p) if p.eq_ignore_ascii_case("Manual") => "Manual",
        Some(p) if p.eq_ignore_ascii_case("Automatic") => "Automatic",
        other => {
            return Err(invalid_group(
                "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteFailoverPolicy",
                format!("The read-write failover policy {other:?} is not 'Manual' or 'Automatic'."),
            ));
        }
    };
    let grace = rw.failover_with_data_loss_grace_period_minutes;
    match (policy, grace) {
        ("Automatic", None) => {
            return Err(invalid_group(
                "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteEndpointFields",
                "failoverWithDataLossGracePeriodMinutes is required with the 'Automatic' policy.",
            ));
        }
        ("Automatic", Some(minutes)) if minutes < 60 => {
            return Err(invalid_group(
                "InstanceFailoverGroupCreateOrUpdateRequestLessThanMinimumGracePeriodValues",
                format!("The grace period {minutes} minutes is less than the minimum of 60."),
            ));
        }
        ("Manual", Some(_)) => {
            return Err(invalid_group(
                "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteEndpointFieldsForManualPolicy",
                "failoverWithDataLossGracePeriodMinutes must be absent with the 'Manual' policy.",
            ));
        }
        _ => {}
    }
    let read_only_policy = match props.read_only_endpoint.and_then(|e| e.failover_policy) {
        None => None,
        Some(p) if p.eq_ignore_ascii_case("Disabled") => Some("Disabled".to_owned()),
        Some(p) if p.eq_ignore_ascii_case("Enabled") => Some("Enabled".to_owned()),
        Some(p) => {
            return Err(invalid_group(
                "InstanceFailoverGroupCreateOrUpdateRequestInvalid",
                format!("The read-only failover policy '{p}' is not 'Disabled' or 'Enabled'."),
            ));
        }
    };
    let regions = props.partner_regions.unwrap_or_default();
    let [region] = regions.as_slice() else {
        return Err(invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestUnsupportedPartnerCount",
            format!("Exactly one partner region is supported; {} given.", regions.len()),
        ));
    };
    let partner_region = region.location.clone().ok_or_else(|| {
        invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestInvalid",
            "partnerRegions[0].location is required.",
        )
    })?;
    let pairs = props.managed_instance_pairs.unwrap_or_default();
    let [pair] = pairs.as_slice() else {
        return Err(invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestUnsupportedPairCount",
            format!("Exactly one managed instance pair is supported; {} given.", pairs.len()),
        ));
    };
    let primary_id = pair.primary_managed_instance_id.clone().ok_or_else(|| {
        invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary",
            "primaryManagedInstanceId is required.",
        )
    })?;
    let partner_id = pair.partner_managed_instance_id.clone().ok_or_else(|| {
        invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner",
            "partnerManagedInstanceId is required.",
        )
    })?;
    Ok(GroupRequest {
        change: GroupChange {
            read_write_policy: policy.to_owned(),
            grace_minutes: grace,
            read_only_policy,
        },
        partner_region,
        primary_id,
        partner_id,
        secondary_type: props.secondary_type,
    })
}

fn on_secondary(name: &str) -> ArmError {
    invalid_group(
        "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary",
        format!("Failover group '{name}' can only be updated or deleted at the primary's location."),
    )
}

pub(crate) fn put_group(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    location: &str,
    name: &str,
    body: &[u8],
) -> Result<ArmResponse, ArmError> {
    let lock = group_lock(name);
    if let Some(response) = ctx.reattach(&lock) {
        return Ok(response);
    }
    require_rg(ctx, sub, rg)?;
    let request = parse_group_request(body)?;
    if let Some(group) = ctx.world().failover_groups.get(&name.to_ascii_lowercase()).cloned() {
        return update_group(ctx, &group, sub, rg, location, request);
    }
    let primary = ctx.world().instance(&request.primary_id).cloned().ok_or_else(|| {
        invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary",
            format!("The primary managed instance '{}' does not exist.", request.primary_id),
        )
    })?;
    let partner = ctx.world().instance(&request.partner_id).cloned().ok_or_else(|| {
        invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner",
            format!("The partner managed instance '{}' does not exist.", request.partner_id),
        )
    })?;
    let (primary_member, partner_member) = (Member::of(&primary), Member::of(&partner));
    if !primary_member.is_at(sub, rg, location) {
        if partner_member.is_at(sub, rg, location) {
            return Err(on_secondary(name));
        }
        return Err(invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary",
            format!(
                "The request must be sent to the primary's resource group '{}' and location '{}'.",
                primary.resource_group, primary.location
            ),
        ));
    }
    rules::check_group_create(ctx.world(), &primary, &partner, &request.partner_region)?;
    let key = name.to_ascii_lowercase();
    ctx.world_mut().failover_groups.insert(
        key.clone(),
        FailoverGroup {
            name: name.to_owned(),
            primary: primary_member,
            secondary: partner_member,
            read_write_policy: request.change.read_write_policy,
            grace_minutes: request.change.grace_minutes,
            read_only_policy: request.change.read_only_policy,
            secondary_type: request.secondary_type,
            replication_state: "SEEDING".into(),
        },
    );
    Ok(ctx.start(NewOp {
        kind: OpKind::GroupCreate { group: key },
        poll: PollKind::FailoverGroup,
        subscription: sub.to_owned(),
        location: primary.location.clone(),
        resource_id: ids::fog_view(sub, rg, &primary.location, name),
        locks: vec![lock],
        duration: durations::seeding(primary.used_gb(), &primary.location, &partner.location),
    }))
}

fn update_group(
    ctx: &mut Ctx<'_>,
    group: &FailoverGroup,
    sub: &str,
    rg: &str,
    location: &str,
    request: GroupRequest,
) -> Result<ArmResponse, ArmError> {
    match group.role_at(sub, rg, location) {
        Some(Role::Primary) => {}
        Some(Role::Secondary) => return Err(on_secondary(&group.name)),
        None => {
            return Err(ArmError::conflict(
                "InstanceFailoverGroupDnsRecordInUse",
                format!(
                    "A failover group named '{}' already exists elsewhere, and its listener DNS records use the name. Choose another group name.",
                    group.name
                ),
            ));
        }
    }
    let lock = group_lock(&group.name);
    if ctx.world().running_operation_on(&lock).is_some() {
        return Err(ArmError::conflict(
            "InstanceFailoverGroupBusy",
            format!("Failover group '{}' is busy with another operation.", group.name),
        ));
    }
    if ids::key(&request.primary_id) != ids::key(&group.primary.instance_id)
        || ids::key(&request.partner_id) != ids::key(&group.secondary.instance_id)
        || regions::normalize(&request.partner_region) != group.secondary.location
    {
        return Err(invalid_group(
            "InstanceFailoverGroupCreateOrUpdateRequestReadOnlyPropertyModified",
            "partnerRegions and managedInstancePairs cannot be changed on an existing failover group.",
        ));
    }
    let current = GroupChange {
        read_write_policy: group.read_write_policy.clone(),
        grace_minutes: group.grace_minutes,
        read_only_policy: group.read_only_policy.clone(),
    };
    if current == request.change {
        return ArmResponse::json(StatusCode::OK, &render::group_view(group, Role::Primary));
    }
    Ok(ctx.start(NewOp {
        kind: OpKind::GroupUpdate {
            group: group.name.to_ascii_lowercase(),
            change: request.change,
        },
        poll: PollKind::FailoverGroup,
        subscription: sub.to_owned(),
        location: group.primary.location.clone(),
        resource_id: ids::fog_view(sub, rg, &group.primary.location, &group.name),
        locks: vec![lock],
        duration: durations::GROUP_UPDATE,
    }))
}

pub(crate) fn delete_group(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    location: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let lock = group_lock(name);
    if let Some(response) = ctx.reattach(&lock) {
        return Ok(response);
    }
    let Some((group, role)) = group_at(ctx, sub, rg, location, name) else {
        return Ok(ArmResponse::empty(StatusCode::NO_CONTENT));
    };
    if role == Role::Secondary {
        return Err(on_secondary(name));
    }
    let group = group.clone();
    if let Some(op) = ctx.world().running_operation_on(&lock) {
        if matches!(op.kind, OpKind::GroupCreate { .. }) {
            // Deleting a group that is still seeding abandons the seeding.
            let id = op.id.clone();
            let now = ctx.now;
            lro::cancel(ctx.world_mut(), &id, now, "Seeding was canceled by a delete request.");
        } else {
            return Err(ArmError::conflict(
                "InstanceFailoverGroupBusy",
                format!("Failover group '{name}' is busy with another operation."),
            ));
        }
    }
    Ok(ctx.start(NewOp {
        kind: OpKind::GroupDelete {
            group: name.to_ascii_lowercase(),
        },
        poll: PollKind::FailoverGroup,
        subscription: sub.to_owned(),
        location: group.primary.location.clone(),
        resource_id: ids::fog_view(sub, rg, &group.primary.location, &group.name),
        locks: vec![lock],
        duration: durations::GROUP_DELETE,
    }))
}

pub(crate) fn failover_group(
    ctx: &mut Ctx<'_>,
    sub: &str,
    rg: &str,
    location: &str,
    name: &str,
    forced: bool,
) -> Result<ArmResponse, ArmError> {
    let lock = group_lock(name);
    if let Some(response) = ctx.reattach(&lock) {
        return Ok(response);
    }
    let (group, role) =
        group_at(ctx, sub, rg, location, name).ok_or_else(|| ArmError::not_found(GROUP_TYPE, name, rg))?;
    if role == Role::Primary {
        return Err(invalid_group(
            "InstanceFailoverGroupFailoverRequestOnPrimary",
            format!("The failover request for '{name}' was sent to the primary; send it to the secondary's location."),
        ));
    }
    let group = group.clone();
    if ctx.world().running_operation_on(&lock).is_some() || group.replication_state != "CATCH_UP" {
        return Err(ArmError::conflict(
            "InstanceFailoverGroupBusy",
            format!(
                "Failover group '{name}' is busy (replication state '{}').",
                group.replication_state
            ),
        ));
    }
    let missing = || ArmError::invalid_parameter("A member instance of the failover group does not exist.");
    let primary = ctx
        .world()
        .instance(&group.primary.instance_id)
        .cloned()
        .ok_or_else(missing)?;
    let secondary = ctx
        .world()
        .instance(&group.secondary.instance_id)
        .cloned()
        .ok_or_else(missing)?;
    for inst in [&primary, &secondary] {
        if let Some(op) = ctx.world().running_operation_on(&ids::key(&inst.id)) {
            if matches!(op.kind, OpKind::InstanceUpdate { .. }) {
                return Err(ArmError::bad_request(
                    "ManagedInstanceUpdateSloOngoing",
                    format!(
                        "Managed instance '{}' is being updated; fail over after it finishes.",
                        inst.name
                    ),
                ));
            }
            conflicting(ctx, &ids::key(&inst.id), &inst.name)?;
        }
    }
    rules::check_failover_formats(&primary, &secondary)?;
    Ok(ctx.start(NewOp {
        kind: OpKind::GroupFailover {
            group: name.to_ascii_lowercase(),
            forced,
            subscription: sub.to_owned(),
            resource_group: rg.to_owned(),
            location: regions::normalize(location),
        },
        poll: PollKind::FailoverGroup,
        subscription: sub.to_owned(),
        location: secondary.location.clone(),
        resource_id: ids::fog_view(sub, rg, &secondary.location, &group.name),
        locks: vec![lock, ids::key(&primary.id), ids::key(&secondary.id)],
        duration: if forced {
            durations::FORCED_FAILOVER
        } else {
            durations::PLANNED_FAILOVER
        },
    }))
}
