//! The `report` activity: puts named values in the run's report.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::ActivityError;

/// `report`: puts named values (usually expressions over earlier steps' outputs) in the
/// run's report, e.g. the listener endpoints a new failover group answers on. Its output is
/// `{"report": {name: value, ...}}`; `fogbook report` and the end of `run` print it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Report {
    /// Name → value, printed in this order.
    values: BTreeMap<String, serde_json::Value>,
}

impl Report {
    pub(crate) fn run(self) -> Result<serde_json::Value, ActivityError> {
        Ok(json!({ "report": self.values }))
    }
}
