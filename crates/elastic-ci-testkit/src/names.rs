//! Unique resource names.
//!
//! The emulator keeps its state for as long as it runs and tests run in parallel, so
//! every test names its buckets, parameters and groups uniquely instead of resetting.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A name that is unique across processes and runs: `prefix-<pid>-<n>-<nanos>`, lower
/// case, valid as an S3 bucket name when `prefix` is, at most 63 characters.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let mut name = format!("{}-{}-{n}-{nanos}", prefix.to_ascii_lowercase(), std::process::id());
    name.truncate(63);
    name
}
