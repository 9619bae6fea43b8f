//! `databases.delete_copies`: empties the former secondary of a deleted failover group, so a
//! group can be created again with it (Azure requires an empty secondary and re-seeds it).

use reqwest::Method;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::instance::database_names;
use super::refs::InstanceRef;
use super::{arm, now_text, with_receipts};
use crate::arm::ids::{PathBuilder, same_id};
use crate::arm::lro::{self, Progress};
use crate::arm::{SQL_API_VERSION, Session};
use crate::{ActivityCtx, ActivityError, Env};

/// `databases.delete_copies`: deletes every user database of `instance` after checking
/// that each one also exists on `copies_of` (the primary it was a geo-replica of), so no
/// database that exists only there is ever deleted (`NotACopy`, nothing deleted). The group
/// must already be gone: Azure refuses to delete a database of a failover group. The intent
/// is saved before each DELETE; re-entry lists the databases again and deletes only those
/// still there (a saved operation is polled, not re-sent).
/// Output: `deleted` (names, in order), `kept_on` (the `copies_of` instance's name),
/// `originals` (every user database of `copies_of`: the ones a re-created group seeds again),
/// `arm_requests`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabasesDeleteCopies {
    /// The instance to empty (the former secondary).
    instance: InstanceRef,
    /// The instance that holds the originals (the primary).
    copies_of: InstanceRef,
}

impl DatabasesDeleteCopies {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.instance.validate()?;
        self.copies_of.validate()?;
        if same_id(&self.instance.id(), &self.copies_of.id()) {
            return Err(ActivityError::invalid(
                "`instance` and `copies_of` are the same instance: give the former secondary and the primary",
            ));
        }
        let s = Session::new(arm(env)?, ctx);
        let mut progress = Progress::load(ctx);
        let mut deleted: Vec<String> = progress
            .get("deleted")
            .and_then(|d| serde_json::from_value(d.clone()).ok())
            .unwrap_or_default();
        // A DELETE whose operation was saved: follow it to its end, never re-send it.
        if let Some(name) = progress.get("current").and_then(|c| c.as_str()).map(str::to_owned)
            && progress.op(&format!("delete:{name}")).is_some()
        {
            let url = s.client.url(&self.database_path(&name)?, SQL_API_VERSION)?;
            let key = format!("delete:{name}");
            lro::run(
                &s,
                &mut progress,
                &key,
                &self.instance.subscription,
                Method::DELETE,
                url,
                None,
            )
            .await?;
            if !deleted.contains(&name) {
                deleted.push(name);
            }
        }
        let here = database_names(&s, &self.instance).await?;
        let originals = database_names(&s, &self.copies_of).await?;
        let unique: Vec<&String> = here
            .iter()
            .filter(|d| !originals.iter().any(|o| o.eq_ignore_ascii_case(d)))
            .collect();
        if !unique.is_empty() {
            return Err(ActivityError::Failed {
                code: "NotACopy".into(),
                message: format!(
                    "managed instance `{}` has database(s) that `{}` does not have: {}; they are not geo-replicas and were not deleted (nothing was deleted); move or drop them by hand, then resume",
                    self.instance.name,
                    self.copies_of.name,
                    unique.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
                output: Some(json!({ "deleted": deleted })),
            });
        }
        for name in here {
            let key = format!("delete:{name}");
            progress.set("current", json!(name));
            progress.set("deleted", json!(deleted));
            progress.set(
                "intent",
                json!({ "action": "delete", "database": name, "at": now_text(ctx) }),
            );
            progress.save(ctx).await?;
            let url = s.client.url(&self.database_path(&name)?, SQL_API_VERSION)?;
            lro::run(
                &s,
                &mut progress,
                &key,
                &self.instance.subscription,
                Method::DELETE,
                url,
                None,
            )
            .await?;
            deleted.push(name);
        }
        Ok(with_receipts(
            &s,
            json!({ "deleted": deleted, "kept_on": self.copies_of.name, "originals": originals }),
        ))
    }

    fn database_path(&self, name: &str) -> Result<String, ActivityError> {
        Ok(
            PathBuilder::resource_group(&self.instance.subscription, &self.instance.resource_group)?
                .lit("providers/Microsoft.Sql/managedInstances")
                .name("instance name", &self.instance.name)?
                .lit("databases")
                .name("database name", name)?
                .build(),
        )
    }
}
