//! Webhooks: the `notify` activity and the engine's own events (windows, limits, outcome).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::common::{Sandbox, code, fixture, stderr};

/// A loopback HTTP server that answers 204 to every POST and keeps the JSON bodies.
pub(crate) fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            if let Ok(v) = serde_json::from_slice(&body) {
                sink.lock().unwrap().push(v);
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn windows_limits_and_outcome_are_posted_to_the_webhook() {
    let sb = Sandbox::new();
    let (url, got) = webhook();
    let out = sb.run(&[
        "--lease-ttl",
        "600ms",
        "run",
        &fixture("notified.yaml").display().to_string(),
        "--set",
        &format!("webhook={url}"),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "starting",
            "window_opened",
            "max_unprotected_exceeded",
            "window_closed",
            "run_succeeded"
        ],
        "{:?}",
        got.lock().unwrap()
    );
    let run = sb.last_run_id();
    assert_eq!(
        got.lock().unwrap()[0]["data"]["note"],
        run.as_str(),
        "templates resolve in notify data"
    );
    let exceeded: i64 = sb
        .sql()
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'window.limit_exceeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(exceeded, 1, "reported once, audited");
    assert!(stderr(&out).contains("has been open"), "{}", stderr(&out));
}
