//! `Subscriptions_Get`: a subscription and its Microsoft Entra tenant.

use axum::http::StatusCode;

use super::context::Ctx;
use super::response::ArmResponse;
use crate::arm_error::ArmError;
use crate::tenants::tenant_of;

/// `GET /subscriptions/{id}`: the subscription with its tenant, or `SubscriptionNotFound`.
pub(crate) fn get_subscription(ctx: &Ctx<'_>, sub: &str) -> Result<ArmResponse, ArmError> {
    let tenant = tenant_of(ctx.world(), sub).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        )
    })?;
    ArmResponse::json(
        StatusCode::OK,
        &serde_json::json!({
            "id": format!("/subscriptions/{sub}"),
            "subscriptionId": sub,
            "tenantId": tenant,
            "displayName": sub,
            "state": "Enabled",
        }),
    )
}
