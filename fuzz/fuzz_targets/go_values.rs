//! Go's duration, boolean, integer and float syntax, as the scaler reads its
//! configuration, on arbitrary text: never a panic.

#![no_main]

use elastic_ci_core::scaling::goparse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = goparse::parse_duration(text);
    let _ = goparse::parse_bool(text);
    let _ = goparse::parse_int(text);
    let _ = goparse::parse_float(text);
});
