//! The closed set of activities: [`ActivityKind`], from which every activity's name,
//! read-only-ness, need of ARM, input schema, output fields, estimate and dispatch come.

use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;

use crate::azure::{self, Estimate};
use crate::builtin;
use crate::{ActivityCtx, ActivityError, Env};

/// Declares [`ActivityKind`] from one table: a row per activity with its doc, its variant,
/// the name runbooks use, whether it talks to ARM and whether it only reads. Every other
/// question about an activity is an exhaustive `match` below.
macro_rules! activities {
    ($( #[doc = $doc:literal] $variant:ident = $name:literal, arm: $arm:literal, reads: $reads:literal; )*) => {
        /// One activity a runbook may name in `uses:`. Every question about an activity (its
        /// name, whether it only reads, whether it needs ARM, its input schema, its output
        /// fields, its duration estimate, how to run it) is answered from this enum, so a new
        /// variant does not compile until each has an answer.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ActivityKind {
            $( #[doc = $doc] $variant, )*
        }

        /// Every activity, in the order they are documented.
        const ALL: [ActivityKind; [$($name),*].len()] = [$(ActivityKind::$variant),*];

        impl ActivityKind {
            /// The name runbooks use (`uses:`).
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// Whether the activity talks to Azure Resource Manager (and so needs the
            /// process's ARM client, see [`Env::with_arm`]).
            pub const fn needs_arm(self) -> bool {
                match self { $(Self::$variant => $arm,)* }
            }

            /// Whether the activity only reads: `fogbook plan` runs it for real (against
            /// Azure or the emulator) and only describes the others.
            pub const fn is_read_only(self) -> bool {
                match self { $(Self::$variant => $reads,)* }
            }
        }
    };
}

activities! {
    /// `wait`: a durable sleep.
    Wait = "wait", arm: false, reads: false;
    /// `approval`: waits for `fogbook approve`.
    Approval = "approval", arm: false, reads: false;
    /// `assert`: fails the step unless a condition holds.
    Assert = "assert", arm: false, reads: true;
    /// `notify`: POSTs a message to a webhook.
    Notify = "notify", arm: false, reads: false;
    /// `command`: runs a local program (no shell).
    Command = "command", arm: false, reads: false;
    /// `report`: puts named values in the run's report.
    Report = "report", arm: false, reads: true;
    /// `instance.get`: reads a managed instance.
    InstanceGet = "instance.get", arm: true, reads: true;
    /// `instance.create_like`: creates an instance shaped like another.
    InstanceCreateLike = "instance.create_like", arm: true, reads: false;
    /// `instance.scale`: changes vCores, storage or tier.
    InstanceScale = "instance.scale", arm: true, reads: false;
    /// `instance.set_update_policy`: sets the update policy (`databaseFormat`).
    InstanceSetUpdatePolicy = "instance.set_update_policy", arm: true, reads: false;
    /// `instance.delete`: deletes an instance.
    InstanceDelete = "instance.delete", arm: true, reads: false;
    /// `database.get`: reads a managed database.
    DatabaseGet = "database.get", arm: true, reads: true;
    /// `databases.assert_empty`: fails unless an instance has no user databases.
    DatabasesAssertEmpty = "databases.assert_empty", arm: true, reads: true;
    /// `databases.delete_copies`: drops the databases a secondary holds outside a group.
    DatabasesDeleteCopies = "databases.delete_copies", arm: true, reads: false;
    /// `network.peer`: peers two virtual networks.
    NetworkPeer = "network.peer", arm: true, reads: false;
    /// `network.open_fog_ports`: opens the failover-group ports in the NSGs.
    NetworkOpenFogPorts = "network.open_fog_ports", arm: true, reads: false;
    /// `fog.get`: reads a failover group.
    FogGet = "fog.get", arm: true, reads: true;
    /// `fog.create`: creates a failover group.
    FogCreate = "fog.create", arm: true, reads: false;
    /// `fog.delete`: deletes a failover group.
    FogDelete = "fog.delete", arm: true, reads: false;
    /// `fog.failover`: a planned failover.
    FogFailover = "fog.failover", arm: true, reads: false;
    /// `fog.force_failover`: a failover allowing data loss.
    FogForceFailover = "fog.force_failover", arm: true, reads: false;
    /// `fog.preflight`: checks a pair of instances before a group is created.
    FogPreflight = "fog.preflight", arm: true, reads: true;
    /// `fog.drift`: compares the settings a group does not replicate on its two instances.
    FogDrift = "fog.drift", arm: true, reads: true;
}

const NAMES: [&str; ALL.len()] = {
    let mut names = [""; ALL.len()];
    let mut i = 0;
    while i < ALL.len() {
        names[i] = ALL[i].name();
        i += 1;
    }
    names
};

/// Every activity name a runbook may use, in the order they are documented.
pub const KINDS: &[&str] = &NAMES;

impl ActivityKind {
    /// Every activity, in the order they are documented.
    pub const ALL: &'static [ActivityKind] = &ALL;

    /// The activity named `uses`, or `None` when there is none.
    pub fn from_name(uses: &str) -> Option<Self> {
        ALL.into_iter().find(|k| k.name() == uses)
    }

    /// Whether a step of this activity may change something outside fogbook: neither a read
    /// nor one of the steps that only wait or tell (`approval`, `wait`, `notify`).
    pub const fn mutates(self) -> bool {
        !(self.is_read_only() || matches!(self, Self::Approval | Self::Wait | Self::Notify))
    }

    /// The Azure RBAC actions a step of this activity needs, and where (what `fog.preflight`
    /// checks for the activities named in its `needs`); empty for an activity whose actions
    /// it does not check.
    pub(crate) const fn azure_actions(self) -> &'static [(&'static str, ActionScope)] {
        match self {
            Self::FogCreate => &[(
                "Microsoft.Sql/locations/instanceFailoverGroups/write",
                ActionScope::PrimaryGroup,
            )],
            Self::FogDelete => &[(
                "Microsoft.Sql/locations/instanceFailoverGroups/delete",
                ActionScope::PrimaryGroup,
            )],
            Self::FogFailover => &[(
                "Microsoft.Sql/locations/instanceFailoverGroups/failover/action",
                ActionScope::BothGroups,
            )],
            Self::FogForceFailover => &[(
                "Microsoft.Sql/locations/instanceFailoverGroups/forceFailoverAllowDataLoss/action",
                ActionScope::BothGroups,
            )],
            Self::InstanceScale | Self::InstanceSetUpdatePolicy | Self::InstanceCreateLike => {
                &[("Microsoft.Sql/managedInstances/write", ActionScope::Instances)]
            }
            Self::InstanceDelete => &[("Microsoft.Sql/managedInstances/delete", ActionScope::Instances)],
            Self::NetworkPeer => &[(
                "Microsoft.Network/virtualNetworks/virtualNetworkPeerings/write",
                ActionScope::Vnets,
            )],
            Self::NetworkOpenFogPorts => &[(
                "Microsoft.Network/networkSecurityGroups/securityRules/write",
                ActionScope::Nsgs,
            )],
            Self::Wait
            | Self::Approval
            | Self::Assert
            | Self::Notify
            | Self::Command
            | Self::Report
            | Self::InstanceGet
            | Self::DatabaseGet
            | Self::DatabasesAssertEmpty
            | Self::DatabasesDeleteCopies
            | Self::FogGet
            | Self::FogPreflight
            | Self::FogDrift => &[],
        }
    }

    /// The top-level fields of the activity's output, where they are fixed: `validate`
    /// refuses a reference to any other field, and `fogbook complete` requires them. `None`
    /// for an activity whose output has no fixed fields.
    pub const fn output_fields(self) -> Option<&'static [&'static str]> {
        let fields: &'static [&'static str] = match self {
            Self::Wait => &["woke_at", "wake_at"],
            Self::Approval => &["step_id", "by", "comment", "at", "auto"],
            Self::Assert => &["passed"],
            Self::Notify => &["status"],
            Self::Command => &["exit_code", "stdout", "stderr"],
            Self::Report => &["report"],
            Self::InstanceGet => INSTANCE,
            Self::InstanceCreateLike => INSTANCE_CREATED,
            Self::InstanceScale => &["changed", "before", "after", "arm_requests"],
            Self::InstanceSetUpdatePolicy => &["changed", "before", "policy", "instance", "arm_requests"],
            Self::InstanceDelete => &["deleted", "already_absent", "id", "arm_requests"],
            Self::DatabaseGet => &[
                "exists",
                "id",
                "name",
                "status",
                "collation",
                "creation_date",
                "failover_group_id",
                "found",
            ],
            Self::DatabasesAssertEmpty => &["databases"],
            Self::NetworkPeer => &["peerings", "note", "arm_requests"],
            Self::NetworkOpenFogPorts => &["nsgs", "arm_requests"],
            Self::FogGet => GROUP,
            Self::FogCreate => GROUP_CREATED,
            Self::FogDelete => &["deleted", "already_absent", "name", "arm_requests"],
            Self::FogFailover | Self::FogForceFailover => GROUP_FAILED_OVER,
            Self::DatabasesDeleteCopies | Self::FogPreflight | Self::FogDrift => return None,
        };
        Some(fields)
    }

    /// The JSON Schema of the activity's inputs (`with:`).
    pub fn input_schema(self) -> Schema {
        match self {
            Self::Wait => schemars::schema_for!(builtin::Wait),
            Self::Approval => schemars::schema_for!(builtin::Approval),
            Self::Assert => schemars::schema_for!(builtin::Assert),
            Self::Notify => schemars::schema_for!(builtin::Notify),
            Self::Command => schemars::schema_for!(builtin::Command),
            Self::Report => schemars::schema_for!(builtin::Report),
            Self::InstanceGet => schemars::schema_for!(azure::InstanceGet),
            Self::InstanceCreateLike => schemars::schema_for!(azure::InstanceCreateLike),
            Self::InstanceScale => schemars::schema_for!(azure::InstanceScale),
            Self::InstanceSetUpdatePolicy => schemars::schema_for!(azure::InstanceSetUpdatePolicy),
            Self::InstanceDelete => schemars::schema_for!(azure::InstanceDelete),
            Self::DatabaseGet => schemars::schema_for!(azure::DatabaseGet),
            Self::DatabasesAssertEmpty => schemars::schema_for!(azure::DatabasesAssertEmpty),
            Self::DatabasesDeleteCopies => schemars::schema_for!(azure::DatabasesDeleteCopies),
            Self::NetworkPeer => schemars::schema_for!(azure::NetworkPeer),
            Self::NetworkOpenFogPorts => schemars::schema_for!(azure::NetworkOpenFogPorts),
            Self::FogGet => schemars::schema_for!(azure::FogGet),
            Self::FogCreate => schemars::schema_for!(azure::FogCreate),
            Self::FogDelete => schemars::schema_for!(azure::FogDelete),
            Self::FogFailover => schemars::schema_for!(azure::FogFailover),
            Self::FogForceFailover => schemars::schema_for!(azure::FogForceFailover),
            Self::FogPreflight => schemars::schema_for!(azure::FogPreflight),
            Self::FogDrift => schemars::schema_for!(azure::FogDrift),
        }
    }

    /// How long the activity with resolved `input` is likely to take (reads only), or `None`
    /// for a quick step.
    pub async fn estimate(
        self,
        input: serde_json::Value,
        ctx: &ActivityCtx,
        env: &Env,
    ) -> Result<Option<Estimate>, ActivityError> {
        let fixed = |text: &str, hours| Ok(Some(Estimate::fixed(text, hours)));
        match self {
            Self::InstanceCreateLike => fixed("about 4h (a first instance in an empty subnet can take up to 6h)", 6.0),
            Self::InstanceScale => fixed("1-2h per instance (a tier or storage change takes longer)", 2.0),
            Self::InstanceSetUpdatePolicy => fixed("under 1h per instance", 1.0),
            Self::InstanceDelete => fixed("about 30 minutes", 0.5),
            Self::FogFailover | Self::FogForceFailover => fixed("about a minute", 0.02),
            Self::FogCreate => Ok(Some(azure::seeding(spec(input)?, ctx, env).await?)),
            Self::Wait
            | Self::Approval
            | Self::Assert
            | Self::Notify
            | Self::Command
            | Self::Report
            | Self::InstanceGet
            | Self::DatabaseGet
            | Self::DatabasesAssertEmpty
            | Self::DatabasesDeleteCopies
            | Self::NetworkPeer
            | Self::NetworkOpenFogPorts
            | Self::FogGet
            | Self::FogDelete
            | Self::FogPreflight
            | Self::FogDrift => Ok(None),
        }
    }

    /// Runs the activity with resolved inputs and returns its output.
    ///
    /// The caller (the engine) has committed the step's start before calling this, and
    /// commits the returned output, so the activity only performs the effect and saves
    /// progress.
    pub async fn execute(
        self,
        input: serde_json::Value,
        ctx: &ActivityCtx,
        env: &Env,
    ) -> Result<serde_json::Value, ActivityError> {
        match self {
            Self::Wait => spec::<builtin::Wait>(input)?.run(ctx).await,
            Self::Approval => spec::<builtin::Approval>(input)?.run(ctx).await,
            Self::Assert => spec::<builtin::Assert>(input)?.run(),
            Self::Notify => spec::<builtin::Notify>(input)?.run(ctx, env).await,
            Self::Command => spec::<builtin::Command>(input)?.run(ctx).await,
            Self::Report => spec::<builtin::Report>(input)?.run(),
            Self::InstanceGet => spec::<azure::InstanceGet>(input)?.run(ctx, env).await,
            Self::InstanceCreateLike => spec::<azure::InstanceCreateLike>(input)?.run(ctx, env).await,
            Self::InstanceScale => spec::<azure::InstanceScale>(input)?.run(ctx, env).await,
            Self::InstanceSetUpdatePolicy => spec::<azure::InstanceSetUpdatePolicy>(input)?.run(ctx, env).await,
            Self::InstanceDelete => spec::<azure::InstanceDelete>(input)?.run(ctx, env).await,
            Self::DatabaseGet => spec::<azure::DatabaseGet>(input)?.run(ctx, env).await,
            Self::DatabasesAssertEmpty => spec::<azure::DatabasesAssertEmpty>(input)?.run(ctx, env).await,
            Self::DatabasesDeleteCopies => spec::<azure::DatabasesDeleteCopies>(input)?.run(ctx, env).await,
            Self::NetworkPeer => spec::<azure::NetworkPeer>(input)?.run(ctx, env).await,
            Self::NetworkOpenFogPorts => spec::<azure::NetworkOpenFogPorts>(input)?.run(ctx, env).await,
            Self::FogGet => spec::<azure::FogGet>(input)?.run(ctx, env).await,
            Self::FogCreate => spec::<azure::FogCreate>(input)?.run(ctx, env).await,
            Self::FogDelete => spec::<azure::FogDelete>(input)?.run(ctx, env).await,
            Self::FogFailover => spec::<azure::FogFailover>(input)?.run(ctx, env).await,
            Self::FogForceFailover => spec::<azure::FogForceFailover>(input)?.run(ctx, env).await,
            Self::FogPreflight => spec::<azure::FogPreflight>(input)?.run(ctx, env).await,
            Self::FogDrift => spec::<azure::FogDrift>(input)?.run(ctx, env).await,
        }
    }
}

/// Where an Azure action an activity needs must be granted (see
/// [`ActivityKind::azure_actions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActionScope {
    /// The primary's resource group (group create and delete are sent there).
    PrimaryGroup,
    /// Both resource groups (a failover is sent to the secondary's; a fail-back to the other).
    BothGroups,
    /// Both instances.
    Instances,
    /// Both instances' virtual networks.
    Vnets,
    /// Both instances' subnet NSGs.
    Nsgs,
}

impl std::fmt::Display for ActivityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Activities that only read (see [`ActivityKind::is_read_only`]); false for an unknown name.
pub fn is_read_only(uses: &str) -> bool {
    ActivityKind::from_name(uses).is_some_and(ActivityKind::is_read_only)
}

/// Whether activity `uses` talks to ARM (see [`ActivityKind::needs_arm`]); false for an
/// unknown name.
pub fn needs_arm(uses: &str) -> bool {
    ActivityKind::from_name(uses).is_some_and(ActivityKind::needs_arm)
}

/// Whether a step of activity `uses` may change something outside fogbook (see
/// [`ActivityKind::mutates`]); true for an unknown name, the cautious answer.
pub fn mutates(uses: &str) -> bool {
    ActivityKind::from_name(uses).is_none_or(ActivityKind::mutates)
}

/// How long activity `uses` with resolved `input` is likely to take (reads only), or
/// `None` for a quick step or an unknown name.
pub async fn estimate(
    uses: &str,
    input: serde_json::Value,
    ctx: &ActivityCtx,
    env: &Env,
) -> Result<Option<Estimate>, ActivityError> {
    match ActivityKind::from_name(uses) {
        Some(kind) => kind.estimate(input, ctx, env).await,
        None => Ok(None),
    }
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
const INSTANCE: &[&str] = instance_fields!("found");
const INSTANCE_CREATED: &[&str] = instance_fields!("created", "arm_requests");
/// `fog.get`'s output.
const GROUP: &[&str] = group_fields!("found");
const GROUP_CREATED: &[&str] = group_fields!("created", "arm_requests");
const GROUP_FAILED_OVER: &[&str] = group_fields!("changed", "resolved_by", "arm_requests");

/// The top-level fields of the output of activity `uses`, where they are fixed (see
/// [`ActivityKind::output_fields`]). `None` for an unknown activity or one whose output has
/// no fixed fields.
pub fn output_fields(uses: &str) -> Option<&'static [&'static str]> {
    ActivityKind::from_name(uses)?.output_fields()
}

/// The JSON Schema of the inputs (`with:`) of activity `uses`, or `None` when no such
/// activity exists.
pub fn input_schema(uses: &str) -> Option<Schema> {
    ActivityKind::from_name(uses).map(ActivityKind::input_schema)
}

/// Runs activity `uses` with resolved inputs and returns its output (see
/// [`ActivityKind::execute`]); an unknown name is invalid input.
pub async fn execute(
    uses: &str,
    input: serde_json::Value,
    ctx: &ActivityCtx,
    env: &Env,
) -> Result<serde_json::Value, ActivityError> {
    match ActivityKind::from_name(uses) {
        Some(kind) => kind.execute(input, ctx, env).await,
        None => Err(ActivityError::invalid(format!("unknown activity `{uses}`"))),
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

    /// Every name maps back to its kind, and no two kinds share a name.
    #[test]
    fn names_round_trip() {
        assert_eq!(KINDS.len(), ActivityKind::ALL.len());
        for (kind, name) in ActivityKind::ALL.iter().zip(KINDS) {
            assert_eq!(kind.name(), *name);
            assert_eq!(ActivityKind::from_name(name), Some(*kind));
        }
        assert_eq!(ActivityKind::from_name("nope"), None);
    }

    /// "Needs ARM" is a property of each kind, not of the spelling of its name: the built-ins
    /// do not, every Azure activity does, and an unknown name does not.
    #[test]
    fn needs_arm_is_the_azure_activities() {
        let arm: Vec<&str> = ActivityKind::ALL
            .iter()
            .filter(|k| k.needs_arm())
            .map(|k| k.name())
            .collect();
        let builtin: Vec<&str> = ActivityKind::ALL
            .iter()
            .filter(|k| !k.needs_arm())
            .map(|k| k.name())
            .collect();
        assert_eq!(builtin, ["wait", "approval", "assert", "notify", "command", "report"]);
        assert!(arm.iter().all(|n| {
            ["instance.", "database.", "databases.", "network.", "fog."]
                .iter()
                .any(|p| n.starts_with(p))
        }));
        assert!(needs_arm("fog.failover"));
        assert!(!needs_arm("command"));
        assert!(!needs_arm("no.such.activity"));
    }

    /// The read-only set and the mutating set do not overlap, and an unknown name is treated
    /// as mutating.
    #[test]
    fn read_only_activities_do_not_mutate() {
        for kind in ActivityKind::ALL {
            assert!(!(kind.is_read_only() && kind.mutates()), "{kind}");
        }
        assert!(!mutates("approval") && !mutates("fog.get") && mutates("fog.failover") && mutates("nope"));
        assert!(is_read_only("fog.drift") && !is_read_only("nope"));
    }
}
