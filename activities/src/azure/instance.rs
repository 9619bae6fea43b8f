//! Managed-instance activities: `instance.get`, `instance.create_like`, `instance.scale`,
//! `instance.set_update_policy`, `instance.delete`, `databases.assert_empty`.

use std::time::Duration;

use reqwest::Method;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::refs::{Instance, InstanceRef};
use super::{arm, now_text, same, with_receipts};
use crate::arm::ids::ArmId;
use crate::arm::lro::{self, Progress};
use crate::arm::{SQL_API_VERSION, Session};
use crate::{ActivityCtx, ActivityError, Env};

/// How often an activity re-reads a resource while waiting for a state.
const STATE_POLL: Duration = Duration::from_secs(30);
/// How many re-reads before giving up (with [`STATE_POLL`], about a day).
const STATE_POLLS: u32 = 2880;

/// Re-reads `instance` until its `provisioningState` is terminal and `done` holds.
async fn wait_instance(
    s: &Session<'_>,
    instance: &InstanceRef,
    what: &str,
    done: impl Fn(&Instance) -> bool,
) -> Result<Instance, ActivityError> {
    for _ in 0..STATE_POLLS {
        let current = instance.read_existing(s).await?;
        let state = current.provisioning_state.clone().unwrap_or_default();
        if state.eq_ignore_ascii_case("Failed") || state.eq_ignore_ascii_case("Canceled") {
            return Err(ActivityError::failed(
                format!("Provisioning{state}"),
                format!("managed instance `{}` is in provisioning state {state}", instance.name),
            ));
        }
        if (state.is_empty() || state.eq_ignore_ascii_case("Succeeded")) && done(&current) {
            return Ok(current);
        }
        s.pause(STATE_POLL).await?;
    }
    Err(ActivityError::Transient {
        code: "StillWaiting".into(),
        message: format!("managed instance `{}` has not reached {what} yet", instance.name),
        retry_after: None,
    })
}

/// `instance.get`: reads a managed instance.
///
/// Output: `exists`, `id`, `name`, `location`, `sku_name`, `tier`, `family`, `v_cores`,
/// `storage_gb`, `database_format` (update policy), `dns_zone`, `subnet_id`, `state`,
/// `provisioning_state`, `license_type`, `backup_storage_redundancy`, `instance_pool_id`,
/// `fully_qualified_domain_name`. A missing instance fails with ARM's code unless
/// `must_exist: false`, which gives `{exists: false, id, found}`. `found` is one sentence for
/// an `assert` message: that the instance exists, or, for a missing one, the instances of its
/// resource group (or that the resource group is missing). Read-only; re-entry reads again.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstanceGet {
    /// The instance.
    instance: InstanceRef,
    /// Fail when the instance does not exist (default true).
    #[serde(default = "yes")]
    must_exist: bool,
}

pub(super) fn yes() -> bool {
    true
}

impl InstanceGet {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.instance.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let existing = if self.must_exist {
            Some(self.instance.read_existing(&s).await?)
        } else {
            self.instance.read(&s).await?
        };
        Ok(match existing {
            Some(i) => {
                let mut out = i.output();
                out["found"] = json!(format!(
                    "managed instance `{}` exists in resource group `{}`",
                    self.instance.name, self.instance.resource_group
                ));
                out
            }
            None => json!({
                "exists": false,
                "id": self.instance.id(),
                "found": self.instance.not_found_text(&s).await?,
            }),
        })
    }
}

/// `instance.create_like`: creates `target` with the tier, SKU, vCores, storage, update
/// policy (`databaseFormat`), licence and collation of `template`, in `target.location` and
/// `target.subnet_id`, sharing the DNS zone of `dns_zone_partner` (default: the template).
///
/// The admin password is read at run time from the environment variable named by
/// `admin_password_env` or the file `admin_password_file`; it is sent once in the PUT and
/// never stored or logged.
///
/// Re-entry: a saved operation is polled (the PUT is not sent again); an instance that
/// already exists with the same location and subnet is waited for instead of re-created.
/// Output: the new instance (as `instance.get`), `created`, `arm_requests`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstanceCreateLike {
    /// The instance to copy settings from.
    template: InstanceRef,
    /// The instance to create; `location` and `subnet_id` are required.
    target: InstanceRef,
    /// ARM id of the instance whose DNS zone the new one joins (default: `template`).
    #[serde(default)]
    dns_zone_partner: Option<String>,
    /// Admin login (default: the template's).
    #[serde(default)]
    administrator_login: Option<String>,
    /// Name of the environment variable holding the admin password.
    #[serde(default)]
    admin_password_env: Option<String>,
    /// Path of a file holding the admin password.
    #[serde(default)]
    admin_password_file: Option<String>,
}

impl InstanceCreateLike {
    fn password(&self) -> Result<crate::arm::Secret, ActivityError> {
        if let Some(var) = &self.admin_password_env {
            let value = std::env::var(var).map_err(|_| {
                ActivityError::invalid(format!(
                    "the environment variable `{var}` (admin_password_env) is not set"
                ))
            })?;
            crate::secrets::register(&value);
            return Ok(crate::arm::Secret::new(value));
        }
        if let Some(path) = &self.admin_password_file {
            let value = std::fs::read_to_string(path).map_err(|e| {
                ActivityError::invalid(format!("cannot read admin_password_file `{path}`: {}", e.kind()))
            })?;
            crate::secrets::register(&value);
            return Ok(crate::arm::Secret::new(value.trim_end_matches(['\r', '\n'])));
        }
        Err(ActivityError::invalid(
            "creating an instance needs admin_password_env or admin_password_file",
        ))
    }

    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.template.validate()?;
        self.target.validate()?;
        let (Some(location), Some(subnet_id)) = (self.target.location.clone(), self.target.subnet_id.clone()) else {
            return Err(ActivityError::invalid("target needs `location` and `subnet_id`"));
        };
        let partner = match &self.dns_zone_partner {
            Some(id) => ArmId::parse(id)?
                .expect("Microsoft.Sql", &["managedInstances"])?
                .display(),
            None => self.template.id(),
        };
        let s = Session::new(arm(env)?, ctx);
        let mut progress = Progress::load(ctx);
        let resource = s.client.url(&self.target.path()?, SQL_API_VERSION)?;
        let mut created = progress.op("create").is_some();
        if !created {
            if let Some(existing) = self.target.read(&s).await? {
                if !super::regions::normalize(&existing.location).eq(&super::regions::normalize(&location))
                    || !same(existing.subnet_id.as_deref(), Some(&subnet_id))
                {
                    return Err(ActivityError::failed(
                        "InstanceExistsElsewhere",
                        format!(
                            "managed instance `{}` already exists in {} (subnet {}), not in {location} ({subnet_id})",
                            existing.name,
                            existing.location,
                            existing.subnet_id.as_deref().unwrap_or("?")
                        ),
                    ));
                }
                let done = wait_instance(&s, &self.target, "Succeeded", |_| true).await?;
                let mut out = done.output();
                out["created"] = json!(false);
                return Ok(with_receipts(&s, out));
            }
            let template = self.template.read_existing(&s).await?;
            let login = self
                .administrator_login
                .clone()
                .or_else(|| template.administrator_login.clone())
                .ok_or_else(|| {
                    ActivityError::invalid("the template has no administrator login; give administrator_login")
                })?;
            let password = self.password()?;
            let mut properties = json!({
                "administratorLogin": login,
                "administratorLoginPassword": password.expose(),
                "subnetId": subnet_id,
                "dnsZonePartner": partner,
            });
            for (key, value) in [
                ("vCores", template.v_cores.map(|v| json!(v))),
                ("storageSizeInGB", template.storage_gb.map(|v| json!(v))),
                ("databaseFormat", template.database_format.as_ref().map(|v| json!(v))),
                ("licenseType", template.license_type.as_ref().map(|v| json!(v))),
                ("collation", template.collation.as_ref().map(|v| json!(v))),
                (
                    "requestedBackupStorageRedundancy",
                    template.backup_storage_redundancy.as_ref().map(|v| json!(v)),
                ),
            ] {
                if let Some(v) = value {
                    properties[key] = v;
                }
            }
            let mut sku = json!({ "name": template.sku_name });
            for (key, value) in [("tier", &template.tier), ("family", &template.family)] {
                if let Some(v) = value {
                    sku[key] = json!(v);
                }
            }
            if let Some(v) = template.v_cores {
                sku["capacity"] = json!(v);
            }
            let body = json!({ "location": location, "sku": sku, "properties": properties });
            lro::run(
                &s,
                &mut progress,
                "create",
                &self.target.subscription,
                Method::PUT,
                resource,
                Some(body),
            )
            .await?;
            created = true;
        } else {
            lro::run(
                &s,
                &mut progress,
                "create",
                &self.target.subscription,
                Method::PUT,
                resource,
                None,
            )
            .await?;
        }
        let done = wait_instance(&s, &self.target, "Succeeded", |_| true).await?;
        let mut out = done.output();
        out["created"] = json!(created);
        Ok(with_receipts(&s, out))
    }
}

/// `instance.scale`: sets vCores, storage, the SKU (tier) and/or Next-gen General Purpose
/// (`next_gen`) with one convergent PATCH,
/// and waits until it has taken effect. A target equal to the current size is a no-op.
/// Output: `changed`, `before` and `after` (as `instance.get`), `arm_requests`.
/// Re-entry: a saved operation is polled, never re-sent.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstanceScale {
    /// The instance.
    instance: InstanceRef,
    /// Target vCores (4, 8, 16, 24, 32, 40, 64, 80, ...).
    #[serde(default)]
    v_cores: Option<u32>,
    /// Target storage in GB (multiple of 32).
    #[serde(default)]
    storage_gb: Option<u32>,
    /// Target SKU name (`GP_Gen5`, `BC_Gen5`, ...) for a tier change.
    #[serde(default)]
    sku_name: Option<String>,
    /// Target Next-gen General Purpose (`isGeneralPurposeV2`) on or off. Azure refuses the
    /// change inside a failover group: delete the group first (`change-next-gen`).
    #[serde(default)]
    next_gen: Option<bool>,
}

impl InstanceScale {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.instance.validate()?;
        if self.v_cores.is_none() && self.storage_gb.is_none() && self.sku_name.is_none() && self.next_gen.is_none() {
            return Err(ActivityError::invalid(
                "give at least one of v_cores, storage_gb, sku_name, next_gen",
            ));
        }
        let s = Session::new(arm(env)?, ctx);
        let mut progress = Progress::load(ctx);
        let before = match progress.get("before") {
            Some(b) => b.clone(),
            None => {
                let current = self.instance.read_existing(&s).await?;
                let b = current.output();
                let reached = self.reached(&current);
                if reached && progress.op("scale").is_none() {
                    return Ok(with_receipts(&s, json!({ "changed": false, "before": b, "after": b })));
                }
                progress.set("before", b.clone());
                b
            }
        };
        let mut sku = serde_json::Map::new();
        let mut properties = serde_json::Map::new();
        if let Some(name) = &self.sku_name {
            sku.insert("name".into(), json!(name));
        }
        if let Some(v) = self.v_cores {
            properties.insert("vCores".into(), json!(v));
            sku.insert("capacity".into(), json!(v));
            if !sku.contains_key("name")
                && let Some(name) = before.get("sku_name").and_then(|n| n.as_str())
            {
                sku.insert("name".into(), json!(name));
            }
        }
        if let Some(gb) = self.storage_gb {
            properties.insert("storageSizeInGB".into(), json!(gb));
        }
        if let Some(next_gen) = self.next_gen {
            properties.insert("isGeneralPurposeV2".into(), json!(next_gen));
        }
        let mut body = json!({ "properties": properties });
        if !sku.is_empty() {
            body["sku"] = serde_json::Value::Object(sku);
        }
        let resource = s.client.url(&self.instance.path()?, SQL_API_VERSION)?;
        lro::run(
            &s,
            &mut progress,
            "scale",
            &self.instance.subscription,
            Method::PATCH,
            resource,
            Some(body),
        )
        .await?;
        let after = wait_instance(&s, &self.instance, "the target size", |i| self.reached(i)).await?;
        Ok(with_receipts(
            &s,
            json!({ "changed": true, "before": before, "after": after.output() }),
        ))
    }

    fn reached(&self, i: &Instance) -> bool {
        self.v_cores.is_none_or(|v| i.v_cores == Some(u64::from(v)))
            && self.storage_gb.is_none_or(|g| i.storage_gb == Some(u64::from(g)))
            && self
                .sku_name
                .as_deref()
                .is_none_or(|n| same(i.sku_name.as_deref(), Some(n)))
            && self.next_gen.is_none_or(|g| i.next_gen.unwrap_or(false) == g)
    }
}

/// The update policies (`databaseFormat`) Azure accepts.
const POLICIES: &[&str] = &["SQLServer2022", "SQLServer2025", "AlwaysUpToDate"];

/// `instance.set_update_policy`: sets the update policy (`databaseFormat`) and waits until
/// the instance reports it. The change is one-way (Azure refuses a downgrade); in a failover
/// group change the secondary first. Equal policy: no-op. Output: `changed`, `before`,
/// `policy`, `instance`, `arm_requests`. Re-entry: a saved operation is polled.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstanceSetUpdatePolicy {
    /// The instance.
    instance: InstanceRef,
    /// `SQLServer2022`, `SQLServer2025` or `AlwaysUpToDate`.
    policy: String,
}

impl InstanceSetUpdatePolicy {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.instance.validate()?;
        let policy = POLICIES
            .iter()
            .find(|p| p.eq_ignore_ascii_case(&self.policy))
            .ok_or_else(|| {
                ActivityError::invalid(format!(
                    "unknown update policy `{}` (expected one of {POLICIES:?})",
                    self.policy
                ))
            })?;
        let s = Session::new(arm(env)?, ctx);
        let mut progress = Progress::load(ctx);
        let has_policy = |i: &Instance| same(i.database_format.as_deref(), Some(policy));
        let before = match progress.get("before") {
            Some(b) => b.as_str().map(str::to_owned),
            None => {
                let current = self.instance.read_existing(&s).await?;
                if has_policy(&current) && progress.op("policy").is_none() {
                    return Ok(with_receipts(
                        &s,
                        json!({ "changed": false, "before": current.database_format, "policy": policy, "instance": current.output() }),
                    ));
                }
                progress.set("before", json!(current.database_format));
                current.database_format
            }
        };
        let resource = s.client.url(&self.instance.path()?, SQL_API_VERSION)?;
        let body = json!({ "properties": { "databaseFormat": policy } });
        lro::run(
            &s,
            &mut progress,
            "policy",
            &self.instance.subscription,
            Method::PATCH,
            resource,
            Some(body),
        )
        .await?;
        let after = wait_instance(&s, &self.instance, "the new update policy", has_policy).await?;
        Ok(with_receipts(
            &s,
            json!({ "changed": true, "before": before, "policy": policy, "instance": after.output() }),
        ))
    }
}

/// `instance.delete`: deletes a managed instance. The intent is saved before the DELETE;
/// re-entered with a saved operation it polls it; with an intent and no operation it reads
/// the instance and only sends the DELETE again (idempotent in ARM) if it still exists.
/// An instance that does not exist is success with `already_absent: true`.
/// Output: `deleted`, `already_absent`, `id`, `arm_requests`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstanceDelete {
    /// The instance.
    instance: InstanceRef,
}

impl InstanceDelete {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.instance.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let mut progress = Progress::load(ctx);
        let resource = s.client.url(&self.instance.path()?, SQL_API_VERSION)?;
        let id = self.instance.id();
        if progress.op("delete").is_none() {
            let had_intent = progress.get("intent").is_some();
            if self.instance.read(&s).await?.is_none() {
                return Ok(with_receipts(
                    &s,
                    json!({ "deleted": had_intent, "already_absent": !had_intent, "id": id }),
                ));
            }
            if !had_intent {
                progress.set("intent", json!({ "action": "delete", "id": id, "at": now_text(ctx) }));
                progress.save(ctx).await?;
            }
        }
        lro::run(
            &s,
            &mut progress,
            "delete",
            &self.instance.subscription,
            Method::DELETE,
            resource,
            None,
        )
        .await?;
        Ok(with_receipts(
            &s,
            json!({ "deleted": true, "already_absent": false, "id": id }),
        ))
    }
}

/// `databases.assert_empty`: fails with `InstanceNotEmpty` (listing the names) when the
/// instance has user databases; the secondary of a new failover group must be empty.
/// Output: `databases` (names, empty on success). Read-only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabasesAssertEmpty {
    /// The instance.
    instance: InstanceRef,
}

/// The user databases of `instance`.
pub(crate) async fn database_names(s: &Session<'_>, instance: &InstanceRef) -> Result<Vec<String>, ActivityError> {
    let path = format!("{}/databases", instance.path()?);
    let items = s.list(&instance.subscription, &path, SQL_API_VERSION).await?;
    Ok(items
        .iter()
        .filter_map(|d| d.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .filter(|n| !is_system_database(n))
        .collect())
}

/// Whether `name` is a system database (never a user database, never listed as one).
pub(crate) fn is_system_database(name: &str) -> bool {
    ["master", "model", "msdb", "tempdb"].contains(&name.to_ascii_lowercase().as_str())
}

impl DatabasesAssertEmpty {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.instance.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let names = database_names(&s, &self.instance).await?;
        if names.is_empty() {
            return Ok(json!({ "databases": names }));
        }
        Err(ActivityError::Failed {
            code: "InstanceNotEmpty".into(),
            message: format!(
                "managed instance `{}` has {} user database(s): {}; the secondary of a failover group must be empty",
                self.instance.name,
                names.len(),
                names.join(", ")
            ),
            output: Some(json!({ "databases": names })),
        })
    }
}
