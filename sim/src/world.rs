//! The emulated estate as it is now: instances with their databases, failover groups, virtual
//! networks and security groups, plus the long-running operations in flight.
//!
//! Maps are keyed by the lower-case ARM id ([`crate::ids::key`]) and are `BTreeMap`s, so every
//! listing and every completion order is deterministic. The whole world serialises to the state
//! file and to `GET /_sim/state`; its shape is ours, not Azure's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::SimTime;
use crate::ids;
use crate::lro::Operation;

/// Version of the persisted world format.
pub(crate) const WORLD_VERSION: u32 = 1;

/// Everything the emulator knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct World {
    pub(crate) version: u32,
    /// The simulated wall-clock time at [`SimTime`] zero.
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) epoch: time::OffsetDateTime,
    pub(crate) resource_groups: BTreeMap<String, ResourceGroup>,
    pub(crate) instances: BTreeMap<String, Instance>,
    /// Failover groups by lower-case name: the name is global (it is a DNS name).
    pub(crate) failover_groups: BTreeMap<String, FailoverGroup>,
    pub(crate) virtual_networks: BTreeMap<String, VirtualNetwork>,
    pub(crate) security_groups: BTreeMap<String, SecurityGroup>,
    pub(crate) operations: BTreeMap<String, Operation>,
    pub(crate) throttling: ThrottleLimits,
    /// The Microsoft Entra tenant of each subscription (by subscription id).
    #[serde(default)]
    pub(crate) tenants: BTreeMap<String, String>,
    /// Role assignments per principal; `None`: every caller may do everything.
    #[serde(default)]
    pub(crate) principals: Option<Vec<Principal>>,
}

/// A caller, known by its bearer token, and what it may do where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Principal {
    /// The bearer token that identifies it; `*` matches any token no other principal has.
    pub(crate) token: String,
    pub(crate) name: String,
    pub(crate) assignments: Vec<Assignment>,
}

/// A role assignment: `actions` minus `not_actions`, at `scope` and below.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Assignment {
    pub(crate) scope: String,
    pub(crate) actions: Vec<String>,
    #[serde(default)]
    pub(crate) not_actions: Vec<String>,
}

/// A resource group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResourceGroup {
    pub(crate) subscription: String,
    pub(crate) name: String,
    pub(crate) location: String,
}

/// A managed instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) sku_name: String,
    pub(crate) tier: String,
    pub(crate) family: String,
    pub(crate) v_cores: u32,
    pub(crate) storage_gb: u32,
    pub(crate) database_format: String,
    /// Next-gen General Purpose (`isGeneralPurposeV2`).
    #[serde(default)]
    pub(crate) next_gen: bool,
    pub(crate) dns_zone: String,
    pub(crate) subnet_id: String,
    pub(crate) instance_pool_id: Option<String>,
    pub(crate) provisioning_state: String,
    pub(crate) state: String,
    pub(crate) administrator_login: Option<String>,
    pub(crate) collation: String,
    pub(crate) license_type: Option<String>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) created: SimTime,
    pub(crate) databases: Vec<Database>,
}

impl Instance {
    /// The sum of the sizes of the instance's databases.
    pub(crate) fn used_gb(&self) -> f64 {
        self.databases.iter().map(|d| d.size_gb).sum()
    }

    /// `{name}.{dnsZone}.database.windows.net`.
    pub(crate) fn fqdn(&self) -> String {
        format!("{}.{}.database.windows.net", self.name, self.dns_zone)
    }
}

/// A user database on an instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Database {
    pub(crate) name: String,
    pub(crate) size_gb: f64,
    pub(crate) collation: String,
    pub(crate) created: SimTime,
    /// The failover group whose replica this database is part of, by name.
    pub(crate) failover_group: Option<String>,
    /// A geo-secondary replica is read-only; every other database is read-write.
    pub(crate) read_only: bool,
}

/// One member of a failover group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Member {
    pub(crate) instance_id: String,
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    /// Normalised region name.
    pub(crate) location: String,
}

impl Member {
    /// The member of `instance`.
    pub(crate) fn of(instance: &Instance) -> Member {
        Member {
            instance_id: instance.id.clone(),
            subscription: instance.subscription.clone(),
            resource_group: instance.resource_group.clone(),
            location: instance.location.clone(),
        }
    }

    /// Whether a request to `(subscription, resource group, location)` addresses this member's view.
    pub(crate) fn is_at(&self, sub: &str, rg: &str, location: &str) -> bool {
        self.subscription.eq_ignore_ascii_case(sub)
            && self.resource_group.eq_ignore_ascii_case(rg)
            && self.location == crate::regions::normalize(location)
    }
}

/// An instance failover group: one resource seen through two views.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FailoverGroup {
    pub(crate) name: String,
    pub(crate) primary: Member,
    pub(crate) secondary: Member,
    pub(crate) read_write_policy: String,
    pub(crate) grace_minutes: Option<i32>,
    pub(crate) read_only_policy: Option<String>,
    pub(crate) secondary_type: Option<String>,
    /// `SEEDING` until the initial copy completes, then `CATCH_UP`.
    pub(crate) replication_state: String,
}

/// Which side of a failover group a view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Primary,
    Secondary,
}

impl Role {
    /// Azure's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "Primary",
            Role::Secondary => "Secondary",
        }
    }
}

impl FailoverGroup {
    /// The role of the view at `(subscription, resource group, location)`, if it is one of the two.
    pub(crate) fn role_at(&self, sub: &str, rg: &str, location: &str) -> Option<Role> {
        if self.primary.is_at(sub, rg, location) {
            Some(Role::Primary)
        } else if self.secondary.is_at(sub, rg, location) {
            Some(Role::Secondary)
        } else {
            None
        }
    }

    /// The member whose view has `role`.
    pub(crate) fn member(&self, role: Role) -> &Member {
        match role {
            Role::Primary => &self.primary,
            Role::Secondary => &self.secondary,
        }
    }

    /// Whether `instance_id` is one of the two members.
    pub(crate) fn involves(&self, instance_id: &str) -> bool {
        ids::key(&self.primary.instance_id) == ids::key(instance_id)
            || ids::key(&self.secondary.instance_id) == ids::key(instance_id)
    }
}

/// A virtual network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VirtualNetwork {
    pub(crate) id: String,
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) address_prefixes: Vec<String>,
    pub(crate) subnets: Vec<Subnet>,
    pub(crate) peerings: Vec<Peering>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) resource_guid: String,
}

impl VirtualNetwork {
    /// The subnet named `name` (case-insensitive).
    pub(crate) fn subnet(&self, name: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// The peering named `name` (case-insensitive).
    pub(crate) fn peering(&self, name: &str) -> Option<&Peering> {
        self.peerings.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// A subnet of a virtual network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Subnet {
    pub(crate) name: String,
    pub(crate) address_prefix: String,
    pub(crate) security_group_id: Option<String>,
    pub(crate) route_table_id: Option<String>,
    /// Service names the subnet is delegated to, such as `Microsoft.Sql/managedInstances`.
    pub(crate) delegations: Vec<Delegation>,
}

/// A subnet delegation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Delegation {
    pub(crate) name: String,
    pub(crate) service_name: String,
}

/// One direction of a virtual network peering.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Peering {
    pub(crate) name: String,
    pub(crate) remote_id: String,
    pub(crate) allow_virtual_network_access: bool,
    pub(crate) allow_forwarded_traffic: bool,
    pub(crate) allow_gateway_transit: bool,
    pub(crate) use_remote_gateways: bool,
}

/// A network security group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecurityGroup {
    pub(crate) id: String,
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) rules: Vec<SecurityRule>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) resource_guid: String,
}

/// A security rule; the singular and plural forms of each range are kept as sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SecurityRule {
    pub(crate) name: String,
    pub(crate) protocol: String,
    pub(crate) access: String,
    pub(crate) priority: i32,
    pub(crate) direction: String,
    pub(crate) source_port_range: Option<String>,
    pub(crate) source_port_ranges: Vec<String>,
    pub(crate) destination_port_range: Option<String>,
    pub(crate) destination_port_ranges: Vec<String>,
    pub(crate) source_address_prefix: Option<String>,
    pub(crate) source_address_prefixes: Vec<String>,
    pub(crate) destination_address_prefix: Option<String>,
    pub(crate) destination_address_prefixes: Vec<String>,
    pub(crate) description: Option<String>,
}

impl SecurityRule {
    /// All destination port ranges, singular and plural together.
    pub(crate) fn destination_ports(&self) -> Vec<&str> {
        self.destination_port_range
            .iter()
            .map(String::as_str)
            .chain(self.destination_port_ranges.iter().map(String::as_str))
            .collect()
    }
}

/// Token bucket sizes and refill rates, per subscription and operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThrottleLimits {
    pub(crate) reads: BucketLimit,
    pub(crate) writes: BucketLimit,
    pub(crate) deletes: BucketLimit,
}

/// One bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BucketLimit {
    pub(crate) burst: f64,
    pub(crate) per_second: f64,
    /// The share (0 to below 1) of this bucket that the subscription's other clients (the
    /// portal, Terraform, monitoring) spend: they hold that share of the burst and take that
    /// share of the refill, so the remaining headers and the 429s reflect them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) other_clients: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits {
            reads: BucketLimit {
                burst: 250.0,
                per_second: 25.0,
                other_clients: 0.0,
            },
            writes: BucketLimit {
                burst: 200.0,
                per_second: 10.0,
                other_clients: 0.0,
            },
            deletes: BucketLimit {
                burst: 200.0,
                per_second: 10.0,
                other_clients: 0.0,
            },
        }
    }
}

impl World {
    /// The instance with this id.
    pub(crate) fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.get(&ids::key(id))
    }

    /// The failover group `instance_id` belongs to, if any.
    pub(crate) fn group_of(&self, instance_id: &str) -> Option<&FailoverGroup> {
        self.failover_groups.values().find(|g| g.involves(instance_id))
    }

    /// The virtual network and subnet an instance's `subnetId` points at.
    pub(crate) fn subnet(&self, subnet_id: &str) -> Option<(&VirtualNetwork, &Subnet)> {
        let (vnet_id, subnet) = ids::split_subnet(subnet_id)?;
        let vnet = self.virtual_networks.get(&ids::key(&vnet_id))?;
        let subnet = vnet.subnet(&subnet)?;
        Some((vnet, subnet))
    }

    /// The in-flight operation that holds `resource_key`, if any.
    pub(crate) fn running_operation_on(&self, resource_key: &str) -> Option<&Operation> {
        self.operations
            .values()
            .find(|op| op.is_running() && op.locks.iter().any(|k| k == resource_key))
    }

    /// Whether a resource group exists.
    pub(crate) fn has_resource_group(&self, sub: &str, rg: &str) -> bool {
        self.resource_groups.contains_key(&rg_key(sub, rg))
    }
}

/// The key of a resource group.
pub(crate) fn rg_key(sub: &str, rg: &str) -> String {
    ids::key(&format!("/subscriptions/{sub}/resourceGroups/{rg}"))
}
