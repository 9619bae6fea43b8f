//! Attack on issue 17's "commit before effect" and "never twice" on PostgreSQL: the
//! connection is dropped (closed by a proxy, not black-holed) **in the middle of a COMMIT**,
//! after the COMMIT reached the server and before its answer reached fogbook. The server
//! commits; the driver sees its connection end and cannot know whether the transaction was
//! saved: the ambiguous commit. In each trial every 5th (7th, 11th) COMMIT of the drivers is
//! cut, for a whole change-primary-region on the emulator; each time a driver stops, the
//! same command or `resume` carries the run on (through the same proxy). Each run must end
//! as an uninterrupted one does: succeeded, with the same final estate, each Microsoft.Sql
//! mutation applied once and in order (the emulator's journal), and an audit trail that
//! verifies. That holds also when the cut COMMIT saved a failover's intent: the driver sent
//! no POST and saved the intent again as not sent, so the next driver posts once (before,
//! the run stopped there as ambiguous). Another test cuts exactly that COMMIT, and the last
//! one cuts the COMMIT of a `store copy` into PostgreSQL.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fogbook_testpg::TestPostgres;

use crate::common::{Sandbox, code, stderr, stdout};
use crate::pg_backend::{Backend, Db};
use serde_json::Value;

use crate::seed_runbooks::{Sim, engine, sql_mutations, start_sim, summary};

/// The client's messages on one connection, read as they pass, to find its COMMITs: a
/// simple-query `COMMIT`, or (the store pipelines its COMMIT as a prepared statement) a
/// `Bind` of the statement a `Parse` of `COMMIT` named. Each COMMIT found says whether its
/// transaction sent `marker` (in a statement's text or its parameters).
#[derive(Default)]
struct Messages {
    /// Bytes of a message not complete yet.
    pending: Vec<u8>,
    /// The startup message (no type byte) was read.
    started: bool,
    /// The name of the prepared statement that is `COMMIT`.
    commit: Option<Vec<u8>>,
    /// The bytes looked for, if any.
    marker: Option<&'static [u8]>,
    /// A message since the last COMMIT held `marker`.
    marked: bool,
}

impl Messages {
    /// Reads `chunk`; returns the COMMITs it completed, each with whether its transaction
    /// sent the marker.
    fn commits_in(&mut self, chunk: &[u8]) -> Vec<bool> {
        self.pending.extend_from_slice(chunk);
        let mut found = Vec::new();
        loop {
            let tagged = usize::from(self.started);
            let Some(len) = self.pending.get(tagged..tagged + 4) else {
                break;
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let end = tagged + len;
            if self.pending.len() < end {
                break;
            }
            let message: Vec<u8> = self.pending.drain(..end).collect();
            if !self.started {
                self.started = true;
                continue;
            }
            let body = &message[5..];
            if let Some(marker) = self.marker
                && body.windows(marker.len()).any(|w| w == marker)
            {
                self.marked = true;
            }
            let mut fields = body.split(|b| *b == 0);
            let mut commit = false;
            match message[0] {
                b'Q' if body == b"COMMIT\0" => commit = true,
                b'P' => {
                    let name = fields.next().unwrap_or_default().to_vec();
                    if fields.next() == Some(b"COMMIT".as_slice()) {
                        self.commit = Some(name);
                    }
                }
                b'B' => {
                    let _portal = fields.next();
                    let stmt = fields.next().unwrap_or_default();
                    if self.commit.as_deref() == Some(stmt) {
                        commit = true;
                    }
                }
                _ => {}
            }
            if commit {
                found.push(std::mem::take(&mut self.marked));
            }
        }
        found
    }
}

/// Which COMMITs the proxy cuts.
#[derive(Clone, Copy)]
enum Cut {
    /// Every `every`th COMMIT the clients send (counted over all connections), `at_most`
    /// times: cuts at a fixed period can meet the same write of every driver that resumes
    /// (each makes the same commits before it), which real failures do not.
    Every { every: u64, at_most: u64 },
    /// The first COMMIT of a transaction that sent these bytes, once.
    FirstWith(&'static [u8]),
}
/// Forwards connections to a PostgreSQL port; at each COMMIT `cut` chooses, forwards that
/// COMMIT, then closes the server side for writing (the server reads the COMMIT, commits,
/// then sees the end) and drops the client's connection without forwarding the answer.
struct CommitCutter {
    port: u16,
    commits: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
}

impl CommitCutter {
    fn start(target: u16, cut: Cut) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let commits = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let (c, k) = (commits.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (cut, plan) = (Arc::new(AtomicBool::new(false)), cut);
                let (from, to, flag) = (server.try_clone().unwrap(), client.try_clone().unwrap(), cut.clone());
                std::thread::spawn(move || answers(from, to, &flag));
                let (commits, cuts) = (c.clone(), k.clone());
                std::thread::spawn(move || queries(client, server, &cut, &commits, &cuts, plan));
            }
        });
        Self { port, commits, cuts }
    }

    fn url(&self, url: &str, target: u16) -> String {
        url.replacen(&format!("127.0.0.1:{target}/"), &format!("127.0.0.1:{}/", self.port), 1)
    }
}

/// Client to server: counts the COMMITs and cuts the connection at the chosen ones.
fn queries(
    mut client: TcpStream,
    mut server: TcpStream,
    cut: &AtomicBool,
    commits: &AtomicU64,
    cuts: &AtomicU64,
    plan: Cut,
) {
    let mut buf = [0u8; 64 * 1024];
    let mut messages = Messages {
        marker: match plan {
            Cut::FirstWith(marker) => Some(marker),
            Cut::Every { .. } => None,
        },
        ..Messages::default()
    };
    loop {
        let n = client.read(&mut buf).unwrap_or(0);
        if n == 0 {
            let _ = server.shutdown(Shutdown::Write);
            return;
        }
        let chunk = &buf[..n];
        let mut cutting = false;
        for marked in messages.commits_in(chunk) {
            let nth = commits.fetch_add(1, Ordering::SeqCst) + 1;
            cutting |= match plan {
                Cut::Every { every, at_most } => nth.is_multiple_of(every) && cuts.load(Ordering::SeqCst) < at_most,
                // Once over all connections: the first cut decides.
                Cut::FirstWith(_) => marked && cuts.load(Ordering::SeqCst) == 0,
            };
        }
        if cutting {
            // No answer goes back from here on; the COMMIT itself goes through.
            cut.store(true, Ordering::SeqCst);
        }
        if server.write_all(chunk).is_err() {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if cutting {
            cuts.fetch_add(1, Ordering::SeqCst);
            let _ = server.shutdown(Shutdown::Write);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Server to client, until the connection is cut.
fn answers(mut server: TcpStream, mut client: TcpStream, cut: &AtomicBool) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = server.read(&mut buf).unwrap_or(0);
        if n == 0 || cut.load(Ordering::SeqCst) || client.write_all(&buf[..n]).is_err() {
            let _ = client.shutdown(Shutdown::Write);
            return;
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The change-primary-region runbook with a failover's reconcile timeout of 20 s (3 min in
/// the shipped file), written into `dir`: a failover whose intent was saved and whose POST
/// never went out (the ambiguous stop a cut intent COMMIT led to before) ends within the
/// test's time.
fn runbook(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("runbooks/change-primary-region.yaml")).unwrap();
    assert!(
        text.contains("reconcile_timeout: 3m"),
        "the runbook's failovers changed"
    );
    let path = dir.join("change-primary-region.yaml");
    std::fs::write(&path, text.replace("reconcile_timeout: 3m", "reconcile_timeout: 20s")).unwrap();
    path
}

fn run_args(runbook: &Path) -> Vec<String> {
    vec![
        "run".to_owned(),
        runbook.display().to_string(),
        "--params".to_owned(),
        root().join("examples/change-primary-region.yaml").display().to_string(),
        "--set".to_owned(),
        format!(
            "admin_password_file={}",
            root().join("examples/sim-admin-password.txt").display()
        ),
        "--auto-approve".to_owned(),
    ]
}

/// `fogbook ARGS` on the database `url` (through the cutter), against the emulator.
fn drive(db: &Db, sim: &Sim, url: &str, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let [endpoint, token] = sim.env();
    db.run_env(
        &args,
        &[("FOGBOOK_DB", url), endpoint, token, ("FOGBOOK_LEASE_TTL", "2s")],
    )
}

/// One run of the procedure with every `every`th COMMIT of its drivers cut; each stopped
/// driver followed by the same command (or `resume`) until the run ends.
fn trial(server: &TestPostgres, every: u64, base_estate: &Value, base_sql: &[String]) {
    let db = Db::new(Backend::Postgres, Some(server), &format!("commit_cut_{every}"));
    let direct = db.url().unwrap().to_owned();
    let cutter = CommitCutter::start(server.port(), Cut::Every { every, at_most: 12 });
    let cut_url = cutter.url(&direct, server.port());
    let sim = start_sim(&root().join("examples/estate.yaml"), None);
    let args = run_args(&runbook(db.sb.dir.path()));

    let mut out = drive(&db, &sim, &cut_url, &args);
    let mut stops = 0;
    // What each stopped driver said, for the messages of the assertions.
    let mut history: Vec<String> = Vec::new();
    while code(&out) != 0 && code(&out) != 1 {
        stops += 1;
        history.push(format!("stop {stops} (exit {}): {}", code(&out), stderr(&out)));
        let err = stderr(&out);
        assert!(stops < 60, "the run never ended: {history:#?}");
        assert!(
            err.contains("lost the connection to PostgreSQL")
                || err.contains("connection closed")
                // A lease renewal whose COMMIT was cut: the driver fences itself (exit 4,
                // nothing sent past its deadline), as a frozen one does.
                || (code(&out) == 4 && (err.contains("fenced") || err.contains("lost the lease"))),
            "the driver stopped for another reason: {history:#?}"
        );
        // The same command again: a cut before the run was created starts it again. A cut
        // COMMIT that saved the run's end (the driver told it was not) ends it too.
        if db.query("SELECT id FROM runs", &[]).is_empty() {
            out = drive(&db, &sim, &cut_url, &args);
        } else if ["succeeded", "failed"].contains(&db.run_status(&db.last_run_id()).as_str()) {
            break;
        } else {
            out = drive(&db, &sim, &cut_url, &["resume".to_owned(), db.last_run_id()]);
        }
    }
    let run = db.last_run_id();
    assert_eq!(db.query("SELECT id FROM runs", &[]).len(), 1, "one run");
    let (cuts, commits) = (
        cutter.cuts.load(Ordering::SeqCst),
        cutter.commits.load(Ordering::SeqCst),
    );
    assert!(cuts >= 3, "the attack happened: {cuts} cuts in {commits} commits");
    let journal = sim.journal();
    for e in &journal {
        assert_eq!(e["applied"], true, "a mutation was refused: {e}");
    }
    let sql = sql_mutations(&journal);
    // A cut COMMIT of a failover's intent no longer stops the run: its driver sent no POST
    // and saved the intent again as not sent, so the next driver posts once.
    let shown = stdout(&drive(&db, &sim, &direct, &["status".to_owned(), run.clone()]));
    assert_eq!(db.run_status(&run), "succeeded", "{shown}\n{history:#?}");
    assert_eq!(
        &summary(&sim.state()),
        base_estate,
        "the final estate equals the uninterrupted one"
    );
    assert_eq!(sql, base_sql, "each Microsoft.Sql mutation once, in order");
    db.assert_audit_ok();
}

/// What an uninterrupted run does (on its own emulator and store): the final estate and the
/// Microsoft.Sql mutations, in order.
fn baseline() -> (Value, Vec<String>) {
    let base_sb = Sandbox::new();
    let base_sim = start_sim(&root().join("examples/estate.yaml"), None);
    let out = engine(&base_sb, &base_sim, &run_args(&runbook(base_sb.dir.path())), None);
    assert_eq!(code(&out), 0, "baseline: {}", stderr(&out));
    (summary(&base_sim.state()), sql_mutations(&base_sim.journal()))
}

#[test]
fn connections_dropped_inside_commits_repeat_no_effect() {
    let (base_estate, base_sql) = baseline();
    let server = TestPostgres::start();
    // Where the cuts fall depends on the cadence (lease renewals interleave); each run
    // must end succeeded whatever they hit.
    for every in [5, 7, 11] {
        trial(&server, every, &base_estate, &base_sql);
    }
}

/// The COMMIT that saves the first failover's intent is cut: the server commits it, the
/// driver cannot know whether it was saved (and says so). The driver knows it sent no POST:
/// it sends none, saves the intent again as `not_sent` (on a new connection) and stops;
/// `resume` reads the roles and posts once. Before, the intent alone was saved and the run stopped as ambiguous
/// after `reconcile_timeout`.
#[test]
fn a_cut_commit_of_a_failover_intent_ends_with_one_post_and_a_succeeded_run() {
    let (base_estate, base_sql) = baseline();
    let server = TestPostgres::start();
    let db = Db::new(Backend::Postgres, Some(&server), "intent_cut");
    let direct = db.url().unwrap().to_owned();
    // The intent as the store binds it (compact JSON, in the progress and its audit event).
    let cutter = CommitCutter::start(server.port(), Cut::FirstWith(br#""state":"sending""#));
    let cut_url = cutter.url(&direct, server.port());
    let sim = start_sim(&root().join("examples/estate.yaml"), None);

    let out = drive(&db, &sim, &cut_url, &run_args(&runbook(db.sb.dir.path())));
    assert_eq!(cutter.cuts.load(Ordering::SeqCst), 1, "{}", stderr(&out));
    assert_ne!(code(&out), 0, "the driver stops: {}", stderr(&out));
    assert!(
        stderr(&out).contains("lost the connection to PostgreSQL") || stderr(&out).contains("connection closed"),
        "{}",
        stderr(&out)
    );
    // The server applied that COMMIT: the driver does not say nothing was saved.
    assert!(
        stderr(&out).contains("cannot tell whether the progress of step `failover-to-secondary`")
            && stderr(&out).contains("the change may or may not have been saved")
            && !stderr(&out).contains("nothing of it is saved")
            && !stderr(&out).contains("nothing of the change in flight is saved")
            && !stderr(&out).contains("was not saved"),
        "{}",
        stderr(&out)
    );
    let failovers = |sim: &Sim| {
        sql_mutations(&sim.journal())
            .into_iter()
            .filter(|m| m.starts_with("POST ") && m.ends_with("/failover"))
            .collect::<Vec<_>>()
    };
    assert!(failovers(&sim).is_empty(), "no POST after the failed save");

    let run = db.last_run_id();
    let out = drive(&db, &sim, &cut_url, &["resume".to_owned(), run.clone()]);
    let shown = stdout(&drive(&db, &sim, &direct, &["status".to_owned(), run.clone()]));
    assert_eq!(code(&out), 0, "resume: {}\n{shown}", stderr(&out));
    assert_eq!(db.run_status(&run), "succeeded", "{shown}");
    assert_eq!(
        &summary(&sim.state()),
        &base_estate,
        "the final estate equals the uninterrupted one"
    );
    assert_eq!(
        sql_mutations(&sim.journal()),
        base_sql,
        "each Microsoft.Sql mutation once, in order"
    );
    // Each failover POST applied once (the baseline sends each group's once).
    let posts = failovers(&sim);
    assert!(!posts.is_empty(), "{posts:?}");
    for e in sim.journal() {
        assert_eq!(e["applied"], true, "a mutation was refused: {e}");
    }
    db.assert_audit_ok();
    // The trail shows the intent that was not sent, then the one that was.
    let history = stdout(&drive(&db, &sim, &direct, &["history".to_owned(), run]));
    let first = history
        .find("failover intent not_sent")
        .unwrap_or_else(|| panic!("{history}"));
    assert!(history[first..].contains("failover intent sending"), "{history}");
}

/// `store copy` into PostgreSQL whose one COMMIT is cut after it reached the server: the
/// server commits the copy, and `store copy` learns that from the target (read again under
/// its write lock) instead of saying "nothing was copied" and taking the source's mark off,
/// which would leave two stores free to drive the same runs: it succeeds, the source is
/// marked as moved (it refuses to drive runs), and the copy verifies.
#[test]
fn a_store_copy_whose_commit_goes_unanswered_learns_from_the_target_that_it_was_made() {
    let server = TestPostgres::start();
    let sb = Sandbox::new();
    let fixture = crate::common::fixture("long-wait.yaml").display().to_string();
    let out = sb.run(&["run", &fixture, "--set", "duration=10ms"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = sb.last_run_id();
    let direct = server.create_database("copy_cut");
    // The restore is the only transaction that sends the run's id.
    let marker: &'static [u8] = Box::leak(run.clone().into_bytes().into_boxed_slice());
    let cutter = CommitCutter::start(server.port(), Cut::FirstWith(marker));
    let cut_url = cutter.url(&direct, server.port());
    let source = format!("sqlite:{}", sb.db().display());

    let out = sb.run(&["store", "copy", "--from", &source, "--to", &cut_url]);
    assert_eq!(cutter.cuts.load(Ordering::SeqCst), 1, "{}", stderr(&out));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("the answer to the copy's COMMIT was lost, but"),
        "{}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("nothing was copied"), "{}", stderr(&out));
    assert!(stderr(&out).contains("is marked as moved to"), "{}", stderr(&out));
    // The source refuses to drive runs; the copy holds the run and verifies.
    let refused = sb.run(&["resume", &run]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    let copied = crate::postgres::run(&sb, &direct, &["status", &run]);
    assert_eq!(code(&copied), 0, "{}", stderr(&copied));
    let verified = crate::postgres::run(&sb, &direct, &["audit", "verify"]);
    assert_eq!(code(&verified), 0, "{}{}", stdout(&verified), stderr(&verified));
}
