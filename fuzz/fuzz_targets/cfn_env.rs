//! The cfn-env parser on arbitrary text: it never panics.

#![no_main]

use elastic_ci_core::boot::cfn_env;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = cfn_env::parse(text);
});
