//! Runbooks: the YAML format, its parser and validator, and parameter values.
//!
//! [`parse`] turns YAML text into a validated [`Runbook`] or reports every problem at
//! once as [`Diagnostics`] (file, line, column, document path, message). Parameters come
//! from a file ([`parse_params`]) and `--set` arguments ([`parse_set`]) and are checked
//! against the runbook's declarations by [`resolve_params`]. [`json_schema`] describes the
//! format for editors. The format is documented in `runbooks/README.md`.
//!
//! Only this module reads YAML (through serde-saphyr).

mod diagnostics;
pub mod model;
mod params;
mod parse;
mod parse_step;
pub(crate) mod reader;
mod refs;
mod schema;
pub(crate) mod suggest;
mod with_schema;
pub(crate) mod yaml;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use model::*;
pub use params::{parse_params, parse_set, place_params, resolve_params};
pub use parse::parse;
pub use schema::json_schema;
