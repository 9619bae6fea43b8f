//! Managed databases: `database.get` reads one (a runbook's check that the database it names
//! exists, or that a new name is free), and `databases.delete_copies` empties the former
//! secondary of a deleted failover group, so a group can be created again with it (Azure
//! requires an empty secondary and re-seeds it).

use reqwest::Method;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::instance::{database_names, is_system_database, yes};
use super::refs::{InstanceRef, names_in};
use super::{arm, now_text, text, with_receipts};
use crate::arm::ids::same_id;
use crate::arm::lro::{self, Progress};
use crate::arm::{SQL_API_VERSION, Session};
use crate::{ActivityCtx, ActivityError, Env};

/// `database.get`: reads managed database `name` of `instance`.
///
/// Output: `exists`, `id`, `name` (as Azure spells it), `status` (`Online`, `Restoring`, ...),
/// `collation`, `creation_date`, `failover_group_id` (null outside a group), `found`. A
/// missing database fails with ARM's code unless `must_exist: false`, which gives
/// `{exists: false, id, name, found}`. `found` is one sentence for an `assert` message: that
/// the database exists, or, for a missing one, the user databases of the instance (or, when
/// the instance itself is missing, the instances of its resource group). Read-only; re-entry
/// reads again.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseGet {
    /// The instance that holds the database.
    instance: InstanceRef,
    /// The database's name.
    name: String,
    /// Fail when the database does not exist (default true).
    #[serde(default = "yes")]
    must_exist: bool,
}

impl DatabaseGet {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        self.instance.validate()?;
        let path = self.instance.database_path(&self.name)?;
        let s = Session::new(arm(env)?, ctx);
        let sub = &self.instance.subscription;
        let body = if self.must_exist {
            Some(s.get(sub, &path, SQL_API_VERSION).await?)
        } else {
            s.get_opt(sub, &path, SQL_API_VERSION).await?
        };
        let id = format!("{}/databases/{}", self.instance.id(), self.name);
        Ok(match body {
            Some(b) => {
                let name = text(&b, "/name").unwrap_or(&self.name);
                json!({
                    "exists": true,
                    "id": text(&b, "/id").unwrap_or(&id),
                    "name": name,
                    "status": text(&b, "/properties/status"),
                    "collation": text(&b, "/properties/collation"),
                    "creation_date": text(&b, "/properties/creationDate"),
                    "failover_group_id": text(&b, "/properties/failoverGroupId"),
                    "found": format!(
                        "managed database `{name}` exists on managed instance `{}` (resource group `{}`)",
                        self.instance.name, self.instance.resource_group
                    ),
                })
            }
            None => json!({
                "exists": false,
                "id": id,
                "name": self.name,
                "found": self.not_found_text(&s).await?,
            }),
        })
    }

    /// One sentence saying that the database does not exist and what is there instead: the
    /// user databases of the instance, or, when the instance is missing, what its resource
    /// group holds.
    async fn not_found_text(&self, s: &Session<'_>) -> Result<String, ActivityError> {
        let list = format!("{}/databases", self.instance.path()?);
        let Some(names) = names_in(s, &self.instance.subscription, &list).await? else {
            return self.instance.not_found_text(s).await;
        };
        let names: Vec<String> = names.into_iter().filter(|n| !is_system_database(n)).collect();
        let what = format!(
            "managed database `{}` not found on managed instance `{}` (resource group `{}`)",
            self.name, self.instance.name, self.instance.resource_group
        );
        Ok(if names.is_empty() {
            format!("{what}; that instance holds no user database")
        } else {
            format!("{what}; the databases there are: {}", names.join(", "))
        })
    }
}

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
            let url = s.client.url(&self.instance.database_path(&name)?, SQL_API_VERSION)?;
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
            let url = s.client.url(&self.instance.database_path(&name)?, SQL_API_VERSION)?;
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
}
