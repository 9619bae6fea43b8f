//! `fogbook sim serve` runs the emulator as its own process: it prints its URL, writes the
//! port file, serves ARM requests, and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Sandbox, code, http_get as get, stderr};

#[test]
fn sim_serve_prints_its_url_serves_arm_and_stops_on_sigterm() {
    let sb = Sandbox::new();
    let estate = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/estate.yaml");
    let port_file = sb.path("sim.url");
    let mut child = sb.spawn(
        &[
            "sim",
            "serve",
            "--estate",
            &estate.display().to_string(),
            "--port-file",
            &port_file.display().to_string(),
        ],
        &[],
    );
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let url = first_line.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // The port file is written before the URL is printed.
    assert_eq!(std::fs::read_to_string(&port_file).unwrap().trim(), url);

    let (status, body) = get(&url, "/_sim/state", true);
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(
        &url,
        "/subscriptions/x/resourceGroups/y/providers/Microsoft.Sql/managedInstances?api-version=2025-01-01",
        false,
    );
    assert_eq!(status, 401, "no bearer token: {body}");
    assert!(body.contains("\"code\""), "an ARM error body: {body}");

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn sim_serve_refuses_a_bad_estate() {
    let sb = Sandbox::new();
    let bad = sb.write("estate.yaml", "subscriptions: [ { id: x, resource_groups: 3 } ]\n");
    let out = sb.run(&["sim", "serve", "--estate", &bad.display().to_string()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("error"), "{}", stderr(&out));
}
