//! The `assert` activity: fails the step when a condition over earlier outputs is false.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::ActivityError;

/// `assert`: fails the step with `message` when `that` is false.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Assert {
    /// The condition, usually an expression such as `${{ steps.x.outputs.n == 0 }}`.
    that: bool,
    /// Shown when the condition is false.
    message: String,
}

impl Assert {
    pub(crate) fn run(self) -> Result<serde_json::Value, ActivityError> {
        if self.that {
            Ok(json!({ "passed": true }))
        } else {
            Err(ActivityError::failed("AssertionFailed", self.message))
        }
    }
}
