//! HTML views of runs: the self-contained report (`fogbook report RUN --html FILE`) and the
//! pages of `fogbook serve`. Both render the same sections from the same store records.
//!
//! There is no template engine: pages are built with `write!` and one escaping function
//! (`markup::esc`), which every piece of stored text goes through. The timeline is inline
//! SVG computed here; nothing is loaded from anywhere (no fonts, scripts or images by URL).

mod export;
mod markup;
mod run_view;
mod timeline;
mod view;

pub(crate) use export::write_report;
pub(crate) use markup::{CSS, esc, short};
pub(crate) use run_view::{compact, run_sections};
pub(crate) use view::{PageClock, RunView, human, shown_status, waiting_reason};
