//! Long-running operations: Retry-After, re-attachment, cancellation, and restart with a state file.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::rules::RULES_ESTATE;

fn p1() -> String {
    mi_id("rg-e", "p1")
}

fn s_ok() -> String {
    mi_id("rg-w", "s-ok")
}

fn group() -> String {
    sql(&fog_path("rg-e", "eastus", "fog-lro"))
}

#[tokio::test]
async fn polling_by_retry_after_reaches_the_end() {
    // One real second is one simulated minute: a 60 s failover asks for one 1 s wait.
    let mut cfg = config(DEMO);
    cfg.time_scale = 60.0;
    let sim = Sim::start(cfg).await;
    let accepted = sim
        .post(&sql(&format!("{}/failover", fog_path(WEST, "westus", "fog-demo"))))
        .await;
    assert_eq!(accepted.header("retry-after").as_deref(), Some("1"));
    let (status, polls) = sim.wait(&accepted, 60.0).await;
    assert_eq!(status["status"], "Succeeded");
    assert_eq!(polls, 2);

    // One real second is one simulated hour: a 4 h create takes four or five 1 s waits.
    let mut cfg = config(DEMO);
    cfg.time_scale = 3600.0;
    let sim = Sim::start(cfg).await;
    let accepted = sim.put(&sql(&mi_id(NORTH, "mi-fog-c")), instance_c_body(None)).await;
    let (status, polls) = sim.wait(&accepted, 3600.0).await;
    assert_eq!(status["status"], "Succeeded");
    assert!((4..=5).contains(&polls), "{polls} polls");

    // In real time the first Retry-After is a minute, and a poll after less finds it running.
    let sim = Sim::demo().await;
    let accepted = sim.put(&sql(&mi_id(NORTH, "mi-fog-c")), instance_c_body(None)).await;
    assert_eq!(accepted.header("retry-after").as_deref(), Some("60"));
    sim.advance_secs(59.0).await;
    let status = sim.get(&accepted.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "InProgress");
    assert_eq!(status.body["percentComplete"], 0);
    sim.advance("2h").await;
    let status = sim.get(&accepted.header("azure-asyncoperation").unwrap()).await;
    assert!(status.body["percentComplete"].as_u64().unwrap() >= 50);
}

#[tokio::test]
async fn an_identical_put_during_seeding_reattaches_instead_of_restarting() {
    let sim = Sim::start(config(RULES_ESTATE)).await;
    let body = group_body(&p1(), &s_ok(), "westus");
    let first = sim.put(&group(), body.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    // 10 GB between paired regions: 10 minutes of setup plus 144 s of copy.
    sim.advance("5m").await;
    let second = sim.put(&group(), body.clone()).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(
        second.header("azure-asyncoperation"),
        first.header("azure-asyncoperation")
    );
    assert_eq!(second.header("location"), first.header("location"));
    sim.advance_secs(445.0).await;
    let view = sim.get(&sql(&fog_path("rg-w", "westus", "fog-lro"))).await;
    assert_eq!(
        view.body["properties"]["replicationState"], "CATCH_UP",
        "seeding kept its original end"
    );
    assert_eq!(
        sim.get(&first.header("azure-asyncoperation").unwrap()).await.body["status"],
        "Succeeded"
    );
    let journal = sim.journal().await;
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[0]["operation_id"], journal[1]["operation_id"]);
    let state = sim.state().await;
    assert_eq!(state["world"]["operations"].as_object().unwrap().len(), 1);
    // After the operation, the same PUT is a no-op answered 200.
    let third = sim.put(&group(), body).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(third.body["properties"]["replicationState"], "CATCH_UP");
}

#[tokio::test]
async fn a_restart_with_a_state_file_continues_seeding() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = temp_path(&dir, "sim-state.json");
    let mut cfg = config(RULES_ESTATE);
    cfg.state_file = Some(state_file.clone());
    let sim = Sim::start(cfg.clone()).await;
    let accepted = sim.put(&group(), group_body(&p1(), &s_ok(), "westus")).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    sim.advance("5m").await;
    let status_path = accepted.header("azure-asyncoperation").unwrap().replace(&sim.base, "");
    sim.handle.shutdown().await;
    assert!(state_file.exists());
    assert!(
        !dir.path().join("sim-state.json.tmp").exists(),
        "the temporary file was renamed"
    );

    let sim = Sim::start(cfg).await;
    let clock = sim.admin(reqwest::Method::GET, "/_sim/clock", None).await;
    assert!(
        clock["elapsed_seconds"].as_f64().unwrap() >= 300.0,
        "the clock continues: {clock}"
    );
    let view = sim.get(&sql(&fog_path("rg-w", "westus", "fog-lro"))).await;
    assert_eq!(view.body["properties"]["replicationState"], "SEEDING");
    assert_eq!(sim.get(&status_path).await.body["status"], "InProgress");
    sim.advance_secs(445.0).await;
    assert_eq!(sim.get(&status_path).await.body["status"], "Succeeded");
    let view = sim.get(&sql(&fog_path("rg-w", "westus", "fog-lro"))).await;
    assert_eq!(view.body["properties"]["replicationState"], "CATCH_UP");
    assert_eq!(sim.journal().await.len(), 1, "the journal survived the restart");
    let dbs = sim.get(&sql(&format!("{}/databases", s_ok()))).await;
    assert_eq!(dbs.body["value"][0]["name"], "db1");
}

#[tokio::test]
async fn deleting_a_creating_instance_cancels_the_create() {
    let sim = Sim::demo().await;
    let c = sql(&mi_id(NORTH, "mi-fog-c"));
    let create = sim.put(&c, instance_c_body(None)).await;
    // The same PUT again re-attaches; a different one conflicts.
    let again = sim.put(&c, instance_c_body(None)).await;
    assert_eq!(
        again.header("azure-asyncoperation"),
        create.header("azure-asyncoperation")
    );
    let mut bigger = instance_c_body(None);
    bigger["properties"]["vCores"] = json!(16);
    sim.put(&c, bigger)
        .await
        .assert_error(409, "ConflictingManagedInstanceOperation");
    let delete = sim.delete(&c).await;
    assert_eq!(delete.status, StatusCode::ACCEPTED);
    let status = sim.get(&create.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "Canceled");
    assert_eq!(status.body["error"]["code"], "OperationCancelled");
    let result = sim.get(&create.header("location").unwrap()).await;
    result.assert_error(409, "OperationCancelled");
    sim.advance("1h").await;
    sim.get(&c).await.assert_error(404, "ResourceNotFound");
}

/// With `clock_runs_while_stopped`, the time the emulator was down passes at the saved scale
/// (seeding goes on while the orchestrator is down); without it the clock resumes where it
/// was saved. The downtime is made by moving the save's wall-clock time back in the file.
#[tokio::test]
async fn simulated_time_runs_while_the_emulator_is_stopped_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = temp_path(&dir, "sim-state.json");
    let mut cfg = config(RULES_ESTATE);
    cfg.state_file = Some(state_file.clone());
    cfg.time_scale = 60.0;
    let sim = Sim::start(cfg.clone()).await;
    let accepted = sim.put(&group(), group_body(&p1(), &s_ok(), "westus")).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let status_path = accepted.header("azure-asyncoperation").unwrap().replace(&sim.base, "");
    sim.handle.shutdown().await;

    // Ten real minutes of downtime: ten simulated hours at 60x.
    let mut saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let at = saved["saved_at_unix_ms"]
        .as_i64()
        .expect("the save records its wall-clock time");
    saved["saved_at_unix_ms"] = (at - 600_000).into();
    std::fs::write(&state_file, serde_json::to_vec(&saved).unwrap()).unwrap();

    let frozen = Sim::start(cfg.clone()).await;
    let clock = frozen.admin(reqwest::Method::GET, "/_sim/clock", None).await;
    assert!(clock["elapsed_seconds"].as_f64().unwrap() < 36_000.0, "{clock}");
    frozen.handle.shutdown().await;
    std::fs::write(&state_file, serde_json::to_vec(&saved).unwrap()).unwrap();

    cfg.clock_runs_while_stopped = true;
    let sim = Sim::start(cfg).await;
    let clock = sim.admin(reqwest::Method::GET, "/_sim/clock", None).await;
    assert!(clock["elapsed_seconds"].as_f64().unwrap() >= 36_000.0, "{clock}");
    assert_eq!(
        sim.get(&status_path).await.body["status"],
        "Succeeded",
        "seeding finished while the emulator was down"
    );
}
