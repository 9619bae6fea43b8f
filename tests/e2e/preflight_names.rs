//! A mistyped name fails before any change to Azure: every shipped runbook checks, before its
//! first mutating step, that the failover group and the instances its parameters name exist
//! (runbooks/README.md, "What must exist before a run changes anything"). Each case runs the
//! real binary against a separately started `fogbook sim serve` and counts the effects from
//! outside: the emulator's journal of mutating requests stays empty. `plan` says the same, and
//! exits 1.

use std::path::Path;

use crate::common::{Sandbox, code, stderr, stdout};
use crate::seed_runbooks::{Sim, journal, root, start_sim};

/// A shipped runbook, the estate its example parameters go with, whether its group must
/// exist before the run, and the instance parameter the mistyped-instance case changes.
struct Case {
    runbook: &'static str,
    unpaired: bool,
    group_must_exist: bool,
    instance_param: &'static str,
}

const CASES: &[Case] = &[
    case("change-next-gen", false, true, "secondary"),
    case("change-primary-region", false, true, "old_primary"),
    case("change-secondary-region", false, true, "old_secondary"),
    case("change-update-policy", false, true, "secondary"),
    case("configure-failover-group", true, false, "secondary"),
    case("drift-check", false, false, "secondary"),
    case("failover", false, true, "primary"),
    case("force-failover", false, true, "secondary"),
    case("rename-database", false, true, "secondary"),
    case("rename-failover-group", false, true, "primary"),
    case("scale", false, true, "secondary"),
];

const fn case(runbook: &'static str, unpaired: bool, group_must_exist: bool, instance_param: &'static str) -> Case {
    Case {
        runbook,
        unpaired,
        group_must_exist,
        instance_param,
    }
}

fn file(rel: &str) -> String {
    root().join(rel).display().to_string()
}

fn sim_for(unpaired: bool) -> Sim {
    let estate = if unpaired {
        "examples/estate-unpaired.yaml"
    } else {
        "examples/estate.yaml"
    };
    start_sim(&root().join(estate), None)
}

/// Runs `case`'s runbook with its example parameters and `set`, and checks that it failed
/// (exit 1) before any mutating request, with a message holding every `expected` text; then
/// that `plan` with the same parameters says it too, and exits 1. Returns the run's stderr.
fn refused_before_any_change(c: &Case, set: &str, expected: &[String]) -> String {
    let sb = Sandbox::new();
    let sim = sim_for(c.unpaired);
    let env = [
        ("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()),
        ("FOGBOOK_ARM_TOKEN", "anything"),
    ];
    let runbook = file(&format!("runbooks/{}.yaml", c.runbook));
    let params = file(&format!("examples/{}.yaml", c.runbook));
    let out = sb.run_env(
        &["run", &runbook, "--params", &params, "--set", set, "--auto-approve"],
        &env,
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{} with {set}: the run must fail:\n{err}", c.runbook);
    for e in expected {
        assert!(
            err.contains(e.as_str()),
            "{} with {set}: `{e}` not in:\n{err}",
            c.runbook
        );
    }
    let sent = journal(&sim.url);
    assert!(
        sent.is_empty(),
        "{} with {set}: mutating requests were sent: {sent:?}",
        c.runbook
    );

    let plan = sb.run_env(&["plan", &runbook, "--params", &params, "--set", set], &env);
    let text = stdout(&plan);
    assert_eq!(
        code(&plan),
        1,
        "{} with {set}: plan must exit 1 when a run would stop before any change:\n{text}",
        c.runbook
    );
    assert!(
        text.contains("WOULD FAIL NOW"),
        "{}: plan did not say so:\n{text}",
        c.runbook
    );
    assert!(
        text.contains("A RUN WOULD STOP AT STEP") && text.contains("before changing anything"),
        "{}: plan did not say the run would stop before any change:\n{text}",
        c.runbook
    );
    for e in expected {
        assert!(text.contains(e.as_str()), "{}: plan: `{e}` not in:\n{text}", c.runbook);
    }
    assert!(
        journal(&sim.url).is_empty(),
        "{}: plan sent mutating requests",
        c.runbook
    );
    err
}

#[test]
fn every_shipped_runbook_is_covered() {
    let mut shipped: Vec<String> = std::fs::read_dir(root().join("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        // The rehearsal runbook touches no Azure resource.
        .filter(|n| n != "demo-rehearsal")
        .collect();
    shipped.sort();
    let covered: Vec<&str> = CASES.iter().map(|c| c.runbook).collect();
    assert_eq!(shipped, covered, "a shipped runbook without a mistyped-name case");
    for c in CASES {
        assert!(Path::new(&file(&format!("examples/{}.yaml", c.runbook))).exists());
    }
}

#[test]
fn a_mistyped_failover_group_fails_before_any_change() {
    for c in CASES.iter().filter(|c| c.group_must_exist) {
        refused_before_any_change(
            c,
            "failover_group=fg-typo",
            &[
                "parameter failover_group (`fg-typo`)".to_owned(),
                "failover group `fg-typo` not found in resource group".to_owned(),
                "the groups there are: fog-demo".to_owned(),
            ],
        );
    }
}

#[test]
fn a_mistyped_instance_fails_before_any_change() {
    for c in CASES {
        let p = c.instance_param;
        refused_before_any_change(
            c,
            &format!("{p}.name=mi-typo"),
            &[
                format!("parameter {p} (`mi-typo`)"),
                "managed instance `mi-typo` not found in resource group".to_owned(),
                "the instances there are: mi-fog-".to_owned(),
            ],
        );
    }
}

#[test]
fn a_missing_resource_group_is_named() {
    let c = &CASES[1];
    refused_before_any_change(
        c,
        "secondary.resource_group=rg-typo",
        &[
            "parameter secondary (`mi-fog-b`)".to_owned(),
            "resource group `rg-typo`".to_owned(),
            "that resource group does not exist".to_owned(),
        ],
    );
}

fn rename_database() -> &'static Case {
    CASES.iter().find(|c| c.runbook == "rename-database").unwrap()
}

/// The database to rename is read before the group is deleted: a mistyped one stops the run
/// there, named with the databases the primary has (without the check, the run deleted the
/// group and the former replicas before the rename found the name wrong).
#[test]
fn a_mistyped_database_fails_before_any_change() {
    refused_before_any_change(
        rename_database(),
        "database=salse",
        &[
            "parameter database (`salse`)".to_owned(),
            "managed database `salse` not found on managed instance `mi-fog-a`".to_owned(),
            "the databases there are: audit, hr, inventory, sales".to_owned(),
        ],
    );
}

/// The new name must be free on the primary, compared ignoring case as SQL Server does.
#[test]
fn a_new_database_name_that_is_taken_fails_before_any_change() {
    refused_before_any_change(
        rename_database(),
        "new_name=Inventory",
        &[
            "parameter new_name (`Inventory`)".to_owned(),
            "managed database `inventory` exists on managed instance `mi-fog-a`".to_owned(),
        ],
    );
}
