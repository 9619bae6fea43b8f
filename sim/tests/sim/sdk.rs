//! Azure's own Python clients (`azure-mgmt-sql`, `azure-mgmt-network`,
//! `azure-mgmt-authorization`, `azure-mgmt-resource`, pinned in `sim/tests/sdk/requirements.txt`)
//! against the emulator: `sim/tests/sdk/contract.py` calls every operation the seed's procedures
//! and the `az` commands use through the SDK's operations, deserialisation and LRO pollers,
//! checks each answer against the SDK's models, and drives the error paths. The Python side
//! runs once, in one process; this test starts the emulator, runs it, and checks the error codes
//! it saw against the emulator's error map.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::*;
use crate::contract::{error_map, listed};

/// The venv `scripts/test` makes: `FOGBOOK_SDK_PYTHON`, or `target/pyenv` of the workspace.
fn sdk_python() -> PathBuf {
    let from_env = std::env::var_os("FOGBOOK_SDK_PYTHON").map(PathBuf::from);
    let known = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
    let python = from_env.unwrap_or(known);
    assert!(
        python.exists(),
        "{} is missing: the SDK contract tests need Azure's Python clients in a venv; run \
         `scripts/test` (it makes target/pyenv from sim/tests/sdk/requirements.txt and sets \
         FOGBOOK_SDK_PYTHON), or set FOGBOOK_SDK_PYTHON to a python that has them",
        python.display()
    );
    python
}

#[tokio::test]
async fn azure_clients_accept_every_answer() {
    let python = sdk_python();
    let sim = Sim::demo().await;
    // The same estate where this caller may only read: the permission paths.
    let reader = format!(
        "{DEMO}\nprincipals:\n  - token: sdk-contract-token\n    name: sdk-reader\n    \
         assignments:\n      - scope: /subscriptions/{SUB}\n        actions: [\"*/read\"]\n"
    );
    let restricted = Sim::start(config(&reader)).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/contract.py");
    let output = tokio::process::Command::new(&python)
        .arg("-B")
        .arg(&script)
        .arg(&sim.base)
        .arg(&restricted.base)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the SDK contract script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Azure's clients refused the emulator's answers ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let checked: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("OK "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no OK line:\n{stdout}\n{stderr}"));
    assert!(checked > 100, "only {checked} models checked:\n{stdout}");

    // Every error the SDK raised: its (operationId, status, code) is in the error map.
    let map = error_map().expect("error map");
    // Status `lro`: a long-running operation that ended Failed (the poll answered 200); its
    // code must be listed for the operation with any status.
    let errors: Vec<(&str, Option<u16>, &str)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ERROR "))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let [operation, status, code] = fields.as_slice() else {
                panic!("malformed ERROR line: {l}");
            };
            let status = (*status != "lro").then(|| status.parse().expect("status"));
            (*operation, status, *code)
        })
        .collect();
    assert!(
        errors.len() >= 18,
        "the script drove {} error paths:\n{stdout}",
        errors.len()
    );
    let unlisted: Vec<_> = errors
        .iter()
        .filter(|(operation, status, code)| match status {
            Some(status) => !listed(&map, operation, *status, code),
            None => !map
                .iter()
                .any(|l| l.status >= 400 && listed(&map, operation, l.status, code)),
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "(operation, status, code) answered but not in contract/error-codes.txt: {unlisted:?}"
    );
    sim.handle.shutdown().await;
    restricted.handle.shutdown().await;
}
