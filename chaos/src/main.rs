//! fogbook-chaos: the chaos runner (see docs/RELIABILITY.md); being written.

fn main() {}
