//! Long-running operations: their record, their lazy completion and their effects.
//!
//! An operation is created `InProgress` with a simulated end time. [`complete_due`] runs before
//! every request is served: it completes, in end-time order, every operation whose end time the
//! clock has passed, and applies its effect to the world (or, when a fault planned it, ends it
//! `Failed` without the effect). Nothing happens between requests, so there are no timers.

use serde::{Deserialize, Serialize};

use crate::clock::SimTime;
use crate::ids;
use crate::world::{FailoverGroup, World};

/// `InProgress`, then one of the terminal states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OpStatus {
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl OpStatus {
    /// Azure's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OpStatus::InProgress => "InProgress",
            OpStatus::Succeeded => "Succeeded",
            OpStatus::Failed => "Failed",
            OpStatus::Canceled => "Canceled",
        }
    }
}

/// The error object of a failed or canceled operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpError {
    pub(crate) code: String,
    pub(crate) message: String,
}

/// Which resource provider's polling URLs an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PollKind {
    ManagedInstance,
    FailoverGroup,
    Network,
}

/// A change of an instance that takes time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstanceChange {
    pub(crate) v_cores: Option<u32>,
    pub(crate) storage_gb: Option<u32>,
    pub(crate) sku_name: Option<String>,
    pub(crate) tier: Option<String>,
    pub(crate) family: Option<String>,
    pub(crate) database_format: Option<String>,
    #[serde(default)]
    pub(crate) next_gen: Option<bool>,
}

/// A change of a failover group's endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GroupChange {
    pub(crate) read_write_policy: String,
    pub(crate) grace_minutes: Option<i32>,
    pub(crate) read_only_policy: Option<String>,
}

/// What an operation does when it succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum OpKind {
    InstanceCreate {
        instance: String,
    },
    InstanceUpdate {
        instance: String,
        change: InstanceChange,
    },
    InstanceDelete {
        instance: String,
    },
    GroupCreate {
        group: String,
    },
    GroupUpdate {
        group: String,
        change: GroupChange,
    },
    GroupDelete {
        group: String,
    },
    /// A failover requested at the view `(subscription, resource group, location)`.
    GroupFailover {
        group: String,
        forced: bool,
        subscription: String,
        resource_group: String,
        location: String,
    },
    /// A network write, complete when accepted.
    Network,
    /// A new user database on `instance` (and its replica on a group's secondary).
    DatabaseCreate {
        instance: String,
        database: String,
        collation: String,
    },
    /// A database dropped from `instance` (and its replica from a group's secondary).
    DatabaseDelete {
        instance: String,
        database: String,
    },
}

/// One long-running operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Operation {
    pub(crate) id: String,
    pub(crate) kind: OpKind,
    pub(crate) poll: PollKind,
    pub(crate) subscription: String,
    /// Region in the polling URLs.
    pub(crate) location: String,
    /// The resource the operation acts on (for the final GET of a PUT or PATCH).
    pub(crate) resource_id: String,
    /// Keys of the resources this operation holds; a second write on them conflicts.
    pub(crate) locks: Vec<String>,
    /// Hash of method, path and body: an identical request re-attaches instead of restarting.
    pub(crate) fingerprint: String,
    pub(crate) api_version: String,
    pub(crate) started: SimTime,
    pub(crate) ends: SimTime,
    pub(crate) status: OpStatus,
    pub(crate) finished: Option<SimTime>,
    pub(crate) error: Option<OpError>,
    /// Set by a fault: the operation will end `Failed` with this error instead of succeeding.
    pub(crate) planned_failure: Option<OpError>,
}

impl Operation {
    /// Whether it is still running.
    pub(crate) fn is_running(&self) -> bool {
        self.status == OpStatus::InProgress
    }

    /// Progress in percent at `now`.
    pub(crate) fn percent_complete(&self, now: SimTime) -> u32 {
        if !self.is_running() {
            return 100;
        }
        let total = self.started.secs_until(self.ends);
        if total <= 0.0 {
            return 99;
        }
        let done = self.started.secs_until(now) / total * 100.0;
        done.clamp(0.0, 99.0) as u32
    }

    /// Simulated seconds left at `now`.
    pub(crate) fn remaining_secs(&self, now: SimTime) -> f64 {
        now.secs_until(self.ends).max(0.0)
    }
}

/// The failure a fault plants in an operation: what Azure reports when it rolls back.
pub(crate) fn planned_failure(kind: &OpKind) -> OpError {
    match kind {
        OpKind::GroupFailover { forced: false, .. } => OpError {
            code: "PlannedFailoverTimedOut".into(),
            message: "The planned failover timed out; the failover group roles were not changed.".into(),
        },
        _ => OpError {
            code: "OperationTimedOut".into(),
            message: "The operation timed out and automatically rolled back. Please retry the operation.".into(),
        },
    }
}

/// Completes every operation whose end time is at or before `now`, in end-time order.
/// Returns whether anything changed.
pub(crate) fn complete_due(world: &mut World, now: SimTime) -> bool {
    let mut changed = false;
    loop {
        let next = world
            .operations
            .values()
            .filter(|op| op.is_running() && op.ends <= now)
            .min_by(|a, b| a.ends.cmp(&b.ends).then_with(|| a.id.cmp(&b.id)))
            .map(|op| op.id.clone());
        let Some(id) = next else { return changed };
        finish(world, &id);
        changed = true;
    }
}

/// Ends a running operation as `Canceled`, without its effect.
pub(crate) fn cancel(world: &mut World, op_id: &str, now: SimTime, message: &str) {
    let Some(op) = world.operations.get_mut(op_id) else {
        return;
    };
    op.status = OpStatus::Canceled;
    op.finished = Some(now);
    op.error = Some(OpError {
        code: "OperationCancelled".into(),
        message: message.into(),
    });
    let kind = op.kind.clone();
    match kind {
        OpKind::InstanceCreate { instance } | OpKind::InstanceUpdate { instance, .. } => {
            if let Some(inst) = world.instances.get_mut(&instance) {
                inst.provisioning_state = "Canceled".into();
            }
        }
        OpKind::GroupCreate { group } => {
            world.failover_groups.remove(&group);
        }
        _ => {}
    }
}

fn finish(world: &mut World, op_id: &str) {
    let Some(op) = world.operations.get_mut(op_id) else {
        return;
    };
    op.finished = Some(op.ends);
    let failure = op.planned_failure.clone();
    let kind = op.kind.clone();
    tracing::info!(
        operation_id = %op.id,
        resource = %op.resource_id,
        failed = failure.is_some(),
        "sim.operation_finished"
    );
    if let Some(error) = failure {
        op.status = OpStatus::Failed;
        op.error = Some(error);
        fail_effect(world, &kind);
    } else {
        op.status = OpStatus::Succeeded;
        let ends = op.ends;
        apply_success(world, &kind, ends);
    }
}

fn fail_effect(world: &mut World, kind: &OpKind) {
    match kind {
        OpKind::InstanceCreate { instance } => {
            if let Some(inst) = world.instances.get_mut(instance) {
                inst.provisioning_state = "Failed".into();
                inst.state = "Failed".into();
            }
        }
        OpKind::InstanceUpdate { instance, .. } | OpKind::InstanceDelete { instance } => {
            if let Some(inst) = world.instances.get_mut(instance) {
                inst.provisioning_state = "Failed".into();
                inst.state = "Ready".into();
            }
        }
        // Seeding that fails removes the group and whatever was seeded (docs: "creation fails
        // and seeded databases are removed").
        OpKind::GroupCreate { group } => {
            world.failover_groups.remove(group);
        }
        OpKind::GroupUpdate { .. }
        | OpKind::GroupDelete { .. }
        | OpKind::GroupFailover { .. }
        | OpKind::Network
        | OpKind::DatabaseCreate { .. }
        | OpKind::DatabaseDelete { .. } => {}
    }
}

/// Applies what a successful operation of `kind` does.
pub(crate) fn apply_success(world: &mut World, kind: &OpKind, now: SimTime) {
    match kind {
        OpKind::InstanceCreate { instance } => {
            if let Some(inst) = world.instances.get_mut(instance) {
                inst.provisioning_state = "Succeeded".into();
                inst.state = "Ready".into();
            }
        }
        OpKind::InstanceUpdate { instance, change } => {
            if let Some(inst) = world.instances.get_mut(instance) {
                if let Some(v) = change.v_cores {
                    inst.v_cores = v;
                }
                if let Some(s) = change.storage_gb {
                    inst.storage_gb = s;
                }
                if let Some(s) = &change.sku_name {
                    inst.sku_name = s.clone();
                }
                if let Some(t) = &change.tier {
                    inst.tier = t.clone();
                }
                if let Some(f) = &change.family {
                    inst.family = f.clone();
                }
                if let Some(f) = &change.database_format {
                    inst.database_format = f.clone();
                }
                if let Some(g) = change.next_gen {
                    inst.next_gen = g;
                }
                inst.provisioning_state = "Succeeded".into();
                inst.state = "Ready".into();
            }
        }
        OpKind::InstanceDelete { instance } => {
            world.instances.remove(instance);
        }
        OpKind::GroupCreate { group } => seed(world, group),
        OpKind::GroupUpdate { group, change } => {
            if let Some(g) = world.failover_groups.get_mut(group) {
                g.read_write_policy = change.read_write_policy.clone();
                g.grace_minutes = change.grace_minutes;
                g.read_only_policy = change.read_only_policy.clone();
            }
        }
        OpKind::GroupDelete { group } => {
            if let Some(g) = world.failover_groups.remove(group) {
                detach(world, &g);
            }
        }
        OpKind::GroupFailover { group, .. } => {
            if let Some(g) = world.failover_groups.get_mut(group) {
                std::mem::swap(&mut g.primary, &mut g.secondary);
                let g = g.clone();
                set_read_only(world, &g.primary.instance_id, false);
                set_read_only(world, &g.secondary.instance_id, true);
            }
        }
        OpKind::Network => {}
        OpKind::DatabaseCreate {
            instance,
            database,
            collation,
        } => create_database(world, instance, database, collation, now),
        OpKind::DatabaseDelete { instance, database } => {
            let group = world.instances.get(instance).and_then(|i| {
                world
                    .group_of(&i.id)
                    .filter(|g| ids::key(&g.primary.instance_id) == *instance)
                    .map(|g| ids::key(&g.secondary.instance_id))
            });
            for key in std::iter::once(instance.clone()).chain(group) {
                if let Some(inst) = world.instances.get_mut(&key) {
                    inst.databases.retain(|d| !d.name.eq_ignore_ascii_case(database));
                }
            }
        }
    }
}

/// A new database on `instance`; on a group's primary whose seeding is done, it joins the
/// group at once and the secondary gets its read-only replica.
fn create_database(world: &mut World, instance: &str, database: &str, collation: &str, now: SimTime) {
    let Some(inst) = world.instances.get(instance) else {
        return;
    };
    let group = world
        .group_of(&inst.id)
        .filter(|g| ids::key(&g.primary.instance_id) == instance && g.replication_state == "CATCH_UP")
        .map(|g| (g.name.clone(), ids::key(&g.secondary.instance_id)));
    let db = crate::world::Database {
        name: database.to_owned(),
        size_gb: 0.0,
        collation: collation.to_owned(),
        created: now,
        failover_group: group.as_ref().map(|(name, _)| name.clone()),
        read_only: false,
    };
    if let Some((_, secondary)) = &group
        && let Some(sec) = world.instances.get_mut(secondary)
    {
        let mut replica = db.clone();
        replica.read_only = true;
        sec.databases.push(replica);
    }
    if let Some(inst) = world.instances.get_mut(instance) {
        inst.databases.push(db);
    }
}

/// Seeding done: the secondary holds a read-only replica of every primary database.
fn seed(world: &mut World, group: &str) {
    let Some(g) = world.failover_groups.get_mut(group) else {
        return;
    };
    g.replication_state = "CATCH_UP".into();
    let g = g.clone();
    let Some(primary) = world.instances.get_mut(&ids::key(&g.primary.instance_id)) else {
        return;
    };
    for db in &mut primary.databases {
        db.failover_group = Some(g.name.clone());
    }
    let replicas: Vec<_> = primary
        .databases
        .iter()
        .map(|db| {
            let mut copy = db.clone();
            copy.read_only = true;
            copy
        })
        .collect();
    if let Some(secondary) = world.instances.get_mut(&ids::key(&g.secondary.instance_id)) {
        secondary.databases = replicas;
    }
}

/// Group deleted: both copies stay, read-write and detached from any group.
fn detach(world: &mut World, g: &FailoverGroup) {
    for member in [&g.primary, &g.secondary] {
        if let Some(inst) = world.instances.get_mut(&ids::key(&member.instance_id)) {
            for db in &mut inst.databases {
                db.failover_group = None;
                db.read_only = false;
            }
        }
    }
}

fn set_read_only(world: &mut World, instance_id: &str, read_only: bool) {
    if let Some(inst) = world.instances.get_mut(&ids::key(instance_id)) {
        for db in &mut inst.databases {
            db.read_only = read_only;
        }
    }
}
