//! Resource names and ARM ids: validated, then percent-encoded one path segment at a time.
//!
//! A name may not be empty, longer than 260 characters, contain `/`, `\`, `..` or control
//! characters. An ARM id must look like
//! `/subscriptions/{s}/resourceGroups/{rg}/providers/{Namespace}/{type}/{name}[/{type}/{name}…]`.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::ActivityError;

/// Characters encoded in a path segment (RFC 3986 path segment, conservatively).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// Checks a resource name (or subscription id, resource group, location) given as `what`.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ActivityError> {
    let bad = |why: &str| {
        Err(ActivityError::invalid(format!(
            "{what} `{}`: {why}",
            name.escape_debug()
        )))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 260 {
        return bad("is longer than 260 characters");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("contains a slash");
    }
    if name.contains("..") {
        return bad("contains `..`");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name.trim() != name {
        return bad("starts or ends with white space");
    }
    Ok(())
}

/// A URL path built from literal segments and validated, encoded names.
#[derive(Debug, Default)]
pub(crate) struct PathBuilder(String);

impl PathBuilder {
    /// `/subscriptions/{sub}/resourceGroups/{rg}`.
    pub(crate) fn resource_group(subscription: &str, resource_group: &str) -> Result<Self, ActivityError> {
        Self::default()
            .lit("subscriptions")
            .name("subscription", subscription)?
            .lit("resourceGroups")
            .name("resource group", resource_group)
    }

    /// Appends a constant segment.
    pub(crate) fn lit(mut self, segment: &str) -> Self {
        self.0.push('/');
        self.0.push_str(segment);
        self
    }

    /// Appends a name after validating and encoding it.
    pub(crate) fn name(mut self, what: &str, value: &str) -> Result<Self, ActivityError> {
        check_name(what, value)?;
        self.0.push('/');
        self.0.extend(utf8_percent_encode(value, SEGMENT));
        Ok(self)
    }

    /// The path.
    pub(crate) fn build(self) -> String {
        self.0
    }
}

/// A parsed ARM resource id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArmId {
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) namespace: String,
    /// `(type, name)` pairs after the namespace, e.g. `[("virtualNetworks","v"),("subnets","s")]`.
    pub(crate) types: Vec<(String, String)>,
}

impl ArmId {
    /// Parses and validates `id`.
    pub(crate) fn parse(id: &str) -> Result<Self, ActivityError> {
        let bad = |why: &str| ActivityError::invalid(format!("ARM id `{}`: {why}", id.escape_debug()));
        let rest = id
            .strip_prefix('/')
            .ok_or_else(|| bad("does not start with `/subscriptions/`"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() < 8 || !parts.len().is_multiple_of(2) {
            return Err(bad(
                "expected /subscriptions/{s}/resourceGroups/{rg}/providers/{Namespace}/{type}/{name}",
            ));
        }
        let keyword = |i: usize, want: &str| {
            if parts.get(i).is_some_and(|p| p.eq_ignore_ascii_case(want)) {
                Ok(())
            } else {
                Err(bad(&format!("segment {} should be `{want}`", i + 1)))
            }
        };
        keyword(0, "subscriptions")?;
        keyword(2, "resourceGroups")?;
        keyword(4, "providers")?;
        for part in &parts {
            check_name("ARM id segment", part).map_err(|_| bad("has an empty, `..`, or control-character segment"))?;
        }
        let types = parts[6..]
            .chunks(2)
            .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
            .collect();
        Ok(Self {
            subscription: parts[1].to_owned(),
            resource_group: parts[3].to_owned(),
            namespace: parts[5].to_owned(),
            types,
        })
    }

    /// Checks the namespace and the type chain, e.g. `Microsoft.Network`, `["virtualNetworks","subnets"]`.
    pub(crate) fn expect(self, namespace: &str, types: &[&str]) -> Result<Self, ActivityError> {
        let ok = self.namespace.eq_ignore_ascii_case(namespace)
            && self.types.len() == types.len()
            && self
                .types
                .iter()
                .zip(types)
                .all(|((t, _), want)| t.eq_ignore_ascii_case(want));
        if ok {
            Ok(self)
        } else {
            Err(ActivityError::invalid(format!(
                "ARM id `{}` is not a {namespace}/{} id",
                self.display(),
                types.join("/")
            )))
        }
    }

    /// The last name (the resource's own).
    pub(crate) fn name(&self) -> &str {
        self.types.last().map_or("", |(_, n)| n.as_str())
    }

    /// The id cut after type `ty` (e.g. the VNet of a subnet id).
    pub(crate) fn parent(&self, ty: &str) -> Option<ArmId> {
        let pos = self.types.iter().position(|(t, _)| t.eq_ignore_ascii_case(ty))?;
        Some(ArmId {
            types: self.types[..=pos].to_vec(),
            ..self.clone()
        })
    }

    /// The encoded URL path of this id.
    pub(crate) fn path(&self) -> Result<String, ActivityError> {
        let mut b = PathBuilder::resource_group(&self.subscription, &self.resource_group)?
            .lit("providers")
            .name("namespace", &self.namespace)?;
        for (t, n) in &self.types {
            b = b.name("resource type", t)?.name("resource name", n)?;
        }
        Ok(b.build())
    }

    /// The id as text (unencoded, ARM's canonical shape).
    pub(crate) fn display(&self) -> String {
        let mut s = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}",
            self.subscription, self.resource_group, self.namespace
        );
        for (t, n) in &self.types {
            s.push_str(&format!("/{t}/{n}"));
        }
        s
    }
}

/// Two ARM ids name the same resource (ARM ids compare case-insensitively).
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_slashes_dots_or_controls_are_refused() {
        for bad in [
            "",
            "a/b",
            "..",
            "a..b",
            "a\u{0}b",
            "a\nb",
            "a\\b",
            " a",
            &"x".repeat(261),
        ] {
            assert!(check_name("name", bad).is_err(), "{bad:?} should be refused");
        }
        for good in [
            "mi-fog-a",
            "rg_sql.eastus",
            "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7",
            "Japan East",
        ] {
            assert!(check_name("name", good).is_ok(), "{good:?} should pass");
        }
    }

    #[test]
    fn names_are_encoded_as_one_segment() {
        let p = PathBuilder::resource_group("s", "rg")
            .unwrap()
            .lit("x")
            .name("n", "a b?c#d%e")
            .unwrap()
            .build();
        assert_eq!(p, "/subscriptions/s/resourceGroups/rg/x/a%20b%3Fc%23d%25e");
    }

    #[test]
    fn ids_parse_and_rebuild() {
        let id = ArmId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/snet",
        )
        .unwrap()
        .expect("Microsoft.Network", &["virtualNetworks", "subnets"])
        .unwrap();
        assert_eq!(id.name(), "snet");
        assert_eq!(
            id.parent("virtualNetworks").unwrap().path().unwrap(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"
        );
        for bad in [
            "subscriptions/s/resourceGroups/rg/providers/M/t/n",
            "/subscriptions/s/resourceGroups/rg/providers/M/t",
            "/subscriptions/s/resourceGroups/../providers/M/t/n",
            "/subscriptions/s/resourcegroupz/rg/providers/M/t/n",
            "/subscriptions/s/resourceGroups/rg/providers/M/t/n\u{7}",
            "/subscriptions/s/resourceGroups/rg/providers/M/t//",
        ] {
            assert!(ArmId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
