//! How long the long operations of a runbook are likely to take, for `fogbook plan`: the
//! estimate type and the one estimate that reads the cloud (seeding a new failover group).
//! Reads only; the fixed estimates are in `catalog::ActivityKind::estimate`.

use serde::Serialize;

use super::fog::FogCreate;
use super::{arm, regions};
use crate::arm::Session;
use crate::{ActivityCtx, ActivityError, Env};

/// Seeding throughput assumed between paired regions and otherwise, GB per hour.
const PAIRED_GB_PER_HOUR: f64 = 250.0;
const UNPAIRED_GB_PER_HOUR: f64 = 100.0;
/// Azure cancels the creation of a failover group whose seeding runs longer than this.
const SEEDING_LIMIT_HOURS: f64 = 7.0 * 24.0;
/// The Azure Monitor metrics api-version.
const METRICS_API_VERSION: &str = "2018-01-01";

/// An estimate of a step's duration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// What to expect, for people.
    pub text: String,
    /// Hours, as a number (the upper bound when the text gives a range).
    pub hours: f64,
    /// A reason to worry (seeding close to Azure's 7-day limit).
    pub warning: Option<String>,
}

impl Estimate {
    /// An estimate that does not depend on the inputs.
    pub(crate) fn fixed(text: &str, hours: f64) -> Self {
        Self {
            text: text.to_owned(),
            hours,
            warning: None,
        }
    }
}

/// Azure Monitor's "Storage space used" of an instance, in GB: the data seeding copies.
/// `None` when it cannot be read (no metrics permission, no data yet).
async fn used_storage_gb(s: &Session<'_>, instance: &super::refs::InstanceRef) -> Option<f64> {
    let path = format!(
        "{}/providers/Microsoft.Insights/metrics?metricnames=storage_space_used_mb&aggregation=Average",
        instance.path().ok()?
    );
    let body = s
        .get_opt(&instance.subscription, &path, METRICS_API_VERSION)
        .await
        .ok()??;
    let series = body["value"].as_array()?.iter().find(|m| {
        m["name"]["value"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("storage_space_used_mb"))
    })?;
    let mb = series["timeseries"]
        .as_array()?
        .iter()
        .flat_map(|t| t["data"].as_array().into_iter().flatten())
        .filter_map(|d| d["average"].as_f64())
        .next_back()?;
    Some(mb / 1024.0)
}

/// Seeding copies the primary's databases: their size comes from Azure Monitor's "Storage
/// space used" of the primary (ARM's database resources carry no size); when that cannot be
/// read, the primary's reserved storage is the upper bound.
pub(crate) async fn seeding(spec: FogCreate, ctx: &ActivityCtx, env: &Env) -> Result<Estimate, ActivityError> {
    let s = Session::new(arm(env)?, ctx);
    let primary = spec.primary.read(&s).await?;
    let secondary_location = match &spec.secondary.location {
        Some(l) => Some(l.clone()),
        None => spec.secondary.read(&s).await?.map(|i| i.location),
    };
    let (Some(primary), Some(secondary_location)) = (primary, secondary_location) else {
        return Ok(Estimate::fixed("seeding: unknown until the instances exist", 0.0));
    };
    let (gb, what) = match used_storage_gb(&s, &spec.primary).await {
        Some(used) => (used, "used by the databases of"),
        None => (
            primary.storage_gb.unwrap_or(0) as f64,
            "reserved (the storage-used metric could not be read) on",
        ),
    };
    let paired = regions::paired(&primary.location, &secondary_location);
    let rate = if paired {
        PAIRED_GB_PER_HOUR
    } else {
        UNPAIRED_GB_PER_HOUR
    };
    let hours = 10.0 / 60.0 + gb / rate;
    let warning = (hours > SEEDING_LIMIT_HOURS * 0.7).then(|| {
        format!(
            "seeding may take up to {hours:.0}h, close to Azure's 7-day limit after which the group creation is cancelled"
        )
    });
    Ok(Estimate {
        text: format!(
            "seeding: at most {} ({gb:.0} GB {what} {} at about {rate:.0} GB/h {}); Azure cancels seeding after 7 days",
            human_hours(hours),
            primary.name,
            if paired {
                "between paired regions"
            } else {
                "between unpaired regions"
            }
        ),
        hours,
        warning,
    })
}

fn human_hours(h: f64) -> String {
    if h < 1.0 {
        format!("{:.0}min", h * 60.0)
    } else {
        format!("{h:.1}h")
    }
}
