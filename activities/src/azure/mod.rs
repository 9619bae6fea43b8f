//! The Azure activities: managed instances, databases, networking and failover groups.
//!
//! Every activity takes a `#[serde(deny_unknown_fields)]` input (its JSON Schema is what the
//! runbook validator checks `with:` against) and returns a JSON output that includes
//! `arm_requests`: the method, path, status and ARM `x-ms-request-id` /
//! `x-ms-correlation-request-id` of each mutating request, for support cases.
//!
//! Durability (docs/DESIGN.md §3): creates and updates are convergent PUT/PATCH of a known state,
//! re-entered through the operation saved in progress (never re-sent); deletes and failovers
//! record their intent before the request and, when re-entered with an intent and no saved
//! operation, read the cloud state (existence, roles) to learn whether it happened.

mod databases;
mod drift;
mod estate;
mod estimate;
mod fog;
mod instance;
mod network;
mod preflight;
mod refs;
mod regions;

pub(crate) use databases::{DatabaseGet, DatabasesDeleteCopies};
pub(crate) use drift::FogDrift;
pub use estate::find_failover_groups;
pub use estimate::Estimate;
pub(crate) use estimate::seeding;
pub(crate) use fog::{FogCreate, FogDelete, FogFailover, FogForceFailover, FogGet};
pub(crate) use instance::{
    DatabasesAssertEmpty, InstanceCreateLike, InstanceDelete, InstanceGet, InstanceScale, InstanceSetUpdatePolicy,
};
pub(crate) use network::{NetworkOpenFogPorts, NetworkPeer};
pub(crate) use preflight::FogPreflight;

use crate::arm::{ArmClient, Session};
use crate::{ActivityError, Env};

/// The ARM client of `env`, or the error every Azure activity gives without one.
pub(crate) fn arm(env: &Env) -> Result<&ArmClient, ActivityError> {
    env.arm.as_ref().ok_or_else(|| {
        ActivityError::failed(
            "ArmNotConfigured",
            "this process has no ARM client: pass --arm-endpoint/--auth (or FOGBOOK_ARM_ENDPOINT, FOGBOOK_ARM_TOKEN), or run with --sim",
        )
    })
}

/// Adds `arm_requests` (the receipts of the session) to an output object.
pub(crate) fn with_receipts(s: &Session<'_>, mut output: serde_json::Value) -> serde_json::Value {
    if let Some(map) = output.as_object_mut() {
        map.insert(
            "arm_requests".into(),
            serde_json::to_value(s.receipts()).unwrap_or_default(),
        );
    }
    output
}

/// A string field of a JSON body.
pub(crate) fn text<'v>(v: &'v serde_json::Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(|x| x.as_str())
}

/// A number field of a JSON body.
pub(crate) fn number(v: &serde_json::Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(serde_json::Value::as_u64)
}

/// Case-insensitive equality of optional strings.
pub(crate) fn same(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

/// RFC 3339 of now.
pub(crate) fn now_text(ctx: &crate::ActivityCtx) -> String {
    ctx.now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
