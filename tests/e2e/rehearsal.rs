//! Rehearsals (`run --sim`) that stop are finished by `fogbook resume RUN` alone: the README's
//! quick start, killed at every step boundary and inside seeding, then its "interrupt and
//! continue" block run as written; approve-then-resume of a rehearsal; and the refusals that
//! keep a rehearsal off real Azure and a real run off the emulator.
//!
//! Effects are counted from outside the engine: the emulator's own journal and world, in the
//! state file the in-process emulator saves after every accepted mutation.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::common::{Sandbox, code, stderr, stdout};

const SUB: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The commands of the first ```sh block after `marker` in the README, continuation lines
/// joined and comments dropped.
fn readme_commands(marker: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let after = &text[text.find(marker).unwrap_or_else(|| panic!("README has no `{marker}`"))..];
    let block = after.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.split(" #").next().unwrap().trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// A README command as a process: `cargo run --locked --` is the built binary, the demo
/// database is the sandbox's, `<RUN_ID>` is `run`; it runs from the repository root.
fn readme_command(sb: &Sandbox, line: &str, run: Option<&str>) -> Command {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..4], ["cargo", "run", "--locked", "--"], "README command: {line}");
    let db = sb.db().display().to_string();
    let mut c = sb.cmd();
    c.current_dir(root());
    for w in &words[4..] {
        let w = match *w {
            "/tmp/fogbook-demo.db" => db.as_str(),
            "<RUN_ID>" => run.expect("a run id for <RUN_ID>"),
            other => other,
        };
        c.arg(w);
    }
    c
}

fn output_of(mut c: Command, failpoint: Option<&str>) -> Output {
    if let Some(fp) = failpoint {
        c.env("FOGBOOK_FAILPOINTS", fp);
    }
    c.output().unwrap()
}

/// The emulator state files of the sandbox's rehearsals.
fn state_files(sb: &Sandbox) -> Vec<PathBuf> {
    let dir = sb.path("state.db.sim");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
}

fn only_state(sb: &Sandbox) -> Value {
    let files = state_files(sb);
    assert_eq!(files.len(), 1, "one rehearsal, one emulator state: {files:?}");
    read_state(&files[0])
}

fn read_state(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The emulator's journal of accepted mutations, as `METHOD rg/Provider/type/name…`.
fn mutations(state: &Value) -> Vec<String> {
    state["journal"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["applied"], true, "a mutation was refused: {e}");
            let path = e["path"].as_str().unwrap().split('?').next().unwrap();
            let path = path
                .trim_start_matches(&format!("/subscriptions/{SUB}/resourceGroups/"))
                .replace("/providers/", "/");
            format!("{} {path}", e["method"].as_str().unwrap())
        })
        .collect()
}

fn first_occurrences(list: &[String]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for m in list {
        if !seen.contains(m) {
            seen.push(m.clone());
        }
    }
    seen
}

fn name_of(id: &Value) -> String {
    id.as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The estate reduced to what a procedure decides (no times, no operation ids).
fn estate(state: &Value) -> Value {
    let world = &state["world"];
    let mut instances = serde_json::Map::new();
    for i in world["instances"].as_object().unwrap().values() {
        let dbs: Vec<Value> = i["databases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!([d["name"], d["failover_group"], d["read_only"]]))
            .collect();
        instances.insert(
            i["name"].as_str().unwrap().to_owned(),
            json!({
                "location": i["location"], "v_cores": i["v_cores"], "storage_gb": i["storage_gb"],
                "dns_zone": i["dns_zone"], "provisioning_state": i["provisioning_state"],
                "databases": dbs,
            }),
        );
    }
    let mut groups = serde_json::Map::new();
    for (name, g) in world["failover_groups"].as_object().unwrap() {
        groups.insert(
            name.clone(),
            json!({
                "primary": name_of(&g["primary"]["instance_id"]),
                "secondary": name_of(&g["secondary"]["instance_id"]),
                "replication_state": g["replication_state"],
            }),
        );
    }
    let mut vnets = serde_json::Map::new();
    for v in world["virtual_networks"].as_object().unwrap().values() {
        let mut peerings: Vec<String> = v["peerings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}->{}", p["name"].as_str().unwrap(), name_of(&p["remote_id"])))
            .collect();
        peerings.sort();
        vnets.insert(v["name"].as_str().unwrap().to_owned(), json!(peerings));
    }
    json!({ "instances": instances, "groups": groups, "vnets": vnets })
}

/// The quick start's steps in order, each with whether it saves progress inside a long
/// operation (an `after-progress` kill point: inside seeding for `create-group`).
fn quick_start_steps() -> Vec<(String, bool)> {
    const LONG: &[&str] = &["instance.create_like", "instance.delete", "fog.create", "fog.delete"];
    let text = std::fs::read_to_string(root().join("runbooks/change-primary-region.yaml")).unwrap();
    let mut steps: Vec<(String, bool)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(id) = t.strip_prefix("- id:") {
            steps.push((id.trim().to_owned(), false));
        } else if let (Some(uses), Some(last)) = (t.strip_prefix("uses:"), steps.last_mut()) {
            last.1 = LONG.contains(&uses.trim());
        }
    }
    steps
}

/// The README's quick start, killed (SIGKILL, one kill per process) at every step boundary
/// and right after each long operation saved its progress (inside seeding for
/// `create-group`), each process after the first being the README's `resume <RUN_ID>`; then
/// the README's "interrupt and continue" block, run as written, finishes it. The final
/// estate and the emulator's mutations are those of an uninterrupted rehearsal.
#[test]
fn readme_rehearsal_killed_everywhere_is_finished_by_resume_alone() {
    let quick = readme_commands("## Quick start");
    let quick_start = quick.first().unwrap();
    assert!(quick_start.contains("--sim"), "{quick_start}");
    let block = readme_commands("Interrupt a run");
    let resume_line = block.iter().find(|l| l.contains(" resume ")).expect("a resume command");

    // The uninterrupted rehearsal, for comparison.
    let base = Sandbox::new();
    let out = output_of(readme_command(&base, quick_start, None), None);
    assert_eq!(code(&out), 0, "uninterrupted quick start: {}", stderr(&out));
    let base_state = only_state(&base);
    let base_mutations = mutations(&base_state);
    assert!(base_mutations.iter().any(|m| m.contains("instanceFailoverGroups")));

    let sb = Sandbox::new();
    let mut points = Vec::new();
    for (step, long) in quick_start_steps() {
        for kind in ["after-start", "after-progress", "before-finish", "after-finish"] {
            if kind == "after-progress" && !long {
                continue;
            }
            points.push(format!("{kind}:{step}"));
        }
    }
    // The last step's end and the run's are one commit: a kill after it finds nothing to do.
    points.pop();
    let mut run: Option<String> = None;
    for fp in &points {
        let c = match &run {
            None => readme_command(&sb, quick_start, None),
            Some(r) => readme_command(&sb, resume_line, Some(r)),
        };
        let out = output_of(c, Some(fp));
        assert_eq!(
            out.status.signal(),
            Some(9),
            "the kill at {fp} was not reached: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        if run.is_none() {
            run = Some(sb.last_run_id());
        }
    }
    let run = run.unwrap();
    assert_ne!(sb.run_status(&run), "succeeded");

    // The README's block, as written.
    for line in &block {
        let out = output_of(readme_command(&sb, line, Some(&run)), None);
        assert_eq!(code(&out), 0, "`{line}`: {}{}", stdout(&out), stderr(&out));
        if line.contains(" report ") {
            // The report speaks in the rehearsed time and names the databases of the window.
            let text = stdout(&out);
            assert!(text.contains("rehearsal: on the ARM emulator"), "{text}");
            assert!(text.contains("databases: sales, inventory, hr, audit"), "{text}");
            assert!(text.contains(" simulated ("), "{text}");
        }
    }
    assert_eq!(sb.run_status(&run), "succeeded");

    let state = only_state(&sb);
    assert_eq!(
        estate(&state),
        estate(&base_state),
        "the final estate of an uninterrupted rehearsal"
    );
    let all = mutations(&state);
    let sql =
        |m: &Vec<String>| -> Vec<String> { m.iter().filter(|x| x.contains("/Microsoft.Sql/")).cloned().collect() };
    // Every Microsoft.Sql mutation exactly once, in order: no instance created twice, no
    // seeding restarted, no failover repeated. Network PUTs are convergent and may repeat.
    assert_eq!(sql(&all), sql(&base_mutations), "Microsoft.Sql mutations, each once");
    assert_eq!(first_occurrences(&all), base_mutations, "the procedure's order");

    // The rehearsal is one in its audit trail.
    let history = sb.run(&["--format", "json", "history", &run]);
    assert_eq!(code(&history), 0, "{}", stderr(&history));
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let created = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "run.created")
        .unwrap()
        .clone();
    assert!(
        created["data"]["by"]["rehearsal"]["state_file"].is_string(),
        "{created}"
    );
}

/// A rehearsal that waits for an approval: `approve`, then `resume` alone finishes it on
/// its restored emulator; the failover is sent once.
#[test]
fn rehearsal_approved_then_resumed() {
    let sb = Sandbox::new();
    let rb = root().join("runbooks/failover.yaml");
    let params = root().join("examples/failover.yaml");
    let mut c = sb.cmd();
    c.current_dir(root()).args([
        "run",
        rb.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "--sim",
    ]);
    let out = c.output().unwrap();
    assert_eq!(code(&out), 3, "waits for approval: {}", stderr(&out));
    let run = sb.last_run_id();
    let out = sb.run(&["approve", &run, "approve", "--by", "tester"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = sb.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "resume after approval: {}", stderr(&out));
    assert_eq!(sb.run_status(&run), "succeeded");
    let state = only_state(&sb);
    let failovers: Vec<String> = mutations(&state)
        .into_iter()
        .filter(|m| m.ends_with("/failover"))
        .collect();
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_eq!(
        estate(&state)["groups"]["fog-demo"]["primary"],
        "mi-fog-b",
        "the failover happened on the emulator"
    );
}

/// A rehearsal is not continued against an ARM endpoint, and a run started against an
/// endpoint is not continued on the emulator: exit 2, nothing sent, the run unchanged.
#[test]
fn rehearsal_and_real_run_keep_their_targets() {
    let sb = Sandbox::new();
    let rb = root().join("runbooks/failover.yaml");
    let params = root().join("examples/failover.yaml");
    let mut c = sb.cmd();
    c.current_dir(root()).args([
        "run",
        rb.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "--sim",
    ]);
    assert_eq!(code(&c.output().unwrap()), 3);
    let run = sb.last_run_id();
    sb.run(&["approve", &run, "approve", "--by", "tester"]);
    let before = mutations(&only_state(&sb));

    // A real endpoint that answers: a `sim serve` emulator stands in for Azure.
    let azure = crate::seed_runbooks::start_sim(&root().join("examples/estate.yaml"), None);
    let out = sb.run_env(
        &["--arm-endpoint", &azure.url, "resume", &run],
        &[("FOGBOOK_ARM_TOKEN", "t")],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is a rehearsal"), "{}", stderr(&out));
    assert_eq!(sb.run_status(&run), "waiting");
    assert_eq!(mutations(&only_state(&sb)), before, "nothing sent to the emulator");
    let journal = crate::seed_runbooks::journal(&azure.url);
    assert!(journal.is_empty(), "nothing sent to the endpoint: {journal:?}");

    // A real run (against the stand-in endpoint) is not continued with --sim, nor against
    // another endpoint.
    let real = Sandbox::new();
    let mut c = real.cmd();
    c.current_dir(root()).env("FOGBOOK_ARM_TOKEN", "t").args([
        "--arm-endpoint",
        &azure.url,
        "run",
        rb.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
    ]);
    let out = c.output().unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let real_run = real.last_run_id();
    real.run(&["approve", &real_run, "approve", "--by", "tester"]);
    let out = real.run(&["resume", "--sim", &real_run]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a rehearsal"), "{}", stderr(&out));
    let out = real.run_env(
        &["--arm-endpoint", "http://127.0.0.1:9", "resume", &real_run],
        &[("FOGBOOK_ARM_TOKEN", "t")],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("was started against"), "{}", stderr(&out));
    assert_eq!(real.run_status(&real_run), "waiting");
    assert!(
        crate::seed_runbooks::journal(&azure.url).is_empty(),
        "no failover was sent"
    );
}

/// A detached rehearsal is driven by `fogbook worker` on its restored emulator, and the
/// status and report of a rehearsal say it is one.
#[test]
fn a_detached_rehearsal_is_driven_by_the_worker() {
    let sb = Sandbox::new();
    let rb = root().join("runbooks/failover.yaml");
    let params = root().join("examples/failover.yaml");
    let mut c = sb.cmd();
    c.current_dir(root()).args([
        "run",
        rb.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "--sim",
        "--auto-approve",
        "--detach",
    ]);
    let out = c.output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = sb.last_run_id();
    assert_eq!(sb.run_status(&run), "pending");
    assert!(mutations(&only_state(&sb)).is_empty());

    let out = sb.run(&["worker", "--exit-when-idle"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.run_status(&run), "succeeded", "{}", stderr(&out));
    let state = only_state(&sb);
    let failovers: Vec<String> = mutations(&state)
        .into_iter()
        .filter(|m| m.ends_with("/failover"))
        .collect();
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_eq!(estate(&state)["groups"]["fog-demo"]["primary"], "mi-fog-b");

    for cmd in ["status", "report"] {
        let out = sb.run(&[cmd, &run]);
        assert!(
            stdout(&out).contains("rehearsal"),
            "`{cmd}` says it is a rehearsal: {}",
            stdout(&out)
        );
    }
}

/// `plan` gives the run's total expected duration and checks `limits.max_unprotected`
/// against the predicted unprotected window.
#[test]
fn plan_totals_the_duration_and_checks_the_unprotected_limit() {
    let sb = Sandbox::new();
    let text = std::fs::read_to_string(root().join("runbooks/change-primary-region.yaml")).unwrap();
    assert!(text.contains("max_unprotected: 8h"));
    let tight = sb.write(
        "tight.yaml",
        &text.replace("max_unprotected: 8h", "max_unprotected: 1h"),
    );
    let plan = |rb: &Path| -> Value {
        let mut c = sb.cmd();
        c.current_dir(root()).args([
            "--format",
            "json",
            "plan",
            rb.to_str().unwrap(),
            "--params",
            "examples/change-primary-region.yaml",
            "--sim",
        ]);
        let out = c.output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let loose = plan(&root().join("runbooks/change-primary-region.yaml"));
    let seeding = loose["windows"][0]["estimated_hours"].as_f64().unwrap();
    let total = loose["expected_hours"].as_f64().unwrap();
    assert!(
        total > seeding,
        "the total ({total}h) includes seeding ({seeding}h) and the instance"
    );
    assert_eq!(loose["limit_exceeded"], json!([]), "{loose}");
    // Seeding is estimated from the data of B's databases (203.5 GB in the demo estate), not
    // from its 512 GB of reserved storage.
    let seeding_text = loose["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "create-group")
        .unwrap()["estimate"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        seeding_text.contains("204 GB used by the databases of mi-fog-b"),
        "{seeding_text}"
    );
    assert!(seeding < 2.5, "{seeding}h: from 204 GB at 100 GB/h, not 512 GB");
    let tight = plan(&tight);
    let over = tight["limit_exceeded"].as_array().unwrap();
    assert_eq!(over.len(), 1, "{tight}");
    assert!(over[0].as_str().unwrap().contains("delete-group"), "{over:?}");
}
