//! `fog.preflight` and `fog.drift`: what the failover-group procedure requires of two
//! instances, and the settings that are not replicated and must be kept equal by hand.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::refs::{Instance, InstanceRef};
use super::{arm, with_receipts};
use crate::arm::Session;
use crate::{ActivityCtx, ActivityError, Env};

mod groups;
mod instances;
mod network;
mod permissions;

/// The verdict of one requirement.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Pass,
    Warn,
    Fail,
}

/// One row of the preflight table.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Check {
    requirement: &'static str,
    status: Verdict,
    reason: String,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, requirement: &'static str, status: Verdict, reason: impl Into<String>) {
        self.0.push(Check {
            requirement,
            status,
            reason: reason.into(),
        });
    }

    fn check(&mut self, requirement: &'static str, ok: bool, otherwise: Verdict, pass: String, problem: String) {
        if ok {
            self.add(requirement, Verdict::Pass, pass);
        } else {
            self.add(requirement, otherwise, problem);
        }
    }

    fn table(&self) -> String {
        let width = self.0.iter().map(|c| c.requirement.len()).max().unwrap_or(0);
        self.0
            .iter()
            .map(|c| {
                let status = match c.status {
                    Verdict::Pass => "pass",
                    Verdict::Warn => "warn",
                    Verdict::Fail => "FAIL",
                };
                format!("{status}  {:width$}  {}", c.requirement, c.reason)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub(super) fn tier_of(i: &Instance) -> Option<String> {
    i.tier.clone().or_else(|| {
        let sku = i.sku_name.as_deref()?.to_ascii_uppercase();
        if sku.starts_with("GP") {
            Some("GeneralPurpose".into())
        } else if sku.starts_with("BC") {
            Some("BusinessCritical".into())
        } else {
            None
        }
    })
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| v.to_string())
}

/// `fog.preflight`: checks every configuration requirement and limitation of a failover
/// group between `primary` and `secondary` and reports a table of pass / warn / fail with
/// the reason; the step fails (`PreflightFailed`) when any row fails.
///
/// Rows: `instances_exist`, `secondary_empty`, `same_tier`, `same_storage`, `same_compute`
/// (warn), `different_regions`, `paired_regions` (warn), `same_dns_zone`,
/// `same_update_policy`, `address_spaces_disjoint` (peered networks included),
/// `vnet_peering`, `nsg_ports`, `one_group_per_instance`, `no_instance_pool`, `same_tenant`.
/// `vnet_peering` and `nsg_ports` only warn unless `require_network: true` (the configure
/// runbook checks before it peers and opens ports). With `needs` (the activities of the
/// steps that follow), a `permission` row per action those steps need and scope they touch
/// (both instances, both resource groups, both VNets and NSGs), read through
/// `Microsoft.Authorization/permissions`; a missing one fails, naming the action and the
/// scope. Output: `checks`, `passed`, `warnings`, `failed` (names), `table` (text). Read-only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogPreflight {
    /// The primary instance.
    primary: InstanceRef,
    /// The secondary instance.
    secondary: InstanceRef,
    /// The group to be created (a group of that name already pairing the two passes
    /// `one_group_per_instance`).
    #[serde(default)]
    name: Option<String>,
    /// Fail (instead of warn) when the VNets are not peered or NSG ports are closed.
    #[serde(default)]
    require_network: bool,
    /// The group `name` exists now (with other members) and the runbook deletes it before it
    /// creates the new one: membership in it does not count against `one_group_per_instance`.
    #[serde(default)]
    replacing: bool,
    /// The activities (`uses`) of the steps that follow, whose Azure permissions the caller
    /// must hold: `fog.create`, `fog.delete`, `fog.failover`, `fog.force_failover`,
    /// `instance.scale`, `instance.set_update_policy`, `instance.create_like`,
    /// `instance.delete`, `network.peer`, `network.open_fog_ports`.
    #[serde(default)]
    needs: Vec<String>,
}

impl FogPreflight {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.primary.validate()?;
        self.secondary.validate()?;
        if let Some(n) = &self.name {
            crate::arm::ids::check_name("failover group name", n)?;
        }
        let s = Session::new(arm(env)?, ctx);
        let mut r = Report::default();
        let (a, b) = (self.primary.read(&s).await?, self.secondary.read(&s).await?);
        let (Some(a), Some(b)) = (a, b) else {
            r.add(
                "instances_exist",
                Verdict::Fail,
                "the primary or the secondary does not exist",
            );
            return finish(&s, r);
        };
        r.add(
            "instances_exist",
            Verdict::Pass,
            format!("{} and {} exist", a.name, b.name),
        );
        self.instance_checks(&s, &mut r, &a, &b).await?;
        self.network_checks(&s, &mut r, &a, &b).await?;
        self.group_checks(&s, &mut r, &a, &b).await?;
        self.permission_checks(&s, &mut r, &a, &b).await?;
        finish(&s, r)
    }
}

fn finish(s: &Session<'_>, r: Report) -> Result<serde_json::Value, ActivityError> {
    let names = |v: Verdict| {
        r.0.iter()
            .filter(|c| c.status == v)
            .map(|c| c.requirement)
            .collect::<Vec<_>>()
    };
    let failed = names(Verdict::Fail);
    let out = with_receipts(
        s,
        json!({
            "checks": r.0,
            "passed": names(Verdict::Pass),
            "warnings": names(Verdict::Warn),
            "failed": failed,
            "table": r.table(),
        }),
    );
    if failed.is_empty() {
        return Ok(out);
    }
    let reasons: Vec<String> =
        r.0.iter()
            .filter(|c| c.status == Verdict::Fail)
            .map(|c| format!("{}: {}", c.requirement, c.reason))
            .collect();
    Err(ActivityError::Failed {
        code: "PreflightFailed".into(),
        message: format!("{} requirement(s) failed: {}", failed.len(), reasons.join("; ")),
        output: Some(out),
    })
}
