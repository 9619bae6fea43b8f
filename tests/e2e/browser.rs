//! Browser tests of `fogbook serve` and of the HTML report (issue 16), in headless Chromium
//! driven through chromedriver's WebDriver HTTP API on 127.0.0.1.
//!
//! Chromium and chromedriver are the Debian packages `chromium` and `chromium-driver`;
//! `scripts/test` installs them where missing. A test that cannot find them fails (it does
//! not skip) and says so. Screenshots are written under `target/browser-artifacts/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Sandbox, code, stderr, stdout};
use crate::report_html::{check_html, finished_rehearsal, human, rehearsal_args};

const TOKEN: &str = "s3cret-token-for-the-test";

fn find_program(env: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "{env}={} does not exist: run the tests with scripts/test, which installs chromium and chromium-driver",
            p.display()
        );
        return p;
    }
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = Path::new(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "cannot find {} (set {env} or install the Debian packages chromium and chromium-driver): \
         run the tests with scripts/test, which installs them where missing",
        names.join(" or ")
    );
}

fn chromium() -> PathBuf {
    find_program("FOGBOOK_CHROMIUM", &["chromium", "chromium-browser"])
}

fn chromedriver() -> PathBuf {
    find_program("FOGBOOK_CHROMEDRIVER", &["chromedriver"])
}

const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Where screenshots and PDFs go: `target/browser-artifacts/`.
fn artifacts() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fogbook"));
    let dir = bin
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("browser-artifacts"))
        .expect("target directory");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request on loopback: (status, headers, body). The body is read by its
/// `Content-Length` (chromedriver keeps connections open), or chunk by chunk, or to the end.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    // A hung peer fails the test with a message instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the response headers");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        while raw.len() < head_end + len {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the whole body");
            raw.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8_lossy(&raw[head_end..head_end + len]).into_owned();
        return (status, head, body);
    }
    let chunked = header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    loop {
        if chunked && raw[head_end..].windows(5).any(|w| w == b"0\r\n\r\n") {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if chunked { dechunk(&rest) } else { rest };
    (status, head, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A headless Chromium session through chromedriver.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let (chrome, driver_bin) = (chromium(), chromedriver());
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run the tests with scripts/test",
                    driver_bin.display()
                )
            });
        let profile = tempfile::tempdir().unwrap();
        let mut b = Self {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let start = Instant::now();
        loop {
            if TcpStream::connect(&b.addr).is_ok() {
                let (_, _, body) = http(&b.addr, "GET", "/status", &[], "");
                if serde_json::from_str::<Value>(&body).is_ok_and(|v| v["value"]["ready"] == true) {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", b._profile.path().display()));
        args.push("--window-size=1280,1000".to_owned());
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chrome.display().to_string(), "args": args }
        }}});
        let (status, _, body) = http(
            &b.addr,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            &caps.to_string(),
        );
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(status, 200, "cannot start a Chromium session: {body}");
        b.session = v["value"]["sessionId"].as_str().expect("session id").to_owned();
        b
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let (status, _, text) = http(
            &self.addr,
            method,
            &path,
            &[("Content-Type", "application/json")],
            &body,
        );
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "WebDriver {method} {path} failed: {text}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    fn element(&self, css: &str) -> String {
        let v = self.call("POST", "/element", json!({ "using": "css selector", "value": css }));
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{css}`: {v}"))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.element(css);
        self.call("POST", &format!("/element/{el}/value"), json!({ "text": text }));
    }

    fn click(&self, css: &str) {
        let el = self.element(css);
        self.call("POST", &format!("/element/{el}/click"), json!({}));
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", "/screenshot", Value::Null);
        let png = base64_decode(b64.as_str().expect("base64 PNG"));
        let path = artifacts().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits until the page satisfies `pred` (a condition in the page, not a time).
    fn wait_until(&self, what: &str, mut pred: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !pred(self) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for the page: {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(&self.addr, "DELETE", &format!("/session/{}", self.session), &[], "");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

/// A `fogbook serve` process we started; killed and reaped on drop.
struct Server {
    child: Child,
    url: String,
    addr: String,
}

impl Server {
    fn start(sb: &Sandbox, allow_actions: bool) -> Self {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        if allow_actions {
            args.push("--allow-actions");
        }
        let mut child = sb.spawn(&args, &[("FOGBOOK_SERVE_TOKEN", TOKEN)]);
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "serve printed `{url}`");
        let addr = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        Self { child, url, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process we started, killed and reaped when the test ends (also when it fails).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_count(sb: &Sandbox) -> i64 {
    sb.sql()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap()
}

fn newest_run(sb: &Sandbox) -> String {
    sb.last_run_id()
}

/// Whether the step has started and is waiting for its approval.
fn waits_for(sb: &Sandbox, run: &str, step: &str) -> bool {
    sb.sql()
        .query_row(
            "SELECT count(*) FROM steps WHERE run_id = ?1 AND step_id = ?2 AND started_at IS NOT NULL \
             AND status NOT IN ('completed', 'failed', 'skipped') \
             AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = ?1 AND a.step_id = ?2)",
            [run, step],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

/// How many steps the shipped change-primary-region runbook has (one bar each).
fn shipped_steps() -> i64 {
    let n = crate::seed_runbooks::runbook_steps("change-primary-region", &[]).len();
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn page_int(b: &Browser, script: &str) -> i64 {
    b.js(script).as_i64().unwrap_or(-1)
}

#[test]
fn browser_serve_shows_runs_live_timeline_and_takes_an_approval_issue_16() {
    let sb = Sandbox::new();
    let finished = finished_rehearsal(&sb);
    let server = Server::start(&sb, true);
    let browser = Browser::start();

    // The runs list, open before the second rehearsal starts, shows it without a reload.
    browser.goto(&server.url);
    browser.js("window.__fogbookMarker = 'kept'; return 1;");
    assert_eq!(
        page_int(&browser, "return document.querySelectorAll('tr.run').length"),
        1
    );
    let args = rehearsal_args(&["--wait"]);
    let _running = KillOnDrop(
        sb.cmd()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    sb.wait_for("the second run", Duration::from_secs(60), |sb| run_count(sb) == 2);
    let live = newest_run(&sb);
    browser.wait_until("both runs listed", |b| {
        page_int(b, "return document.querySelectorAll('tr.run').length") == 2
    });
    assert_eq!(
        browser.js("return window.__fogbookMarker"),
        json!("kept"),
        "the list updated by reloading"
    );
    let status_of = |b: &Browser, run: &str| {
        b.js(&format!("var r = document.querySelector('tr.run[data-run=\"{run}\"]'); return r ? r.getAttribute('data-status') : null"))
    };
    assert_eq!(status_of(&browser, &finished), json!("succeeded"));

    // The running rehearsal stops at its first approval; the list shows it waiting.
    sb.wait_for("the first approval", Duration::from_secs(120), |sb| {
        waits_for(sb, &live, "approve-failover-to-secondary")
    });
    browser.wait_until("the pending approval in the list", |b| {
        page_int(b, "return document.querySelectorAll('tr.pending').length") == 1
    });
    let st = status_of(&browser, &live);
    assert!(
        st == json!("waiting") || st == json!("running"),
        "running rehearsal shown as {st}"
    );
    browser.screenshot("runs-list.png");

    // Its run page updates without a reload while another operator approves from the CLI.
    browser.goto(&format!("{}runs/{live}", server.url));
    browser.js("window.__fogbookMarker = 'kept'; return 1;");
    let bars_before = page_int(&browser, "return document.querySelectorAll('rect.bar').length");
    // One bar per step started by the first approval (the runbook's name checks, its
    // reads, the approval itself), as the store records them.
    let started: i64 = sb
        .sql()
        .query_row(
            "SELECT count(*) FROM steps WHERE run_id = ?1 AND status <> 'pending'",
            [&live],
            |r| r.get(0),
        )
        .unwrap();
    assert!(started >= 2, "steps have started at the first approval: {started}");
    assert_eq!(bars_before, started, "one bar per started step at the first approval");
    let out = sb.run(&[
        "approve",
        &live,
        "approve-failover-to-secondary",
        "--by",
        "cli-operator",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    sb.wait_for("the confirm approval", Duration::from_secs(120), |sb| {
        waits_for(sb, &live, "confirm")
    });
    browser.wait_until("the timeline to grow to the confirm step", |b| {
        page_int(b, "return document.querySelectorAll('rect.bar').length") == started + 3
            && page_int(b, "return document.querySelectorAll('form.approval').length") == 1
    });
    assert_eq!(
        browser.js("return window.__fogbookMarker"),
        json!("kept"),
        "the run page reloaded"
    );

    // Approve `confirm` in the page, as a named operator with the access token.
    browser.type_into("form.approval input[name=name]", "Ada Lovelace");
    browser.type_into("form.approval input[name=token]", TOKEN);
    browser.click("form.approval button.approve");
    let approved_in_db = |sb: &Sandbox| -> bool {
        sb.sql()
            .query_row(
                "SELECT count(*) FROM approvals WHERE run_id = ?1 AND step_id = 'confirm'",
                [&live],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            == 1
    };
    browser.wait_until("the approval to be recorded", |b| {
        let problem = b.js("var p = document.getElementById('problem'); return p ? document.body.innerText : null");
        assert!(problem.is_null(), "the page refused the approval: {problem}");
        approved_in_db(&sb)
    });
    sb.wait_for("the run to move past confirm", Duration::from_secs(120), |sb| {
        waits_for(sb, &live, "approve-failover-to-new-primary")
    });
    let hist = sb.run(&["history", &live, "--format", "json"]);
    let events: Value = serde_json::from_slice(&hist.stdout).unwrap();
    let approved = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "step.approved" && e["step_id"] == "confirm")
        .expect("confirm approved in history");
    assert_eq!(approved["data"]["by"], "Ada Lovelace");
    assert_eq!(approved["data"]["comment"], "via the web (fogbook serve)");
    assert!(stdout(&sb.run(&["history", &live])).contains("Ada Lovelace"));
    assert_eq!(
        sb.step_status(&live, "delete-group"),
        "completed",
        "the approval moved the run on"
    );
    // The page never shows the token.
    let html = browser.js("return document.documentElement.outerHTML");
    assert!(!html.as_str().unwrap().contains(TOKEN), "the token is rendered");

    // The finished run's page: one bar per step, the window band with its duration.
    browser.goto(&format!("{}runs/{finished}", server.url));
    assert_eq!(
        page_int(&browser, "return document.querySelectorAll('rect.bar').length"),
        shipped_steps()
    );
    assert_eq!(
        page_int(&browser, "return document.querySelectorAll('g.step').length"),
        shipped_steps()
    );
    let ms: i64 = sb
        .sql()
        .query_row(
            "SELECT closed_at - opened_at FROM windows WHERE run_id = ?1 AND kind = 'unprotected'",
            [&finished],
            |r| r.get(0),
        )
        .unwrap();
    let label = browser.js("return document.querySelector('g.window[data-kind=unprotected] text').textContent");
    let expected = format!("unprotected {}", human(ms));
    assert!(
        label.as_str().unwrap().contains(&expected),
        "band `{label}` lacks `{expected}`"
    );
    browser.screenshot("run-page.png");

    // The HTML report of the same run, opened from a file.
    let report = sb.path("report.html");
    let out = sb.run(&["report", &finished, "--html", report.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    browser.goto(&format!("file://{}", report.display()));
    assert_eq!(
        page_int(&browser, "return document.querySelectorAll('rect.bar').length"),
        shipped_steps()
    );
    browser.screenshot("html-report.png");
}

#[test]
fn browser_read_only_serve_has_no_buttons_and_refuses_forged_posts_issue_16() {
    let sb = Sandbox::new();
    // A rehearsal that stops at its first approval (exit 3) and waits there.
    let args = rehearsal_args(&[]);
    let out = sb.cmd().args(&args).output().unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let run = sb.last_run_id();
    let step = "approve-failover-to-secondary";
    let form = format!("step={step}&name=Mallory&token={TOKEN}&decision=approve");
    let approvals = |sb: &Sandbox| -> i64 {
        sb.sql()
            .query_row("SELECT count(*) FROM approvals", [], |r| r.get(0))
            .unwrap()
    };
    {
        let server = Server::start(&sb, false);
        let browser = Browser::start();
        browser.goto(&format!("{}runs/{run}", server.url));
        assert_eq!(
            page_int(&browser, "return document.querySelectorAll('tr.pending').length"),
            1
        );
        assert_eq!(
            page_int(
                &browser,
                "return document.querySelectorAll('button, form[method=post]').length"
            ),
            0
        );
        browser.goto(&server.url);
        assert_eq!(
            page_int(
                &browser,
                "return document.querySelectorAll('button.approve, button.reject, form[method=post]').length"
            ),
            0
        );
        // A forged POST, even with the right token, is refused by a read-only server.
        let (status, _, body) = http(
            &server.addr,
            "POST",
            &format!("/runs/{run}/decide"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form,
        );
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("read-only"), "{body}");
    }
    {
        // With actions allowed: a cross-site form and a wrong token are refused too.
        let server = Server::start(&sb, true);
        let cross = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ];
        let (status, _, body) = http(&server.addr, "POST", &format!("/runs/{run}/decide"), &cross, &form);
        assert_eq!(status, 403, "cross-site POST: {body}");
        let wrong = form.replace(TOKEN, "guessed-token-123");
        let (status, _, body) = http(
            &server.addr,
            "POST",
            &format!("/runs/{run}/decide"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &wrong,
        );
        assert_eq!(status, 403, "wrong token: {body}");
        // Another Host (DNS rebinding) is refused before anything is read.
        let mut s = TcpStream::connect(&server.addr).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 421"), "{text}");
        drop(s);
    }
    assert_eq!(approvals(&sb), 0, "a refused POST approved something");
    assert!(!stdout(&sb.run(&["history", &run])).contains("Mallory"));
    assert_eq!(sb.step_status(&run, step), "running");
}

#[test]
fn browser_prints_the_html_report_to_pdf_issue_16() {
    let sb = Sandbox::new();
    let run = finished_rehearsal(&sb);
    let report = sb.path("report.html");
    let out = sb.run(&["report", &run, "--html", report.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    check_html(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let pdf = artifacts().join("html-report.pdf");
    let _ = std::fs::remove_file(&pdf);
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--no-pdf-header-footer")
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", report.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium --print-to-pdf failed: {}", stderr(&out));
    let bytes = std::fs::read(&pdf).expect("the PDF was written");
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    let text = String::from_utf8_lossy(&bytes);
    let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
    // A run of every step of the runbook, with its 60-event audit trail: a few landscape pages, not one per row.
    assert!((2..=10).contains(&pages), "{pages} pages");
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn get(server: &Server, path: &str) -> String {
    let (status, _, body) = http(&server.addr, "GET", path, &[], "");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn listed_runs(html: &str) -> usize {
    html.matches("<tr class=\"run\"").count()
}

#[test]
fn serve_lists_a_stalled_run_filters_and_schedules_issue_16() {
    let sb = Sandbox::new();
    let finished = finished_rehearsal(&sb);
    // A rehearsal killed mid-step with a short lease: still `running` in the database, but
    // nobody drives it once the lease has expired.
    let args = rehearsal_args(&["--auto-approve"]);
    let mut victim = KillOnDrop(
        sb.cmd()
            .args(&args)
            .env("FOGBOOK_LEASE_TTL", "1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    sb.wait_for("the second run to create its instance", Duration::from_secs(60), |sb| {
        run_count(sb) == 2 && sb.step_status(&newest_run(sb), "create-new-instance") == "running"
    });
    let stalled = newest_run(&sb);
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    sb.wait_for("the lease to expire", Duration::from_secs(30), |sb| {
        sb.sql()
            .query_row("SELECT lease_expires_at FROM runs WHERE id = ?1", [&stalled], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .unwrap()
            .is_some_and(|exp| exp < now_ms())
    });
    let job = crate::common::fixture("job.yaml");
    let out = sb.run(&[
        "schedule",
        "add",
        "--name",
        "nightly-move",
        "--cron",
        "0 2 * * *",
        "--tz",
        "Europe/Amsterdam",
        "--window",
        "01:00-05:00 Europe/Amsterdam",
        "--set",
        "out=effects.log",
        job.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let server = Server::start(&sb, false);
    let all = get(&server, "/");
    assert_eq!(listed_runs(&all), 2, "{all}");
    assert!(
        all.contains(&format!(
            "<tr class=\"run\" data-run=\"{stalled}\" data-status=\"stalled\">"
        )),
        "the killed run is not shown stalled: {all}"
    );
    assert!(all.contains("create-new-instance (attempt 1)"), "current step: {all}");
    let only_stalled = get(&server, "/?status=stalled");
    assert_eq!(listed_runs(&only_stalled), 1);
    assert!(only_stalled.contains(&stalled));
    let only_done = get(&server, "/?status=succeeded");
    assert_eq!(listed_runs(&only_done), 1);
    assert!(only_done.contains(&finished));
    assert_eq!(listed_runs(&get(&server, "/?runbook=no-such-runbook")), 0);
    assert_eq!(listed_runs(&get(&server, "/?runbook=change-primary")), 2);

    let schedules = get(&server, "/schedules");
    assert!(schedules.contains("nightly-move"), "{schedules}");
    assert!(schedules.contains("Europe/Amsterdam"), "{schedules}");
    assert!(schedules.contains("01:00-05:00"), "the maintenance window: {schedules}");
    // Next fire times: 02:00 in Amsterdam is 00:00 or 01:00 UTC.
    assert!(
        schedules.contains("T00:00:00.000Z") || schedules.contains("T01:00:00.000Z"),
        "next fire times: {schedules}"
    );
}
