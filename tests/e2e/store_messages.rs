//! What the store says when its file is unusable: read-only files and folders, folders that
//! cannot be entered, schema versions no fogbook writes, text that is not UTF-8.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;

use crate::common::{Sandbox, code, fixture, stderr, stdout};

/// Runs `fogbook` as a user the file permissions apply to: `nobody` when the tests run as
/// root (root ignores them), else the current user.
fn run_unprivileged(sb: &Sandbox, args: &[&str]) -> Output {
    let mut c = sb.cmd();
    c.args(args);
    if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        c.uid(65534).gid(65534);
    }
    c.output().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn finished_run(sb: &Sandbox) -> String {
    let out = sb.run(&["run", &fixture("window.yaml").display().to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    sb.last_run_id()
}

#[test]
fn read_only_commands_work_on_a_read_only_database_in_a_read_only_folder() {
    let sb = Sandbox::new();
    let run = finished_run(&sb);
    for leftover in ["state.db-wal", "state.db-shm"] {
        // Left by the helper that read the run id; a closed database has neither.
        let _ = std::fs::remove_file(sb.path(leftover));
    }
    chmod(&sb.db(), 0o444);
    // A folder this user cannot write (no `-shm` can be made), then one it can.
    for folder in [0o555, 0o777] {
        chmod(sb.dir.path(), folder);
        read_everything(&sb, &run);
    }
    chmod(sb.dir.path(), 0o755);
}

fn read_everything(sb: &Sandbox, run: &str) {
    for args in [
        vec!["runs"],
        vec!["status", run],
        vec!["history", run],
        vec!["report", run],
        vec!["audit", "verify"],
    ] {
        let out = run_unprivileged(sb, &args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert!(!stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn a_folder_that_cannot_be_entered_is_permission_denied_not_a_missing_database() {
    let sb = Sandbox::new();
    let _run = finished_run(&sb);
    let closed = sb.path("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::rename(sb.db(), closed.join("state.db")).unwrap();
    chmod(sb.dir.path(), 0o755);
    chmod(&closed, 0o000);
    let db = closed.join("state.db").display().to_string();
    let out = run_unprivileged(&sb, &["--db", &db, "runs"]);
    chmod(&closed, 0o755);
    // The database exists but cannot be used: exit 6 (the state database failed), not 2.
    assert_eq!(code(&out), 6);
    let err = stderr(&out);
    assert!(
        err.contains("ermission denied") && !err.contains("no state database"),
        "{err}"
    );
}

#[test]
fn a_schema_version_no_fogbook_writes_is_named_without_sql() {
    let sb = Sandbox::new();
    let _run = finished_run(&sb);
    rusqlite::Connection::open(sb.db())
        .unwrap()
        .pragma_update(None, "user_version", -1)
        .unwrap();
    for args in [vec!["runs"], vec!["run", &fixture("window.yaml").display().to_string()]] {
        let out = sb.run(&args);
        assert_eq!(code(&out), 6, "{args:?}: the state database failed");
        let err = stderr(&out);
        assert!(err.contains("schema version -1") && err.contains("backup"), "{err}");
        assert!(!err.contains("CREATE"), "no SQL: {err}");
        assert!(err.lines().count() < 8, "a few lines, not the migrations: {err}");
    }
}

/// `--db` naming another program's SQLite file: refused (the state database failed), and the
/// file is left byte for byte as it was, by reading and by writing commands alike.
#[test]
fn another_programs_database_is_refused_and_left_untouched() {
    let sb = Sandbox::new();
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    let before = std::fs::read(sb.db()).unwrap();
    for args in [vec!["runs"], vec!["run", &fixture("window.yaml").display().to_string()]] {
        let out = sb.run(&args);
        assert_eq!(code(&out), 6, "{args:?}: the state database failed: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("not a fogbook one") && err.contains("another --db"),
            "{err}"
        );
        assert!(std::fs::read(sb.db()).unwrap() == before, "{args:?} changed the file");
    }
}

#[test]
fn an_event_that_is_not_utf8_is_named() {
    let sb = Sandbox::new();
    let run = finished_run(&sb);
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    conn.execute_batch("DROP TRIGGER events_no_update;").unwrap();
    conn.execute(
        "UPDATE events SET data = CAST(X'7B22FF227D' AS TEXT) WHERE run_id = ?1 AND seq = 3",
        [&run],
    )
    .unwrap();
    drop(conn);
    let history = sb.run(&["history", &run]);
    assert_eq!(code(&history), 6, "the state database failed");
    let err = stderr(&history);
    assert!(
        err.contains("cannot read event #3 (") && err.contains(&format!("of run {run}, column data")),
        "{err}"
    );
    let verify = sb.run(&["audit", "verify"]);
    assert_eq!(code(&verify), 1, "{}", stderr(&verify));
    let text = stdout(&verify);
    assert!(
        text.contains(&run) && text.contains("event #3") && text.contains("not valid UTF-8"),
        "{text}"
    );
}
