//! Integration tests of the ARM emulator over raw HTTP on loopback. No sleeps: simulated time
//! moves only through `POST /_sim/clock/advance`.

mod common;
mod conformance;
mod contract;
mod databases;
mod faults;
mod lro;
mod next_gen;
mod region_move;
mod rename;
mod rules;
mod sdk;
mod served;
mod tenants;
mod tls;
