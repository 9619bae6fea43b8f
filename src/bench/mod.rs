//! `fogbook bench` (docs/PERFORMANCE.md): the command and its measurements against the ARM
//! emulator.

pub(crate) mod cloud;
mod command;
pub(crate) mod memory;

pub(crate) use command::bench;
