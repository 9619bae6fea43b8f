//! The procedures of issue 19 that delete a group, change something and re-create it, end to
//! end against a separately started `fogbook sim serve` (with the helpers of
//! `seed_runbooks.rs`): the final estate, the order of the mutating calls in the emulator's
//! journal, the windows and the report; then SIGKILLed at every step boundary and inside
//! seeding, with every Microsoft.Sql mutation exactly once.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{Sandbox, assert_audit_ok, code, stderr, stdout};
use crate::seed_runbooks::{
    ALL, DEMO_DBS, Procedure, assert_follow_up, assert_networked, db_names, demo_estate, end_to_end, engine, group,
    killed_everywhere, pair, report, root, runbook_steps, start_sim, summary,
};

/// The procedures, with the parameters of `examples/<runbook>.yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proc {
    /// fog-demo (A primary, B secondary) renamed fog-sales.
    RenameGroup,
    /// A and B (fog-demo) moved to Next-gen General Purpose.
    NextGen,
    /// `configure-failover-group` with B in another subscription of A's tenant.
    AcrossSubscriptions,
    /// `sales` on A (fog-demo) renamed `sales-eu`, through the test's sqlcmd stand-in.
    RenameDatabase,
}

/// The second subscription of `estate-subscriptions.yaml` (A's tenant).
const SUB_B: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b5f4e";

fn fixture(name: &str) -> PathBuf {
    root().join("tests/e2e/fixtures/procedures").join(name)
}

impl Proc {
    fn file(self) -> &'static str {
        match self {
            Self::RenameGroup => "rename-failover-group",
            Self::NextGen => "change-next-gen",
            Self::AcrossSubscriptions => "configure-failover-group",
            Self::RenameDatabase => "rename-database",
        }
    }

    fn params(self) -> PathBuf {
        match self {
            Self::AcrossSubscriptions => fixture("configure-across-subscriptions.yaml"),
            _ => root().join(format!("examples/{}.yaml", self.file())),
        }
    }
}

fn fog(rg: &str, loc: &str, name: &str) -> String {
    format!("{rg}/Microsoft.Sql/locations/{loc}/instanceFailoverGroups/{name}")
}

fn mi(rg: &str, name: &str) -> String {
    format!("{rg}/Microsoft.Sql/managedInstances/{name}")
}

fn db(rg: &str, mi: &str, name: &str) -> String {
    format!("{rg}/Microsoft.Sql/managedInstances/{mi}/databases/{name}")
}

/// The demo primary's databases in the order the emulator lists them.
const LISTED_DBS: &[&str] = &["sales", "inventory", "hr", "audit"];

impl Procedure for Proc {
    fn run_args(self) -> Vec<String> {
        let mut args = vec![
            "run".to_owned(),
            root()
                .join(format!("runbooks/{}.yaml", self.file()))
                .display()
                .to_string(),
            "--params".to_owned(),
            self.params().display().to_string(),
            "--auto-approve".to_owned(),
        ];
        if self == Self::RenameDatabase {
            // The engine runs in the sandbox: the stand-in by its absolute path.
            args.push("--set".to_owned());
            args.push(format!("sqlcmd={}", fixture("fake-sqlcmd").display()));
        }
        args
    }

    fn estate(self) -> PathBuf {
        match self {
            Self::AcrossSubscriptions => fixture("estate-subscriptions.yaml"),
            _ => demo_estate(),
        }
    }

    fn steps(self) -> Vec<(String, bool)> {
        runbook_steps(self.file(), &[])
    }

    fn expected_journal(self) -> Vec<String> {
        let mut v = Vec::new();
        match self {
            Self::RenameGroup => {
                v.push(format!("DELETE {}", fog("rg-sql-eastus", "eastus", "fog-demo")));
                for d in LISTED_DBS {
                    v.push(format!("DELETE {}", db("rg-sql-westus", "mi-fog-b", d)));
                }
                v.push(format!("PUT {}", fog("rg-sql-eastus", "eastus", "fog-sales")));
            }
            Self::NextGen => {
                // The group first, then the replicas, the secondary's tier, the primary's,
                // and the group again.
                v.push(format!("DELETE {}", fog("rg-sql-eastus", "eastus", "fog-demo")));
                for d in LISTED_DBS {
                    v.push(format!("DELETE {}", db("rg-sql-westus", "mi-fog-b", d)));
                }
                v.push(format!("PATCH {}", mi("rg-sql-westus", "mi-fog-b")));
                v.push(format!("PATCH {}", mi("rg-sql-eastus", "mi-fog-a")));
                v.push(format!("PUT {}", fog("rg-sql-eastus", "eastus", "fog-demo")));
            }
            Self::RenameDatabase => {
                // The rename itself is T-SQL (the stand-in's log), not an ARM request.
                v.push(format!("DELETE {}", fog("rg-sql-eastus", "eastus", "fog-demo")));
                for d in LISTED_DBS {
                    v.push(format!("DELETE {}", db("rg-sql-westus", "mi-fog-b", d)));
                }
                v.push(format!("PUT {}", fog("rg-sql-eastus", "eastus", "fog-demo")));
            }
            Self::AcrossSubscriptions => {
                // B's side is in the other subscription, whose paths keep their prefix.
                let b = |p: String| format!("/subscriptions/{SUB_B}/resourceGroups/{p}");
                let peering = |rg: &str, v: &str, to: &str| {
                    format!("{rg}/Microsoft.Network/virtualNetworks/{v}/virtualNetworkPeerings/{v}-to-{to}")
                };
                let rules = |rg: &str, region: &str| {
                    [
                        "allow_redirect_inbound",
                        "allow_geodr_inbound",
                        "allow_redirect_outbound",
                        "allow_geodr_outbound",
                    ]
                    .map(|r| format!("{rg}/Microsoft.Network/networkSecurityGroups/nsg-mi-{region}/securityRules/{r}"))
                };
                v.push(format!(
                    "PUT {}",
                    peering("rg-sql-eastus", "vnet-sql-eastus", "vnet-sql-westus")
                ));
                v.push(format!(
                    "PUT {}",
                    b(peering("rg-sql-westus", "vnet-sql-westus", "vnet-sql-eastus"))
                ));
                v.extend(rules("rg-sql-eastus", "eastus").map(|r| format!("PUT {r}")));
                v.extend(rules("rg-sql-westus", "westus").map(|r| format!("PUT {}", b(r))));
                v.push(format!("PUT {}", fog("rg-sql-eastus", "eastus", "fog-demo")));
                v.push(format!(
                    "POST {}/failover",
                    b(fog("rg-sql-westus", "westus", "fog-demo"))
                ));
                v.push(format!("POST {}/failover", fog("rg-sql-eastus", "eastus", "fog-demo")));
            }
        }
        v
    }

    fn expected_windows(self) -> Vec<(String, String, String)> {
        let w = |o: &str, c: &str| {
            vec![
                ("unprotected".to_owned(), o.to_owned(), c.to_owned()),
                ("listener_unavailable".to_owned(), o.to_owned(), c.to_owned()),
            ]
        };
        match self {
            Self::RenameGroup => w("delete-old-group", "create-new-group"),
            Self::NextGen | Self::RenameDatabase => w("delete-group", "create-group"),
            Self::AcrossSubscriptions => Vec::new(),
        }
    }

    fn unprotected_databases_of(self) -> Option<&'static str> {
        match self {
            Self::RenameGroup | Self::NextGen | Self::RenameDatabase => Some("mi-fog-a"),
            Self::AcrossSubscriptions => None,
        }
    }

    fn check_final(self, s: &Value) {
        match self {
            Self::RenameGroup => {
                assert_eq!(group(s, "fog-demo"), None, "the old name is gone");
                assert_eq!(group(s, "fog-sales"), pair("mi-fog-a", "mi-fog-b"));
                assert_eq!(db_names(s, "mi-fog-a"), DEMO_DBS);
                assert_eq!(db_names(s, "mi-fog-b"), DEMO_DBS, "B re-seeded");
                for d in s["instances"]["mi-fog-b"]["databases"].as_array().unwrap() {
                    assert_eq!(d[2], "fog-sales", "B's replicas belong to the new group: {d}");
                    assert_eq!(d[3], true, "B's replicas are read-only: {d}");
                }
            }
            Self::NextGen => {
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-a", "mi-fog-b"));
                for name in ["mi-fog-a", "mi-fog-b"] {
                    let i = &s["instances"][name];
                    assert_eq!(i["next_gen"], true, "{name} is Next-gen: {i}");
                    assert_eq!(i["sku_name"], "GP_Gen5", "{name} stays General Purpose: {i}");
                }
                assert_eq!(db_names(s, "mi-fog-b"), DEMO_DBS, "B re-seeded");
            }
            Self::RenameDatabase => {
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-a", "mi-fog-b"));
                let renamed = ["audit", "hr", "inventory", "sales-eu"];
                assert_eq!(db_names(s, "mi-fog-a"), renamed, "renamed on the primary");
                assert_eq!(db_names(s, "mi-fog-b"), renamed, "re-seeded under the new name");
            }
            Self::AcrossSubscriptions => {
                assert_eq!(group(s, "fog-demo"), pair("mi-fog-a", "mi-fog-b"), "failed back to A");
                assert_networked(s, "eastus", "westus");
                assert_eq!(db_names(s, "mi-fog-b"), DEMO_DBS, "B holds the replicas");
                assert!(
                    s["instances"]["mi-fog-x"]["databases"].as_array().unwrap().is_empty(),
                    "X untouched"
                );
            }
        }
        for (name, i) in s["instances"].as_object().unwrap() {
            assert_eq!(i["provisioning_state"], "Succeeded", "{name}");
        }
    }

    fn listeners_of(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::RenameGroup => Some(("create-new-group", "fog-sales")),
            Self::NextGen | Self::AcrossSubscriptions | Self::RenameDatabase => Some(("create-group", "fog-demo")),
        }
    }

    fn check_run(self, sb: &Sandbox, run: &str) {
        if self == Self::AcrossSubscriptions {
            assert_follow_up(sb, run, "mi-fog-b");
            // Preflight compared the tenants of the two subscriptions (read from
            // Subscriptions_Get) and passed.
            let output: String = sb
                .sql()
                .query_row(
                    "SELECT output FROM steps WHERE run_id = ?1 AND step_id = 'preflight'",
                    [run],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(
                output.contains("both in tenant 72f9a1b0-3c4d-4e5f-8a6b-7c8d9e0f1a2b"),
                "{output}"
            );
            return;
        }
        let text = stdout(&sb.run(&["report", run]));
        if self == Self::RenameDatabase {
            assert!(text.contains("renamed: sales -> sales-eu"), "{text}");
            // One T-SQL rename, against the primary, named in the stand-in's log.
            let log = std::fs::read_to_string(sb.path("sqlcmd.log")).unwrap();
            assert_eq!(log.lines().count(), 1, "{log}");
            assert!(
                log.contains("-S mi-fog-a.9f4e1c2b7a3d5.database.windows.net")
                    && log.contains("ALTER DATABASE [sales] MODIFY NAME = [sales-eu]"),
                "{log}"
            );
        }
        // The report names every database of the unprotected window.
        let listed: Vec<String> = LISTED_DBS.iter().map(|d| format!("{d:?}")).collect();
        assert!(
            text.contains(&format!("unprotected_databases: [{}]", listed.join(","))),
            "{text}"
        );
        // Every group-creating run lists the follow-up checklist.
        assert_follow_up(sb, run, "mi-fog-b");
        if self == Self::RenameGroup {
            for old in [
                "old_read_write_listener: fog-demo.9f4e1c2b7a3d5.database.windows.net",
                "old_read_only_listener: fog-demo.secondary.9f4e1c2b7a3d5.database.windows.net",
                "new_read_write_listener: fog-sales.9f4e1c2b7a3d5.database.windows.net",
                "new_read_only_listener: fog-sales.secondary.9f4e1c2b7a3d5.database.windows.net",
            ] {
                assert!(text.contains(old), "{text}");
            }
            let results = &report(sb, run)["results"];
            assert!(results.to_string().contains("fog-sales"), "{results}");
        }
    }
}

#[test]
fn rename_failover_group_end_to_end() {
    end_to_end(Proc::RenameGroup);
}

#[test]
fn rename_failover_group_killed_everywhere() {
    killed_everywhere(Proc::RenameGroup, ALL, &[]);
}

/// A new name that is taken, or a group that is not as given, stops the rename before any
/// mutating request.
#[test]
fn rename_failover_group_refused_sends_no_mutation() {
    let sim = start_sim(&demo_estate(), None);
    let before = summary(&sim.state());
    for (set, why) in [
        ("new_name=fog-demo", "already exists"),
        ("failover_group=fog-nope", "does not exist"),
    ] {
        let sb = Sandbox::new();
        let mut args = Proc::RenameGroup.run_args();
        args.extend(["--set".to_owned(), set.to_owned()]);
        let out = engine(&sb, &sim, &args, None);
        assert_eq!(code(&out), 1, "{set}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{set}: {}", stderr(&out));
        assert_audit_ok(&sb);
    }
    assert_eq!(sim.journal(), Vec::<Value>::new(), "no mutating request");
    assert_eq!(summary(&sim.state()), before);
}

#[test]
fn change_next_gen_end_to_end() {
    end_to_end(Proc::NextGen);
}

#[test]
fn change_next_gen_killed_everywhere() {
    killed_everywhere(Proc::NextGen, ALL, &[]);
}

/// `scale` refuses a Next-gen change inside a group and points to `change-next-gen`, and
/// `change-next-gen` refuses when both instances already have the target: no mutation.
#[test]
fn next_gen_refusals_point_to_the_procedure_and_send_no_mutation() {
    let sim = start_sim(&demo_estate(), None);
    let before = summary(&sim.state());
    let scale = vec![
        "run".to_owned(),
        root().join("runbooks/scale.yaml").display().to_string(),
        "--params".to_owned(),
        root().join("examples/scale.yaml").display().to_string(),
        "--auto-approve".to_owned(),
        "--set".to_owned(),
        "next_gen=true".to_owned(),
    ];
    let mut already = Proc::NextGen.run_args();
    already.extend(["--set".to_owned(), "next_gen=false".to_owned()]);
    for (args, why) in [
        (scale, "runbooks/change-next-gen.yaml"),
        (already, "already have the target tier"),
    ] {
        let sb = Sandbox::new();
        let out = engine(&sb, &sim, &args, None);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert_audit_ok(&sb);
    }
    assert_eq!(sim.journal(), Vec::<Value>::new(), "no mutating request");
    assert_eq!(summary(&sim.state()), before);
}

#[test]
fn configure_across_subscriptions_end_to_end() {
    end_to_end(Proc::AcrossSubscriptions);
}

/// As `configure_failover_group_killed_everywhere` (the same two network boundaries left out).
#[test]
fn configure_across_subscriptions_killed_everywhere() {
    killed_everywhere(
        Proc::AcrossSubscriptions,
        ALL,
        &["before-finish:peer-networks", "before-finish:open-ports"],
    );
}

/// A secondary in a subscription of another tenant: preflight's `same_tenant` row fails (the
/// tenants are read from `Subscriptions_Get`) before any mutating request.
#[test]
fn same_tenant_preflight_refuses_a_pair_across_tenants() {
    let rb = Proc::AcrossSubscriptions;
    let sim = start_sim(&rb.estate(), None);
    let before = summary(&sim.state());
    let sb = Sandbox::new();
    let params = std::fs::read_to_string(rb.params())
        .unwrap()
        .replace(SUB_B, "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d7a8b")
        .replace("rg-sql-westus", "rg-sql-centralus")
        .replace("mi-fog-b", "mi-fog-x");
    let file = sb.path("across-tenants.yaml");
    std::fs::write(&file, params).unwrap();
    let mut args = rb.run_args();
    args[3] = file.display().to_string();
    let out = engine(&sb, &sim, &args, None);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "same_tenant: tenants differ: 72f9a1b0-3c4d-4e5f-8a6b-7c8d9e0f1a2b vs 0d1e2f3a-4b5c-4d6e-8f7a-8b9c0d1e9c0d"
        ),
        "{}",
        stderr(&out)
    );
    assert_audit_ok(&sb);
    assert_eq!(sim.journal(), Vec::<Value>::new(), "no mutating request");
    assert_eq!(summary(&sim.state()), before);
}

/// `plan` predicts each procedure's windows (opened by the delete, closed by the re-create)
/// before anything runs (the rename's T-SQL step is only described)
/// with an estimate: the Next-gen window also spans both tier changes, so it is longer than
/// the rename's (seeding only). Nothing is mutated.
#[test]
fn plan_predicts_the_windows() {
    let sim = start_sim(&demo_estate(), None);
    let mut hours = Vec::new();
    for rb in [Proc::RenameGroup, Proc::NextGen, Proc::RenameDatabase] {
        let sb = Sandbox::new();
        let args: Vec<String> = ["--format", "json", "plan"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(rb.run_args()[1..4].iter().cloned())
            .collect();
        let out = engine(&sb, &sim, &args, None);
        assert_eq!(code(&out), 0, "{rb:?}: {}", stderr(&out));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let windows: Vec<(String, String, String)> = plan["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["kind"].as_str().unwrap().to_owned(),
                    w["opened_by"].as_str().unwrap().to_owned(),
                    w["closed_by"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(windows, rb.expected_windows(), "{rb:?}");
        let h = plan["windows"][0]["estimated_hours"].as_f64().unwrap();
        assert!(h > 0.5, "{rb:?}: the seeding alone takes about an hour: {h}");
        hours.push(h);
    }
    assert!(
        hours[1] > hours[0] + 1.0,
        "the Next-gen window includes both tier changes: {hours:?}"
    );
    assert_eq!(sim.journal(), Vec::<Value>::new(), "plan mutates nothing");
}

#[test]
fn rename_database_end_to_end() {
    end_to_end(Proc::RenameDatabase);
}

/// Killed everywhere, `after-start:rename-database` included: the re-entered statement finds
/// the rename done and only prints `already renamed` (`on_ambiguous: rerun`).
#[test]
fn rename_database_killed_everywhere() {
    killed_everywhere(Proc::RenameDatabase, ALL, &[]);
}

/// The stand-in answers like SQL Server: renaming a database while its group exists is
/// refused, the step fails, and the group is untouched (the rename is never tried before the
/// group is deleted by the runbook; here the stand-in is called directly through a one-step
/// runbook against the demo estate, where `sales` is in fog-demo).
#[test]
fn rename_database_inside_a_group_is_refused() {
    let sim = start_sim(&demo_estate(), None);
    let sb = Sandbox::new();
    let runbook = sb.path("rename-in-group.yaml");
    std::fs::write(
        &runbook,
        format!(
            "runbook: rename-in-group\nversion: 1\nsteps:\n  - id: rename\n    uses: command\n    with:\n      program: {}\n      args: [\"-S\", \"mi-fog-a.9f4e1c2b7a3d5.database.windows.net\", \"-Q\", \"ALTER DATABASE [sales] MODIFY NAME = [sales-eu]\"]\n",
            fixture("fake-sqlcmd").display()
        ),
    )
    .unwrap();
    let before = summary(&sim.state());
    let out = engine(&sb, &sim, &["run".to_owned(), runbook.display().to_string()], None);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let output: String = sb
        .sql()
        .query_row(
            "SELECT coalesce(output, '') || coalesce(error, '') FROM steps WHERE step_id = 'rename'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let all = format!("{}{output}", stderr(&out));
    assert!(all.contains("DatabaseRenameInFailoverGroupNotSupported"), "{all}");
    assert_eq!(summary(&sim.state()), before, "nothing renamed");
}
