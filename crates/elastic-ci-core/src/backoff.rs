//! Retry schedules: how many attempts, and how long to wait between them.
//!
//! The schedule is data; `elastic_ci_aws::retry` is the loop that sleeps it.

use std::time::Duration;

/// `attempts` tries, waiting `first_delay` after the first failure and longer after
/// each further one (as `growth` says), never more than `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub growth: Growth,
}

/// How the wait grows from one failure to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// Twice as long each time: `d, 2d, 4d, …`.
    Doubling,
    /// One `first_delay` longer each time: `d, 2d, 3d, …`.
    Linear,
}

impl Backoff {
    /// Exponential backoff: `first_delay`, doubling up to `max_delay`.
    pub const fn doubling(attempts: u32, first_delay: Duration, max_delay: Duration) -> Backoff {
        Backoff { attempts, first_delay, max_delay, growth: Growth::Doubling }
    }

    /// `step`, `2 × step`, `3 × step`… up to `max_delay`.
    pub const fn linear(attempts: u32, step: Duration, max_delay: Duration) -> Backoff {
        Backoff { attempts, first_delay: step, max_delay, growth: Growth::Linear }
    }

    /// The waits between attempts, in order: `attempts - 1` of them.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let (first, max, growth) = (self.first_delay, self.max_delay, self.growth);
        (0..self.attempts.saturating_sub(1)).map(move |n| {
            let factor = match growth {
                Growth::Doubling => 1u32.checked_shl(n).unwrap_or(u32::MAX),
                Growth::Linear => n.saturating_add(1),
            };
            first.checked_mul(factor).unwrap_or(max).min(max)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let backoff = Backoff::doubling(8, Duration::from_secs(1), Duration::from_secs(30));
        let secs: Vec<u64> = backoff.delays().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        let once = Backoff { attempts: 1, ..backoff };
        assert_eq!(once.delays().count(), 0);
        let huge = Backoff { attempts: 80, ..backoff };
        assert_eq!(huge.delays().last(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn grows_linearly_up_to_the_cap() {
        let backoff = Backoff::linear(6, Duration::from_secs(1), Duration::from_secs(4));
        let secs: Vec<u64> = backoff.delays().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 3, 4, 4]);
        let huge = Backoff { attempts: u32::MAX, ..backoff };
        assert_eq!(huge.delays().nth(100_000), Some(Duration::from_secs(4)));
    }
}
