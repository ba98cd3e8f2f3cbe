//! The simulator's trace parser (CSV and JSON Lines) on arbitrary text: never a panic.

#![no_main]

use elastic_ci_simulator::trace::{Trace, TraceFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = Trace::parse(text, None);
    let _ = Trace::parse(text, Some(TraceFormat::Csv));
    let _ = Trace::parse(text, Some(TraceFormat::JsonLines));
});
