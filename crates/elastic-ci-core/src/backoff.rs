//! Retry schedules: how many attempts, and how long to wait between them.

use std::time::Duration;

/// Exponential backoff: `attempts` tries, waiting `first_delay` after the first
/// failure and twice as long after each further one, never more than `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Backoff {
    /// The waits between attempts, in order: `attempts - 1` of them.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let (first, max) = (self.first_delay, self.max_delay);
        (0..self.attempts.saturating_sub(1)).map(move |n| {
            first.checked_mul(1u32.checked_shl(n).unwrap_or(u32::MAX)).unwrap_or(max).min(max)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let backoff = Backoff {
            attempts: 8,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        };
        let secs: Vec<u64> = backoff.delays().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        let once = Backoff { attempts: 1, ..backoff };
        assert_eq!(once.delays().count(), 0);
        let huge = Backoff { attempts: 80, ..backoff };
        assert_eq!(huge.delays().last(), Some(Duration::from_secs(30)));
    }
}
