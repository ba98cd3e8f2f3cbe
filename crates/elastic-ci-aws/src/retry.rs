//! The one retry loop: calls an operation until it succeeds, fails in a way that is
//! not worth retrying, or runs out of the attempts of a [`Backoff`] schedule, sleeping
//! the schedule's delays in between.
//!
//! The schedule is plain data in `elastic-ci-core`; this is the async part that sleeps
//! (on tokio's clock, so tests run it instantly with paused time) and tells the
//! caller's logger about each retry. Callers keep their own words for the log line:
//! several repeat the original scripts' messages, which operators search for.

use std::fmt;
use std::time::Duration;

use elastic_ci_core::backoff::Backoff;
use tracing::warn;

/// One call of the operation: its number, from 1, out of the schedule's attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub attempts: u32,
}

/// A failed attempt that will be retried after `delay`.
#[derive(Debug)]
pub struct Retrying<'a, E> {
    pub error: &'a E,
    /// The attempt that failed.
    pub attempt: Attempt,
    pub delay: Duration,
}

/// Calls `call` until it returns `Ok`, returns an error `retryable` refuses, or the
/// schedule's attempts are spent; returns that last result. Before each wait, `log`
/// hears of the failure and the delay.
pub async fn retry<T, E, F, Fut>(
    schedule: Backoff,
    retryable: impl Fn(&E) -> bool,
    mut log: impl FnMut(&Retrying<'_, E>),
    mut call: F,
) -> Result<T, E>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let attempts = schedule.attempts.max(1);
    let mut delays = schedule.delays();
    let mut number = 1;
    loop {
        let attempt = Attempt { number, attempts };
        let error = match call(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let delay = match delays.next() {
            Some(delay) if retryable(&error) => delay,
            _ => return Err(error),
        };
        log(&Retrying { error: &error, attempt, delay });
        tokio::time::sleep(delay).await;
        number += 1;
    }
}

/// Retries every error.
pub fn always<E>(_: &E) -> bool {
    true
}

/// A logger for [`retry`]: a warning with the error, the attempt and the delay as
/// fields, worded `<what> failed, retrying in <n>s (attempt <i>/<n>)...`.
pub fn warn_retrying<E: fmt::Display>(what: &str) -> impl Fn(&Retrying<'_, E>) + '_ {
    move |retrying| {
        let Retrying { error, attempt, delay } = retrying;
        warn!(
            error = %error,
            attempt = attempt.number,
            attempts = attempt.attempts,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "{what} failed, retrying in {}s (attempt {}/{})...",
            delay.as_secs(),
            attempt.number,
            attempt.attempts
        );
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use tokio::time::Instant;

    use super::*;

    fn doubling(attempts: u32) -> Backoff {
        Backoff::doubling(attempts, Duration::from_secs(1), Duration::from_secs(4))
    }

    /// Runs `retry` over scripted results, recording each attempt's start time and
    /// every retry the logger heard of.
    async fn run(
        schedule: Backoff,
        results: &[Result<u32, &'static str>],
        retryable: impl Fn(&&'static str) -> bool,
    ) -> (Result<u32, &'static str>, Vec<(u32, u64)>, Vec<String>) {
        let start = Instant::now();
        let calls = RefCell::new(Vec::new());
        let logged = RefCell::new(Vec::new());
        let result = retry(
            schedule,
            retryable,
            |retrying: &Retrying<'_, &str>| {
                logged.borrow_mut().push(format!(
                    "{} after {}/{}, waiting {:?}",
                    retrying.error,
                    retrying.attempt.number,
                    retrying.attempt.attempts,
                    retrying.delay
                ));
            },
            |attempt| {
                calls.borrow_mut().push((attempt.number, start.elapsed().as_secs()));
                let result = results[calls.borrow().len() - 1];
                async move { result }
            },
        )
        .await;
        (result, calls.into_inner(), logged.into_inner())
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_the_schedule_between_attempts_until_one_succeeds() {
        let (result, calls, logged) =
            run(doubling(5), &[Err("busy"), Err("busy"), Err("busy"), Ok(7)], always).await;
        assert_eq!(result, Ok(7));
        // Attempts start at 0 s, then 1, 2 and 4 s later.
        assert_eq!(calls, [(1, 0), (2, 1), (3, 3), (4, 7)]);
        assert_eq!(
            logged,
            [
                "busy after 1/5, waiting 1s",
                "busy after 2/5, waiting 2s",
                "busy after 3/5, waiting 4s"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn returns_the_last_error_when_the_attempts_are_spent() {
        let (result, calls, logged) =
            run(doubling(3), &[Err("a"), Err("b"), Err("c")], always).await;
        assert_eq!(result, Err("c"));
        assert_eq!(calls, [(1, 0), (2, 1), (3, 3)]);
        assert_eq!(logged.len(), 2, "no wait after the last attempt: {logged:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_once_on_an_error_that_is_not_retryable() {
        let (result, calls, logged) =
            run(doubling(5), &[Err("busy"), Err("denied"), Ok(1)], |error| *error == "busy").await;
        assert_eq!(result, Err("denied"));
        assert_eq!(calls, [(1, 0), (2, 1)]);
        assert_eq!(logged, ["busy after 1/5, waiting 1s"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_linear_schedule_waits_one_step_longer_each_time() {
        let linear = Backoff::linear(4, Duration::from_secs(1), Duration::from_secs(10));
        let (result, calls, _) = run(linear, &[Err("x"), Err("x"), Err("x"), Ok(2)], always).await;
        assert_eq!(result, Ok(2));
        assert_eq!(calls, [(1, 0), (2, 1), (3, 3), (4, 6)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_of_no_attempts_still_calls_once() {
        let none = Backoff { attempts: 0, ..doubling(1) };
        let (result, calls, logged) = run(none, &[Err("x")], always).await;
        assert_eq!((result, calls, logged.len()), (Err("x"), vec![(1, 0)], 0));
    }
}
