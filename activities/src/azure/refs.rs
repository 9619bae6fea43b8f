//! Instance references as runbooks write them, and what an instance looks like to us.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{number, text};
use crate::ActivityError;
use crate::arm::ids::{ArmId, PathBuilder, check_name};
use crate::arm::{SQL_API_VERSION, Session};

/// A managed instance: `{subscription, resource_group, name, location?, subnet_id?}`.
/// `location` and `subnet_id` are needed for an instance that does not exist yet (the
/// target of `instance.create_like`); for others they are read from Azure when absent.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstanceRef {
    /// Subscription id.
    pub(crate) subscription: String,
    /// Resource group.
    pub(crate) resource_group: String,
    /// Instance name.
    pub(crate) name: String,
    /// Region (programmatic name such as `westus`, or a display name).
    #[serde(default)]
    pub(crate) location: Option<String>,
    /// ARM id of the instance's subnet.
    #[serde(default)]
    pub(crate) subnet_id: Option<String>,
}

impl InstanceRef {
    /// Checks every name and the subnet id.
    pub(crate) fn validate(&self) -> Result<(), ActivityError> {
        check_name("subscription", &self.subscription)?;
        check_name("resource group", &self.resource_group)?;
        check_name("instance name", &self.name)?;
        if let Some(l) = &self.location {
            check_name("location", l)?;
        }
        if let Some(id) = &self.subnet_id {
            ArmId::parse(id)?.expect("Microsoft.Network", &["virtualNetworks", "subnets"])?;
        }
        Ok(())
    }

    /// The instance from its ARM id.
    pub(crate) fn from_id(id: &str) -> Result<Self, ActivityError> {
        let id = ArmId::parse(id)?.expect("Microsoft.Sql", &["managedInstances"])?;
        Ok(Self {
            name: id.name().to_owned(),
            subscription: id.subscription,
            resource_group: id.resource_group,
            location: None,
            subnet_id: None,
        })
    }

    /// The encoded URL path.
    pub(crate) fn path(&self) -> Result<String, ActivityError> {
        Ok(PathBuilder::resource_group(&self.subscription, &self.resource_group)?
            .lit("providers/Microsoft.Sql/managedInstances")
            .name("instance name", &self.name)?
            .build())
    }

    /// The encoded URL path of managed database `name` of this instance.
    pub(crate) fn database_path(&self, name: &str) -> Result<String, ActivityError> {
        Ok(PathBuilder::resource_group(&self.subscription, &self.resource_group)?
            .lit("providers/Microsoft.Sql/managedInstances")
            .name("instance name", &self.name)?
            .lit("databases")
            .name("database name", name)?
            .build())
    }

    /// The ARM id (unencoded).
    pub(crate) fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Sql/managedInstances/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    /// Reads the instance; `None` when it does not exist.
    pub(crate) async fn read(&self, s: &Session<'_>) -> Result<Option<Instance>, ActivityError> {
        let body = s.get_opt(&self.subscription, &self.path()?, SQL_API_VERSION).await?;
        Ok(body.map(Instance::from_body))
    }

    /// The path of the managed-instance list of this instance's resource group.
    fn list_path(&self) -> Result<String, ActivityError> {
        Ok(PathBuilder::resource_group(&self.subscription, &self.resource_group)?
            .lit("providers/Microsoft.Sql/managedInstances")
            .build())
    }

    /// One sentence saying that this instance does not exist and what is there instead (the
    /// instances of its resource group, or that the resource group itself is missing), so an
    /// operator sees a typo at once.
    pub(crate) async fn not_found_text(&self, s: &Session<'_>) -> Result<String, ActivityError> {
        let what = format!(
            "managed instance `{}` not found in resource group `{}` (subscription `{}`)",
            self.name, self.resource_group, self.subscription
        );
        Ok(match names_in(s, &self.subscription, &self.list_path()?).await? {
            None => format!("{what}: that resource group does not exist in the subscription"),
            Some(names) if names.is_empty() => {
                format!("{what}; that resource group holds no managed instance")
            }
            Some(names) => format!("{what}; the instances there are: {}", names.join(", ")),
        })
    }

    /// Reads the instance, which must exist (ARM's `ResourceNotFound` otherwise).
    pub(crate) async fn read_existing(&self, s: &Session<'_>) -> Result<Instance, ActivityError> {
        let body = s.get(&self.subscription, &self.path()?, SQL_API_VERSION).await?;
        Ok(Instance::from_body(body))
    }

    /// The path of failover group `name` as seen from this instance's region.
    pub(crate) fn group_path(&self, location: &str, name: &str) -> Result<String, ActivityError> {
        Ok(PathBuilder::resource_group(&self.subscription, &self.resource_group)?
            .lit("providers/Microsoft.Sql/locations")
            .name("location", location)?
            .lit("instanceFailoverGroups")
            .name("failover group name", name)?
            .build())
    }

    /// The path of the failover-group list of this instance's resource group and region.
    pub(crate) fn group_list_path(&self, location: &str) -> Result<String, ActivityError> {
        Ok(PathBuilder::resource_group(&self.subscription, &self.resource_group)?
            .lit("providers/Microsoft.Sql/locations")
            .name("location", location)?
            .lit("instanceFailoverGroups")
            .build())
    }
}

/// The names of the resources listed at `path` (its first page), sorted; `None` when the
/// list's parent (a resource group) does not exist.
pub(crate) async fn names_in(
    s: &Session<'_>,
    subscription: &str,
    path: &str,
) -> Result<Option<Vec<String>>, ActivityError> {
    let probe = s
        .send(reqwest::Method::GET, subscription, path, SQL_API_VERSION, None)
        .await?;
    if probe.status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    // The first page is enough for a message: it names what is there, not everything.
    let page = probe.success()?.body;
    let mut names: Vec<String> = page
        .get("value")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| text(v, "/name").map(str::to_owned))
        .collect();
    names.sort();
    Ok(Some(names))
}

/// The settings of an instance that activities compare and copy.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) sku_name: Option<String>,
    pub(crate) tier: Option<String>,
    pub(crate) family: Option<String>,
    pub(crate) v_cores: Option<u64>,
    pub(crate) storage_gb: Option<u64>,
    pub(crate) database_format: Option<String>,
    pub(crate) dns_zone: Option<String>,
    pub(crate) subnet_id: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) provisioning_state: Option<String>,
    pub(crate) license_type: Option<String>,
    pub(crate) backup_storage_redundancy: Option<String>,
    pub(crate) instance_pool_id: Option<String>,
    pub(crate) fully_qualified_domain_name: Option<String>,
    pub(crate) administrator_login: Option<String>,
    pub(crate) collation: Option<String>,
    pub(crate) tenant_id: Option<String>,
    /// Next-gen General Purpose (`properties.isGeneralPurposeV2`).
    pub(crate) next_gen: Option<bool>,
    #[serde(skip)]
    pub(crate) body: serde_json::Value,
}

impl Instance {
    pub(crate) fn from_body(body: serde_json::Value) -> Self {
        let t = |p: &str| text(&body, p).map(str::to_owned);
        Self {
            id: t("/id").unwrap_or_default(),
            name: t("/name").unwrap_or_default(),
            location: t("/location").unwrap_or_default(),
            sku_name: t("/sku/name"),
            tier: t("/sku/tier"),
            family: t("/sku/family"),
            v_cores: number(&body, "/properties/vCores").or_else(|| number(&body, "/sku/capacity")),
            storage_gb: number(&body, "/properties/storageSizeInGB"),
            database_format: t("/properties/databaseFormat"),
            dns_zone: t("/properties/dnsZone"),
            subnet_id: t("/properties/subnetId"),
            state: t("/properties/state"),
            provisioning_state: t("/properties/provisioningState"),
            license_type: t("/properties/licenseType"),
            backup_storage_redundancy: t("/properties/requestedBackupStorageRedundancy")
                .or_else(|| t("/properties/currentBackupStorageRedundancy")),
            instance_pool_id: t("/properties/instancePoolId").filter(|s| !s.is_empty()),
            fully_qualified_domain_name: t("/properties/fullyQualifiedDomainName"),
            administrator_login: t("/properties/administratorLogin"),
            collation: t("/properties/collation"),
            tenant_id: t("/identity/tenantId"),
            next_gen: body
                .pointer("/properties/isGeneralPurposeV2")
                .and_then(serde_json::Value::as_bool),
            body,
        }
    }

    /// The JSON output of `instance.get` and friends.
    pub(crate) fn output(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("exists".into(), serde_json::Value::Bool(true));
        }
        v
    }

    /// The subnet's VNet id (parsed).
    pub(crate) fn vnet(&self) -> Result<ArmId, ActivityError> {
        vnet_of_subnet(self.subnet_id.as_deref().unwrap_or(""))
    }
}

/// The VNet id of a subnet id.
pub(crate) fn vnet_of_subnet(subnet_id: &str) -> Result<ArmId, ActivityError> {
    let id = ArmId::parse(subnet_id)?.expect("Microsoft.Network", &["virtualNetworks", "subnets"])?;
    id.parent("virtualNetworks")
        .ok_or_else(|| ActivityError::invalid(format!("subnet id `{subnet_id}` names no virtual network")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `validate` checks references against `catalog::output_fields`; a field added to
    /// `Instance` must be listed there too, or a runbook that reads it is refused.
    #[test]
    fn the_catalog_lists_every_field_of_an_instance_output() {
        let output = Instance::from_body(serde_json::json!({})).output();
        let listed = crate::catalog::output_fields("instance.get").unwrap_or_default();
        let created = crate::catalog::output_fields("instance.create_like").unwrap_or_default();
        for key in output
            .as_object()
            .map(|m| m.keys().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            assert!(
                listed.contains(&key.as_str()),
                "instance.get's `{key}` is not in the catalog"
            );
            assert!(
                created.contains(&key.as_str()),
                "instance.create_like's `{key}` is not in the catalog"
            );
        }
    }

    /// A managed instance shaped as the spec's `ManagedInstanceGet` example answers it.
    #[test]
    fn a_spec_shaped_instance_parses() {
        let body = serde_json::json!({
            "id": "/subscriptions/20d7082a-0fc7-4468-82bd-542694d5042b/resourceGroups/testrg/providers/Microsoft.Sql/managedInstances/testinstance",
            "name": "testinstance",
            "type": "Microsoft.Sql/managedInstances",
            "location": "japaneast",
            "tags": {"tagKey1": "TagValue1"},
            "sku": {"name": "GP_Gen5", "tier": "GeneralPurpose", "family": "Gen5", "capacity": 8},
            "properties": {
                "provisioningState": "Succeeded",
                "fullyQualifiedDomainName": "testinstance.1b4e2caff2530.database.windows.net",
                "administratorLogin": "dummylogin",
                "subnetId": "/subscriptions/20d7082a-0fc7-4468-82bd-542694d5042b/resourceGroups/testrg/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/subnet1",
                "state": "Ready",
                "licenseType": "LicenseIncluded",
                "vCores": 8,
                "storageSizeInGB": 128,
                "collation": "SQL_Latin1_General_CP1_CI_AS",
                "dnsZone": "1b4e2caff2530",
                "publicDataEndpointEnabled": false,
                "proxyOverride": "Redirect",
                "timezoneId": "UTC",
                "maintenanceConfigurationId": "/subscriptions/20d7082a-0fc7-4468-82bd-542694d5042b/providers/Microsoft.Maintenance/publicMaintenanceConfigurations/SQL_JapanEast_MI_1",
                "currentBackupStorageRedundancy": "Geo",
                "requestedBackupStorageRedundancy": "Geo",
                "zoneRedundant": true,
                "databaseFormat": "AlwaysUpToDate",
                "createTime": "2025-01-01T00:00:00Z"
            }
        });
        let i = Instance::from_body(body);
        assert_eq!(i.name, "testinstance");
        assert_eq!(i.tier.as_deref(), Some("GeneralPurpose"));
        assert_eq!(i.family.as_deref(), Some("Gen5"));
        assert_eq!((i.v_cores, i.storage_gb), (Some(8), Some(128)));
        assert_eq!(i.database_format.as_deref(), Some("AlwaysUpToDate"));
        assert_eq!(i.dns_zone.as_deref(), Some("1b4e2caff2530"));
        assert_eq!(i.backup_storage_redundancy.as_deref(), Some("Geo"));
        assert_eq!(i.vnet().expect("vnet").name(), "vnet1");
    }
}
