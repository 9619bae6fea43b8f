//! Tests of the ARM client and the Azure activities against the emulator (loopback only,
//! simulated time: no test sleeps).

mod activities;
mod client;
mod common;
mod preflight;
mod reentry;
