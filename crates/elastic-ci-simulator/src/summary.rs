//! The figures of a run: job waits, cost and API use.

use serde::Serialize;

use crate::model::{ApiCalls, JobSpec, ModelParams, Outcome, micros};
use crate::trace::secs_f64;

/// The summary of one run; `--json` prints it as one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Jobs replayed (those on the scaler's queue).
    pub jobs: u64,
    pub started_jobs: u64,
    /// Jobs ready before the horizon that no agent started by then.
    pub unstarted_jobs: u64,
    /// Jobs ready only after the horizon (not counted anywhere else).
    pub jobs_ready_after_horizon: u64,
    /// Wait = start − ready_at over the started jobs; percentiles interpolate linearly
    /// between the closest ranks. `null` when no job started.
    pub wait_p50_s: Option<f64>,
    pub wait_p95_s: Option<f64>,
    pub wait_max_s: Option<f64>,
    pub wait_mean_s: Option<f64>,
    /// Launch to end of billing (or the horizon), summed over instances, without the
    /// time warm-pool instances spent stopped.
    pub instance_minutes: f64,
    /// Time warm-pool instances spent stopped (billed for their EBS volumes only).
    pub stopped_instance_minutes: f64,
    /// What the fleet cost, in running instance-minutes: `instance_minutes` plus
    /// `stopped_instance_minutes` at the stopped-cost ratio.
    pub cost_instance_minutes: f64,
    /// Jobs still running when their instance was removed (spot interruptions).
    pub jobs_interrupted: u64,
    /// Spot interruption notices.
    pub spot_interruptions: u64,
    /// Polls made for job events.
    pub event_polls: u64,
    /// Time agents spent running jobs until the horizon.
    pub busy_job_minutes: f64,
    /// Busy job-minutes over agent-minutes (instance-minutes × agents per instance).
    pub agent_utilisation: f64,
    pub instances_launched: u64,
    /// Instances that terminated (or reached the horizon) without running a job.
    pub instances_without_jobs: u64,
    pub peak_instances: u32,
    pub set_desired_capacity_calls: u64,
    pub invocations: u64,
    pub polls: u64,
    pub horizon_s: f64,
    pub api_calls: ApiCalls,
    pub aws_calls_per_minute: f64,
    pub buildkite_calls_per_minute: f64,
}

impl Summary {
    /// The dollar cost of the instance-minutes at `price_per_instance_hour` dollars.
    pub fn cost_usd(&self, price_per_instance_hour: f64) -> f64 {
        self.instance_minutes / 60.0 * price_per_instance_hour
    }
}

/// Summarises a run of `jobs` (the ones handed to the model).
pub fn summarize(
    jobs: &[JobSpec],
    outcome: &Outcome,
    model: &ModelParams,
    agents_per_instance: u32,
) -> Summary {
    let horizon = outcome.horizon_us;
    let mut waits: Vec<u64> = Vec::with_capacity(jobs.len());
    let mut busy_us: u64 = 0;
    let mut unstarted = 0;
    let mut after_horizon = 0;
    for (spec, result) in jobs.iter().zip(&outcome.jobs) {
        match result.start_us {
            Some(start) => {
                waits.push(start - spec.ready_at_us);
                busy_us += start.saturating_add(spec.duration_us).min(horizon) - start;
            }
            None if spec.ready_at_us <= horizon => unstarted += 1,
            None => after_horizon += 1,
        }
    }
    waits.sort_unstable();
    let tail = micros(model.billing_tail);
    let instance_us: u64 = outcome
        .instances
        .iter()
        .map(|instance| {
            let end = instance.terminated_us.map_or(horizon, |t| t.saturating_add(tail));
            end.min(horizon) - instance.launched_us
        })
        .sum();
    let stopped_us: u64 =
        outcome.instances.iter().map(|instance| instance.stopped_us(horizon)).sum();
    let instance_minutes = secs_f64(instance_us - stopped_us) / 60.0;
    let stopped_instance_minutes = secs_f64(stopped_us) / 60.0;
    let busy_job_minutes = secs_f64(busy_us) / 60.0;
    let agent_minutes = instance_minutes * f64::from(agents_per_instance);
    let minutes = secs_f64(horizon) / 60.0;
    let per_minute = |calls: u64| if minutes > 0.0 { count_f64(calls) / minutes } else { 0.0 };
    Summary {
        jobs: count(jobs.len()),
        started_jobs: count(waits.len()),
        unstarted_jobs: unstarted,
        jobs_ready_after_horizon: after_horizon,
        wait_p50_s: percentile(&waits, 50.0),
        wait_p95_s: percentile(&waits, 95.0),
        wait_max_s: waits.last().map(|max| secs_f64(*max)),
        wait_mean_s: (!waits.is_empty())
            .then(|| secs_f64(waits.iter().sum::<u64>()) / count_f64(count(waits.len()))),
        instance_minutes,
        stopped_instance_minutes,
        cost_instance_minutes: instance_minutes
            + stopped_instance_minutes * model.stopped_cost_ratio,
        jobs_interrupted: outcome.instances.iter().map(|instance| instance.jobs_interrupted).sum(),
        spot_interruptions: count(
            outcome.instances.iter().filter(|instance| instance.spot_notice_us.is_some()).count(),
        ),
        event_polls: outcome.event_polls,
        busy_job_minutes,
        agent_utilisation: if agent_minutes > 0.0 { busy_job_minutes / agent_minutes } else { 0.0 },
        instances_launched: count(outcome.instances.len()),
        instances_without_jobs: count(
            outcome.instances.iter().filter(|instance| instance.jobs_run == 0).count(),
        ),
        peak_instances: outcome.peak_live_instances,
        set_desired_capacity_calls: outcome.calls.set_desired_capacity,
        invocations: outcome.invocations,
        polls: outcome.polls,
        horizon_s: secs_f64(horizon),
        api_calls: outcome.calls,
        aws_calls_per_minute: per_minute(outcome.calls.aws_total()),
        buildkite_calls_per_minute: per_minute(outcome.calls.buildkite_metrics),
    }
}

/// The `p`th percentile of sorted microsecond values, in seconds, interpolating
/// linearly between the closest ranks (rank = p/100 × (n − 1)).
pub fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = p / 100.0 * count_f64(count(last));
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "rank is between 0 and the last index"
    )]
    let low = rank.floor() as usize;
    let high = (low + 1).min(last);
    let fraction = rank - rank.floor();
    let low_value = secs_f64(sorted[low]);
    let high_value = secs_f64(sorted[high]);
    Some(low_value + (high_value - low_value) * fraction)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^52")]
fn count_f64(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_closest_ranks() {
        let values: Vec<u64> = [1, 2, 3, 4].iter().map(|s| s * 1_000_000).collect();
        assert_eq!(percentile(&values, 50.0), Some(2.5));
        assert!((percentile(&values, 95.0).unwrap() - 3.85).abs() < 1e-12);
        assert_eq!(percentile(&values, 100.0), Some(4.0));
        assert_eq!(percentile(&values[..1], 95.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
