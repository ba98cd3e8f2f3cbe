//! The env-file parser (systemd's `EnvironmentFile=` syntax) on arbitrary text: it
//! never panics.

#![no_main]

use elastic_ci_core::envfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = envfile::parse(text);
});
