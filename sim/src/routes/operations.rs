//! Polling: the `Azure-AsyncOperation` status resource and the `Location` result URL.

use axum::http::StatusCode;

use super::context::Ctx;
use super::render;
use super::response::{ArmResponse, polling_urls};
use crate::arm_error::ArmError;
use crate::ids;
use crate::lro::{OpKind, OpStatus, Operation};
use crate::wire::{ErrorDetail, OperationStatusOut};

fn find<'c>(ctx: &'c Ctx<'_>, sub: &str, id: &str) -> Result<&'c Operation, ArmError> {
    ctx.world()
        .operations
        .get(id)
        .filter(|op| op.subscription.eq_ignore_ascii_case(sub))
        .ok_or_else(|| {
            ArmError::new(
                StatusCode::NOT_FOUND,
                "OperationIdNotFound",
                format!("Operation '{id}' was not found."),
            )
        })
}

/// `GET {Azure-AsyncOperation}`: 200 with the status resource, `Retry-After` while running.
pub(crate) fn status(ctx: &Ctx<'_>, sub: &str, id: &str) -> Result<ArmResponse, ArmError> {
    let op = find(ctx, sub, id)?;
    let world = ctx.world();
    let (status_url, _) = polling_urls(ctx.base_url, op);
    let out = OperationStatusOut {
        id: status_url
            .split('?')
            .next()
            .unwrap_or_default()
            .replace(ctx.base_url, ""),
        name: op.id.clone(),
        status: op.status.as_str(),
        start_time: render::time(world, op.started),
        end_time: op.finished.map(|t| render::time(world, t)),
        percent_complete: op.percent_complete(ctx.now),
        error: op.error.as_ref().map(|e| ErrorDetail {
            code: e.code.clone(),
            message: e.message.clone(),
        }),
    };
    let response = ArmResponse::json(StatusCode::OK, &out)?;
    Ok(if op.is_running() {
        response.with_retry_after(op, ctx.now, &ctx.core.clock)
    } else {
        response
    })
}

/// `GET {Location}`: 202 while running; then what the synchronous call would have returned.
pub(crate) fn result(ctx: &Ctx<'_>, sub: &str, id: &str) -> Result<ArmResponse, ArmError> {
    let op = find(ctx, sub, id)?;
    match op.status {
        OpStatus::InProgress => {
            let (_, result_url) = polling_urls(ctx.base_url, op);
            Ok(ArmResponse::empty(StatusCode::ACCEPTED)
                .with_header("location", result_url)
                .with_retry_after(op, ctx.now, &ctx.core.clock))
        }
        OpStatus::Failed | OpStatus::Canceled => {
            let error = op
                .error
                .clone()
                .unwrap_or_else(|| crate::lro::planned_failure(&op.kind));
            let status = if error.code == "OperationTimedOut" {
                StatusCode::INTERNAL_SERVER_ERROR
            } else if op.status == OpStatus::Canceled {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(ArmError::new(status, &error.code, error.message))
        }
        OpStatus::Succeeded => final_body(ctx, op),
    }
}

fn final_body(ctx: &Ctx<'_>, op: &Operation) -> Result<ArmResponse, ArmError> {
    let world = ctx.world();
    match &op.kind {
        OpKind::InstanceCreate { instance } | OpKind::InstanceUpdate { instance, .. } => {
            match world.instances.get(instance) {
                Some(inst) => ArmResponse::json(StatusCode::OK, &render::instance(world, inst)),
                None => Ok(ArmResponse::empty(StatusCode::NO_CONTENT)),
            }
        }
        OpKind::GroupCreate { group } | OpKind::GroupUpdate { group, .. } | OpKind::GroupFailover { group, .. } => {
            let view = ids::parse(&op.resource_id);
            let found = world.failover_groups.get(group).and_then(|g| {
                let view = view.as_ref()?;
                let location = view.rest.get(1)?;
                g.role_at(&view.subscription, &view.resource_group, location)
                    .map(|role| (g, role))
            });
            match found {
                Some((g, role)) => ArmResponse::json(StatusCode::OK, &render::group_view(g, role)),
                None => Ok(ArmResponse::empty(StatusCode::NO_CONTENT)),
            }
        }
        OpKind::DatabaseCreate { instance, database, .. } => {
            let found = world.instances.get(instance).and_then(|inst| {
                let db = inst.databases.iter().find(|d| d.name.eq_ignore_ascii_case(database))?;
                Some((inst, db))
            });
            match found {
                Some((inst, db)) => ArmResponse::json(StatusCode::OK, &render::database(world, inst, db)),
                None => Ok(ArmResponse::empty(StatusCode::NO_CONTENT)),
            }
        }
        OpKind::InstanceDelete { .. }
        | OpKind::GroupDelete { .. }
        | OpKind::Network
        | OpKind::DatabaseDelete { .. } => Ok(ArmResponse::empty(StatusCode::OK)),
    }
}
