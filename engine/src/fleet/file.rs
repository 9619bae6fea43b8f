// Over 600 lines on purpose: one file format in one place, its types beside every rule that reads them, each with its file:line:column message.
//! The fleet file: one runbook, many targets, rate control. Read with the runbook reader's
//! machinery, so every problem is reported at once with its file:line:column.
//!
//! ```yaml
//! fleet: move-eastus-secondaries
//! runbook: ../runbooks/change-secondary-region.yaml   # relative to this file
//! params: { delete_old_secondary: true }              # common to every target
//! targets:                                            # a list of parameter sets ...
//!   - name: fog-01
//!     params: { failover_group: fog-01 }
//! # ... or a template over a list: `${{ item }}` (or `${{ item.field }}`) in any string
//! # targets: { over: [fog-01, fog-02], name: "${{ item }}", params: { failover_group: "${{ item }}" } }
//! # ... or a template over an estate query, run once when the fleet is created (the targets
//! # found are frozen into the fleet; a resume never queries again):
//! # targets:
//! #   query: { groups: { primary_location: eastus, subscriptions: [SUB], resource_groups: [rg] } }
//! #   name: "${{ item.name }}"
//! #   params: { failover_group: "${{ item.name }}", resource_group: "${{ item.resource_group }}" }
//! rate:
//!   max_concurrency: 5
//!   max_errors: 2            # or "10%": no new target starts once this many failed
//! waves:
//!   canary: 1                # the first target(s), which must all succeed first
//!   size: 5                  # then waves of 5 (default: the rest in one wave)
//!   approval: false          # pause for `fogbook fleet resume FLEET --approve` between waves
//! auto_approve: true         # approval steps of the targets' runs
//! window: "01:00-05:00 Europe/Amsterdam"  # optional: no target starts outside it; running
//!                            # ones finish; the fleet waits for the next opening
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::runbook::reader::{Cx, join};
use crate::runbook::yaml::{self, Node, Pos, Value};
use crate::runbook::{Diagnostic, Diagnostics, Runbook, resolve_params};
use crate::schedule::Window;

use super::template::instantiate;

/// The largest fleet file read.
const MAX_FLEET_BYTES: usize = 1024 * 1024;

/// After how many failed targets no new target starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxErrors {
    /// This many.
    Count(u32),
    /// This percentage of the targets (rounded up, at least one).
    Percent(u32),
}

impl MaxErrors {
    /// The number of failures that stops the fleet, for `targets` targets.
    pub fn threshold(self, targets: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => (targets * p as usize).div_ceil(100).max(1),
        }
    }
}

/// How the fleet paces itself (stored with the fleet; the driver reads it back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateControl {
    /// At most this many targets' runs at once.
    pub max_concurrency: u32,
    /// No new target starts once this many failed.
    pub max_errors: MaxErrors,
    /// The canary wave's size (0: no canary).
    pub canary: u32,
    /// The size of each later wave (`None`: the rest in one wave).
    pub wave_size: Option<u32>,
    /// Wait for an operator's approval before each wave after the first.
    pub approval: bool,
    /// Approve the targets' approval steps automatically (recorded as such).
    pub auto_approve: bool,
    /// The maintenance window (`01:00-05:00 Europe/Amsterdam`, as a schedule's `--window`):
    /// no target starts outside it. A fleet fired by a schedule with a window and none of
    /// its own takes the schedule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// A target as written (its parameters not yet checked against the runbook).
#[derive(Clone, Debug)]
pub struct FleetTarget {
    /// Its name, unique in the fleet.
    pub name: String,
    /// The common parameters overlaid with its own.
    pub params: Map<String, Json>,
    /// Where it is written (`file:line:column`), for messages.
    pub at: String,
}

/// A validated fleet file.
#[derive(Clone, Debug)]
pub struct FleetFile {
    /// `fleet:`.
    pub name: String,
    /// `runbook:` as written (relative to the fleet file).
    pub runbook: String,
    /// The targets, in order.
    pub targets: Vec<FleetTarget>,
    /// Rate control and waves.
    pub rate: RateControl,
    /// The estate query the targets come from (`targets: { query: ... }`): until
    /// [`FleetFile::expand`] is given its result, `targets` is empty.
    pub query: Option<TargetQuery>,
}

/// `targets: { query: { groups: {...} }, name, params }`: the failover groups whose primary
/// is in `primary_location`, each an `item` of the template.
#[derive(Clone, Debug)]
pub struct TargetQuery {
    /// `groups.primary_location`.
    pub primary_location: String,
    /// `groups.subscriptions` (at least one).
    pub subscriptions: Vec<String>,
    /// `groups.resource_groups` (empty: every resource group with a managed instance in
    /// the region).
    pub resource_groups: Vec<String>,
    name: String,
    params: Map<String, Json>,
    common: Map<String, Json>,
    origin: String,
    at: String,
    pos: Option<Pos>,
}

impl TargetQuery {
    /// The query in words, for messages and `fleet plan`.
    pub fn describe(&self) -> String {
        format!(
            "failover groups whose primary is in {} (subscription(s) {}; resource group(s) {})",
            self.primary_location,
            self.subscriptions.join(", "),
            if self.resource_groups.is_empty() {
                "every one with a managed instance there".to_owned()
            } else {
                self.resource_groups.join(", ")
            }
        )
    }
}

impl FleetFile {
    /// The wave of each target: the canary wave is 0, the later waves 1, 2, ...
    pub fn waves(&self) -> Vec<u32> {
        let canary = self.rate.canary as usize;
        (0..self.targets.len())
            .map(|i| {
                if i < canary {
                    0
                } else {
                    let rest = i - canary;
                    let n = self.rate.wave_size.map_or(usize::MAX, |s| s.max(1) as usize);
                    u32::try_from(rest / n).unwrap_or(u32::MAX).saturating_add(1)
                }
            })
            .collect()
    }

    /// Fills `targets` from the query's result (`items`, one per group found): each is an
    /// `item` of the template. Errors name the query's place in the fleet file.
    pub fn expand(&mut self, items: &[Json]) -> Result<(), Diagnostics> {
        let Some(q) = &self.query else {
            return Ok(());
        };
        let mut cx_errors = Vec::new();
        let diag = |message: String, path: &str| Diagnostic {
            origin: q.origin.clone(),
            line: q.pos.map(|p| p.line),
            column: q.pos.map(|p| p.column),
            path: path.to_owned(),
            message,
        };
        let mut targets = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match instantiate(&q.name, &q.params, &q.common, item, q.at.clone()) {
                Ok(t) => targets.push(t),
                Err(e) => cx_errors.push(diag(format!("group {i} found by the query: {e}"), "targets")),
            }
        }
        if targets.is_empty() && cx_errors.is_empty() {
            cx_errors.push(diag(
                format!("the query found no target: no {}", q.describe()),
                "targets.query",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &targets {
            if !seen.insert(t.name.clone()) {
                cx_errors.push(diag(
                    format!("two targets found by the query are named `{}`: make `name` unique (for example \"${{{{ item.resource_group }}}}-${{{{ item.name }}}}\")", t.name),
                    "targets.name",
                ));
            }
        }
        let canary = self.rate.canary as usize;
        if canary > 0 && canary >= targets.len() && !targets.is_empty() {
            cx_errors.push(diag(
                format!(
                    "the canary wave ({canary}) must be smaller than the fleet ({} target(s) found by the query)",
                    targets.len()
                ),
                "waves.canary",
            ));
        }
        if !cx_errors.is_empty() {
            return Err(Diagnostics(cx_errors));
        }
        self.targets = targets;
        Ok(())
    }

    /// Each target's parameters resolved against `rb`: every problem of every target, each
    /// named by the target's place in the fleet file.
    pub fn resolve(&self, rb: &Runbook) -> Result<Vec<Json>, Diagnostics> {
        let mut out = Vec::new();
        let mut all = Vec::new();
        for t in &self.targets {
            let origin = format!("{} (target `{}`)", t.at, t.name);
            match resolve_params(rb, t.params.clone(), &origin) {
                Ok(p) => out.push(p),
                Err(d) => all.extend(d.0),
            }
        }
        if all.is_empty() { Ok(out) } else { Err(Diagnostics(all)) }
    }
}

/// Reads and validates a fleet file: the fleet, or every problem found.
pub fn parse(text: &str, origin: &str) -> Result<FleetFile, Diagnostics> {
    let mut cx = Cx::new(origin, text);
    if text.len() > MAX_FLEET_BYTES {
        cx.error(
            None,
            "",
            format!("the file is larger than {} KiB", MAX_FLEET_BYTES / 1024),
        );
        return Err(cx.finish().err().unwrap_or_default());
    }
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            cx.syntax(e);
            return Err(cx.finish().err().unwrap_or_default());
        }
    };
    cx.check_duplicates(&root, "");
    let fleet = read_fleet(&mut cx, &root);
    match (cx.finish(), fleet) {
        (Ok(_), Some(f)) => Ok(f),
        (Err(d), _) => Err(d),
        (Ok(_), None) => Err(Diagnostics(vec![Diagnostic {
            origin: origin.to_owned(),
            line: None,
            column: None,
            path: String::new(),
            message: "not a fleet file".to_owned(),
        }])),
    }
}

fn at(cx: &Cx<'_>, pos: Option<Pos>) -> String {
    match pos {
        Some(p) => format!("{}:{}:{}", cx.origin, p.line, p.column),
        None => cx.origin.to_owned(),
    }
}

fn positive(cx: &mut Cx<'_>, node: &Node, path: &str, what: &str, min: i64) -> Option<u32> {
    let n = cx.integer(node, path, what)?;
    if n < min || n > 100_000 {
        cx.error(
            node.pos,
            path,
            format!("{what} must be between {min} and 100000, found {n}"),
        );
        return None;
    }
    u32::try_from(n).ok()
}

fn read_fleet(cx: &mut Cx<'_>, root: &Node) -> Option<FleetFile> {
    let f = cx.mapping(
        root,
        "",
        "the fleet file",
        &[
            "fleet",
            "description",
            "runbook",
            "params",
            "targets",
            "rate",
            "waves",
            "auto_approve",
            "window",
        ],
        &["fleet", "runbook", "targets", "rate"],
    )?;
    let name = f.get("fleet").and_then(|n| {
        let s = cx.string(n, "fleet", "`fleet`")?;
        if s.trim().is_empty() || s.chars().any(|c| c.is_control() || c == '/') {
            cx.error(
                n.pos,
                "fleet",
                format!(
                    "the fleet name `{}` must be non-empty, without `/` or control characters",
                    s.escape_debug()
                ),
            );
            return None;
        }
        Some(s.to_owned())
    });
    if let Some(d) = f.get("description") {
        cx.string(d, "description", "`description`");
    }
    let runbook = f
        .get("runbook")
        .and_then(|n| cx.string(n, "runbook", "`runbook` (the path of the runbook file)"))
        .map(str::to_owned);
    let common = match f.get("params") {
        None => Some(Map::new()),
        Some(n) => params_map(cx, n, "params"),
    };
    let auto_approve = match f.get("auto_approve") {
        None => Some(false),
        Some(n) => cx.boolean(n, "auto_approve", "`auto_approve`"),
    };
    let rate = f.get("rate").and_then(|n| read_rate(cx, n));
    let window = match f.get("window") {
        None => Some(None),
        Some(n) => cx
            .string(n, "window", "`window`")
            .and_then(|text| match Window::parse(text) {
                Ok(_) => Some(Some(text.to_owned())),
                Err(e) => {
                    cx.error(
                        n.pos,
                        "window",
                        format!("{e}; write it as \"01:00-05:00 Europe/Amsterdam\""),
                    );
                    None
                }
            }),
    };
    let waves = match f.get("waves") {
        None => Some((0, None, false)),
        Some(n) => read_waves(cx, n),
    };
    let targets = f
        .get("targets")
        .and_then(|n| read_targets(cx, n, common.as_ref().unwrap_or(&Map::new())));
    let (max_concurrency, max_errors) = rate?;
    let (canary, wave_size, approval) = waves?;
    let (targets, query) = targets?;
    if targets.is_empty() && query.is_none() {
        cx.error(
            f.get("targets").and_then(|n| n.pos),
            "targets",
            "a fleet needs at least one target",
        );
        return None;
    }
    if query.is_none() && canary as usize >= targets.len() && canary > 0 {
        cx.error(
            f.get("waves").and_then(|n| n.pos),
            "waves.canary",
            format!(
                "the canary wave ({canary}) must be smaller than the fleet ({} targets)",
                targets.len()
            ),
        );
    }
    Some(FleetFile {
        name: name?,
        runbook: runbook?,
        targets,
        rate: RateControl {
            max_concurrency,
            max_errors,
            canary,
            wave_size,
            approval,
            auto_approve: auto_approve?,
            window: window?,
        },
        query,
    })
}

fn params_map(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<Map<String, Json>> {
    match &node.value {
        Value::Null => Some(Map::new()),
        Value::Map(_) => match node.to_json() {
            Json::Object(m) => Some(m),
            _ => None,
        },
        other => {
            cx.error(
                node.pos,
                path,
                format!("parameters must be a mapping of name: value, found {}", other.kind()),
            );
            None
        }
    }
}

fn read_rate(cx: &mut Cx<'_>, node: &Node) -> Option<(u32, MaxErrors)> {
    let f = cx.mapping(
        node,
        "rate",
        "`rate`",
        &["max_concurrency", "max_errors"],
        &["max_concurrency", "max_errors"],
    )?;
    let conc = f
        .get("max_concurrency")
        .and_then(|n| positive(cx, n, "rate.max_concurrency", "`max_concurrency`", 1));
    let errors = f.get("max_errors").and_then(|n| match &n.value {
        Value::String(s) => {
            let parsed = s
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<u32>().ok())
                .filter(|p| (1..=100).contains(p));
            if parsed.is_none() {
                cx.error(
                    n.pos,
                    "rate.max_errors",
                    format!("`max_errors` must be a count such as 2 or a percentage such as \"10%\" (1% to 100%), found `{s}`"),
                );
            }
            parsed.map(MaxErrors::Percent)
        }
        _ => positive(cx, n, "rate.max_errors", "`max_errors`", 1).map(MaxErrors::Count),
    });
    Some((conc?, errors?))
}

fn read_waves(cx: &mut Cx<'_>, node: &Node) -> Option<(u32, Option<u32>, bool)> {
    let f = cx.mapping(node, "waves", "`waves`", &["canary", "size", "approval"], &[])?;
    let canary = match f.get("canary") {
        None => Some(0),
        Some(n) => positive(cx, n, "waves.canary", "`canary`", 0),
    };
    let size = match f.get("size") {
        None => Some(None),
        Some(n) => positive(cx, n, "waves.size", "`size`", 1).map(Some),
    };
    let approval = match f.get("approval") {
        None => Some(false),
        Some(n) => cx.boolean(n, "waves.approval", "`approval`"),
    };
    Some((canary?, size?, approval?))
}

/// The fleet's targets: written out, or a template over a query (its targets come later,
/// from [`FleetFile::expand`]).
fn read_targets(
    cx: &mut Cx<'_>,
    node: &Node,
    common: &Map<String, Json>,
) -> Option<(Vec<FleetTarget>, Option<TargetQuery>)> {
    let mut out = Vec::new();
    match &node.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("targets[{i}]");
                let Some(f) = cx.mapping(item, &path, "a target", &["name", "params"], &["name"]) else {
                    continue;
                };
                let name = f
                    .get("name")
                    .and_then(|n| cx.string(n, &join(&path, "name"), "a target's `name`"));
                let own = match f.get("params") {
                    None => Some(Map::new()),
                    Some(n) => params_map(cx, n, &join(&path, "params")),
                };
                if let (Some(name), Some(own)) = (name, own) {
                    let mut params = common.clone();
                    params.extend(own);
                    out.push(FleetTarget {
                        name: name.to_owned(),
                        params,
                        at: at(cx, item.pos),
                    });
                }
            }
        }
        Value::Map(m)
            if m.iter()
                .any(|(k, _)| matches!(&k.value, Value::String(s) if s == "query")) =>
        {
            let f = cx.mapping(
                node,
                "targets",
                "`targets` (a template over a query)",
                &["query", "name", "params"],
                &["query", "name", "params"],
            )?;
            let query = f.get("query").and_then(|n| read_query(cx, n));
            let name = cx
                .string(f.get("name")?, "targets.name", "the template's `name`")?
                .to_owned();
            let params = params_map(cx, f.get("params")?, "targets.params")?;
            let (primary_location, subscriptions, resource_groups) = query?;
            return Some((
                out,
                Some(TargetQuery {
                    primary_location,
                    subscriptions,
                    resource_groups,
                    name,
                    params,
                    common: common.clone(),
                    origin: cx.origin.to_owned(),
                    at: at(cx, node.pos),
                    pos: node.pos,
                }),
            ));
        }
        Value::Map(_) => {
            let f = cx.mapping(
                node,
                "targets",
                "`targets` (a template)",
                &["over", "name", "params"],
                &["over", "name", "params"],
            )?;
            let items = f.get("over").and_then(|n| cx.seq(n, "targets.over", "`over`"));
            let name_node = f.get("name")?;
            let template_name = cx
                .string(name_node, "targets.name", "the template's `name`")?
                .to_owned();
            let params_node = f.get("params")?;
            let template = params_map(cx, params_node, "targets.params")?;
            for (i, item) in items?.iter().enumerate() {
                let path = format!("targets.over[{i}]");
                match instantiate(&template_name, &template, common, &item.to_json(), at(cx, item.pos)) {
                    Ok(t) => out.push(t),
                    Err(e) => cx.error(item.pos, &path, e),
                }
            }
        }
        other => {
            cx.error(
                node.pos,
                "targets",
                format!(
                    "`targets` must be a list of targets or a template (`over`, `name`, `params`), found {}",
                    other.kind()
                ),
            );
            return None;
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &out {
        if !seen.insert(t.name.clone()) {
            cx.error(
                None,
                "targets",
                format!("two targets are named `{}` ({})", t.name, t.at),
            );
        }
    }
    Some((out, None))
}

/// `targets.query`: `{ groups: { primary_location, subscriptions, resource_groups } }`.
fn read_query(cx: &mut Cx<'_>, node: &Node) -> Option<(String, Vec<String>, Vec<String>)> {
    let q = cx.mapping(node, "targets.query", "`query`", &["groups"], &["groups"])?;
    let g = cx.mapping(
        q.get("groups")?,
        "targets.query.groups",
        "`groups` (failover groups)",
        &["primary_location", "subscriptions", "resource_groups"],
        &["primary_location", "subscriptions"],
    )?;
    let location = g.get("primary_location").and_then(|n| {
        cx.string(
            n,
            "targets.query.groups.primary_location",
            "`primary_location` (a region such as eastus)",
        )
        .map(str::to_owned)
    });
    let names = |cx: &mut Cx<'_>, key: &str, what: &str| -> Option<Vec<String>> {
        let Some(n) = g.get(key) else {
            return Some(Vec::new());
        };
        let path = format!("targets.query.groups.{key}");
        let items = cx.seq(n, &path, what)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.push(cx.string(item, &format!("{path}[{i}]"), what)?.to_owned());
        }
        Some(out)
    };
    let subscriptions = names(cx, "subscriptions", "`subscriptions` (a list of subscription ids)");
    let resource_groups = names(cx, "resource_groups", "`resource_groups` (a list of names)");
    let subscriptions = subscriptions?;
    if subscriptions.is_empty() {
        cx.error(
            g.get("subscriptions").and_then(|n| n.pos),
            "targets.query.groups.subscriptions",
            "a query needs at least one subscription",
        );
        return None;
    }
    Some((location?, subscriptions, resource_groups?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "fleet: move\nrunbook: rb.yaml\nparams: {x: 1}\ntargets:\n  over: [a, b, c, d]\n  name: \"fog-${{ item }}\"\n  params: {group: \"${{ item }}\"}\nrate: {max_concurrency: 2, max_errors: \"50%\"}\nwaves: {canary: 1, size: 2}\n";

    #[test]
    fn a_template_expands_into_targets_and_waves() {
        let f = parse(GOOD, "f.yaml").unwrap();
        let names: Vec<_> = f.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["fog-a", "fog-b", "fog-c", "fog-d"]);
        assert_eq!(f.targets[2].params["group"], "c");
        assert_eq!(f.targets[2].params["x"], 1);
        assert_eq!(f.targets[2].at, "f.yaml:5:16");
        assert_eq!(f.waves(), [0, 1, 1, 2]);
        assert_eq!(f.rate.max_errors.threshold(4), 2);
        assert_eq!(MaxErrors::Percent(10).threshold(20), 2);
        assert_eq!(MaxErrors::Percent(1).threshold(20), 1);
    }

    #[test]
    fn a_list_of_targets_overlays_the_common_parameters() {
        let text = "fleet: move\nrunbook: rb.yaml\nparams: {x: 1, y: 2}\ntargets:\n  - name: a\n    params: {y: 3}\n  - name: b\nrate: {max_concurrency: 1, max_errors: 1}\n";
        let f = parse(text, "f.yaml").unwrap();
        assert_eq!(f.targets[0].params["y"], 3, "a target's own value wins");
        assert_eq!(f.targets[0].params["x"], 1);
        assert_eq!(f.targets[1].params["y"], 2);
        assert_eq!(f.waves(), [1, 1], "no canary: one wave");
        let dup = text.replace("name: b", "name: a");
        let err = parse(&dup, "f.yaml").unwrap_err().to_string();
        assert!(err.contains("two targets are named `a`"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = "fleet: move\nrunbook: rb.yaml\ntargets:\n  - name: a\n  - nme: b\nrate: {max_concurrency: 0, max_errors: \"x%\"}\nwaves: {canary: 1, sise: 2}\n";
        let err = parse(text, "f.yaml").unwrap_err().to_string();
        for expected in [
            "f.yaml:5:5: targets[1]: unknown field `nme` in a target",
            "f.yaml:6:25: rate.max_concurrency: `max_concurrency` must be between 1 and 100000, found 0",
            "f.yaml:6:40: rate.max_errors: `max_errors` must be a count",
            "f.yaml:7:20: waves: unknown field `sise` in `waves`",
        ] {
            assert!(err.contains(expected), "{expected}\nnot in:\n{err}");
        }
    }

    #[test]
    fn a_maintenance_window_is_kept_with_the_rate_and_a_bad_one_is_placed() {
        let base = "fleet: move\nrunbook: rb.yaml\ntargets:\n  - name: a\nrate: {max_concurrency: 1, max_errors: 1}\n";
        let f = parse(&format!("{base}window: \"01:00-05:00 Europe/Amsterdam\"\n"), "f.yaml").unwrap();
        assert_eq!(f.rate.window.as_deref(), Some("01:00-05:00 Europe/Amsterdam"));
        let stored = serde_json::to_value(&f.rate).unwrap();
        let back: RateControl = serde_json::from_value(stored).unwrap();
        assert_eq!(back, f.rate, "the driver reads the window back from the stored spec");
        assert_eq!(parse(base, "f.yaml").unwrap().rate.window, None);
        let err = parse(&format!("{base}window: \"25:00-05:00 UTC\"\n"), "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.yaml:6:") && err.contains("window") && err.contains("25:00"),
            "{err}"
        );
    }

    #[test]
    fn a_query_template_waits_for_the_groups_found_then_expands() {
        let text = "fleet: q\nrunbook: rb.yaml\nparams: {x: 1}\ntargets:\n  query: {groups: {primary_location: eastus, subscriptions: [s1]}}\n  name: \"${{ item.name }}\"\n  params: {group: \"${{ item.resource_group }}/${{ item.name }}\"}\nrate: {max_concurrency: 1, max_errors: 1}\nwaves: {canary: 2}\n";
        let mut f = parse(text, "f.yaml").unwrap();
        assert!(f.targets.is_empty(), "no target before the query ran");
        let q = f.query.clone().unwrap();
        assert_eq!(
            (q.primary_location.as_str(), q.subscriptions.as_slice()),
            ("eastus", &["s1".to_owned()][..])
        );
        let g = |n: &str| serde_json::json!({"name": n, "resource_group": "rg"});
        let err = f.expand(&[g("a"), g("b")]).unwrap_err().to_string();
        assert!(err.contains("f.yaml:5:3: waves.canary: the canary wave (2) must be smaller than the fleet (2 target(s) found by the query)"), "{err}");
        let err = f.expand(&[]).unwrap_err().to_string();
        assert!(
            err.contains("the query found no target: no failover groups whose primary is in eastus"),
            "{err}"
        );
        f.expand(&[g("a"), g("b"), g("c")]).unwrap();
        assert_eq!(f.targets[1].name, "b");
        assert_eq!(f.targets[1].params["group"], "rg/b");
        assert_eq!(f.targets[1].params["x"], 1);
        assert_eq!(f.waves(), [0, 0, 1]);
        let bad = text.replace("subscriptions: [s1]", "subscriptions: []");
        let err = parse(&bad, "f.yaml").unwrap_err().to_string();
        assert!(err.contains("a query needs at least one subscription"), "{err}");
    }
}
