//! The `one_group_per_instance` row of `fog.preflight`: neither instance is in another
//! failover group.

use super::{FogPreflight, Report, Verdict};
use crate::ActivityError;
use crate::arm::ids::same_id;
use crate::arm::{SQL_API_VERSION, Session};
use crate::azure::fog::read_view;
use crate::azure::refs::Instance;
use crate::azure::text;

impl FogPreflight {
    pub(super) async fn group_checks(
        &self,
        s: &Session<'_>,
        r: &mut Report,
        a: &Instance,
        b: &Instance,
    ) -> Result<(), ActivityError> {
        let mut taken = Vec::new();
        let mut replaced = Vec::new();
        for (inst, view_of) in [(&self.primary, a), (&self.secondary, b)] {
            let path = inst.group_list_path(&view_of.location)?;
            for g in s.list(&inst.subscription, &path, SQL_API_VERSION).await? {
                let gname = text(&g, "/name").unwrap_or_default().to_owned();
                let p = text(&g, "/properties/managedInstancePairs/0/primaryManagedInstanceId").unwrap_or_default();
                let q = text(&g, "/properties/managedInstancePairs/0/partnerManagedInstanceId").unwrap_or_default();
                let involves = same_id(p, &inst.id()) || same_id(q, &inst.id());
                let ours = self.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&gname))
                    && ((same_id(p, &self.primary.id()) && same_id(q, &self.secondary.id()))
                        || (same_id(q, &self.primary.id()) && same_id(p, &self.secondary.id())));
                let to_be_replaced =
                    self.replacing && self.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&gname));
                if involves && to_be_replaced && !ours {
                    replaced.push(format!(
                        "{} is in group {gname}, which this run deletes first",
                        inst.name
                    ));
                } else if involves && !ours {
                    taken.push(format!("{} is in group {gname}", inst.name));
                }
            }
        }
        if taken.is_empty() && !replaced.is_empty() {
            r.add("one_group_per_instance", Verdict::Pass, replaced.join("; "));
            return Ok(());
        }
        if let Some(name) = &self.name
            && taken.is_empty()
            && let Some(view) = read_view(s, &self.primary, &a.location, name).await?
            && !view.role.is_empty()
        {
            r.add(
                "one_group_per_instance",
                Verdict::Pass,
                format!("already paired in group {name}"),
            );
            return Ok(());
        }
        r.check(
            "one_group_per_instance",
            taken.is_empty(),
            Verdict::Fail,
            "neither instance is in another failover group".into(),
            format!("an instance can be in one failover group only: {}", taken.join("; ")),
        );
        Ok(())
    }
}
