//! The deterministic startup delay of each invocation.
//!
//! Many stacks share the same one-minute schedule; if every scaler polled at the top of
//! the minute they would all hit the Auto Scaling and Buildkite APIs at once. Hashing
//! the group name spreads them over the window, while each stack keeps a stable offset
//! so its own polls stay evenly spaced from one minute to the next.

use std::time::Duration;

/// `FNV-1a-64(key) mod max`, in nanoseconds; zero for an empty key or a zero window.
pub fn startup_jitter(key: &str, max: Duration) -> Duration {
    let window = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if key.is_empty() || window == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(fnv1a_64(key.as_bytes()) % window)
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_vectors() {
        assert_eq!(fnv1a_64(b"stack-a-AgentAutoScaleGroup"), 0x2794_ebe7_13f4_d4db);
        let window = Duration::from_secs(30);
        assert_eq!(
            startup_jitter("stack-a-AgentAutoScaleGroup", window),
            Duration::from_nanos(1_737_151_707)
        );
        assert_eq!(
            startup_jitter("my-stack-AgentAutoScaleGroup-ABC123", window),
            Duration::from_nanos(9_829_758_587)
        );
    }

    #[test]
    fn no_window_or_no_key_means_no_delay() {
        assert_eq!(startup_jitter("asg", Duration::ZERO), Duration::ZERO);
        assert_eq!(startup_jitter("", Duration::from_secs(30)), Duration::ZERO);
    }
}
