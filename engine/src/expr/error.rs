//! Errors of expression parsing and evaluation.

use thiserror::Error;

/// An expression or template that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct ExprError {
    /// What is wrong, as a lowercase fragment.
    pub message: String,
    /// Byte offset in the parsed text where the problem is.
    pub offset: usize,
}

impl ExprError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            offset,
        }
    }
}

/// An expression that parsed but could not be evaluated against the given scope.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A path names something that does not exist (a parameter that is not set, a field
    /// missing from a step's outputs).
    #[error("`{path}` does not exist: {detail}")]
    MissingPath {
        /// The path as written, e.g. `steps.create.outputs.id`.
        path: String,
        /// Which part is missing and what is there instead.
        detail: String,
    },
    /// A path refers to a step that has no result yet.
    #[error("`{path}` refers to step `{step}`, which has not run yet")]
    StepNotRun {
        /// The path as written.
        path: String,
        /// The step id.
        step: String,
    },
    /// An operator or function got a value of the wrong type.
    #[error("in `{expr}`: {message}")]
    Type {
        /// The sub-expression that failed.
        expr: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A `${{ }}` inside a longer string produced null, which has no text form.
    #[error("`{expr}` is null and cannot be put into a string (use a whole-value `${{{{ }}}}` or `coalesce(..)`)")]
    NullInString {
        /// The expression that produced null.
        expr: String,
    },
    /// A condition (`when`) produced something other than true or false.
    #[error("`{expr}` must be true or false, found {found}")]
    NotBool {
        /// The expression.
        expr: String,
        /// A short description of the value found.
        found: String,
    },
}
