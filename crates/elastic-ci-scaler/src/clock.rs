//! Time, injected: the real clock in production, a manual one in tests and simulations
//! so that cooldowns and the polling loop run without real waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

/// Wall-clock time and sleeping.
#[async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
    async fn sleep(&self, duration: Duration);
}

/// The system clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock that only moves when told to, or when something sleeps on it: sleeping
/// advances it at once and records the sleep.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualState>>,
}

#[derive(Debug)]
struct ManualState {
    now: SystemTime,
    sleeps: Vec<Duration>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock { inner: Arc::new(Mutex::new(ManualState { now: start, sleeps: Vec::new() })) }
    }

    pub fn advance(&self, duration: Duration) {
        self.lock().now += duration;
    }

    /// Every sleep so far, in order.
    #[cfg(test)]
    pub(crate) fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.lock().now
    }

    async fn sleep(&self, duration: Duration) {
        {
            let mut state = self.lock();
            state.now += duration;
            state.sleeps.push(duration);
        }
        tokio::task::yield_now().await;
    }
}
