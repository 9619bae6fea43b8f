//! Turning the world into Azure's wire shapes.

use crate::clock::SimTime;
use crate::ids;
use crate::regions;
use crate::rules;
use crate::wire::{
    AddressSpace, DelegationOut, DelegationPropertiesOut, FailoverGroupOut, FailoverGroupPropertiesOut, IdRef,
    InstancePair, ManagedDatabaseOut, ManagedDatabasePropertiesOut, ManagedInstanceOut, ManagedInstancePropertiesOut,
    PartnerRegion, PeeringOut, PeeringPropertiesOut, ReadOnlyEndpoint, ReadWriteEndpoint, SecurityGroupOut,
    SecurityGroupPropertiesOut, SecurityRuleOut, SecurityRuleProperties, SkuOut, SubnetOut, SubnetPropertiesOut,
    VirtualNetworkOut, VirtualNetworkPropertiesOut,
};
use crate::world::{
    Database, FailoverGroup, Instance, Peering, Role, SecurityGroup, SecurityRule, Subnet, VirtualNetwork, World,
};

fn etag(seed: &str) -> String {
    format!("W/\"{}\"", crate::estate::derived_guid(seed))
}

/// A managed instance.
pub(crate) fn instance(world: &World, inst: &Instance) -> ManagedInstanceOut {
    ManagedInstanceOut {
        id: inst.id.clone(),
        name: inst.name.clone(),
        kind: "Microsoft.Sql/managedInstances",
        location: inst.location.clone(),
        tags: inst.tags.clone(),
        sku: SkuOut {
            name: inst.sku_name.clone(),
            tier: inst.tier.clone(),
            family: inst.family.clone(),
            capacity: inst.v_cores,
        },
        properties: ManagedInstancePropertiesOut {
            provisioning_state: inst.provisioning_state.clone(),
            state: inst.state.clone(),
            fully_qualified_domain_name: inst.fqdn(),
            administrator_login: inst.administrator_login.clone(),
            subnet_id: inst.subnet_id.clone(),
            license_type: inst.license_type.clone(),
            v_cores: inst.v_cores,
            storage_size_in_gb: inst.storage_gb,
            collation: inst.collation.clone(),
            dns_zone: inst.dns_zone.clone(),
            instance_pool_id: inst.instance_pool_id.clone(),
            public_data_endpoint_enabled: false,
            proxy_override: "Proxy",
            timezone_id: "UTC",
            minimal_tls_version: "1.2",
            current_backup_storage_redundancy: "Geo",
            requested_backup_storage_redundancy: "Geo",
            zone_redundant: false,
            database_format: inst.database_format.clone(),
            is_general_purpose_v2: inst.next_gen,
            create_time: inst.created.rfc3339(world.epoch),
            // Azure's default maintenance window; the emulator does not model others.
            maintenance_configuration_id: format!(
                "/subscriptions/{}/providers/Microsoft.Maintenance/publicMaintenanceConfigurations/SQL_Default",
                inst.subscription
            ),
        },
    }
}

/// A managed database of `inst`.
pub(crate) fn database(world: &World, inst: &Instance, db: &Database) -> ManagedDatabaseOut {
    let group_id = db
        .failover_group
        .as_ref()
        .map(|g| ids::fog_view(&inst.subscription, &inst.resource_group, &inst.location, g));
    ManagedDatabaseOut {
        id: format!("{}/databases/{}", inst.id, db.name),
        name: db.name.clone(),
        kind: "Microsoft.Sql/managedInstances/databases",
        location: inst.location.clone(),
        properties: ManagedDatabasePropertiesOut {
            collation: db.collation.clone(),
            status: "Online",
            creation_date: db.created.rfc3339(world.epoch),
            default_secondary_location: regions::pair_of(&inst.location).map(str::to_owned),
            failover_group_id: group_id,
        },
    }
}

/// The view of `group` whose local role is `role`.
pub(crate) fn group_view(group: &FailoverGroup, role: Role) -> FailoverGroupOut {
    let local = group.member(role);
    let partner_role = match role {
        Role::Primary => Role::Secondary,
        Role::Secondary => Role::Primary,
    };
    let partner = group.member(partner_role);
    // Azure answers with the display name of the location, in the id as in `partnerRegions`
    // (`.../locations/Japan East/...`, `"location": "Japan West"`), whatever the request used.
    FailoverGroupOut {
        id: ids::fog_view(
            &local.subscription,
            &local.resource_group,
            regions::display(&local.location),
            &group.name,
        ),
        name: group.name.clone(),
        kind: "Microsoft.Sql/locations/instanceFailoverGroups",
        properties: FailoverGroupPropertiesOut {
            read_write_endpoint: ReadWriteEndpoint {
                failover_policy: Some(group.read_write_policy.clone()),
                failover_with_data_loss_grace_period_minutes: group.grace_minutes,
            },
            read_only_endpoint: ReadOnlyEndpoint {
                failover_policy: Some(group.read_only_policy.clone().unwrap_or_else(|| "Disabled".into())),
            },
            replication_role: role.as_str(),
            replication_state: group.replication_state.clone(),
            partner_regions: vec![PartnerRegion {
                location: Some(regions::display(&partner.location).to_owned()),
                replication_role: Some(partner_role.as_str().to_owned()),
            }],
            managed_instance_pairs: vec![InstancePair {
                primary_managed_instance_id: Some(group.primary.instance_id.clone()),
                partner_managed_instance_id: Some(group.secondary.instance_id.clone()),
            }],
            secondary_type: group.secondary_type.clone().unwrap_or_else(|| "Geo".into()),
        },
    }
}

/// A subnet of `vnet`.
pub(crate) fn subnet(vnet: &VirtualNetwork, s: &Subnet) -> SubnetOut {
    let id = format!("{}/subnets/{}", vnet.id, s.name);
    SubnetOut {
        etag: etag(&id),
        properties: SubnetPropertiesOut {
            provisioning_state: "Succeeded",
            address_prefix: s.address_prefix.clone(),
            network_security_group: s.security_group_id.clone().map(|id| IdRef { id }),
            route_table: s.route_table_id.clone().map(|id| IdRef { id }),
            delegations: s
                .delegations
                .iter()
                .map(|d| DelegationOut {
                    id: format!("{id}/delegations/{}", d.name),
                    name: d.name.clone(),
                    kind: "Microsoft.Network/virtualNetworks/subnets/delegations",
                    properties: DelegationPropertiesOut {
                        service_name: d.service_name.clone(),
                        provisioning_state: "Succeeded",
                    },
                })
                .collect(),
        },
        id,
        name: s.name.clone(),
        kind: "Microsoft.Network/virtualNetworks/subnets",
    }
}

/// A peering of `vnet`.
pub(crate) fn peering(world: &World, vnet: &VirtualNetwork, p: &Peering) -> PeeringOut {
    let id = format!("{}/virtualNetworkPeerings/{}", vnet.id, p.name);
    let remote_space = world
        .virtual_networks
        .get(&ids::key(&p.remote_id))
        .map(|r| r.address_prefixes.clone())
        .unwrap_or_default();
    let local = AddressSpace {
        address_prefixes: vnet.address_prefixes.clone(),
    };
    let remote = AddressSpace {
        address_prefixes: remote_space,
    };
    PeeringOut {
        etag: etag(&id),
        id,
        name: p.name.clone(),
        kind: "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
        properties: PeeringPropertiesOut {
            provisioning_state: "Succeeded",
            peering_state: rules::peering_state(world, vnet, &p.remote_id),
            peering_sync_level: "FullyInSync",
            remote_virtual_network: IdRef {
                id: p.remote_id.clone(),
            },
            allow_virtual_network_access: p.allow_virtual_network_access,
            allow_forwarded_traffic: p.allow_forwarded_traffic,
            allow_gateway_transit: p.allow_gateway_transit,
            use_remote_gateways: p.use_remote_gateways,
            remote_address_space: remote.clone(),
            remote_virtual_network_address_space: remote,
            local_address_space: local.clone(),
            local_virtual_network_address_space: local,
        },
    }
}

/// A virtual network with its subnets and peerings.
pub(crate) fn vnet(world: &World, vnet: &VirtualNetwork) -> VirtualNetworkOut {
    VirtualNetworkOut {
        id: vnet.id.clone(),
        name: vnet.name.clone(),
        kind: "Microsoft.Network/virtualNetworks",
        location: vnet.location.clone(),
        etag: etag(&vnet.id),
        tags: vnet.tags.clone(),
        properties: VirtualNetworkPropertiesOut {
            provisioning_state: "Succeeded",
            resource_guid: vnet.resource_guid.clone(),
            address_space: AddressSpace {
                address_prefixes: vnet.address_prefixes.clone(),
            },
            subnets: vnet.subnets.iter().map(|s| subnet(vnet, s)).collect(),
            virtual_network_peerings: vnet.peerings.iter().map(|p| peering(world, vnet, p)).collect(),
        },
    }
}

/// A security rule of `nsg`.
pub(crate) fn rule(nsg: &SecurityGroup, r: &SecurityRule) -> SecurityRuleOut {
    let id = format!("{}/securityRules/{}", nsg.id, r.name);
    SecurityRuleOut {
        etag: etag(&id),
        id,
        name: r.name.clone(),
        kind: "Microsoft.Network/networkSecurityGroups/securityRules",
        properties: SecurityRuleProperties {
            description: r.description.clone(),
            protocol: Some(r.protocol.clone()),
            source_port_range: r.source_port_range.clone(),
            source_port_ranges: r.source_port_ranges.clone(),
            destination_port_range: r.destination_port_range.clone(),
            destination_port_ranges: r.destination_port_ranges.clone(),
            source_address_prefix: r.source_address_prefix.clone(),
            source_address_prefixes: r.source_address_prefixes.clone(),
            destination_address_prefix: r.destination_address_prefix.clone(),
            destination_address_prefixes: r.destination_address_prefixes.clone(),
            access: Some(r.access.clone()),
            priority: Some(r.priority),
            direction: Some(r.direction.clone()),
            provisioning_state: Some("Succeeded"),
        },
    }
}

/// A network security group with its rules and the subnets that use it.
pub(crate) fn nsg(world: &World, nsg: &SecurityGroup) -> SecurityGroupOut {
    let subnets = world
        .virtual_networks
        .values()
        .flat_map(|v| {
            v.subnets
                .iter()
                .filter(|s| {
                    s.security_group_id
                        .as_deref()
                        .is_some_and(|id| ids::key(id) == ids::key(&nsg.id))
                })
                .map(move |s| IdRef {
                    id: format!("{}/subnets/{}", v.id, s.name),
                })
        })
        .collect();
    SecurityGroupOut {
        id: nsg.id.clone(),
        name: nsg.name.clone(),
        kind: "Microsoft.Network/networkSecurityGroups",
        location: nsg.location.clone(),
        etag: etag(&nsg.id),
        tags: nsg.tags.clone(),
        properties: SecurityGroupPropertiesOut {
            provisioning_state: "Succeeded",
            resource_guid: nsg.resource_guid.clone(),
            security_rules: nsg.rules.iter().map(|r| rule(nsg, r)).collect(),
            default_security_rules: default_rules(nsg),
            subnets,
        },
    }
}

/// Azure's six platform rules of every network security group (priority 65000 and above):
/// inbound from the virtual network and the load balancer, outbound to the virtual network and
/// the internet, each followed by a deny-all. Read-only; the emulator does not evaluate them
/// (docs ask for explicit rules for the geo-replication ports).
pub(crate) fn default_rules(nsg: &SecurityGroup) -> Vec<SecurityRuleOut> {
    const DEFAULTS: &[(&str, &str, &str, &str, i32, &str, &str)] = &[
        (
            "AllowVnetInBound",
            "Allow inbound traffic from all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            65000,
            "Allow",
            "Inbound",
        ),
        (
            "AllowAzureLoadBalancerInBound",
            "Allow inbound traffic from azure load balancer",
            "AzureLoadBalancer",
            "*",
            65001,
            "Allow",
            "Inbound",
        ),
        (
            "DenyAllInBound",
            "Deny all inbound traffic",
            "*",
            "*",
            65500,
            "Deny",
            "Inbound",
        ),
        (
            "AllowVnetOutBound",
            "Allow outbound traffic from all VMs to all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            65000,
            "Allow",
            "Outbound",
        ),
        (
            "AllowInternetOutBound",
            "Allow outbound traffic from all VMs to Internet",
            "*",
            "Internet",
            65001,
            "Allow",
            "Outbound",
        ),
        (
            "DenyAllOutBound",
            "Deny all outbound traffic",
            "*",
            "*",
            65500,
            "Deny",
            "Outbound",
        ),
    ];
    DEFAULTS
        .iter()
        .map(
            |&(name, description, source, destination, priority, access, direction)| {
                let id = format!("{}/defaultSecurityRules/{name}", nsg.id);
                SecurityRuleOut {
                    etag: etag(&id),
                    id,
                    name: name.to_owned(),
                    kind: "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
                    properties: SecurityRuleProperties {
                        description: Some(description.to_owned()),
                        protocol: Some("*".to_owned()),
                        source_port_range: Some("*".to_owned()),
                        destination_port_range: Some("*".to_owned()),
                        source_address_prefix: Some(source.to_owned()),
                        destination_address_prefix: Some(destination.to_owned()),
                        access: Some(access.to_owned()),
                        priority: Some(priority),
                        direction: Some(direction.to_owned()),
                        provisioning_state: Some("Succeeded"),
                        ..SecurityRuleProperties::default()
                    },
                }
            },
        )
        .collect()
}

/// RFC 3339 of a simulated time.
pub(crate) fn time(world: &World, t: SimTime) -> String {
    t.rfc3339(world.epoch)
}
