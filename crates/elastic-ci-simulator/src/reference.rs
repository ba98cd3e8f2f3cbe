//! The reference traces T1–T5, and larger traces of the same shape.
//!
//! - T1: 20 jobs at t=5 s, 300 s each (horizon 3600 s).
//! - T2: 10 jobs at 5 s (600 s each), then 10 at 125 s (300 s each) (3600 s).
//! - T3: one 120 s job every 90 s from t=5 s, 40 jobs (5400 s).
//! - T4: one 300 s build at 5 s, then 30 tests of 120 s visible from 5 s and ready at
//!   305 s (3600 s).
//! - T5: an 8-hour working day of 1103 jobs (32400 s): from t=0, repeatedly
//!   `t += expovariate(rate(t))` with `rate(t) = 0.25 + 1.25 × max(0, 1 − |t − 4 h| /
//!   4 h)` arrivals per minute (evaluated at the previous arrival), stop once
//!   `t ≥ 8 h`, then a burst of 10 identical jobs if `random() < 0.2` (else one job),
//!   each lasting `choice([60, 120, 300, 600, 900])` seconds; the draws come from
//!   Python's `random.Random(42)` in that order.
//!
//! The committed files under `crates/elastic-ci-simulator/traces/` are written by
//! `cargo run -p elastic-ci-simulator --example reference-traces`; a test checks that they
//! match these generators.

use std::collections::HashMap;

use crate::pyrandom::PyRandom;
use crate::trace::{MICROS_PER_SEC, Trace, TraceJob, micros_from_secs};

/// The names of the reference traces, in order.
pub const NAMES: [&str; 5] = ["t1", "t2", "t3", "t4", "t5"];

/// One reference trace by name (`t1` to `t5`).
pub fn reference(name: &str) -> Option<Trace> {
    let mut builder = TraceBuilder::new(name);
    match name {
        "t1" => {
            builder.add(20, 5.0, 5.0, 300.0);
            Some(builder.finish(3600))
        }
        "t2" => {
            builder.add(10, 5.0, 5.0, 600.0);
            builder.add(10, 125.0, 125.0, 300.0);
            Some(builder.finish(3600))
        }
        "t3" => {
            for n in 0..40_u32 {
                let at = 5.0 + 90.0 * f64::from(n);
                builder.add(1, at, at, 120.0);
            }
            Some(builder.finish(5400))
        }
        "t4" => {
            builder.add(1, 5.0, 5.0, 300.0);
            builder.add(30, 5.0, 305.0, 120.0);
            Some(builder.finish(3600))
        }
        "t5" => {
            working_days(&mut builder, &mut PyRandom::new(42), 1.0, 1, usize::MAX);
            Some(builder.finish(32_400))
        }
        _ => None,
    }
}

/// A description of a reference trace, for the comment at the top of its file.
pub fn description(name: &str) -> &'static str {
    match name {
        "t1" => "T1: 20 jobs at t=5 s, 300 s each.",
        "t2" => "T2: 10 jobs at 5 s (600 s) + 10 jobs at 125 s (300 s).",
        "t3" => "T3: one 120 s job every 90 s from t=5 s, 40 jobs.",
        "t4" => {
            "T4: one 300 s build at 5 s, then 30 x 120 s tests visible from 5 s and ready at 305 s."
        }
        "t5" => "T5: an 8 h working day, 1103 jobs, drawn from Python's random.Random(42).",
        _ => "",
    }
}

/// Consecutive 8-hour working days of the T5 process with the arrival rate multiplied
/// by `rate_scale`, until `days` days or `max_jobs` jobs (whichever comes first), drawn
/// from `random`. For benchmarks and property tests.
pub fn day_trace(seed: u64, rate_scale: f64, days: u32, max_jobs: usize) -> Trace {
    let mut builder = TraceBuilder::new("d");
    working_days(&mut builder, &mut PyRandom::new(seed), rate_scale, days, max_jobs);
    let horizon = builder.last_end_secs() + 3600.0;
    let horizon_us = micros_from_secs(horizon).unwrap_or(u64::MAX);
    builder.trace.horizon_us = Some(horizon_us);
    builder.trace
}

const DAY_SECS: f64 = 8.0 * 3600.0;
const DURATIONS_SECS: [f64; 5] = [60.0, 120.0, 300.0, 600.0, 900.0];

fn working_days(
    builder: &mut TraceBuilder,
    random: &mut PyRandom,
    rate_scale: f64,
    days: u32,
    max_jobs: usize,
) {
    for day in 0..days {
        let start = DAY_SECS * f64::from(day);
        let mut t = 0.0_f64;
        loop {
            let per_minute =
                0.25 + 1.25 * (1.0 - (t - 4.0 * 3600.0).abs() / (4.0 * 3600.0)).max(0.0);
            t += random.expovariate(per_minute * rate_scale / 60.0);
            if t >= DAY_SECS {
                break;
            }
            let n = if random.random() < 0.2 { 10 } else { 1 };
            let duration = *random.choice(&DURATIONS_SECS);
            builder.add(n, start + t, start + t, duration);
            if builder.trace.jobs.len() >= max_jobs {
                builder.trace.jobs.truncate(max_jobs);
                return;
            }
        }
    }
}

struct TraceBuilder {
    prefix: String,
    trace: Trace,
}

impl TraceBuilder {
    fn new(prefix: &str) -> TraceBuilder {
        TraceBuilder {
            prefix: prefix.to_owned(),
            trace: Trace { jobs: Vec::new(), queues: vec!["default".to_owned()], horizon_us: None },
        }
    }

    fn add(&mut self, n: u32, visible_at: f64, ready_at: f64, duration: f64) {
        let time = |secs: f64| micros_from_secs(secs).unwrap_or(0);
        for _ in 0..n {
            let id = format!("{}-{:04}", self.prefix, self.trace.jobs.len() + 1);
            self.trace.jobs.push(TraceJob {
                id,
                queue: 0,
                visible_at_us: time(visible_at),
                ready_at_us: time(ready_at),
                duration_us: time(duration),
            });
        }
    }

    fn last_end_secs(&self) -> f64 {
        let end = self.trace.jobs.iter().map(|job| job.ready_at_us + job.duration_us).max();
        crate::trace::secs_f64(end.unwrap_or(0))
    }

    fn finish(mut self, horizon_secs: u64) -> Trace {
        self.trace.horizon_us = Some(horizon_secs * MICROS_PER_SEC);
        self.trace
    }
}

/// How many jobs of each duration a trace has, for tests and descriptions.
pub fn duration_histogram(trace: &Trace) -> HashMap<u64, usize> {
    let mut histogram = HashMap::new();
    for job in &trace.jobs {
        *histogram.entry(job.duration_us / MICROS_PER_SEC).or_insert(0) += 1;
    }
    histogram
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5_has_the_specified_1103_jobs() {
        let trace = reference("t5").unwrap();
        assert_eq!(trace.jobs.len(), 1103);
        assert_eq!(trace.horizon_us, Some(32_400 * MICROS_PER_SEC));
        // The first arrival of random.Random(42): 244.81446894595226 s, a burst of 10
        // jobs of 300 s; the last one at 28630.25228227232 s, 900 s.
        let first = &trace.jobs[0];
        assert_eq!((first.ready_at_us, first.duration_us), (244_814_469, 300 * MICROS_PER_SEC));
        assert_eq!(trace.jobs[9].ready_at_us, 244_814_469);
        let last = trace.jobs.last().unwrap();
        assert_eq!((last.ready_at_us, last.duration_us), (28_630_252_282, 900 * MICROS_PER_SEC));
        assert_eq!(duration_histogram(&trace).values().sum::<usize>(), 1103);
    }

    #[test]
    fn committed_files_match_the_generators() {
        let committed = [
            include_str!("../traces/t1.csv"),
            include_str!("../traces/t2.csv"),
            include_str!("../traces/t3.csv"),
            include_str!("../traces/t4.csv"),
            include_str!("../traces/t5.csv"),
        ];
        for (name, text) in NAMES.iter().zip(committed) {
            assert_eq!(Trace::parse(text, None).unwrap(), reference(name).unwrap(), "{name}");
        }
    }

    #[test]
    fn small_references_have_their_shapes() {
        let count = |name| reference(name).unwrap().jobs.len();
        assert_eq!([count("t1"), count("t2"), count("t3"), count("t4")], [20, 20, 40, 31]);
        let t4 = reference("t4").unwrap();
        assert_eq!(t4.jobs[1].visible_at_us, 5 * MICROS_PER_SEC);
        assert_eq!(t4.jobs[1].ready_at_us, 305 * MICROS_PER_SEC);
        assert_eq!(reference("t3").unwrap().jobs[39].ready_at_us, 3515 * MICROS_PER_SEC);
        assert!(reference("t6").is_none());
    }

    #[test]
    fn day_traces_stop_at_the_job_limit() {
        let trace = day_trace(1, 2.0, 100, 5000);
        assert_eq!(trace.jobs.len(), 5000);
        assert!(trace.horizon_us.unwrap() > trace.jobs[4999].ready_at_us);
    }
}
