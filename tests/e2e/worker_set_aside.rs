//! A worker that cannot drive a run here (the run was started against another ARM
//! endpoint than the worker's) sets it aside instead of picking it up again at once: it
//! looks at it again after a back-off that doubles (twice the poll, then four times…), its
//! claim on PostgreSQL goes back at once (so the run is not shown as driven, and another
//! worker may take it), and a worker whose environment fits then drives it. Before, such a
//! worker picked the run up, refused and picked it up again thousands of times a second,
//! and on PostgreSQL kept its lease.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{code, fixture, stderr, stdout};
use crate::pg_worker_backends::{Backend, Db};

/// An endpoint nothing listens on: neither worker sends it anything (the first refuses the
/// run before driving it; the run's steps make no ARM call).
const RECORDED: &str = "http://127.0.0.1:9";

fn a_run_the_worker_cannot_drive_is_set_aside_with_a_growing_back_off(backend: Backend) {
    let sb = Db::new(backend);
    let out = sb.run(&[
        "--arm-endpoint",
        RECORDED,
        "run",
        &fixture("job.yaml").display().to_string(),
        "--detach",
        "--set",
        &format!("out={}", sb.path("effects.txt").display()),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = stdout(&out).trim().to_owned();

    // The worker talks to the public cloud (no --arm-endpoint): the run is not its.
    let mut worker = sb.spawn(&["worker", "--poll", "100ms", "--name", "elsewhere"], &[]);
    let refusals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let reader = {
        let (refusals, lines) = (refusals.clone(), lines.clone());
        let err = worker.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("not driving this run here") {
                    refusals.lock().unwrap().push(Instant::now());
                }
                lines.lock().unwrap().push(line);
            }
        })
    };
    let limit = Instant::now() + Duration::from_secs(30);
    while refusals.lock().unwrap().len() < 3 {
        assert!(
            Instant::now() < limit,
            "three refusals within 30 s; the worker said: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = refusals.lock().unwrap().clone();
    // Twice the poll after the first refusal, four times after the second: the gaps are at
    // least that (a loaded machine only makes them longer). Picked up again at once, they
    // were microseconds.
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(180) && gaps[1] >= Duration::from_millis(360),
        "the back-off grows: {gaps:?}"
    );
    let said = lines.lock().unwrap().join("\n");
    assert!(
        said.contains(&format!("started against {RECORDED}")) && said.contains("looking at it again later"),
        "the refusal says why and that the worker comes back to it: {said}"
    );
    // Its claim went back: nobody holds the run, whose status is as before the claim.
    assert_eq!(
        sb.text(&format!("SELECT lease_owner FROM runs WHERE id = '{run}'")),
        None
    );
    assert_eq!(sb.run_status(&run), "pending");
    if matches!(backend, Backend::Postgres) {
        let given = sb.count(&format!(
            "SELECT count(*) FROM events WHERE run_id = '{run}' AND kind = 'lease.released'
               AND data LIKE '%not_driven_here%'"
        ));
        assert!(given >= 3, "each claim given back is audited: {given}");
    }
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    let status = worker.wait().unwrap();
    reader.join().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!sb.path("effects.txt").exists(), "the refused run did nothing");

    // A worker whose endpoint is the run's drives it.
    let fits = sb.run(&[
        "--arm-endpoint",
        RECORDED,
        "worker",
        "--poll",
        "50ms",
        "--exit-when-idle",
    ]);
    assert_eq!(code(&fits), 0, "{}", stderr(&fits));
    assert_eq!(sb.run_status(&run), "succeeded");
    assert_eq!(
        sb.lines_of("effects.txt"),
        [format!("{run} before"), format!("{run} after")]
    );
    sb.assert_audit_ok();
}

crate::on_both_backends_e2e!(a_run_the_worker_cannot_drive_is_set_aside_with_a_growing_back_off);
