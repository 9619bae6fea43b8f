//! fogbook's own ARM client against Azure's SDK models: the shipped runbooks run against
//! `fogbook sim serve` through a recording proxy (`sim/tests/sdk/proxy.py`), and every request
//! body the client sent is checked by `sim/tests/sdk/contract.py --bodies` against the model
//! `azure-mgmt-sql` / `azure-mgmt-network` have for that request: every field is one the
//! model defines (nothing the SDK's own serialisation would drop or reject) and none is
//! read-only. The Python clients come from the venv `scripts/test` makes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{Sandbox, code, stderr, stdout};
use crate::seed_runbooks::{demo_estate, root, start_sim};

/// The venv `scripts/test` makes: `FOGBOOK_SDK_PYTHON`, or `target/pyenv` of the workspace.
fn sdk_python() -> PathBuf {
    let python = std::env::var_os("FOGBOOK_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/pyenv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: the SDK contract tests need Azure's Python clients in a venv; run \
         `scripts/test` (it makes target/pyenv from sim/tests/sdk/requirements.txt and sets \
         FOGBOOK_SDK_PYTHON), or set FOGBOOK_SDK_PYTHON to a python that has them",
        python.display()
    );
    python
}

/// The recording proxy in front of an emulator; killed on drop.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(python: &Path, upstream: &str, record: &Path) -> Proxy {
        let mut child = Command::new(python)
            .arg("-B")
            .arg(root().join("sim/tests/sdk/proxy.py"))
            .arg(upstream)
            .arg(record)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the recording proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("proxy stdout"))
            .read_line(&mut line)
            .expect("the proxy prints its URL");
        assert!(line.starts_with("http://127.0.0.1:"), "proxy said: {line:?}");
        Proxy {
            child,
            url: line.trim().to_owned(),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a shipped runbook with its example parameters through the proxy; it must succeed.
fn run_through_proxy(python: &Path, record: &Path, runbook: &str, sets: &[String]) {
    let sb = Sandbox::new();
    let sim = start_sim(&demo_estate(), None);
    let proxy = Proxy::start(python, &sim.url, record);
    let mut args = vec![
        "run".to_owned(),
        root().join(format!("runbooks/{runbook}.yaml")).display().to_string(),
        "--params".to_owned(),
        root().join(format!("examples/{runbook}.yaml")).display().to_string(),
        "--auto-approve".to_owned(),
    ];
    for set in sets {
        args.push("--set".to_owned());
        args.push(set.clone());
    }
    let out = sb
        .cmd()
        .args(&args)
        .env("FOGBOOK_ARM_ENDPOINT", &proxy.url)
        .env("FOGBOOK_ARM_TOKEN", "anything")
        .output()
        .expect("spawn fogbook");
    assert_eq!(
        code(&out),
        0,
        "{runbook} through the proxy: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn the_arm_clients_request_bodies_fit_azures_sdk_models() {
    let python = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("bodies.jsonl");
    let password = format!(
        "admin_password_file={}",
        root().join("examples/sim-admin-password.txt").display()
    );
    // Between them: an instance create, peerings, security rules and a group create (moving
    // the secondary), a scale (instance PATCH), a planned and a forced failover.
    run_through_proxy(
        &python,
        &record,
        "change-secondary-region",
        std::slice::from_ref(&password),
    );
    run_through_proxy(&python, &record, "scale", &[]);
    run_through_proxy(&python, &record, "failover", &[]);
    run_through_proxy(&python, &record, "force-failover", &[]);

    let out = Command::new(&python)
        .arg("-B")
        .arg(root().join("sim/tests/sdk/contract.py"))
        .arg("--bodies")
        .arg(&record)
        .output()
        .expect("run contract.py --bodies");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        code(&out),
        0,
        "the client's request bodies do not fit the SDK models:\n{text}"
    );
    // The bodies that matter were seen (else the check proves nothing about them).
    for kind in [
        "BODY PUT ManagedInstance ",
        "BODY PATCH ManagedInstanceUpdate ",
        "BODY PUT InstanceFailoverGroup ",
        "BODY PUT VirtualNetworkPeering ",
        "BODY PUT SecurityRule ",
    ] {
        assert!(text.contains(kind), "no {kind}request recorded:\n{text}");
    }
}
