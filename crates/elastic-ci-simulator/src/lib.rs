//! The capacity simulator behind `elastic-ci simulate`: replays a job trace in virtual
//! time through a model of the stack whose scaler is the real
//! [`elastic_ci_core::scaling::decide`], configured from the Lambda's environment
//! variables, and reports how long jobs waited and what the instances cost.
//!
//! Everything here is pure (text and values in, values and text out) and depends on
//! `elastic-ci-core` only; the `elastic-ci simulate` command does the file and
//! terminal I/O.
//!
//! - [`trace`]: the trace formats and their parser.
//! - [`settings`]: scaler variables and model constants, by name.
//! - [`model`]: the event-driven world.
//! - [`summary`]: waits, cost and API use of a run.
//! - [`sweep`]: grids of settings run in parallel, and their Pareto front.
//! - [`render`]: per-job and per-tick tables (CSV, JSON) and the terminal summary.
//! - [`plot`]: the SVG timeline.
//! - [`reference`]: the reference traces T1–T5 and large generated traces.
//! - [`pyrandom`]: Python's random number generator, which defines T5.

pub mod model;
pub mod plot;
pub mod pyrandom;
pub mod reference;
pub mod render;
pub mod settings;
pub mod summary;
pub mod sweep;
pub mod trace;

use elastic_ci_core::scaling::config::ScalerConfig;

use crate::model::{JobSpec, ModelError, ModelParams, Outcome, simulate};
use crate::settings::{Settings, SettingsError};
use crate::summary::{Summary, summarize};
use crate::trace::{MICROS_PER_SEC, Trace};

/// A finished run.
#[derive(Debug, Clone)]
pub struct Run {
    pub config: ScalerConfig,
    pub model: ModelParams,
    /// For each replayed job, its index in the trace.
    pub trace_indices: Vec<u32>,
    pub jobs: Vec<JobSpec>,
    pub outcome: Outcome,
    pub summary: Summary,
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "no job in the trace is on queue {queue:?} (BUILDKITE_QUEUE); the trace's queues are: {queues}"
    )]
    NoJobsOnQueue { queue: String, queues: String },
    #[error(
        "a horizon of {horizon_s} s is longer than the {MAX_HORIZON_SECS} s (366 days) the simulator runs; set a shorter --horizon"
    )]
    HorizonTooLong { horizon_s: String },
}

/// The longest simulated time: a year of polls keeps the timeline in a few hundred
/// megabytes.
pub const MAX_HORIZON_SECS: u64 = 366 * 24 * 3600;

/// The horizon when neither the trace nor the command line sets one: an hour after
/// the last job would end if it started when ready.
pub fn default_horizon(trace: &Trace) -> u64 {
    let last_end =
        trace.jobs.iter().map(|job| job.ready_at_us.saturating_add(job.duration_us)).max();
    last_end.unwrap_or(0).saturating_add(3600 * MICROS_PER_SEC)
}

/// Runs `trace`'s jobs on the scaler's queue with `settings` until `horizon_us` (by
/// default the trace's own horizon, else [`default_horizon`]).
pub fn run(
    trace: &Trace,
    settings: &Settings,
    horizon_us: Option<u64>,
) -> Result<Run, SimulateError> {
    let config = settings.scaler_config()?;
    let queue = trace.queues.iter().position(|name| *name == config.queue);
    let Some(queue) = queue.and_then(|queue| u32::try_from(queue).ok()) else {
        return Err(SimulateError::NoJobsOnQueue {
            queue: config.queue.clone(),
            queues: trace.queues.join(", "),
        });
    };
    let mut trace_indices = Vec::with_capacity(trace.jobs.len());
    let mut jobs = Vec::with_capacity(trace.jobs.len());
    for (index, job) in trace.jobs.iter().enumerate() {
        if job.queue == queue {
            trace_indices.push(u32::try_from(index).unwrap_or(u32::MAX));
            jobs.push(JobSpec {
                visible_at_us: job.visible_at_us,
                ready_at_us: job.ready_at_us,
                duration_us: job.duration_us,
            });
        }
    }
    let horizon_us = horizon_us.or(trace.horizon_us).unwrap_or_else(|| default_horizon(trace));
    if horizon_us > MAX_HORIZON_SECS * MICROS_PER_SEC {
        return Err(SimulateError::HorizonTooLong { horizon_s: trace::format_secs(horizon_us) });
    }
    let model = settings.model.clone();
    let outcome = simulate(&config, &model, &jobs, horizon_us)?;
    let agents_per_instance = config.policy.agents_per_instance.map_or(1, |n| n.get());
    let summary = summarize(&jobs, &outcome, &model, agents_per_instance);
    Ok(Run { config, model, trace_indices, jobs, outcome, summary })
}

#[cfg(test)]
mod tests;
