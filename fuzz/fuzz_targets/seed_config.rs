//! A git-mirror seed's configuration, from which only the origin URL and the object
//! format are read, on arbitrary bytes: never a panic, and an accepted result is a
//! fresh configuration of our own.

#![no_main]

use elastic_ci_core::archive;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(config) = archive::mirror_config(Some(bytes)) {
        assert!(config.starts_with("[core]"), "{config}");
    }
});
