//! `fogbook bench` (docs/PERFORMANCE.md): the command and its measurements against the ARM
//! emulator.

pub(crate) mod cloud;
mod command;
mod fleet;
pub(crate) mod memory;
mod pg;

pub(crate) use command::bench;
