//! Lifecycle transitions and RFC 3339 times as instance metadata gives them, on
//! arbitrary text: never a panic.

#![no_main]

use elastic_ci_core::lifecycle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = lifecycle::Transition::parse(text);
    let _ = lifecycle::parse_rfc3339(text);
});
