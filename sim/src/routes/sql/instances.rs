//! Managed instances: GET, list, PUT (create or update), PATCH and DELETE.

use axum::http::StatusCode;

use super::{
    INSTANCE_TYPE, canonical_format, canonical_sku, check_storage, check_vcores, conflicting, instance_key, require_rg,
};
use crate::arm_error::ArmError;
use crate::durations;
use crate::estate::{derived_dns_zone, tier_and_family};
use crate::ids;
use crate::lro::{self, InstanceChange, OpKind, PollKind};
use crate::regions;
use crate::routes::context::{Ctx, NewOp, parse_body};
use crate::routes::render;
use crate::routes::response::ArmResponse;
use crate::rules;
use crate::wire::{List, ManagedInstanceIn};
use crate::world::Instance;

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
