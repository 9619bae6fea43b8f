#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What only the PostgreSQL store has: writers on several hosts (each its own `Store`, as
//! each process opens its own) keep one audit chain, and a lost connection is an error that
//! names the database (password masked) and is followed, once the server is back, by a
//! new connection.

mod backends;
use backends::{host as open, run as new_run};

use fogbook_state::{StateError, Store};
use fogbook_testpg::TestPostgres;
use serde_json::json;

/// Three "hosts" append to the chain at once, 30 runs with 10 events each: every write
/// succeeds, and the chain is one line (each event's `prev_hash` is the one before it) with
/// every event in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_several_hosts_keep_one_audit_chain() {
    let server = TestPostgres::start();
    let hosts: Vec<Store> = (0..3).map(|_| open(&server)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let store = hosts[i % hosts.len()].clone();
        tasks.spawn(async move {
            let id = format!("r{i}");
            store.create_run(new_run(&id)).await?;
            for n in 0..10 {
                store
                    .record_event(&id, "credential.used", None, json!({ "n": n }), 2_000 + n)
                    .await?;
            }
            Ok::<_, StateError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let report = hosts[0].verify_audit(None).await.unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.runs, 30);
    assert_eq!(report.events, 30 * 11, "each run's creation and its ten events");
    for store in &hosts {
        store.close().await;
    }
}

/// The server restarts (`pg_ctl restart -m immediate`: every connection cut): a write in
/// flight may fail, and its error names the database without the password; the next write
/// connects again and is saved. Once the server is gone for good, a write fails and says
/// which database it could not reach.
#[tokio::test]
async fn a_lost_connection_names_the_database_and_the_next_write_reconnects() {
    let server = TestPostgres::start();
    let store = open(&server);
    store.create_run(new_run("r1")).await.unwrap();
    assert_eq!(store.events("r1").await.unwrap().len(), 1, "the reader is connected");
    server.restart_immediate();
    let named = |e: &StateError| {
        let text = chain(e);
        assert!(text.contains(&format!("127.0.0.1:{}", server.port())), "{text}");
        assert!(!text.contains(server.password()), "the password is masked: {text}");
    };
    let mut saved = false;
    for attempt in 0..2 {
        match store
            .record_event("r1", "credential.used", None, json!({ "attempt": attempt }), 2_000)
            .await
        {
            Ok(()) => {
                saved = true;
                break;
            }
            Err(e) => named(&e),
        }
    }
    assert!(saved, "the write after the failed one reconnected");
    let mut read = None;
    for _ in 0..2 {
        match store.events("r1").await {
            Ok(events) => {
                read = Some(events.len());
                break;
            }
            Err(e) => named(&e),
        }
    }
    assert_eq!(read, Some(2), "the reader reconnects too, and sees the saved write");
    let port = server.port();
    let password = server.password().to_owned();
    drop(server);
    let err = store
        .record_event("r1", "credential.used", None, json!({}), 3_000)
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains(&password), "the password is masked: {text}");
    store.close().await;
}

/// `e` and its sources, as the CLI prints them.
fn chain(e: &StateError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
