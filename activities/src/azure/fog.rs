//! Failover-group activities: `fog.get`, `fog.create`, `fog.delete`, `fog.failover`,
//! `fog.force_failover`.
//!
//! A group is a proxy resource under a location, with one view per member region; the
//! `replicationRole` of a view is the role of the instance in that region. Writes (PUT,
//! DELETE) go to the primary's view, failovers to the secondary's (docs/ARM.md §3.1).

use std::time::Duration;

use reqwest::Method;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::refs::{Instance, InstanceRef, names_in};
use super::{arm, now_text, text, with_receipts};
use crate::arm::ids::{check_name, same_id};
use crate::arm::lro::{self, Progress};
use crate::arm::{SQL_API_VERSION, Session};
use crate::builtin::DurationText;
use crate::{ActivityCtx, ActivityError, Env};

/// How often a group is re-read while waiting for seeding or a role.
const GROUP_POLL: Duration = Duration::from_secs(30);

/// What one regional view of a group says.
#[derive(Clone, Debug)]
pub(crate) struct GroupView {
    pub(crate) role: String,
    pub(crate) replication_state: String,
    pub(crate) partner_location: String,
    pub(crate) primary_id: String,
    pub(crate) partner_id: String,
    pub(crate) body: serde_json::Value,
}

impl GroupView {
    fn from_body(body: serde_json::Value) -> Self {
        let t = |p: &str| text(&body, p).unwrap_or_default().to_owned();
        Self {
            role: t("/properties/replicationRole"),
            replication_state: t("/properties/replicationState"),
            partner_location: t("/properties/partnerRegions/0/location"),
            primary_id: t("/properties/managedInstancePairs/0/primaryManagedInstanceId"),
            partner_id: t("/properties/managedInstancePairs/0/partnerManagedInstanceId"),
            body,
        }
    }

    fn is_primary(&self) -> bool {
        self.role.eq_ignore_ascii_case("Primary")
    }

    /// Whether the group pairs `a` and `b` (in either order).
    fn pairs(&self, a: &str, b: &str) -> bool {
        (same_id(&self.primary_id, a) && same_id(&self.partner_id, b))
            || (same_id(&self.primary_id, b) && same_id(&self.partner_id, a))
    }
}

/// The view of group `name` in `member`'s region; `None` when it does not exist there.
pub(crate) async fn read_view(
    s: &Session<'_>,
    member: &InstanceRef,
    location: &str,
    name: &str,
) -> Result<Option<GroupView>, ActivityError> {
    let body = s
        .get_opt(
            &member.subscription,
            &member.group_path(location, name)?,
            SQL_API_VERSION,
        )
        .await?;
    Ok(body.map(GroupView::from_body))
}

/// The region of an instance: from the reference, or read.
pub(crate) async fn location_of(s: &Session<'_>, instance: &InstanceRef) -> Result<String, ActivityError> {
    match &instance.location {
        Some(l) => Ok(l.clone()),
        None => Ok(instance.read_existing(s).await?.location),
    }
}

fn listeners(name: &str, dns_zone: Option<&str>) -> serde_json::Value {
    match dns_zone {
        Some(zone) => json!({
            "read_write_listener": format!("{name}.{zone}.database.windows.net"),
            "read_only_listener": format!("{name}.secondary.{zone}.database.windows.net"),
        }),
        None => json!({}),
    }
}

fn view_output(name: &str, view: &GroupView, instance: &Instance) -> serde_json::Value {
    let mut out = json!({
        "exists": true,
        "name": name,
        "id": text(&view.body, "/id"),
        "role": view.role,
        "replication_state": view.replication_state,
        "partner_location": view.partner_location,
        "primary_instance_id": view.primary_id,
        "partner_instance_id": view.partner_id,
        "read_write_failover_policy": text(&view.body, "/properties/readWriteEndpoint/failoverPolicy"),
    });
    if let (Some(m), Some(l)) = (
        out.as_object_mut(),
        listeners(name, instance.dns_zone.as_deref()).as_object(),
    ) {
        m.extend(l.clone());
    }
    out
}

/// `fog.get`: reads failover group `name` as seen from `instance`'s region.
/// Output: `exists`, `name`, `id`, `role` (of that instance), `replication_state`,
/// `partner_location`, `primary_instance_id`, `partner_instance_id`,
/// `read_write_failover_policy`, `read_write_listener`, `read_only_listener`.
/// A missing group gives `exists: false`. `found` is one sentence for an `assert` message:
/// the group's role here, or, for a missing group, the groups that region holds. Read-only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogGet {
    /// Failover group name.
    name: String,
    /// A member instance (its region and resource group locate the view).
    instance: InstanceRef,
}

impl FogGet {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        check_name("failover group name", &self.name)?;
        self.instance.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let instance = self.instance.read_existing(&s).await?;
        Ok(
            match read_view(&s, &self.instance, &instance.location, &self.name).await? {
                Some(view) => {
                    let mut out = view_output(&self.name, &view, &instance);
                    out["found"] = json!(format!(
                        "failover group `{}` exists; `{}` is its {}",
                        self.name,
                        self.instance.name,
                        if view.role.is_empty() {
                            "member (no role)"
                        } else {
                            view.role.as_str()
                        }
                    ));
                    out
                }
                None => {
                    let what = format!(
                        "failover group `{}` not found in resource group `{}` on instance `{}` (region {})",
                        self.name, self.instance.resource_group, self.instance.name, instance.location
                    );
                    let path = self.instance.group_list_path(&instance.location)?;
                    let found = match names_in(&s, &self.instance.subscription, &path).await? {
                        Some(names) if !names.is_empty() => {
                            format!("{what}; the groups there are: {}", names.join(", "))
                        }
                        _ => format!("{what}; there is no failover group there"),
                    };
                    json!({ "exists": false, "name": self.name, "found": found })
                }
            },
        )
    }
}

/// `fog.create`: creates failover group `name` between `primary` and `secondary` (PUT at
/// the primary's region) and completes when seeding has finished (`replicationState`
/// `CATCH_UP`). A group that already pairs the two instances is not sent again; re-entry
/// re-attaches to the saved operation and never re-seeds. Keep the step timeout within
/// Azure's 7-day seeding limit.
/// Output: as `fog.get` plus `created`, `arm_requests`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogCreate {
    /// Failover group name (also the listener DNS name).
    name: String,
    /// The primary instance.
    pub(super) primary: InstanceRef,
    /// The (empty) secondary instance.
    pub(super) secondary: InstanceRef,
    /// `Manual` (default) or `Automatic`.
    #[serde(default)]
    failover_policy: Option<String>,
    /// Grace period for `Automatic`, in minutes (at least 60).
    #[serde(default)]
    grace_period_minutes: Option<u32>,
    /// Enable failover of the read-only endpoint (default false).
    #[serde(default)]
    read_only_failover: bool,
    /// `Geo` (default) or `Standby` (DR-only, licence benefit).
    #[serde(default)]
    secondary_type: Option<String>,
}

impl FogCreate {
    fn body(&self, secondary_location: &str) -> Result<serde_json::Value, ActivityError> {
        let policy = self.failover_policy.as_deref().unwrap_or("Manual");
        let mut rw = json!({ "failoverPolicy": policy });
        match (policy.eq_ignore_ascii_case("Automatic"), self.grace_period_minutes) {
            (true, Some(m)) => rw["failoverWithDataLossGracePeriodMinutes"] = json!(m),
            (true, None) => {
                return Err(ActivityError::invalid(
                    "failover_policy Automatic needs grace_period_minutes",
                ));
            }
            (false, Some(_)) => {
                return Err(ActivityError::invalid(
                    "grace_period_minutes is only for failover_policy Automatic",
                ));
            }
            (false, None) => {}
        }
        Ok(json!({ "properties": {
            "readWriteEndpoint": rw,
            "readOnlyEndpoint": { "failoverPolicy": if self.read_only_failover { "Enabled" } else { "Disabled" } },
            "partnerRegions": [{ "location": secondary_location }],
            "managedInstancePairs": [{
                "primaryManagedInstanceId": self.primary.id(),
                "partnerManagedInstanceId": self.secondary.id(),
            }],
            "secondaryType": self.secondary_type.as_deref().unwrap_or("Geo"),
        }}))
    }

    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        check_name("failover group name", &self.name)?;
        self.primary.validate()?;
        self.secondary.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let mut progress = Progress::load(ctx);
        let primary = self.primary.read_existing(&s).await?;
        let path = self.primary.group_path(&primary.location, &self.name)?;
        let url = s.client.url(&path, SQL_API_VERSION)?;
        let mut created = false;
        if progress.op("create").is_some() {
            lro::run(
                &s,
                &mut progress,
                "create",
                &self.primary.subscription,
                Method::PUT,
                url,
                None,
            )
            .await?;
            created = true;
        } else {
            let existing = read_view(&s, &self.primary, &primary.location, &self.name).await?;
            let paired = existing
                .as_ref()
                .is_some_and(|v| v.pairs(&self.primary.id(), &self.secondary.id()));
            if !paired {
                let secondary_location = location_of(&s, &self.secondary).await?;
                let body = self.body(&secondary_location)?;
                lro::run(
                    &s,
                    &mut progress,
                    "create",
                    &self.primary.subscription,
                    Method::PUT,
                    url,
                    Some(body),
                )
                .await?;
                created = true;
            }
        }
        // Seeding is over when the group reports CATCH_UP.
        loop {
            let view = read_view(&s, &self.primary, &primary.location, &self.name)
                .await?
                .ok_or_else(|| {
                    ActivityError::failed(
                        "InstanceFailoverGroupDoesNotExist",
                        format!(
                            "failover group `{}` disappeared while seeding (deleted, or seeding was cancelled)",
                            self.name
                        ),
                    )
                })?;
            if view.replication_state.eq_ignore_ascii_case("CATCH_UP") {
                let mut out = view_output(&self.name, &view, &primary);
                out["created"] = json!(created);
                return Ok(with_receipts(&s, out));
            }
            tracing::debug!(state = %view.replication_state, "fog.seeding");
            s.pause(GROUP_POLL).await?;
        }
    }
}

/// `fog.delete`: deletes failover group `name` (at its current primary's region, found from
/// `instance`'s view). The listener DNS records go with it, and the name becomes free for
/// anyone until it is re-created. Intent is saved before the DELETE; re-entry polls the saved
/// operation, or with an intent only reads whether the group still exists.
/// Output: `deleted`, `already_absent`, `name`, `arm_requests`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogDelete {
    /// Failover group name.
    name: String,
    /// A member instance (normally the primary).
    instance: InstanceRef,
}

impl FogDelete {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        check_name("failover group name", &self.name)?;
        self.instance.validate()?;
        let s = Session::new(arm(env)?, ctx);
        let mut progress = Progress::load(ctx);
        let (member, location) = match progress.get("target") {
            Some(t) => (
                serde_json::from_value::<InstanceRef>(t.clone())
                    .map_err(|e| ActivityError::invalid(format!("saved target: {e}")))?,
                text(t, "/location").unwrap_or_default().to_owned(),
            ),
            None => {
                let location = location_of(&s, &self.instance).await?;
                match read_view(&s, &self.instance, &location, &self.name).await? {
                    None => {
                        let deleted = progress.get("intent").is_some();
                        return Ok(with_receipts(
                            &s,
                            json!({ "deleted": deleted, "already_absent": !deleted, "name": self.name }),
                        ));
                    }
                    Some(view) if view.is_primary() => (self.instance.clone(), location),
                    Some(view) => {
                        // This member is the secondary: the write goes to the primary's view.
                        let mut primary = InstanceRef::from_id(&view.primary_id)?;
                        let l = location_of(&s, &primary).await?;
                        primary.location = Some(l.clone());
                        (primary, l)
                    }
                }
            }
        };
        let url = s
            .client
            .url(&member.group_path(&location, &self.name)?, SQL_API_VERSION)?;
        if progress.op("delete").is_none() {
            if progress.get("intent").is_some() && read_view(&s, &member, &location, &self.name).await?.is_none() {
                return Ok(with_receipts(
                    &s,
                    json!({ "deleted": true, "already_absent": false, "name": self.name }),
                ));
            }
            let mut target = serde_json::to_value(&member).unwrap_or_default();
            target["location"] = json!(location);
            progress.set("target", target);
            progress.set(
                "intent",
                json!({ "action": "delete", "name": self.name, "at": now_text(ctx) }),
            );
            progress.save(ctx).await?;
        }
        lro::run(
            &s,
            &mut progress,
            "delete",
            &member.subscription,
            Method::DELETE,
            url,
            None,
        )
        .await?;
        Ok(with_receipts(
            &s,
            json!({ "deleted": true, "already_absent": false, "name": self.name }),
        ))
    }
}

/// `fog.failover`: planned failover (full synchronisation, no data loss) making `secondary`
/// the primary. The POST goes to the secondary's region; when that instance already is the
/// primary the step is a no-op (`changed: false`).
///
/// Never twice: the intent is saved before the POST. Re-entered with an intent and no saved
/// operation (the answer was lost), the activity reads the role at once instead of posting
/// again, and watches it only until `reconcile_timeout` (default 15m) after the intent was
/// saved; if the role has not changed by then, the step stops as ambiguous for an operator.
/// An attempt whose save of the intent fails sends nothing and saves the intent again as
/// `not_sent`, which a later attempt treats as no intent (it reads the roles, then posts).
/// A POST the server refused (4xx) is recorded as rejected and may be sent again by a later
/// attempt, so a `retry:` policy on the step is safe.
/// Output: `changed`, `resolved_by` (`operation`, `read-back` or `no-op`), group view fields,
/// `arm_requests`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogFailover {
    /// Failover group name.
    name: String,
    /// The instance that becomes primary (the current secondary).
    secondary: InstanceRef,
    /// How long to watch for the role change after an ambiguous interruption (default 15m).
    #[serde(default)]
    reconcile_timeout: Option<DurationText>,
}

/// `fog.force_failover`: failover allowing data loss (disaster recovery only), otherwise
/// exactly like `fog.failover` (same inputs, outputs and never-twice behaviour).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FogForceFailover {
    /// Failover group name.
    name: String,
    /// The instance that becomes primary (the current secondary).
    secondary: InstanceRef,
    /// How long to watch for the role change after an ambiguous interruption (default 15m).
    #[serde(default)]
    reconcile_timeout: Option<DurationText>,
}

impl FogFailover {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        failover(ctx, env, &self.name, &self.secondary, self.reconcile_timeout, false).await
    }
}

impl FogForceFailover {
    pub(crate) async fn run(self, ctx: &ActivityCtx, env: &Env) -> Result<serde_json::Value, ActivityError> {
        failover(ctx, env, &self.name, &self.secondary, self.reconcile_timeout, true).await
    }
}

async fn failover(
    ctx: &ActivityCtx,
    env: &Env,
    name: &str,
    target: &InstanceRef,
    reconcile: Option<DurationText>,
    forced: bool,
) -> Result<serde_json::Value, ActivityError> {
    check_name("failover group name", name)?;
    target.validate()?;
    let s = Session::new(arm(env)?, ctx);
    let mut progress = Progress::load(ctx);
    // TEST-ONLY: a deliberately broken build for the chaos runner, which must show that its
    // invariants catch a repeated failover (docs/RELIABILITY.md, "The harness can fail").
    // With FOGBOOK_CHAOS_BREAK=skip-failover-intent the activity forgets its intent, its
    // saved operation and the "already primary" shortcut, and so posts again on re-entry.
    // Only a build with the feature `test-hooks` reads the variable.
    #[cfg(feature = "test-hooks")]
    let broken = std::env::var("FOGBOOK_CHAOS_BREAK").is_ok_and(|v| v == "skip-failover-intent");
    #[cfg(not(feature = "test-hooks"))]
    let broken = false;
    if broken {
        tracing::warn!("FOGBOOK_CHAOS_BREAK=skip-failover-intent: failovers may be sent twice (chaos testing only)");
        progress.set("intent", serde_json::Value::Null);
        progress.set("ops", json!({}));
    }
    let instance = target.read_existing(&s).await?;
    let location = instance.location.clone();
    let action = if forced {
        "forceFailoverAllowDataLoss"
    } else {
        "failover"
    };
    let path = format!("{}/{action}", target.group_path(&location, name)?);
    let url = s.client.url(&path, SQL_API_VERSION)?;
    let finish = |view: &GroupView, changed: bool, how: &str| {
        let mut out = view_output(name, view, &instance);
        out["changed"] = json!(changed);
        out["resolved_by"] = json!(how);
        out["forced"] = json!(forced);
        with_receipts(&s, out)
    };
    let missing = || {
        ActivityError::failed(
            "InstanceFailoverGroupDoesNotExist",
            format!(
                "failover group `{name}` has no view in {location} for `{}`",
                target.name
            ),
        )
    };
    if progress.op("failover").is_none() {
        let view = read_view(&s, target, &location, name).await?.ok_or_else(missing)?;
        let intent_state = progress
            .get("intent")
            .and_then(|i| i.get("state"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        match intent_state.as_deref() {
            Some("sending") => {
                // The POST may have been applied: find out from the roles, never post again.
                // The roles are read at once; if the target is not primary yet, they are
                // watched only for what remains of `reconcile_timeout` counted from when the
                // intent was saved (a durable deadline), so a re-entry long after the POST
                // decides at once instead of waiting the whole timeout again.
                let reconcile = reconcile.map_or(Duration::from_secs(900), |d| d.0);
                let sent_at = progress
                    .get("intent")
                    .and_then(|i| i.get("at"))
                    .and_then(|v| v.as_str())
                    .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
                let remaining = match sent_at {
                    Some(at) => {
                        let elapsed = (ctx.now() - at).max(time::Duration::ZERO);
                        reconcile.saturating_sub(Duration::try_from(elapsed).unwrap_or(Duration::MAX))
                    }
                    None => reconcile,
                };
                let polls = remaining.as_secs() / GROUP_POLL.as_secs();
                let mut view = view;
                for poll in 0..=polls {
                    if view.is_primary() {
                        return Ok(finish(&view, true, "read-back"));
                    }
                    if poll == polls {
                        break;
                    }
                    s.pause(GROUP_POLL).await?;
                    view = read_view(&s, target, &location, name).await?.ok_or_else(missing)?;
                }
                return Err(ActivityError::Ambiguous {
                    message: format!(
                        "a {action} of failover group `{name}` may have been sent but its answer was lost, and `{}` is still secondary {}s after the intent was saved (reconcile_timeout); check the group's activity log before retrying (fogbook will not send a second failover)",
                        target.name,
                        reconcile.as_secs()
                    ),
                });
            }
            // No intent, one the server rejected, or one whose commit failed before its POST
            // (`not_sent`, saved by the attempt that knew it sent nothing): nothing was
            // applied, so the roles read now decide, and the POST is sent at most once.
            _ if view.is_primary() && !broken => return Ok(finish(&view, false, "no-op")),
            _ => {}
        }
        progress.set(
            "intent",
            json!({ "action": action, "state": "sending", "at": now_text(ctx), "role_before": view.role }),
        );
        // Never a POST after a failed save: the save records `not_sent` instead if it can.
        progress.save_intent(ctx).await?;
    }
    match lro::run(
        &s,
        &mut progress,
        "failover",
        &target.subscription,
        Method::POST,
        url,
        None,
    )
    .await
    {
        Ok(_) => {}
        Err(e) if progress.op("failover").is_none() && s.post_refused() => {
            // The server refused the POST: nothing happened, a later attempt may post again.
            progress.set(
                "intent",
                json!({ "action": action, "state": "rejected", "code": e.code(), "at": now_text(ctx) }),
            );
            progress.save(ctx).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    for _ in 0..20 {
        let view = read_view(&s, target, &location, name).await?.ok_or_else(missing)?;
        if view.is_primary() {
            return Ok(finish(&view, true, "operation"));
        }
        s.pause(GROUP_POLL).await?;
    }
    Err(ActivityError::failed(
        "FailoverNotObserved",
        format!(
            "the {action} operation succeeded but `{}` does not report the primary role",
            target.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group view shaped as the spec's `InstanceFailoverGroupGet` example answers it: the
    /// location's display name in the id and in `partnerRegions`, every endpoint present.
    #[test]
    fn a_spec_shaped_group_view_parses() {
        let body = json!({
            "id": "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/Default/providers/Microsoft.Sql/locations/Japan East/instanceFailoverGroups/failover-group-test-3",
            "name": "failover-group-test-3",
            "type": "Microsoft.Sql/locations/instanceFailoverGroups",
            "properties": {
                "readWriteEndpoint": {"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 480},
                "readOnlyEndpoint": {"failoverPolicy": "Disabled"},
                "replicationRole": "Secondary",
                "replicationState": "CATCH_UP",
                "partnerRegions": [{"location": "Japan West", "replicationRole": "Primary"}],
                "managedInstancePairs": [{
                    "primaryManagedInstanceId": "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/Default/providers/Microsoft.Sql/managedInstances/failover-group-primary-mngdInstance",
                    "partnerManagedInstanceId": "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/Default/providers/Microsoft.Sql/managedInstances/failover-group-secondary-mngdInstance"
                }],
                "secondaryType": "Geo"
            }
        });
        let view = GroupView::from_body(body);
        assert!(!view.is_primary());
        assert_eq!(view.replication_state, "CATCH_UP");
        assert_eq!(view.partner_location, "Japan West");
        assert!(view.pairs(
            "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/default/providers/Microsoft.Sql/managedInstances/failover-group-secondary-mngdInstance",
            "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/Default/providers/Microsoft.Sql/managedInstances/failover-group-primary-mngdInstance",
        ));
    }
}
