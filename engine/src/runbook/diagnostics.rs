//! Validation errors with their place in the source.

use std::fmt;

/// One problem found in a runbook or parameter file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or other source, such as `--set`) the problem is in.
    pub origin: String,
    /// 1-based line, when the problem has a place in the text.
    pub line: Option<u32>,
    /// 1-based column, when the problem has a place in the text.
    pub column: Option<u32>,
    /// Where in the document, e.g. `steps.create.retry.max_attempts` (steps are named by id
    /// when they have a valid one, by index `steps[3]` otherwise). Empty for the whole file.
    pub path: String,
    /// What is wrong. Warnings (returned in [`Runbook::warnings`](super::Runbook::warnings))
    /// start with `warning: `.
    pub message: String,
}

impl Diagnostic {
    /// Whether this is a warning rather than an error.
    pub fn is_warning(&self) -> bool {
        self.message.starts_with("warning: ")
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, in source order. Displayed one per line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
