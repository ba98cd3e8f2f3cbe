//! The secrets bucket's git-credentials file and git's credential request, on arbitrary
//! text: never a panic.

#![no_main]

use elastic_ci_core::secrets;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = secrets::parse_git_credentials(text);
    let _ = secrets::parse_credential_request(text);
});
