//! The closed set of activities: names, input schemas, and the one dispatching `match`.

use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;

use crate::builtin::{Approval, Assert, Command, Notify, Wait};
use crate::{ActivityCtx, ActivityError, Env};

/// Every activity name a runbook may use, in the order they are documented.
pub const KINDS: &[&str] = &["wait", "approval", "assert", "notify", "command"];

/// The JSON Schema of the inputs (`with:`) of activity `uses`, or `None` when no such
/// activity exists.
pub fn input_schema(uses: &str) -> Option<Schema> {
    let schema = match uses {
        "wait" => schemars::schema_for!(Wait),
        "approval" => schemars::schema_for!(Approval),
        "assert" => schemars::schema_for!(Assert),
        "notify" => schemars::schema_for!(Notify),
        "command" => schemars::schema_for!(Command),
        _ => return None,
    };
    Some(schema)
}

/// Runs activity `uses` with resolved inputs and returns its output.
///
/// The caller (the engine) has committed the step's start before calling this, and commits
/// the returned output, so the activity only performs the effect and saves progress.
pub async fn execute(
    uses: &str,
    input: serde_json::Value,
    ctx: &ActivityCtx,
    env: &Env,
) -> Result<serde_json::Value, ActivityError> {
    match uses {
        "wait" => spec::<Wait>(input)?.run(ctx).await,
        "approval" => spec::<Approval>(input)?.run(ctx).await,
        "assert" => spec::<Assert>(input)?.run(),
        "notify" => spec::<Notify>(input)?.run(ctx, env).await,
        "command" => spec::<Command>(input)?.run(ctx).await,
        other => Err(ActivityError::invalid(format!("unknown activity `{other}`"))),
    }
}

/// POSTs an engine event (window opened, limit exceeded, run finished) as JSON to a
/// webhook, with the same classification of answers as the `notify` activity.
pub async fn post_event(env: &Env, url: &str, body: &serde_json::Value) -> Result<u16, ActivityError> {
    crate::builtin::post_json(env, url, body).await
}

fn spec<T: DeserializeOwned + JsonSchema>(input: serde_json::Value) -> Result<T, ActivityError> {
    serde_json::from_value(input).map_err(|e| ActivityError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_schema() {
        for kind in KINDS {
            let schema = input_schema(kind).expect("schema");
            assert!(
                schema.as_value().get("properties").is_some(),
                "{kind} has no properties in its schema"
            );
        }
        assert!(input_schema("nope").is_none());
    }
}
