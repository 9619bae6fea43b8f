//! `fogbook plan` reads and predicts; it never changes anything: the emulator's journal of
//! mutating requests stays empty and no database is created.

use std::io::{BufRead, BufReader};
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, code, http_get, stderr, stdout};

struct Sim {
    url: String,
    child: std::process::Child,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn sim(sb: &Sandbox) -> Sim {
    sim_of(sb, "examples/estate.yaml")
}

/// An emulator serving `estate` (relative to the repository root).
fn sim_of(sb: &Sandbox, estate: &str) -> Sim {
    let estate = Path::new(env!("CARGO_MANIFEST_DIR")).join(estate);
    let mut child = sb.spawn(&["sim", "serve", "--estate", &estate.display().to_string()], &[]);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Sim {
        url: line.trim().to_owned(),
        child,
    }
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).display().to_string()
}

/// Every shipped example, planned against the estate it goes with (the demo estate, or the
/// one its comment names: `sim serve --estate examples/estate-unpaired.yaml`), would run: the
/// plan exits 0 and sends nothing.
#[test]
fn plan_reads_and_predicts_without_a_single_mutation() {
    let sb = Sandbox::new();
    let sims: Vec<(&str, Sim)> = ["examples/estate.yaml", "examples/estate-unpaired.yaml"]
        .into_iter()
        .map(|e| (e, sim_of(&sb, e)))
        .collect();
    let mut planned = 0;
    for entry in std::fs::read_dir(repo("examples")).unwrap() {
        let params = entry.unwrap().path();
        let name = params.file_stem().unwrap().to_string_lossy().into_owned();
        let runbook = repo(&format!("runbooks/{name}.yaml"));
        if !Path::new(&runbook).exists() {
            continue;
        }
        let text = std::fs::read_to_string(&params).unwrap();
        let (_, sim) = sims
            .iter()
            .find(|(e, _)| text.contains(&format!("sim serve --estate {e}")))
            .unwrap_or(&sims[0]);
        let env = [("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()), ("FOGBOOK_ARM_TOKEN", "t")];
        let out = sb.run_env(&["plan", &runbook, "--params", &params.display().to_string()], &env);
        assert_eq!(code(&out), 0, "{name}: {}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("nothing was changed"), "{name}: {}", stdout(&out));
        planned += 1;
    }
    assert!(planned >= 2, "plans of the shipped examples");
    for (estate, sim) in &sims {
        let (status, journal) = http_get(&sim.url, "/_sim/journal", true);
        assert_eq!(status, 200);
        let journal: serde_json::Value = serde_json::from_str(&journal).unwrap();
        let entries = journal["entries"].as_array().expect("the journal lists entries");
        assert!(
            entries.is_empty(),
            "plan sent mutating requests to {estate}: {entries:?}"
        );
    }
    assert!(!sb.db().exists(), "plan never creates a database");
}

#[test]
fn plan_shows_the_windows_and_the_seeding_estimate() {
    let sb = Sandbox::new();
    let sim = sim(&sb);
    let env = [("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()), ("FOGBOOK_ARM_TOKEN", "t")];
    let out = sb.run_env(
        &[
            "plan",
            &repo("runbooks/change-primary-region.yaml"),
            "--params",
            &repo("examples/change-primary-region.yaml"),
            "--format",
            "json",
        ],
        &env,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let windows = plan["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0]["kind"], "unprotected");
    assert_eq!(windows[0]["opened_by"], "delete-group");
    assert_eq!(windows[0]["closed_by"], "create-group");
    let create = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "create-group")
        .unwrap();
    let text = create["estimate"]["text"].as_str().unwrap();
    assert!(
        text.contains("seeding") && text.contains("204 GB used by the databases"),
        "{text}"
    );
    let first = &plan["steps"][0];
    assert!(first["output"].is_object(), "the read-only first step ran: {first}");
}

/// A read that fails before the first change: the JSON names the step (`would_stop_at`) and
/// the exit code is 1, as in text; with the example's names nothing stops and it is 0.
#[test]
fn plan_in_json_names_where_a_run_would_stop_and_exits_1() {
    let sb = Sandbox::new();
    let sim = sim(&sb);
    let env = [("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()), ("FOGBOOK_ARM_TOKEN", "t")];
    let plan = |set: &[&str]| {
        let runbook = repo("runbooks/rename-database.yaml");
        let params = repo("examples/rename-database.yaml");
        let mut args = vec!["--format", "json", "plan", &runbook, "--params", &params];
        for s in set {
            args.extend(["--set", s]);
        }
        let out = sb.run_env(&args, &env);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (code(&out), doc)
    };
    let (status, doc) = plan(&["database=salse"]);
    assert_eq!(status, 1, "{doc}");
    assert_eq!(
        doc["would_stop_at"],
        serde_json::json!({ "step": "database-exists", "before_any_change": true })
    );
    let (status, doc) = plan(&[]);
    assert_eq!(status, 0, "{doc}");
    assert_eq!(doc["would_stop_at"], serde_json::Value::Null);
}

#[test]
fn plan_of_scale_shows_the_order_it_will_take() {
    let sb = Sandbox::new();
    let sim = sim(&sb);
    let env = [("FOGBOOK_ARM_ENDPOINT", sim.url.as_str()), ("FOGBOOK_ARM_TOKEN", "t")];
    let sub = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";
    let base = [
        "plan".to_owned(),
        repo("runbooks/scale.yaml"),
        "--format".to_owned(),
        "json".to_owned(),
        "--set".to_owned(),
        "failover_group=fog-demo".to_owned(),
        "--set".to_owned(),
        format!("primary.subscription={sub}"),
        "--set".to_owned(),
        "primary.resource_group=rg-sql-eastus".to_owned(),
        "--set".to_owned(),
        "primary.name=mi-fog-a".to_owned(),
        "--set".to_owned(),
        format!("secondary.subscription={sub}"),
        "--set".to_owned(),
        "secondary.resource_group=rg-sql-westus".to_owned(),
        "--set".to_owned(),
        "secondary.name=mi-fog-b".to_owned(),
        "--set".to_owned(),
        "storage_gb=512".to_owned(),
        "--set".to_owned(),
        "sku_name=GP_Gen5".to_owned(),
    ];
    let decisions = |v_cores: &str| {
        let mut args: Vec<String> = base.to_vec();
        args.extend(["--set".to_owned(), format!("v_cores={v_cores}")]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.run_env(&argv, &env);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let of = |id: &str| {
            plan["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
                .unwrap()["decision"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        (of("scale-secondary-first"), of("scale-secondary-after"))
    };
    // The demo instances have 8 vCores: 16 is up (secondary first), 4 is down (secondary after).
    assert_eq!(decisions("16"), ("run".to_owned(), "skip".to_owned()));
    assert_eq!(decisions("4"), ("skip".to_owned(), "run".to_owned()));
}

#[test]
fn bench_reports_figures_beside_the_floor_with_one_commit_per_step() {
    let sb = Sandbox::new();
    let dir = sb.dir.path().display().to_string();
    let out = sb.run(&[
        "bench",
        "--dir",
        &dir,
        "--floor-commits",
        "20",
        "--steps",
        "50",
        "--runs",
        "8",
        "--steps-per-run",
        "3",
        "--resume-trials",
        "0",
        "--waiting-runs",
        "0",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["floor_commits_per_s"].as_f64().unwrap() > 0.0);
    let samples = r["floor_samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3, "the floor around each workload: {samples:?}");
    assert!(r["sequential_steps_per_s"].as_f64().unwrap() > 0.0);
    let per_step = r["sequential_commits_per_step"].as_f64().unwrap();
    // One durable commit per step (the end of a step and the start of the next are one
    // transition), plus the lease, the last step's end with the run's, and the release,
    // spread over 50 steps.
    assert!((1.0..=1.1).contains(&per_step), "{per_step} commits per step");
    let leftovers: Vec<_> = std::fs::read_dir(sb.dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "the bench removes its scratch databases");
}
