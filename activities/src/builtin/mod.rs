//! Built-in activities: `wait`, `approval`, `assert`, `notify`, `command`, `report`.

mod approval;
mod assert;
mod command;
mod notify;
mod report;
mod wait;

pub(crate) use approval::Approval;
pub(crate) use assert::Assert;
pub(crate) use command::Command;
pub(crate) use notify::{Notify, post_json};
pub(crate) use report::Report;
pub(crate) use wait::Wait;

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// A duration written as text (`90s`, `1h30m`), see [`crate::duration::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String", extend("format" = "duration"))]
pub(crate) struct DurationText(pub(crate) Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::duration::parse(&text)
            .map(DurationText)
            .map_err(serde::de::Error::custom)
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn parse_rfc3339(v: Option<&serde_json::Value>) -> Option<time::OffsetDateTime> {
    let s = v?.as_str()?;
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}
