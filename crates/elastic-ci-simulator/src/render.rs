//! A run as text: the per-job table, the per-tick timeline (CSV, JSON or JSON Lines)
//! and the summary for the terminal.

use std::fmt::Write as _;

use elastic_ci_core::scaling::{Action, Direction, Reason};
use serde::Serialize;

use crate::Run;
use crate::model::Tick;
use crate::settings::Settings;
use crate::summary::Summary;
use crate::trace::{Trace, format_secs, secs_f64};

/// The formats of the per-job and per-tick tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Csv,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    JsonLines,
}

impl TableFormat {
    /// The format a file name asks for: `.csv`, `.json`, or `.jsonl`/`.ndjson`.
    pub fn from_file_name(name: &str) -> Option<TableFormat> {
        let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(TableFormat::Csv),
            "json" => Some(TableFormat::Json),
            "jsonl" | "ndjson" => Some(TableFormat::JsonLines),
            _ => None,
        }
    }
}

/// One row of the per-job table.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow<'a> {
    pub job_id: &'a str,
    pub queue: &'a str,
    pub visible_at_s: f64,
    pub ready_at_s: f64,
    pub duration_s: f64,
    /// `null` when the job did not start before the horizon.
    pub start_s: Option<f64>,
    pub wait_s: Option<f64>,
    /// Index of the instance (in launch order) that ran it.
    pub instance: Option<u32>,
}

/// One row of the timeline: the world at a poll and what the scaler did.
#[derive(Debug, Clone, Serialize)]
pub struct TickRow {
    pub time_s: f64,
    pub invocation: u64,
    /// True counts at the poll.
    pub waiting_jobs: u32,
    pub scheduled_jobs: u32,
    pub running_jobs: u32,
    pub idle_agents: u32,
    pub total_agents: u32,
    /// The counts the scaler saw (differ with a metrics lag).
    pub seen_scheduled_jobs: u32,
    pub seen_running_jobs: u32,
    pub seen_waiting_jobs: u32,
    pub seen_total_agents: u32,
    pub desired_capacity: u32,
    pub in_service: u32,
    pub pending: u32,
    pub live_instances: u32,
    pub computed_capacity: u32,
    /// `none`, `scale_out` or `scale_in`.
    pub action: &'static str,
    pub desired_after: u32,
    /// Why: `scale_out`, `scale_out_cooldown`, `converging`, `steady`, …
    pub reason: String,
}

/// The per-job table.
pub fn job_rows<'a>(trace: &'a Trace, run: &Run) -> Vec<JobRow<'a>> {
    run.trace_indices
        .iter()
        .zip(&run.outcome.jobs)
        .map(|(index, outcome)| {
            let job = &trace.jobs[*index as usize];
            JobRow {
                job_id: &job.id,
                queue: trace.queue_name(job),
                visible_at_s: secs_f64(job.visible_at_us),
                ready_at_s: secs_f64(job.ready_at_us),
                duration_s: secs_f64(job.duration_us),
                start_s: outcome.start_us.map(secs_f64),
                wait_s: outcome.start_us.map(|start| secs_f64(start - job.ready_at_us)),
                instance: outcome.instance,
            }
        })
        .collect()
}

/// The timeline table.
pub fn tick_rows(timeline: &[Tick]) -> Vec<TickRow> {
    timeline
        .iter()
        .map(|tick| {
            let decision = &tick.decision;
            let seen = &decision.counts;
            TickRow {
                time_s: secs_f64(tick.time_us),
                invocation: tick.invocation,
                waiting_jobs: tick.world.waiting_jobs,
                scheduled_jobs: tick.world.scheduled_jobs,
                running_jobs: tick.world.running_jobs,
                idle_agents: tick.world.idle_agents,
                total_agents: tick.world.total_agents,
                seen_scheduled_jobs: seen.scheduled_jobs,
                seen_running_jobs: seen.running_jobs,
                seen_waiting_jobs: seen.waiting_jobs,
                seen_total_agents: seen.total_agents,
                desired_capacity: decision.group.desired_capacity,
                in_service: decision.group.in_service,
                pending: decision.group.pending,
                live_instances: tick.live_instances,
                computed_capacity: decision.computed,
                action: match decision.action {
                    Action::None => "none",
                    Action::SetDesiredCapacity { direction: Direction::Out, .. } => "scale_out",
                    Action::SetDesiredCapacity { direction: Direction::In, .. } => "scale_in",
                },
                desired_after: tick.desired_after,
                reason: reason_kind(&decision.reason),
            }
        })
        .collect()
}

/// The `kind` tag of a reason, as its JSON form spells it.
fn reason_kind(reason: &Reason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|value| value.get("kind").and_then(|kind| kind.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// Rows as a table in `format`. CSV cells are written without loss: times as exact
/// decimals, empty for `null`.
pub fn table<T: Serialize + CsvRow>(
    rows: &[T],
    format: TableFormat,
) -> Result<String, serde_json::Error> {
    match format {
        TableFormat::Json => {
            let mut text = serde_json::to_string_pretty(rows)?;
            text.push('\n');
            Ok(text)
        }
        TableFormat::JsonLines => {
            let mut text = String::new();
            for row in rows {
                text.push_str(&serde_json::to_string(row)?);
                text.push('\n');
            }
            Ok(text)
        }
        TableFormat::Csv => {
            let mut text = T::HEADER.join(",");
            text.push('\n');
            for row in rows {
                row.write_csv(&mut text);
                text.push('\n');
            }
            Ok(text)
        }
    }
}

/// A row that can be written as CSV.
pub trait CsvRow {
    const HEADER: &'static [&'static str];
    fn write_csv(&self, out: &mut String);
}

fn secs_cell(secs: f64) -> String {
    crate::trace::micros_from_secs(secs).map_or_else(|| secs.to_string(), format_secs)
}

fn option_cell<T: ToString>(value: Option<T>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

fn text_cell(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

impl CsvRow for JobRow<'_> {
    const HEADER: &'static [&'static str] = &[
        "job_id",
        "queue",
        "visible_at_s",
        "ready_at_s",
        "duration_s",
        "start_s",
        "wait_s",
        "instance",
    ];

    fn write_csv(&self, out: &mut String) {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{}",
            text_cell(self.job_id),
            text_cell(self.queue),
            secs_cell(self.visible_at_s),
            secs_cell(self.ready_at_s),
            secs_cell(self.duration_s),
            option_cell(self.start_s.map(secs_cell)),
            option_cell(self.wait_s.map(secs_cell)),
            option_cell(self.instance),
        );
    }
}

impl CsvRow for TickRow {
    const HEADER: &'static [&'static str] = &[
        "time_s",
        "invocation",
        "waiting_jobs",
        "scheduled_jobs",
        "running_jobs",
        "idle_agents",
        "total_agents",
        "seen_scheduled_jobs",
        "seen_running_jobs",
        "seen_waiting_jobs",
        "seen_total_agents",
        "desired_capacity",
        "in_service",
        "pending",
        "live_instances",
        "computed_capacity",
        "action",
        "desired_after",
        "reason",
    ];

    fn write_csv(&self, out: &mut String) {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            secs_cell(self.time_s),
            self.invocation,
            self.waiting_jobs,
            self.scheduled_jobs,
            self.running_jobs,
            self.idle_agents,
            self.total_agents,
            self.seen_scheduled_jobs,
            self.seen_running_jobs,
            self.seen_waiting_jobs,
            self.seen_total_agents,
            self.desired_capacity,
            self.in_service,
            self.pending,
            self.live_instances,
            self.computed_capacity,
            self.action,
            self.desired_after,
            self.reason,
        );
    }
}

/// Seconds for people: `80.5 s`, `n/a`.
pub fn human_secs(secs: Option<f64>) -> String {
    secs.map_or_else(|| "n/a".to_owned(), |secs| format!("{secs:.1} s"))
}

/// The terminal summary of a run.
pub fn human_summary(trace_name: &str, settings: &Settings, run: &Run) -> String {
    let summary: &Summary = &run.summary;
    let mut out = String::new();
    let horizon_s = summary.horizon_s;
    let _ = writeln!(
        out,
        "{trace_name}: {} jobs on queue {:?}, simulated for {horizon_s:.0} s ({:.2} h)",
        summary.jobs,
        run.config.queue,
        horizon_s / 3600.0
    );
    let changes = settings.env_changes();
    if changes.is_empty() {
        let _ = writeln!(out, "scaler: the stack defaults");
    } else {
        let list: Vec<String> =
            changes.iter().map(|(name, value)| format!("{name}={value}")).collect();
        let _ = writeln!(out, "scaler: the stack defaults with {}", list.join(" "));
    }
    let _ = writeln!(
        out,
        "job wait (ready to start): p50 {}, p95 {}, max {}, mean {}",
        human_secs(summary.wait_p50_s),
        human_secs(summary.wait_p95_s),
        human_secs(summary.wait_max_s),
        human_secs(summary.wait_mean_s)
    );
    let _ = writeln!(
        out,
        "jobs: {} started, {} unstarted at the horizon{}",
        summary.started_jobs,
        summary.unstarted_jobs,
        if summary.jobs_ready_after_horizon > 0 {
            format!(", {} ready only after it", summary.jobs_ready_after_horizon)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "cost: {:.1} instance-minutes for {:.1} busy job-minutes ({:.0}% of agent time busy); {} instances launched, at most {} at once",
        summary.instance_minutes,
        summary.busy_job_minutes,
        summary.agent_utilisation * 100.0,
        summary.instances_launched,
        summary.peak_instances
    );
    if summary.stopped_instance_minutes > 0.0 {
        let _ = writeln!(
            out,
            "warm pool: {:.1} stopped instance-minutes; with them at their EBS cost, {:.1} instance-minutes in all",
            summary.stopped_instance_minutes, summary.cost_instance_minutes
        );
    }
    let _ = writeln!(
        out,
        "jobs interrupted: {} ({} spot interruption notices)",
        summary.jobs_interrupted, summary.spot_interruptions
    );
    let _ = writeln!(
        out,
        "scaler: {} invocations, {} polls ({} for job events), {} SetDesiredCapacity calls; {:.2} Buildkite and {:.2} AWS calls per minute",
        summary.invocations,
        summary.polls,
        summary.event_polls,
        summary.set_desired_capacity_calls,
        summary.buildkite_calls_per_minute,
        summary.aws_calls_per_minute
    );
    out
}
