//! Re-entry after a crash: the saved operation is polled, the request is never re-sent;
//! intents are resolved by reading state.

use std::sync::Arc;

use fogbook_activities::ActivityError;
use serde_json::{Value, json};

use crate::common::*;

fn target_c() -> Value {
    json!({ "subscription": SUB, "resource_group": NORTH, "name": "mi-fog-c", "location": "northeurope",
            "subnet_id": subnet(NORTH, "vnet-sql-northeurope") })
}

#[tokio::test]
async fn create_like_resumed_after_the_put_polls_the_same_operation() {
    let sim = Sim::start(DEMO).await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "S3cret-pw-for-create!\n").unwrap();
    let input = json!({ "template": mi(EAST, "mi-fog-a"), "target": target_c(), "admin_password_file": pw });
    let (err, second, progress) = crash_and_resume(&sim, "instance.create_like", input, 1).await;
    assert!(matches!(err, ActivityError::Store { .. }), "{err:?}");
    assert!(progress["ops"]["create"]["url"].as_str().is_some(), "{progress}");
    assert!(
        !progress.to_string().contains("S3cret-pw-for-create!"),
        "no password in progress"
    );
    let out = second.expect("resumed");
    assert_eq!(out["name"], "mi-fog-c");
    assert_eq!(out["created"], true);
    assert_eq!(out["provisioning_state"], "Succeeded");
    assert_eq!(out["dns_zone"], "9f4e1c2b7a3d5", "joined the template's DNS zone");
    assert_eq!(out["v_cores"], 8);
    assert_eq!(out["storage_gb"], 512);
    let puts = sim.journal("PUT", "managedInstances/mi-fog-c").await;
    assert_eq!(puts.len(), 1, "one PUT: {puts:?}");
    // Running the step again (a later attempt) finds the instance and sends nothing.
    let again = run(
        &sim,
        "instance.create_like",
        json!({ "template": mi(EAST, "mi-fog-a"), "target": target_c() }),
    )
    .await
    .expect("again");
    assert_eq!(again["created"], false);
    assert_eq!(sim.journal("PUT", "managedInstances/mi-fog-c").await.len(), 1);
}

#[tokio::test]
async fn fog_create_resumed_after_the_put_never_reseeds() {
    let sim = Sim::start(&crate::preflight::clean_pair()).await;
    let input = json!({ "name": "fog-new", "primary": mi(EAST, "mi-a"), "secondary": mi(WEST, "mi-b") });
    let (err, second, progress) = crash_and_resume(&sim, "fog.create", input.clone(), 1).await;
    assert!(matches!(err, ActivityError::Store { .. }));
    assert_eq!(progress["ops"]["create"]["method"], "PUT");
    let out = second.expect("seeded");
    assert_eq!(out["replication_state"], "CATCH_UP");
    assert_eq!(out["role"], "Primary");
    assert!(
        out["read_write_listener"]
            .as_str()
            .is_some_and(|l| l.starts_with("fog-new.")),
        "{out}"
    );
    assert_eq!(sim.journal("PUT", "instanceFailoverGroups/fog-new").await.len(), 1);
    // A later attempt sees the group and sends nothing.
    let again = run(&sim, "fog.create", input).await.expect("again");
    assert_eq!(again["created"], false);
    assert_eq!(sim.journal("PUT", "instanceFailoverGroups/fog-new").await.len(), 1);
}

#[tokio::test]
async fn failover_whose_answer_was_dropped_reads_the_role_and_never_posts_twice() {
    let sim = Sim::start(DEMO).await;
    sim.faults(json!([{ "operation": "InstanceFailoverGroups_Failover", "apply_then_drop_rate": 1.0, "max_hits": 1 }]))
        .await;
    let input = json!({ "name": "fog-demo", "secondary": mi(WEST, "mi-fog-b") });
    let host = Arc::new(TestHost::default());
    let err = fogbook_activities::execute("fog.failover", input.clone(), &ctx(host.clone(), None), &sim.env)
        .await
        .expect_err("the answer was lost");
    assert!(err.is_retryable(), "{err:?}");
    let progress = host.last().expect("intent saved");
    assert_eq!(progress["intent"]["state"], "sending", "{progress}");
    let out = fogbook_activities::execute(
        "fog.failover",
        input,
        &ctx(Arc::new(TestHost::default()), Some(progress)),
        &sim.env,
    )
    .await
    .expect("resolved");
    assert_eq!(out["resolved_by"], "read-back");
    assert_eq!(out["role"], "Primary");
    let posts = sim.journal("POST", "/failover").await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["connection_dropped"], true);
}

#[tokio::test]
async fn failover_resumed_after_the_post_polls_the_saved_operation() {
    let sim = Sim::start(DEMO).await;
    let input = json!({ "name": "fog-demo", "secondary": mi(WEST, "mi-fog-b") });
    // Save 1 is the intent, save 2 the accepted operation.
    let (err, second, progress) = crash_and_resume(&sim, "fog.failover", input, 2).await;
    assert!(matches!(err, ActivityError::Store { .. }));
    assert!(progress["ops"]["failover"]["url"].is_string());
    let out = second.expect("done");
    assert_eq!(out["resolved_by"], "operation");
    assert_eq!(out["role"], "Primary");
    assert_eq!(sim.journal("POST", "/failover").await.len(), 1);
}

#[tokio::test]
async fn failover_crashed_before_the_post_finds_nothing_happened_and_waits_for_an_operator() {
    let sim = Sim::start(DEMO).await;
    let input = json!({ "name": "fog-demo", "secondary": mi(WEST, "mi-fog-b"), "reconcile_timeout": "2m" });
    let (_, second, _) = crash_and_resume(&sim, "fog.failover", input, 1).await;
    // The intent was committed but the POST never left: the role stays secondary, and the
    // activity refuses to guess.
    assert!(matches!(second, Err(ActivityError::Ambiguous { .. })), "{second:?}");
    assert!(sim.journal("POST", "/failover").await.is_empty());
}

#[tokio::test]
async fn failover_whose_intent_commit_lost_its_answer_sends_nothing_and_posts_once_on_re_entry() {
    let sim = Sim::start(DEMO).await;
    let input = json!({ "name": "fog-demo", "secondary": mi(WEST, "mi-fog-b"), "reconcile_timeout": "2m" });
    // The intent's COMMIT applied but its answer was lost; the store answers again after.
    let host = TestHost::losing_ack_at(1);
    let first = fogbook_activities::execute("fog.failover", input.clone(), &ctx(host.clone(), None), &sim.env).await;
    assert!(matches!(first, Err(ActivityError::Store { .. })), "{first:?}");
    assert!(
        sim.journal("POST", "/failover").await.is_empty(),
        "no POST after a failed save"
    );
    let saves = host.all();
    assert_eq!(saves.len(), 2, "the intent, then that it was not sent: {saves:?}");
    assert_eq!(saves[0]["intent"]["state"], "sending");
    assert_eq!(saves[1]["intent"]["state"], "not_sent", "{saves:?}");
    assert_eq!(saves[1]["intent"]["action"], "failover");
    // The next attempt knows nothing was sent: it reads the roles and posts, once.
    let out = fogbook_activities::execute(
        "fog.failover",
        input,
        &ctx(Arc::new(TestHost::default()), Some(saves[1].clone())),
        &sim.env,
    )
    .await
    .expect("failed over");
    assert_eq!(out["resolved_by"], "operation");
    assert_eq!(out["changed"], true);
    assert_eq!(out["role"], "Primary");
    let posts = sim.journal("POST", "/failover").await;
    assert_eq!(posts.len(), 1, "{posts:?}");
}

#[tokio::test]
async fn fog_delete_resumed_after_the_delete_polls_it() {
    let sim = Sim::start(DEMO).await;
    let input = json!({ "name": "fog-demo", "instance": mi(EAST, "mi-fog-a") });
    let (_, second, progress) = crash_and_resume(&sim, "fog.delete", input.clone(), 2).await;
    assert_eq!(progress["intent"]["action"], "delete");
    let out = second.expect("deleted");
    assert_eq!(out["deleted"], true);
    assert_eq!(sim.journal("DELETE", "instanceFailoverGroups/fog-demo").await.len(), 1);
    let again = run(
        &sim,
        "fog.get",
        json!({ "name": "fog-demo", "instance": mi(EAST, "mi-fog-a") }),
    )
    .await
    .unwrap();
    assert_eq!(again["exists"], false);
    let again = run(&sim, "fog.delete", input).await.unwrap();
    assert_eq!(again["already_absent"], true);
}

#[tokio::test]
async fn instance_delete_with_an_intent_only_reads_existence() {
    let sim = Sim::start(DEMO).await;
    // Free B first: an instance in a failover group cannot be deleted.
    run(
        &sim,
        "fog.delete",
        json!({ "name": "fog-demo", "instance": mi(WEST, "mi-fog-b") }),
    )
    .await
    .expect("group deleted");
    let input = json!({ "instance": mi(WEST, "mi-fog-b") });
    let (_, second, progress) = crash_and_resume(&sim, "instance.delete", input.clone(), 2).await;
    assert!(progress["ops"]["delete"].is_object());
    assert_eq!(second.expect("deleted")["deleted"], true);
    assert_eq!(sim.journal("DELETE", "managedInstances/mi-fog-b").await.len(), 1);
    let again = run(&sim, "instance.delete", input).await.unwrap();
    assert_eq!(again["already_absent"], true);
}

#[tokio::test]
async fn a_failover_the_server_refused_may_be_posted_again_by_a_later_attempt() {
    let sim = Sim::start(DEMO).await;
    // Start a scale of B directly, so the failover is refused while it runs.
    let url = sim.url(&format!(
        "/subscriptions/{SUB}/resourceGroups/{WEST}/providers/Microsoft.Sql/managedInstances/mi-fog-b?api-version=2025-01-01"
    ));
    let r = sim
        .admin
        .patch(url)
        .bearer_auth(TOKEN)
        .json(&json!({ "properties": { "storageSizeInGB": 1024 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let input = json!({ "name": "fog-demo", "secondary": mi(WEST, "mi-fog-b") });
    let host = Arc::new(TestHost::default());
    let err = fogbook_activities::execute("fog.failover", input.clone(), &ctx(host.clone(), None), &sim.env)
        .await
        .expect_err("refused while scaling");
    assert_eq!(err.code(), "ManagedInstanceUpdateSloOngoing");
    let progress = host.last().unwrap();
    assert_eq!(progress["intent"]["state"], "rejected", "{progress}");
    // Later (the scale has finished) the next attempt posts again and succeeds.
    sim.admin
        .post(sim.url("/_sim/clock/advance"))
        .json(&json!({ "duration": "3h" }))
        .send()
        .await
        .unwrap();
    let out = fogbook_activities::execute(
        "fog.failover",
        input,
        &ctx(Arc::new(TestHost::default()), Some(progress)),
        &sim.env,
    )
    .await
    .expect("failed over");
    assert_eq!(out["resolved_by"], "operation");
    let posts = sim.journal("POST", "/failover").await;
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0]["applied"], false);
    assert_eq!(posts[1]["applied"], true);
}

#[tokio::test]
async fn a_throttled_failover_is_known_not_to_have_happened() {
    let sim = Sim::start(DEMO).await;
    sim.faults(json!([{ "operation": "InstanceFailoverGroups_Failover", "error_rate": 1.0, "error_status": 429 }]))
        .await;
    let host = Arc::new(TestHost::default());
    let err = fogbook_activities::execute(
        "fog.failover",
        json!({ "name": "fog-demo", "secondary": mi(WEST, "mi-fog-b") }),
        &ctx(host.clone(), None),
        &sim.env,
    )
    .await
    .expect_err("throttled throughout");
    assert!(err.is_retryable());
    assert_eq!(host.last().unwrap()["intent"]["state"], "rejected");
    assert!(sim.journal("POST", "/failover").await.is_empty());
}

/// Crash right after the accepted request was saved, resume, and count the requests.
#[tokio::test]
async fn every_convergent_write_resumes_without_resending() {
    let c = json!({ "subscription": SUB, "resource_group": NORTH, "name": "mi-fog-c", "location": "northeurope",
                    "subnet_id": subnet(NORTH, "vnet-sql-northeurope") });
    let cases = [
        (
            "instance.scale",
            json!({ "instance": mi(WEST, "mi-fog-b"), "v_cores": 16 }),
            "PATCH",
            "managedInstances/mi-fog-b",
            1,
        ),
        (
            "instance.set_update_policy",
            json!({ "instance": mi(WEST, "mi-fog-b"), "policy": "AlwaysUpToDate" }),
            "PATCH",
            "managedInstances/mi-fog-b",
            1,
        ),
        (
            "network.peer",
            json!({ "primary": mi(EAST, "mi-fog-a"), "secondary": c.clone() }),
            "PUT",
            "virtualNetworkPeerings",
            2,
        ),
        (
            "network.open_fog_ports",
            json!({ "primary": mi(EAST, "mi-fog-a"), "secondary": c }),
            "PUT",
            "securityRules",
            4,
        ),
    ];
    for (uses, input, method, fragment, expected) in cases {
        let sim = Sim::start(DEMO).await;
        let (err, second, progress) = crash_and_resume(&sim, uses, input, 1).await;
        assert!(matches!(err, ActivityError::Store { .. }), "{uses}: {err:?}");
        assert!(
            progress["ops"].as_object().is_some_and(|o| o.len() == 1),
            "{uses}: {progress}"
        );
        let out = second.unwrap_or_else(|e| panic!("{uses}: {e:?}"));
        assert!(out["arm_requests"].is_array(), "{uses}: {out}");
        let sent = sim.journal(method, fragment).await;
        assert_eq!(sent.len(), expected, "{uses}: {sent:#?}");
    }
}

#[tokio::test]
async fn a_put_whose_answer_was_dropped_is_resent_and_reattaches_to_the_same_operation() {
    let sim = Sim::start(DEMO).await;
    sim.faults(json!([{ "operation": "ManagedInstances_Update", "apply_then_drop_rate": 1.0, "max_hits": 1 }]))
        .await;
    let out = run(
        &sim,
        "instance.scale",
        json!({ "instance": mi(WEST, "mi-fog-b"), "v_cores": 16 }),
    )
    .await
    .expect("scaled");
    assert_eq!(out["after"]["v_cores"], 16);
    let patches = sim.journal("PATCH", "mi-fog-b").await;
    assert_eq!(patches.len(), 2, "a convergent PATCH is safe to resend: {patches:#?}");
    assert_eq!(patches[0]["connection_dropped"], true);
    assert_eq!(
        patches[0]["operation_id"], patches[1]["operation_id"],
        "one operation, not two"
    );
}

#[tokio::test]
async fn a_burst_of_5xx_on_a_write_is_retried_and_applied_once() {
    let sim = Sim::start(DEMO).await;
    sim.faults(
        json!([{ "operation": "ManagedInstances_Update", "error_rate": 1.0, "error_status": 503, "max_hits": 3 }]),
    )
    .await;
    run(
        &sim,
        "instance.scale",
        json!({ "instance": mi(WEST, "mi-fog-b"), "storage_gb": 1024 }),
    )
    .await
    .expect("scaled");
    assert_eq!(sim.journal("PATCH", "mi-fog-b").await.len(), 1);
    let retries = sim.pauses(fogbook_activities::arm::PauseReason::Retry);
    assert_eq!(retries.len(), 3);
    assert!(
        retries.iter().all(|d| *d >= std::time::Duration::from_secs(1)),
        "Retry-After honoured: {retries:?}"
    );
}

#[tokio::test]
async fn failover_re_entered_after_its_reconcile_timeout_decides_from_the_roles_at_once() {
    let sim = Sim::start(DEMO).await;
    let input = json!({ "name": "fog-demo", "secondary": mi(WEST, "mi-fog-b"), "reconcile_timeout": "15m" });
    // The intent is committed, then the process dies before the POST.
    let host = TestHost::crashing_at(1);
    let first = fogbook_activities::execute("fog.failover", input.clone(), &ctx(host.clone(), None), &sim.env).await;
    assert!(matches!(first, Err(ActivityError::Store { .. })), "{first:?}");
    let mut progress = host.last().expect("the intent was saved");
    assert_eq!(progress["intent"]["state"], "sending");
    // The run is resumed an hour later: the reconcile window counted from the intent is over.
    progress["intent"]["at"] = json!("2000-01-01T00:00:00Z");
    let before = sim.sim_seconds().await;
    let second = fogbook_activities::execute(
        "fog.failover",
        input,
        &ctx(Arc::new(TestHost::default()), Some(progress)),
        &sim.env,
    )
    .await;
    assert!(matches!(second, Err(ActivityError::Ambiguous { .. })), "{second:?}");
    // It read the roles and stopped: no polling pauses (each would advance the emulator's
    // clock), and no POST.
    assert!(sim.sim_seconds().await - before < 1.0, "it waited for the roles");
    assert!(sim.journal("POST", "/failover").await.is_empty());
}
