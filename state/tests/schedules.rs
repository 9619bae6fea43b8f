#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Schedules in the store: a tick is applied once (compare-and-set on the cursor), a locked
//! resource turns a fire into a recorded skip, and the queue counts up and down.

mod backends;
use backends::{Backend, open_store};
use fogbook_state::{FireDecision, FireOutcome, NewRun, NewSchedule, Overlap};
use serde_json::json;

fn run(id: &str, lock: &str) -> NewRun {
    NewRun {
        locks: vec![lock.to_owned()],
        schedule: Some("s".to_owned()),
        now: 2_000,
        ..backends::run(id)
    }
}

fn schedule(name: &str) -> NewSchedule {
    NewSchedule {
        name: name.to_owned(),
        cron: "0 * * * *".to_owned(),
        tz: "UTC".to_owned(),
        runbook_name: "rb".to_owned(),
        runbook_text: "runbook: rb".to_owned(),
        runbook_sha256: "abc".to_owned(),
        source_path: None,
        params: json!({}),
        overlap: Overlap::Queue,
        catch_up_ms: 3_600_000,
        window: None,
        auto_approve: false,
        created_by: json!("test"),
        now: 1_000,
        fleet: None,
    }
}

async fn a_tick_applies_once_and_records_every_decision(backend: Backend) {
    let (_db, store) = open_store(backend);
    store.add_schedule(schedule("s")).await.unwrap();
    let fire = FireDecision::Fire {
        fire_at: 1_500,
        run: Box::new(run("r1", "fog/a")),
        from_queue: false,
    };
    let got = store
        .apply_schedule_tick("s", 0, 1_500, vec![fire], 2_000)
        .await
        .unwrap();
    assert_eq!(
        got,
        Some(vec![FireOutcome::Fired {
            run_id: "r1".to_owned()
        }])
    );
    let s = store.schedule("s").await.unwrap();
    assert_eq!((s.cursor_at, s.active_run.as_deref()), (1_500, Some("r1")));

    // A second worker that read the same version loses the race and changes nothing.
    let late = FireDecision::Fire {
        fire_at: 1_500,
        run: Box::new(run("r2", "fog/b")),
        from_queue: false,
    };
    assert_eq!(
        store
            .apply_schedule_tick("s", 0, 1_500, vec![late], 2_000)
            .await
            .unwrap(),
        None
    );
    assert!(store.load_run("r2").await.is_err());

    // While r1 runs, a fire is queued; a fire on the locked key is skipped naming r1.
    let queued = FireDecision::Queue { fire_at: 2_500 };
    let locked = FireDecision::Fire {
        fire_at: 2_600,
        run: Box::new(run("r3", "fog/a")),
        from_queue: false,
    };
    let got = store
        .apply_schedule_tick("s", 1, 2_600, vec![queued, locked], 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got[0], FireOutcome::Queued);
    assert!(
        matches!(&got[1], FireOutcome::Skipped { reason } if reason.contains("r1")),
        "{got:?}"
    );
    assert!(store.load_run("r3").await.is_err(), "the half-made run was rolled back");
    assert_eq!(store.schedule("s").await.unwrap().queued, 1);

    // The queued fire becomes a run.
    let drained = FireDecision::Fire {
        fire_at: 4_000,
        run: Box::new(run("r4", "fog/c")),
        from_queue: true,
    };
    store
        .apply_schedule_tick("s", 2, 2_600, vec![drained], 4_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.schedule("s").await.unwrap().queued, 0);
    // Another worker that saw the same queued fire (same version, same cursor) gets nothing.
    let twice = FireDecision::Fire {
        fire_at: 4_000,
        run: Box::new(run("r5", "fog/d")),
        from_queue: true,
    };
    assert_eq!(
        store
            .apply_schedule_tick("s", 2, 2_600, vec![twice], 4_000)
            .await
            .unwrap(),
        None
    );
    assert!(store.load_run("r5").await.is_err(), "a queued fire starts one run only");

    let kinds: Vec<String> = store
        .events("schedule:s")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "schedule.created",
            "schedule.fired",
            "schedule.queued",
            "schedule.skipped",
            "schedule.fired"
        ]
    );
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    assert_eq!(report.runs, 3, "two runs and one schedule");
}

on_both_backends!(a_tick_applies_once_and_records_every_decision,);
