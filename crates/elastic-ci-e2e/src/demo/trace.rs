//! The jobs the demo feeds to the fake Buildkite queue: a trace in the capacity
//! simulator's format (`elastic-ci simulate`), or one of the built-in ones.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use elastic_ci_simulator::trace::Trace;

/// The default demo: ten builds at once, then twelve tests that wait ten seconds
/// behind a `wait` step, more than the idle agents can take.
pub(crate) const BURST: &str = "\
# The built-in demo burst: ten builds at once, then twelve tests behind a wait step.
job_id,queue,visible_at_s,ready_at_s,duration_s
build-01,default,5,5,15
build-02,default,5,5,20
build-03,default,5,5,25
build-04,default,5,5,30
build-05,default,5,5,35
build-06,default,5,5,15
build-07,default,5,5,20
build-08,default,5,5,25
build-09,default,5,5,30
build-10,default,5,5,35
test-01,default,45,55,10
test-02,default,45,55,12
test-03,default,45,55,14
test-04,default,45,55,16
test-05,default,45,55,18
test-06,default,45,55,20
test-07,default,45,55,10
test-08,default,45,55,12
test-09,default,45,55,14
test-10,default,45,55,16
test-11,default,45,55,18
test-12,default,45,55,20
";

/// The end-to-end check's trace: small and short, with a job behind a wait step.
pub(crate) const CHECK: &str = "\
# The end-to-end check: four jobs at once, one more behind a wait step.
job_id,queue,visible_at_s,ready_at_s,duration_s
check-1,default,1,1,4
check-2,default,1,1,5
check-3,default,1,1,6
check-4,default,2,2,4
check-5,default,8,12,3
";

/// The spot scenario: the first job taken is the one a spot interruption is announced
/// under; it and the rest must still finish.
pub(crate) const SPOT: &str = "\
# The spot scenario: an interruption is announced under the first running job.
job_id,queue,visible_at_s,ready_at_s,duration_s
spot-1,default,1,1,8
spot-2,default,1,1,6
spot-3,default,1,1,6
spot-4,default,12,12,4
";

/// The scale-in scenario: enough long jobs to keep every agent busy while the group
/// shrinks.
pub(crate) const SCALE_IN: &str = "\
# The scale-in scenario: every agent busy while the group shrinks.
job_id,queue,visible_at_s,ready_at_s,duration_s
scale-1,default,1,1,14
scale-2,default,1,1,14
scale-3,default,1,1,14
scale-4,default,1,1,14
";

/// The warm-pool scenario: jobs that arrive once the pool has been prepared, for the
/// two instances the group takes out of it.
pub(crate) const WARM: &str = "\
# The warm-pool scenario: the group takes its instances out of a warm pool of two.
job_id,queue,visible_at_s,ready_at_s,duration_s
warm-1,default,6,6,4
warm-2,default,6,6,5
warm-3,default,6,6,4
";

/// The stack update scenario: long jobs that keep the old group's agents busy through
/// the replacement, then jobs queued after it, for the new group.
pub(crate) const UPDATE: &str = "\
# The stack update scenario: the group is replaced while the first jobs run.
job_id,queue,visible_at_s,ready_at_s,duration_s
update-1,default,1,1,14
update-2,default,1,1,14
update-3,default,1,1,14
update-4,default,1,1,14
update-5,default,9,9,4
update-6,default,9,9,5
";

/// How much of a trace file is replayed without `--minutes`.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(10 * 60);

/// One job to replay, on the demo's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DemoJob {
    /// The trace's job id, made safe for URLs and file names.
    pub(crate) id: String,
    pub(crate) visible_at: Duration,
    pub(crate) ready_at: Duration,
    pub(crate) duration: Duration,
}

/// The jobs of one queue within the replayed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DemoTrace {
    /// Where the trace came from, for messages.
    pub(crate) source: String,
    /// The stack's queue: the trace's first.
    pub(crate) queue: String,
    pub(crate) jobs: Vec<DemoJob>,
    pub(crate) window: Duration,
    /// Jobs left out: on another queue, or visible after the window.
    pub(crate) n_other_queues: usize,
    pub(crate) n_after_window: usize,
}

impl DemoTrace {
    /// When the last job would end if it started as soon as it was ready.
    pub(crate) fn last_end(&self) -> Duration {
        self.jobs.iter().map(|job| job.ready_at + job.duration).max().unwrap_or_default()
    }
}

/// Parses `text` (named `source` in errors) and keeps the jobs of its first queue that
/// become visible within `minutes` (default: all of a built-in trace, the first
/// [`DEFAULT_WINDOW`] of a file).
pub(crate) fn load(
    text: &str,
    source: &str,
    minutes: Option<u64>,
    built_in: bool,
) -> anyhow::Result<DemoTrace> {
    let trace = Trace::parse(text, None).with_context(|| format!("invalid trace {source}"))?;
    let queue = trace.queues.first().cloned().context("the trace has no queue")?;
    let window = match minutes {
        Some(minutes) => Duration::from_secs(minutes.saturating_mul(60)),
        None if built_in => Duration::MAX,
        None => DEFAULT_WINDOW,
    };
    let mut jobs = Vec::new();
    let mut ids = BTreeSet::new();
    let (mut n_other_queues, mut n_after_window) = (0, 0);
    for job in &trace.jobs {
        if trace.queue_name(job) != queue {
            n_other_queues += 1;
            continue;
        }
        let visible_at = Duration::from_micros(job.visible_at_us);
        if visible_at >= window {
            n_after_window += 1;
            continue;
        }
        let mut id = safe_id(&job.id);
        if !ids.insert(id.clone()) {
            id = format!("{id}-{}", jobs.len() + 1);
            ids.insert(id.clone());
        }
        jobs.push(DemoJob {
            id,
            visible_at,
            ready_at: Duration::from_micros(job.ready_at_us),
            duration: Duration::from_micros(job.duration_us),
        });
    }
    anyhow::ensure!(
        !jobs.is_empty(),
        "no job of trace {source} on queue {queue:?} becomes visible within the first {} minutes",
        window.as_secs() / 60
    );
    let window = if window == Duration::MAX {
        jobs.iter().map(|job| job.visible_at).max().unwrap_or_default()
    } else {
        window
    };
    Ok(DemoTrace { source: source.to_owned(), queue, jobs, window, n_other_queues, n_after_window })
}

/// Letters, digits, `.`, `_` and `-` kept; anything else becomes `_`.
fn safe_id(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    if safe.is_empty() || safe.starts_with('.') { format!("job{safe}") } else { safe }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_traces_parse() {
        let burst = load(BURST, "the built-in burst", None, true).unwrap();
        assert_eq!((burst.queue.as_str(), burst.jobs.len()), ("default", 22));
        assert_eq!(burst.last_end(), Duration::from_secs(75));
        let check = load(CHECK, "the check trace", None, true).unwrap();
        assert_eq!(check.jobs.len(), 5);
        assert_eq!(check.jobs[4].ready_at, Duration::from_secs(12));
    }

    #[test]
    fn keeps_the_first_queue_within_the_window() {
        let text = "job_id,queue,visible_at_s,ready_at_s,duration_s\n\
                    a/1,builds,0,0,10\nb,deploys,0,0,10\nc,builds,119.5,120,10\nd,builds,120,120,10\n";
        let trace = load(text, "t.csv", Some(2), false).unwrap();
        let ids: Vec<&str> = trace.jobs.iter().map(|job| job.id.as_str()).collect();
        assert_eq!(ids, ["a_1", "c"]);
        assert_eq!((trace.n_other_queues, trace.n_after_window), (1, 1));
        assert_eq!(trace.window, Duration::from_secs(120));
    }

    #[test]
    fn bad_traces_name_the_file_and_line() {
        let error = load("job_id,queue\n", "jobs.csv", None, false).unwrap_err();
        assert!(format!("{error:#}").starts_with("invalid trace jobs.csv: line 1:"), "{error:#}");
        let late = "job_id,queue,visible_at_s,ready_at_s,duration_s\na,q,700,700,1\n";
        let error = load(late, "late.csv", None, false).unwrap_err();
        assert!(error.to_string().contains("within the first 10 minutes"), "{error}");
    }
}
