//! The expression language of runbooks: `${{ params.x }}`, `${{ steps.id.outputs.y }}` and
//! simple conditions for `when:`.
//!
//! [`Template`] is a string with `${{ }}` parts; [`Expr`] is a single expression. Both are
//! parsed when the runbook is validated and evaluated against a [`Scope`] when a step starts.
//! Evaluation never guesses: a missing parameter or output field is an [`EvalError`] naming
//! the path, except the outputs of a skipped step, which are `null`.
//!
//! The language is documented in `runbooks/README.md`.

mod error;
mod eval;
mod lex;
pub(crate) mod syntax;
mod template;
mod with;

pub use error::{EvalError, ExprError};
pub use eval::{Scope, StepScope};
pub use template::{Expr, Template};
pub use with::resolve_with;

/// The fields of `run.` an expression may read. The executor provides them in
/// [`Scope::run`].
pub const RUN_FIELDS: &[&str] = &["id", "runbook"];

pub(crate) use eval::{describe, json_eq};
