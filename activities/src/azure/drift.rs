//! `fog.drift`: the settings a failover group does not replicate, compared on its two
//! instances.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::preflight::tier_of;
use super::refs::{Instance, InstanceRef};
use super::{arm, same, text, with_receipts};
use crate::arm::Session;
use crate::{ActivityCtx, ActivityError, Env};

/// `fog.drift`: compares the settings that are not replicated and must be kept equal on
/// both instances of a group — update policy, service tier, hardware, SKU, vCores, storage,
/// backup storage redundancy, timezone, collation, licence, maintenance configuration and the
/// tags named in `tags` (`tag:NAME`) — and reports the differences with both values. Fails
/// (`DriftDetected`) only with `fail_on_drift: true`. Output: `in_sync`, `differences`
/// (`setting`, `primary`, `secondary`), `settings` (all compared), `summary` (one line per
/// difference). Read-only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogDrift {
    /// The primary instance.
    primary: InstanceRef,
    /// The secondary instance.
    secondary: InstanceRef,
    /// Fail the step when any setting differs (default false: report only).
    #[serde(default)]
    fail_on_drift: bool,
    /// Names of the tags that must be equal on both instances (default none).
    #[serde(default)]
    tags: Vec<String>,
}

impl FogDrift {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.primary.validate()?;
        self.secondary.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let a = self.primary.read_existing(&s).await?;
        let b = self.secondary.read_existing(&s).await?;
        let num = |v: Option<u64>| v.map(|n| n.to_string());
        let prop = |i: &Instance, p: &str| text(&i.body, p).map(str::to_owned);
        let mut rows: Vec<(String, Option<String>, Option<String>)> = vec![
            ("update_policy", a.database_format.clone(), b.database_format.clone()),
            ("tier", tier_of(&a), tier_of(&b)),
            ("hardware", a.family.clone(), b.family.clone()),
            ("sku_name", a.sku_name.clone(), b.sku_name.clone()),
            ("v_cores", num(a.v_cores), num(b.v_cores)),
            ("storage_gb", num(a.storage_gb), num(b.storage_gb)),
            (
                "backup_storage_redundancy",
                a.backup_storage_redundancy.clone(),
                b.backup_storage_redundancy.clone(),
            ),
            ("license_type", a.license_type.clone(), b.license_type.clone()),
            (
                "timezone",
                prop(&a, "/properties/timezoneId"),
                prop(&b, "/properties/timezoneId"),
            ),
            ("collation", a.collation.clone(), b.collation.clone()),
            (
                "maintenance_configuration",
                prop(&a, "/properties/maintenanceConfigurationId").map(|id| last_segment(&id)),
                prop(&b, "/properties/maintenanceConfigurationId").map(|id| last_segment(&id)),
            ),
        ]
        .into_iter()
        .map(|(k, x, y)| (k.to_owned(), x, y))
        .collect();
        for tag in &self.tags {
            let pointer = format!("/tags/{}", tag.replace('~', "~0").replace('/', "~1"));
            rows.push((format!("tag:{tag}"), prop(&a, &pointer), prop(&b, &pointer)));
        }
        let settings: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, x, y)| json!({ "setting": k, "primary": x, "secondary": y }))
            .collect();
        let differences: Vec<serde_json::Value> = rows
            .iter()
            .filter(|(_, x, y)| !same(x.as_deref(), y.as_deref()))
            .map(|(k, x, y)| json!({ "setting": k, "primary": x, "secondary": y }))
            .collect();
        let summary: Vec<String> = rows
            .iter()
            .filter(|(_, x, y)| !same(x.as_deref(), y.as_deref()))
            .map(|(k, x, y)| {
                format!(
                    "{k}: {} has {}, {} has {}",
                    a.name,
                    x.as_deref().unwrap_or("(unset)"),
                    b.name,
                    y.as_deref().unwrap_or("(unset)")
                )
            })
            .collect();
        let out = with_receipts(
            &s,
            json!({
                "in_sync": differences.is_empty(),
                "differences": differences,
                "settings": settings,
                "summary": summary.join("; "),
            }),
        );
        if self.fail_on_drift && !differences.is_empty() {
            let names: Vec<&str> = differences.iter().filter_map(|d| d["setting"].as_str()).collect();
            return Err(ActivityError::Failed {
                code: "DriftDetected".into(),
                message: format!("settings differ between the instances: {}", names.join(", ")),
                output: Some(out),
            });
        }
        Ok(out)
    }
}

/// The last segment of a resource id (`…/publicMaintenanceConfigurations/SQL_Default` →
/// `SQL_Default`).
fn last_segment(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_owned()
}
