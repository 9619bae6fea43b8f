//! The permission preflight: `fog.preflight` with `needs` reads
//! `Microsoft.Authorization/permissions` on every scope the following steps touch, and a run
//! (or a `plan`) whose caller lacks an action stops before changing anything, naming the
//! action and the scope. Rehearsed with `--sim` against the unpaired estate with role
//! assignments for the rehearsal's caller (token `fogbook-sim`).

use std::path::PathBuf;

use crate::common::{Sandbox, code, stderr, stdout};

const SUB: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The unpaired estate (A and B not yet grouped) where the rehearsal's caller may read
/// everything and do everything in both resource groups except `denied` on `denied_scope`.
fn estate(sb: &Sandbox, denied: &str, denied_rg: &str) -> String {
    let base = std::fs::read_to_string(root().join("examples/estate-unpaired.yaml")).unwrap();
    let other = if denied_rg == "rg-sql-eastus" {
        "rg-sql-westus"
    } else {
        "rg-sql-eastus"
    };
    let principals = format!(
        "principals:
  - token: fogbook-sim
    name: rehearsal-runner
    assignments:
      - scope: /subscriptions/{SUB}
        actions: ['*/read']
      - scope: /subscriptions/{SUB}/resourceGroups/{other}
        actions: ['*']
      - scope: /subscriptions/{SUB}/resourceGroups/{denied_rg}
        actions: ['*']
        not_actions: ['{denied}']
"
    );
    sb.write("estate.yaml", &format!("{principals}{base}"))
        .display()
        .to_string()
}

/// `configure-failover-group` rehearsed on that estate: it must fail at its first preflight,
/// before any change, naming `denied` on a scope inside `scope_part`.
fn refused(denied: &str, denied_rg: &str, scope_part: &str) {
    let sb = Sandbox::new();
    let estate = estate(&sb, denied, denied_rg);
    let runbook = root()
        .join("runbooks/configure-failover-group.yaml")
        .display()
        .to_string();
    let params = root()
        .join("examples/configure-failover-group.yaml")
        .display()
        .to_string();
    let out = sb.run(&["run", &runbook, "--params", &params, "--sim", "--sim-estate", &estate]);
    assert_eq!(code(&out), 1, "the run must fail: {}", stderr(&out));
    let err = stderr(&out);
    let expected = format!("the caller lacks {denied} on /subscriptions/{SUB}/resourceGroups/{denied_rg}");
    assert!(err.contains(&expected), "{expected}\nnot in:\n{err}");
    assert!(err.contains(scope_part), "{scope_part} not in:\n{err}");
    let run = sb.last_run_id();
    assert_eq!(sb.step_status(&run, "preflight-instances"), "failed");
    // Nothing after the preflight ran: no peering, no port rule, no group.
    for step in ["peer-networks", "open-ports", "create-group"] {
        let status = sb.step_status(&run, step);
        assert!(status.is_empty() || status == "pending", "{step} is {status}");
    }

    // `plan` finds the same before anything runs.
    let plan = sb.run(&["plan", &runbook, "--params", &params, "--sim", "--sim-estate", &estate]);
    let text = format!("{}{}", stdout(&plan), stderr(&plan));
    assert!(text.contains(&expected), "plan did not name it:\n{text}");
}

#[test]
fn a_missing_nsg_rule_write_is_named_with_the_nsg() {
    refused(
        "Microsoft.Network/networkSecurityGroups/securityRules/write",
        "rg-sql-westus",
        "/providers/Microsoft.Network/networkSecurityGroups/nsg-mi-westus",
    );
}

#[test]
fn a_missing_peering_write_is_named_with_the_vnet() {
    refused(
        "Microsoft.Network/virtualNetworks/virtualNetworkPeerings/write",
        "rg-sql-eastus",
        "/providers/Microsoft.Network/virtualNetworks/vnet-sql-eastus",
    );
}

#[test]
fn a_missing_failover_action_is_named_with_the_resource_group() {
    refused(
        "Microsoft.Sql/locations/instanceFailoverGroups/failover/action",
        "rg-sql-westus",
        "/resourceGroups/rg-sql-westus",
    );
}

#[test]
fn a_missing_group_write_is_named_with_the_primary_resource_group() {
    refused(
        "Microsoft.Sql/locations/instanceFailoverGroups/write",
        "rg-sql-eastus",
        "/resourceGroups/rg-sql-eastus",
    );
}

#[test]
fn with_every_permission_the_preflight_passes_its_permission_rows() {
    let sb = Sandbox::new();
    // Deny something no step needs: the run goes past the preflight.
    let estate = estate(&sb, "Microsoft.Sql/managedInstances/delete", "rg-sql-westus");
    let runbook = root()
        .join("runbooks/configure-failover-group.yaml")
        .display()
        .to_string();
    let params = root()
        .join("examples/configure-failover-group.yaml")
        .display()
        .to_string();
    let out = sb.run(&["plan", &runbook, "--params", &params, "--sim", "--sim-estate", &estate]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stdout(&out).contains("lacks"), "{}", stdout(&out));
}
