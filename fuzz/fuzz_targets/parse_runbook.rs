//! The runbook parser and validator must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fogbook_engine::runbook::parse(text, "fuzz.yaml");
    }
});
