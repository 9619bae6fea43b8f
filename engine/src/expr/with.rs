//! Resolving a step's `with:` inputs into JSON when the step starts.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::EvalError;
use super::eval::Scope;
use crate::runbook::WithValue;

impl WithValue {
    /// Evaluates every template in this value.
    pub fn resolve(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        match self {
            WithValue::Literal(v) => Ok(v.clone()),
            WithValue::Template(t) => t.eval(scope),
            WithValue::List(items) => items.iter().map(|i| i.resolve(scope)).collect(),
            WithValue::Map(m) => resolve_with(m, scope),
        }
    }
}

/// Resolves a whole `with:` mapping into a JSON object.
pub fn resolve_with(with: &BTreeMap<String, WithValue>, scope: &Scope<'_>) -> Result<Value, EvalError> {
    let mut out = serde_json::Map::new();
    for (k, v) in with {
        out.insert(k.clone(), v.resolve(scope)?);
    }
    Ok(Value::Object(out))
}
