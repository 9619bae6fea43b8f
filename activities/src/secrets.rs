//! The secret values this process knows, and their removal from anything that is saved.
//!
//! One registry per process. It starts with the values of the credential variables found in
//! the environment ([`SECRET_VARIABLES`], and the content of the file
//! `AZURE_FEDERATED_TOKEN_FILE` names); the credential code adds what it reads or obtains
//! later (a static token, every bearer token a credential hands out, the federated token
//! file's content when it is read again). The engine passes every step output, error and
//! saved progress through [`redact_json`] / [`redact_str`] before the store saves it, so no
//! known secret reaches the database or the append-only audit trail.
//!
//! Limits: only exact occurrences are found (a secret that a program prints encoded,
//! reversed or split is not), and values shorter than [`MIN_LEN`] characters are not
//! registered (redacting every `t` of an output protects nothing and ruins the output).

use std::borrow::Cow;
use std::sync::{OnceLock, PoisonError, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Values shorter than this are not treated as secrets (see the module docs).
pub const MIN_LEN: usize = 8;

/// Variables whose values are secrets: registered at start-up when they are set.
pub const SECRET_VARIABLES: &[&str] = &[
    "FOGBOOK_ARM_TOKEN",
    "FOGBOOK_SIM_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_PASSWORD",
    "IDENTITY_HEADER",
    "MSI_SECRET",
];

/// The variable naming a file whose content is a secret (workload identity federation).
pub const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";

/// Every variable fogbook's Azure credential reads. None of them reaches a `command` step,
/// and a runbook may not set one in a step's `env:` either.
pub const CREDENTIAL_VARIABLES: &[&str] = &[
    "FOGBOOK_ARM_TOKEN",
    "FOGBOOK_SIM_TOKEN",
    "FOGBOOK_AUTH",
    "FOGBOOK_ARM_ENDPOINT",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_FEDERATED_TOKEN",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
];

fn known() -> &'static RwLock<Vec<String>> {
    static KNOWN: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut values = Vec::new();
        for name in SECRET_VARIABLES {
            if let Ok(value) = std::env::var(name) {
                push(&mut values, &value);
            }
        }
        if let Some(content) = federated_token_file_content() {
            push(&mut values, &content);
        }
        RwLock::new(values)
    })
}

fn push(values: &mut Vec<String>, value: &str) {
    for v in [value, value.trim()] {
        if v.chars().count() >= MIN_LEN && !values.iter().any(|k| k == v) {
            values.push(v.to_owned());
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
}

/// The content of the file `AZURE_FEDERATED_TOKEN_FILE` names, when it is set and readable.
pub(crate) fn federated_token_file_content() -> Option<String> {
    let path = std::env::var_os(FEDERATED_TOKEN_FILE).filter(|p| !p.is_empty())?;
    std::fs::read_to_string(path).ok()
}

/// Adds `value` to the secrets that are masked in everything saved from now on.
pub fn register(value: &str) {
    let lock = known();
    let present = {
        let values = lock.read().unwrap_or_else(PoisonError::into_inner);
        values.iter().any(|k| k == value || k == value.trim()) || value.trim().chars().count() < MIN_LEN
    };
    if !present {
        push(&mut lock.write().unwrap_or_else(PoisonError::into_inner), value);
    }
}

/// `text` with every known secret replaced by [`MASK`].
pub fn redact_str(text: &str) -> Cow<'_, str> {
    let values = known().read().unwrap_or_else(PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for secret in values.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// `value` with every known secret replaced by [`MASK`] in every string and object key.
pub fn redact_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => match redact_str(&s) {
            Cow::Borrowed(_) => Value::String(s),
            Cow::Owned(r) => Value::String(r),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(redact_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (redact_str(&k).into_owned(), redact_json(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `result` (an activity's output or error) with every known secret masked.
pub fn redact_result(
    result: Result<serde_json::Value, crate::ActivityError>,
) -> Result<serde_json::Value, crate::ActivityError> {
    use crate::ActivityError as E;
    let text = |s: String| redact_str(&s).into_owned();
    match result {
        Ok(output) => Ok(redact_json(output)),
        Err(e) => Err(match e {
            E::Transient {
                code,
                message,
                retry_after,
            } => E::Transient {
                code: text(code),
                message: text(message),
                retry_after,
            },
            E::Failed { code, message, output } => E::Failed {
                code: text(code),
                message: text(message),
                output: output.map(redact_json),
            },
            E::InvalidInput { message } => E::InvalidInput { message: text(message) },
            E::Ambiguous { message } => E::Ambiguous { message: text(message) },
            E::Interrupted => E::Interrupted,
            E::AwaitingApproval { message } => E::AwaitingApproval { message: text(message) },
            // The store's error is kept typed; it describes the database, never step data.
            E::Store { source } => E::Store { source },
            E::LeaseExpired { message } => E::LeaseExpired { message: text(message) },
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn registered_values_are_masked_in_strings_and_json() {
        register("s3cr3t-value-one");
        register("s3cr3t-value-one-and-more\n");
        register("short");
        assert_eq!(redact_str("a s3cr3t-value-one b"), "a *** b");
        assert_eq!(redact_str("x s3cr3t-value-one-and-more y"), "x *** y", "longest first");
        assert_eq!(redact_str("short stays"), "short stays", "below MIN_LEN");
        let v = redact_json(json!({ "stdout": "T=s3cr3t-value-one", "s3cr3t-value-one": [1, "s3cr3t-value-one"] }));
        assert_eq!(v, json!({ "stdout": "T=***", "***": [1, "***"] }));
    }
}
