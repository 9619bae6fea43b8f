//! Secrets stay out (issue 20): fogbook's credential variables never reach a `command`
//! step, and every secret value the process knows is masked in step outputs and errors
//! before they are saved, so neither the reports nor the database file hold one.

use crate::common::{Sandbox, code, fixture, stderr, stdout};

const ARM_TOKEN: &str = "arm-token-3f9c1d2e8b7a6c5d";
const CLIENT_SECRET: &str = "client-secret-a1b2c3d4e5f6";
const FEDERATED: &str = "eyJhbGciOiJSUzI1NiJ9.federated-payload.signature";

/// Every byte of the database files (the main file and, while it exists, its WAL).
fn database_bytes(sb: &Sandbox) -> Vec<u8> {
    let mut bytes = std::fs::read(sb.db()).unwrap();
    for suffix in ["-wal", "-journal"] {
        let side = sb.path(&format!("state.db{suffix}"));
        if let Ok(more) = std::fs::read(side) {
            bytes.extend(more);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn issue_20_secrets_reach_neither_commands_nor_outputs_nor_the_database() {
    let sb = Sandbox::new();
    let token_file = sb.write("federated-token", &format!("{FEDERATED}\n"));
    // What a careless program might find and print: every secret, verbatim.
    sb.write("leak.txt", &format!("{ARM_TOKEN}\n{CLIENT_SECRET}\n{FEDERATED}\n"));
    let dir = sb.dir.path().display().to_string();
    let out = sb.run_env(
        &[
            "run",
            &fixture("leaky.yaml").display().to_string(),
            "--set",
            &format!("dir={dir}"),
        ],
        &[
            ("FOGBOOK_ARM_TOKEN", ARM_TOKEN),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
            ("AZURE_FEDERATED_TOKEN_FILE", &token_file.display().to_string()),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
            ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000002"),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = sb.last_run_id();

    // The command's environment: the allow-list and its own `env:`, no credential variable.
    let env = std::fs::read_to_string(sb.path("env.txt")).unwrap();
    assert!(env.lines().any(|l| l == "GREETING=hello"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    for name in [
        "FOGBOOK_ARM_TOKEN",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "FOGBOOK_DB",
    ] {
        assert!(!env.contains(name), "{name} reached the command:\n{env}");
    }
    for secret in [ARM_TOKEN, CLIENT_SECRET, FEDERATED] {
        assert!(!env.contains(secret), "a secret reached the command:\n{env}");
    }

    // The outputs, as the reports show them: the output and the error are there, masked.
    let status = sb.run(&["--format", "json", "status", &run]);
    let history = sb.run(&["--format", "json", "history", &run]);
    for report in [&status, &history] {
        assert_eq!(code(report), 0, "{}", stderr(report));
        let text = stdout(report);
        assert!(text.contains("seen: [] []"), "the step output is reported: {text}");
        assert!(text.contains("***"), "the printed secrets are masked: {text}");
        for secret in [ARM_TOKEN, CLIENT_SECRET, FEDERATED] {
            assert!(!text.contains(secret), "a secret is in a report:\n{text}");
        }
    }
    assert!(!stderr(&out).contains(ARM_TOKEN), "{}", stderr(&out));

    // The database file itself: the output is saved (so its absence means something), the
    // secrets are not, neither in the step rows nor in the append-only events.
    let bytes = database_bytes(&sb);
    assert!(contains(&bytes, "seen: [] []"), "the output was saved");
    for secret in [ARM_TOKEN, CLIENT_SECRET, FEDERATED] {
        assert!(!contains(&bytes, secret), "a secret is in the database file");
    }
    let failed_error: String = sb
        .sql()
        .query_row(
            "SELECT error FROM steps WHERE run_id = ?1 AND step_id = 'leak-on-failure'",
            [&run],
            |r| r.get(0),
        )
        .unwrap();
    assert!(failed_error.contains("***"), "{failed_error}");
}

#[test]
fn issue_20_a_step_env_naming_a_credential_variable_is_refused() {
    let sb = Sandbox::new();
    let rb = sb.write(
        "pass-through.yaml",
        "runbook: pass-through\nversion: 1\nsteps:\n  - id: deploy\n    uses: command\n    with:\n      program: az\n      env: { AZURE_CLIENT_SECRET: \"${{ params.s }}\", GREETING: hi }\nparams:\n  s: { type: string, default: x }\n",
    );
    let out = sb.run(&["validate", &rb.display().to_string()]);
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("`AZURE_CLIENT_SECRET` may not be set here"),
        "the error names the variable: {text}"
    );
    assert!(text.contains("never reach a command"), "and says why: {text}");
    assert!(!text.contains("GREETING"), "other variables are fine: {text}");
}

/// `--help` prints the environment variables an option reads; for the state database's URL
/// (which holds the PostgreSQL password) and the emulator's bearer token it must print the
/// variable's name only, never its value.
#[test]
fn help_names_secret_variables_without_their_values() {
    let sb = Sandbox::new();
    const PASSWORD: &str = "pg-password-7d41c0e9";
    const TOKEN: &str = "sim-token-52be90aa";
    let db = format!("postgres://fogbook:{PASSWORD}@127.0.0.1:9/fogbook");
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["status", "--help"],
        &["store", "copy", "--help"],
        &["sim", "serve", "--help"],
        &["help", "worker"],
    ] {
        let out = sb.run_env(args, &[("FOGBOOK_DB", &db), ("FOGBOOK_SIM_TOKEN", TOKEN)]);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !text.contains(PASSWORD),
            "{args:?} printed the database password:\n{text}"
        );
        assert!(!text.contains(TOKEN), "{args:?} printed the emulator's token:\n{text}");
    }
    let out = sb.run_env(&["--help"], &[("FOGBOOK_DB", &db)]);
    assert!(
        stdout(&out).contains("FOGBOOK_DB"),
        "the variable is still named:\n{}",
        stdout(&out)
    );
}
