//! A fleet's target template over a list: each item of the list gives one target, with every
//! `${{ item... }}` in the template's name and parameters replaced by the item's values.

use serde_json::{Map, Value as Json};

use super::file::FleetTarget;

/// One target of a template: `name` and `params` with `${{ item... }}` replaced by `item`,
/// over the common parameters.
pub(super) fn instantiate(
    name: &str,
    template: &Map<String, Json>,
    common: &Map<String, Json>,
    item: &Json,
    at: String,
) -> Result<FleetTarget, String> {
    let name = match substitute(&Json::String(name.to_owned()), item)? {
        Json::String(s) => s,
        other => other.to_string(),
    };
    let mut params = common.clone();
    if let Json::Object(own) = substitute(&Json::Object(template.clone()), item)? {
        params.extend(own);
    }
    Ok(FleetTarget { name, params, at })
}

/// Replaces `${{ item }}` and `${{ item.field }}` in every string of `template`. A string
/// that is exactly one such reference becomes the value itself (a mapping stays a mapping).
fn substitute(template: &Json, item: &Json) -> Result<Json, String> {
    match template {
        Json::String(s) => substitute_str(s, item),
        Json::Array(a) => a
            .iter()
            .map(|v| substitute(v, item))
            .collect::<Result<_, _>>()
            .map(Json::Array),
        Json::Object(m) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), substitute(v, item)?)))
            .collect::<Result<_, String>>()
            .map(Json::Object),
        other => Ok(other.clone()),
    }
}

fn lookup<'a>(item: &'a Json, reference: &str) -> Result<&'a Json, String> {
    let mut parts = reference.split('.');
    if parts.next() != Some("item") {
        return Err(format!(
            "a target template can only refer to `item` (the list entry), found `{reference}`"
        ));
    }
    let mut v = item;
    for p in parts {
        v = v
            .get(p)
            .ok_or_else(|| format!("this entry has no field `{p}` (the template reads `{reference}`)"))?;
    }
    Ok(v)
}

fn substitute_str(s: &str, item: &Json) -> Result<Json, String> {
    let trimmed = s.trim();
    if let Some(inner) = trimmed.strip_prefix("${{").and_then(|r| r.strip_suffix("}}"))
        && !inner.contains("${{")
    {
        return lookup(item, inner.trim()).cloned();
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("`${{{{` without its closing `}}}}` in `{s}`"))?;
        match lookup(item, after[..end].trim())? {
            Json::String(v) => out.push_str(v),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Json::String(out))
}
