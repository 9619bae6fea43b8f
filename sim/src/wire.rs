//! Azure's wire shapes, with Azure's field names (those of the Azure REST API specifications; `sim/README.md` lists every operation, and the contract tests check the shapes).
//!
//! These structs belong to the emulator alone: the client has its own, so a field-name mismatch
//! on either side fails a test instead of being hidden by a shared type. Request structs ignore
//! unknown fields, as ARM does for read-only properties.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"id": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IdRef {
    pub(crate) id: String,
}

/// `{"value": [...]}` of a list.
#[derive(Debug, Serialize)]
pub(crate) struct List<T> {
    pub(crate) value: Vec<T>,
}

// ----- managed instances -----------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedInstanceIn {
    pub(crate) location: Option<String>,
    pub(crate) sku: Option<SkuIn>,
    pub(crate) tags: Option<BTreeMap<String, String>>,
    pub(crate) properties: Option<ManagedInstancePropertiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SkuIn {
    pub(crate) name: Option<String>,
    pub(crate) tier: Option<String>,
    pub(crate) family: Option<String>,
    pub(crate) capacity: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedInstancePropertiesIn {
    pub(crate) administrator_login: Option<String>,
    pub(crate) subnet_id: Option<String>,
    pub(crate) license_type: Option<String>,
    pub(crate) v_cores: Option<u32>,
    #[serde(rename = "storageSizeInGB")]
    pub(crate) storage_size_in_gb: Option<u32>,
    pub(crate) collation: Option<String>,
    pub(crate) dns_zone_partner: Option<String>,
    pub(crate) instance_pool_id: Option<String>,
    pub(crate) database_format: Option<String>,
    pub(crate) is_general_purpose_v2: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedInstanceOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) location: String,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) sku: SkuOut,
    pub(crate) properties: ManagedInstancePropertiesOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SkuOut {
    pub(crate) name: String,
    pub(crate) tier: String,
    pub(crate) family: String,
    pub(crate) capacity: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedInstancePropertiesOut {
    pub(crate) provisioning_state: String,
    pub(crate) state: String,
    pub(crate) fully_qualified_domain_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) administrator_login: Option<String>,
    pub(crate) subnet_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) license_type: Option<String>,
    pub(crate) v_cores: u32,
    #[serde(rename = "storageSizeInGB")]
    pub(crate) storage_size_in_gb: u32,
    pub(crate) collation: String,
    pub(crate) dns_zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instance_pool_id: Option<String>,
    pub(crate) public_data_endpoint_enabled: bool,
    pub(crate) proxy_override: &'static str,
    pub(crate) timezone_id: &'static str,
    pub(crate) minimal_tls_version: &'static str,
    pub(crate) current_backup_storage_redundancy: &'static str,
    pub(crate) requested_backup_storage_redundancy: &'static str,
    pub(crate) zone_redundant: bool,
    pub(crate) database_format: String,
    pub(crate) is_general_purpose_v2: bool,
    pub(crate) create_time: String,
    pub(crate) maintenance_configuration_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedDatabaseOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) location: String,
    pub(crate) properties: ManagedDatabasePropertiesOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedDatabasePropertiesOut {
    pub(crate) collation: String,
    pub(crate) status: &'static str,
    pub(crate) creation_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) default_secondary_location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failover_group_id: Option<String>,
}

// ----- instance failover groups ----------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailoverGroupIn {
    pub(crate) properties: Option<FailoverGroupPropertiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailoverGroupPropertiesIn {
    pub(crate) read_write_endpoint: Option<ReadWriteEndpoint>,
    pub(crate) read_only_endpoint: Option<ReadOnlyEndpoint>,
    pub(crate) partner_regions: Option<Vec<PartnerRegion>>,
    pub(crate) managed_instance_pairs: Option<Vec<InstancePair>>,
    pub(crate) secondary_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadWriteEndpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failover_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failover_with_data_loss_grace_period_minutes: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadOnlyEndpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failover_policy: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PartnerRegion {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replication_role: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstancePair {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) primary_managed_instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) partner_managed_instance_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailoverGroupOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) properties: FailoverGroupPropertiesOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailoverGroupPropertiesOut {
    pub(crate) read_write_endpoint: ReadWriteEndpoint,
    /// Always present, as in every spec example (`Disabled` unless set).
    pub(crate) read_only_endpoint: ReadOnlyEndpoint,
    pub(crate) replication_role: &'static str,
    pub(crate) replication_state: String,
    pub(crate) partner_regions: Vec<PartnerRegion>,
    pub(crate) managed_instance_pairs: Vec<InstancePair>,
    /// Always present, as in every spec example (`Geo` unless set).
    pub(crate) secondary_type: String,
}

// ----- operations ------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OperationStatusOut {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) status: &'static str,
    pub(crate) start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) end_time: Option<String>,
    pub(crate) percent_complete: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorDetail>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorDetail {
    pub(crate) code: String,
    pub(crate) message: String,
}

// ----- networking ------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddressSpace {
    #[serde(default)]
    pub(crate) address_prefixes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VirtualNetworkIn {
    pub(crate) location: Option<String>,
    pub(crate) tags: Option<BTreeMap<String, String>>,
    pub(crate) properties: Option<VirtualNetworkPropertiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VirtualNetworkPropertiesIn {
    pub(crate) address_space: Option<AddressSpace>,
    pub(crate) subnets: Option<Vec<SubnetIn>>,
    pub(crate) virtual_network_peerings: Option<Vec<PeeringIn>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubnetIn {
    pub(crate) name: Option<String>,
    pub(crate) properties: Option<SubnetPropertiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubnetPropertiesIn {
    pub(crate) address_prefix: Option<String>,
    pub(crate) address_prefixes: Option<Vec<String>>,
    pub(crate) network_security_group: Option<IdRef>,
    pub(crate) route_table: Option<IdRef>,
    pub(crate) delegations: Option<Vec<DelegationIn>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegationIn {
    pub(crate) name: Option<String>,
    pub(crate) properties: Option<DelegationPropertiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegationPropertiesIn {
    pub(crate) service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeeringIn {
    pub(crate) name: Option<String>,
    pub(crate) properties: Option<PeeringPropertiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeeringPropertiesIn {
    pub(crate) remote_virtual_network: Option<IdRef>,
    pub(crate) allow_virtual_network_access: Option<bool>,
    pub(crate) allow_forwarded_traffic: Option<bool>,
    pub(crate) allow_gateway_transit: Option<bool>,
    pub(crate) use_remote_gateways: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VirtualNetworkOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) location: String,
    pub(crate) etag: String,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) properties: VirtualNetworkPropertiesOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VirtualNetworkPropertiesOut {
    pub(crate) provisioning_state: &'static str,
    pub(crate) resource_guid: String,
    pub(crate) address_space: AddressSpace,
    pub(crate) subnets: Vec<SubnetOut>,
    pub(crate) virtual_network_peerings: Vec<PeeringOut>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubnetOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) etag: String,
    pub(crate) properties: SubnetPropertiesOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubnetPropertiesOut {
    pub(crate) provisioning_state: &'static str,
    pub(crate) address_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) network_security_group: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) route_table: Option<IdRef>,
    pub(crate) delegations: Vec<DelegationOut>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegationOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) properties: DelegationPropertiesOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegationPropertiesOut {
    pub(crate) service_name: String,
    pub(crate) provisioning_state: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeeringOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) etag: String,
    pub(crate) properties: PeeringPropertiesOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeeringPropertiesOut {
    pub(crate) provisioning_state: &'static str,
    pub(crate) peering_state: &'static str,
    pub(crate) peering_sync_level: &'static str,
    pub(crate) remote_virtual_network: IdRef,
    pub(crate) allow_virtual_network_access: bool,
    pub(crate) allow_forwarded_traffic: bool,
    pub(crate) allow_gateway_transit: bool,
    pub(crate) use_remote_gateways: bool,
    pub(crate) remote_address_space: AddressSpace,
    pub(crate) remote_virtual_network_address_space: AddressSpace,
    pub(crate) local_address_space: AddressSpace,
    pub(crate) local_virtual_network_address_space: AddressSpace,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityGroupOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) location: String,
    pub(crate) etag: String,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) properties: SecurityGroupPropertiesOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityGroupPropertiesOut {
    pub(crate) provisioning_state: &'static str,
    pub(crate) resource_guid: String,
    pub(crate) security_rules: Vec<SecurityRuleOut>,
    pub(crate) default_security_rules: Vec<SecurityRuleOut>,
    pub(crate) subnets: Vec<IdRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityRuleIn {
    pub(crate) name: Option<String>,
    pub(crate) properties: Option<SecurityRuleProperties>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityGroupIn {
    pub(crate) location: Option<String>,
    pub(crate) tags: Option<BTreeMap<String, String>>,
    pub(crate) properties: Option<SecurityGroupPropertiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityGroupPropertiesIn {
    pub(crate) security_rules: Option<Vec<SecurityRuleIn>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedDatabaseIn {
    pub(crate) location: Option<String>,
    pub(crate) properties: Option<ManagedDatabasePropertiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedDatabasePropertiesIn {
    pub(crate) collation: Option<String>,
}

/// A rule's properties, in both directions (the read-only `provisioningState` is ignored on input).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityRuleProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source_port_range: Option<String>,
    #[serde(default)]
    pub(crate) source_port_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) destination_port_range: Option<String>,
    #[serde(default)]
    pub(crate) destination_port_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source_address_prefix: Option<String>,
    #[serde(default)]
    pub(crate) source_address_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) destination_address_prefix: Option<String>,
    #[serde(default)]
    pub(crate) destination_address_prefixes: Vec<String>,
    #[serde(default)]
    pub(crate) access: Option<String>,
    #[serde(default)]
    pub(crate) priority: Option<i32>,
    #[serde(default)]
    pub(crate) direction: Option<String>,
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub(crate) provisioning_state: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityRuleOut {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) etag: String,
    pub(crate) properties: SecurityRuleProperties,
}
