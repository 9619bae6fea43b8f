//! The procedures of issue 19 that delete a group, change something and re-create it, end to
//! end against a separately started `fogbook sim serve` (with the helpers of
//! `seed_runbooks.rs`): the final estate, the order of the mutating calls in the emulator's
//! journal, the windows and the report; then SIGKILLed at every step boundary and inside
//! seeding, with every Microsoft.Sql mutation exactly once.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{Sandbox, assert_audit_ok, code, stderr, stdout};
use crate::seed_runbooks::{
    ALL, DEMO_DBS, Procedure, assert_follow_up, db_names, demo_estate, end_to_end, engine, group, killed_everywhere,
    pair, report, root, runbook_steps, start_sim, summary,
};

/// The procedures, with the parameters of `examples/<runbook>.yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proc {
    /// fog-demo (A primary, B secondary) renamed fog-sales.
    RenameGroup,
    /// A and B (fog-demo) moved to Next-gen General Purpose.
    NextGen,
}

impl Proc {
    fn file(self) -> &'static str {
        match self {
            Self::RenameGroup => "rename-failover-group",
            Self::NextGen => "change-next-gen",
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
        vec![
            "run".to_owned(),
            root()
                .join(format!("runbooks/{}.yaml", self.file()))
                .display()
                .to_string(),
            "--params".to_owned(),
            root()
                .join(format!("examples/{}.yaml", self.file()))
                .display()
                .to_string(),
            "--auto-approve".to_owned(),
        ]
    }

    fn estate(self) -> PathBuf {
        demo_estate()
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
            Self::NextGen => w("delete-group", "create-group"),
        }
    }

    fn unprotected_databases_of(self) -> Option<&'static str> {
        match self {
            Self::RenameGroup | Self::NextGen => Some("mi-fog-a"),
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
        }
        for (name, i) in s["instances"].as_object().unwrap() {
            assert_eq!(i["provisioning_state"], "Succeeded", "{name}");
        }
    }

    fn listeners_of(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::RenameGroup => Some(("create-new-group", "fog-sales")),
            Self::NextGen => Some(("create-group", "fog-demo")),
        }
    }

    fn check_run(self, sb: &Sandbox, run: &str) {
        let text = stdout(&sb.run(&["report", run]));
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
