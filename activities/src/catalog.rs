//! The closed set of activities: names, input schemas, and the one dispatching `match`.

use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;

use crate::azure::{
    DatabasesAssertEmpty, DatabasesDeleteCopies, FogCreate, FogDelete, FogDrift, FogFailover, FogForceFailover, FogGet,
    FogPreflight, InstanceCreateLike, InstanceDelete, InstanceGet, InstanceScale, InstanceSetUpdatePolicy,
    NetworkOpenFogPorts, NetworkPeer,
};
use crate::builtin::{Approval, Assert, Command, Notify, Report, Wait};
use crate::{ActivityCtx, ActivityError, Env};

/// Every activity name a runbook may use, in the order they are documented.
pub const KINDS: &[&str] = &[
    "wait",
    "approval",
    "assert",
    "notify",
    "command",
    "report",
    "instance.get",
    "instance.create_like",
    "instance.scale",
    "instance.set_update_policy",
    "instance.delete",
    "databases.assert_empty",
    "databases.delete_copies",
    "network.peer",
    "network.open_fog_ports",
    "fog.get",
    "fog.create",
    "fog.delete",
    "fog.failover",
    "fog.force_failover",
    "fog.preflight",
    "fog.drift",
];

/// Activities that only read: `fogbook plan` runs them for real (against Azure or the
/// emulator) and only describes the others.
pub fn is_read_only(uses: &str) -> bool {
    matches!(
        uses,
        "assert" | "report" | "instance.get" | "databases.assert_empty" | "fog.get" | "fog.preflight" | "fog.drift"
    )
}

/// How long activity `uses` with resolved `input` is likely to take (reads only), or
/// `None` for a quick step.
pub async fn estimate(
    uses: &str,
    input: serde_json::Value,
    ctx: &ActivityCtx,
    env: &Env,
) -> Result<Option<crate::azure::Estimate>, ActivityError> {
    crate::azure::estimate(uses, input, ctx, env).await
}

/// The fields of an instance's view (see `azure::refs::Instance::output`), then `extra`.
macro_rules! instance_fields {
    ($($extra:literal),*) => {
        &[
            "exists", "id", "name", "location", "sku_name", "tier", "family", "v_cores",
            "storage_gb", "database_format", "dns_zone", "subnet_id", "state",
            "provisioning_state", "license_type", "backup_storage_redundancy", "instance_pool_id",
            "fully_qualified_domain_name", "administrator_login", "collation", "tenant_id",
            "next_gen", $($extra),*
        ]
    };
}

/// The fields of a failover group's view (see `azure::fog::view_output`), then `extra`.
macro_rules! group_fields {
    ($($extra:literal),*) => {
        &[
            "exists", "name", "id", "role", "replication_state", "partner_location",
            "primary_instance_id", "partner_instance_id", "read_write_failover_policy",
            "read_write_listener", "read_only_listener", $($extra),*
        ]
    };
}

/// `instance.get`'s output.
const INSTANCE: &[&str] = instance_fields!();
const INSTANCE_CREATED: &[&str] = instance_fields!("created", "arm_requests");
/// `fog.get`'s output.
const GROUP: &[&str] = group_fields!();
const GROUP_CREATED: &[&str] = group_fields!("created", "arm_requests");
const GROUP_FAILED_OVER: &[&str] = group_fields!("changed", "resolved_by", "arm_requests");

/// The top-level fields of the output of activity `uses`, where they are fixed: `validate`
/// refuses a reference to any other field, and `fogbook complete` requires them. `None` for
/// an unknown activity or one whose output has no fixed fields.
pub fn output_fields(uses: &str) -> Option<&'static [&'static str]> {
    let fields: &'static [&'static str] = match uses {
        "wait" => &["woke_at", "wake_at"],
        "approval" => &["step_id", "by", "comment", "at", "auto"],
        "assert" => &["passed"],
        "notify" => &["status"],
        "command" => &["exit_code", "stdout", "stderr"],
        "report" => &["report"],
        "instance.get" => INSTANCE,
        "instance.create_like" => INSTANCE_CREATED,
        "instance.scale" => &["changed", "before", "after", "arm_requests"],
        "instance.set_update_policy" => &["changed", "before", "policy", "instance", "arm_requests"],
        "instance.delete" => &["deleted", "already_absent", "id", "arm_requests"],
        "databases.assert_empty" => &["databases"],
        "network.peer" => &["peerings", "note", "arm_requests"],
        "network.open_fog_ports" => &["nsgs", "arm_requests"],
        "fog.get" => GROUP,
        "fog.create" => GROUP_CREATED,
        "fog.delete" => &["deleted", "already_absent", "name", "arm_requests"],
        "fog.failover" | "fog.force_failover" => GROUP_FAILED_OVER,
        _ => return None,
    };
    Some(fields)
}

/// The JSON Schema of the inputs (`with:`) of activity `uses`, or `None` when no such
/// activity exists.
pub fn input_schema(uses: &str) -> Option<Schema> {
    let schema = match uses {
        "wait" => schemars::schema_for!(Wait),
        "approval" => schemars::schema_for!(Approval),
        "assert" => schemars::schema_for!(Assert),
        "notify" => schemars::schema_for!(Notify),
        "command" => schemars::schema_for!(Command),
        "report" => schemars::schema_for!(Report),
        "instance.get" => schemars::schema_for!(InstanceGet),
        "instance.create_like" => schemars::schema_for!(InstanceCreateLike),
        "instance.scale" => schemars::schema_for!(InstanceScale),
        "instance.set_update_policy" => schemars::schema_for!(InstanceSetUpdatePolicy),
        "instance.delete" => schemars::schema_for!(InstanceDelete),
        "databases.assert_empty" => schemars::schema_for!(DatabasesAssertEmpty),
        "databases.delete_copies" => schemars::schema_for!(DatabasesDeleteCopies),
        "network.peer" => schemars::schema_for!(NetworkPeer),
        "network.open_fog_ports" => schemars::schema_for!(NetworkOpenFogPorts),
        "fog.get" => schemars::schema_for!(FogGet),
        "fog.create" => schemars::schema_for!(FogCreate),
        "fog.delete" => schemars::schema_for!(FogDelete),
        "fog.failover" => schemars::schema_for!(FogFailover),
        "fog.force_failover" => schemars::schema_for!(FogForceFailover),
        "fog.preflight" => schemars::schema_for!(FogPreflight),
        "fog.drift" => schemars::schema_for!(FogDrift),
        _ => return None,
    };
    Some(schema)
}

/// Runs activity `uses` with resolved inputs and returns its output.
///
/// The caller (the engine) has committed the step's start before calling this, and commits
/// the returned output, so the activity only performs the effect and saves progress.
pub async fn execute(
    uses: &str,
    input: serde_json::Value,
    ctx: &ActivityCtx,
    env: &Env,
) -> Result<serde_json::Value, ActivityError> {
    match uses {
        "wait" => spec::<Wait>(input)?.run(ctx).await,
        "approval" => spec::<Approval>(input)?.run(ctx).await,
        "assert" => spec::<Assert>(input)?.run(),
        "notify" => spec::<Notify>(input)?.run(ctx, env).await,
        "command" => spec::<Command>(input)?.run(ctx).await,
        "report" => spec::<Report>(input)?.run(),
        "instance.get" => spec::<InstanceGet>(input)?.run(ctx, env).await,
        "instance.create_like" => spec::<InstanceCreateLike>(input)?.run(ctx, env).await,
        "instance.scale" => spec::<InstanceScale>(input)?.run(ctx, env).await,
        "instance.set_update_policy" => spec::<InstanceSetUpdatePolicy>(input)?.run(ctx, env).await,
        "instance.delete" => spec::<InstanceDelete>(input)?.run(ctx, env).await,
        "databases.assert_empty" => spec::<DatabasesAssertEmpty>(input)?.run(ctx, env).await,
        "databases.delete_copies" => spec::<DatabasesDeleteCopies>(input)?.run(ctx, env).await,
        "network.peer" => spec::<NetworkPeer>(input)?.run(ctx, env).await,
        "network.open_fog_ports" => spec::<NetworkOpenFogPorts>(input)?.run(ctx, env).await,
        "fog.get" => spec::<FogGet>(input)?.run(ctx, env).await,
        "fog.create" => spec::<FogCreate>(input)?.run(ctx, env).await,
        "fog.delete" => spec::<FogDelete>(input)?.run(ctx, env).await,
        "fog.failover" => spec::<FogFailover>(input)?.run(ctx, env).await,
        "fog.force_failover" => spec::<FogForceFailover>(input)?.run(ctx, env).await,
        "fog.preflight" => spec::<FogPreflight>(input)?.run(ctx, env).await,
        "fog.drift" => spec::<FogDrift>(input)?.run(ctx, env).await,
        other => Err(ActivityError::invalid(format!("unknown activity `{other}`"))),
    }
}

/// POSTs an engine event (window opened, limit exceeded, run finished) as JSON to a
/// webhook, with the same classification of answers as the `notify` activity.
pub async fn post_event(env: &Env, url: &str, body: &serde_json::Value) -> Result<u16, ActivityError> {
    crate::builtin::post_json(env, url, body).await
}

fn spec<T: DeserializeOwned + JsonSchema>(input: serde_json::Value) -> Result<T, ActivityError> {
    serde_json::from_value(input).map_err(|e| ActivityError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoHost;

    impl crate::StepHost for NoHost {
        fn save_progress(&self, _: serde_json::Value) -> crate::BoxFuture<'_, Result<(), ActivityError>> {
            Box::pin(async { Ok(()) })
        }
        fn approval(&self) -> crate::BoxFuture<'_, Result<Option<crate::ApprovalRecord>, ActivityError>> {
            Box::pin(async { Ok(None) })
        }
        fn auto_approve(&self) -> crate::BoxFuture<'_, Result<crate::ApprovalRecord, ActivityError>> {
            Box::pin(async { Err(ActivityError::invalid("none")) })
        }
        fn now(&self) -> time::OffsetDateTime {
            time::OffsetDateTime::now_utc()
        }
    }

    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}

    /// The engine spawns runs, so every activity future must be `Send` for any lifetime of
    /// the context it borrows (a compile-time check).
    #[test]
    fn activity_futures_can_be_spawned() {
        spawnable(async move {
            let host = std::sync::Arc::new(NoHost);
            let ctx = ActivityCtx::new("r", "s", 1, None, host, tokio_util::sync::CancellationToken::new());
            let env = Env::new();
            let _ = execute("instance.get", serde_json::Value::Null, &ctx, &env).await;
        });
    }

    #[test]
    fn every_kind_has_a_schema() {
        for kind in KINDS {
            let schema = input_schema(kind).expect("schema");
            assert!(
                schema.as_value().get("properties").is_some(),
                "{kind} has no properties in its schema"
            );
        }
        assert!(input_schema("nope").is_none());
    }
}
