//! Instance failover groups: GET, list, PUT (create or update), DELETE and failover.

use axum::http::StatusCode;

use super::{GROUP_TYPE, conflicting, require_rg};
use crate::arm_error::ArmError;
use crate::durations;
use crate::ids;
use crate::lro::{self, GroupChange, OpKind, PollKind};
use crate::regions;
use crate::routes::context::{Ctx, NewOp, group_lock, parse_body};
use crate::routes::render;
use crate::routes::response::ArmResponse;
use crate::rules;
use crate::wire::{FailoverGroupIn, List};
use crate::world::{FailoverGroup, Member, Role};

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
