//! `elastic-ci simulate`: reads the trace and settings, runs the simulation (or a sweep
//! of them), prints the summary and writes the requested files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use tracing::{info, warn};

use elastic_ci_simulator::plot::timeline_svg;
use elastic_ci_simulator::render::{
    TableFormat, human_secs, human_summary, job_rows, table, tick_rows,
};
use elastic_ci_simulator::settings::{Settings, parse_duration_arg};
use elastic_ci_simulator::summary::Summary;
use elastic_ci_simulator::sweep::{Axis, Point, WaitObjective, grid, parse_axis, run_grid};
use elastic_ci_simulator::trace::{Trace, TraceFormat, micros_from_secs};
use elastic_ci_simulator::{Run, run};

/// Arguments of `elastic-ci simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The job trace (`-` for stdin): CSV with a header, or JSON Lines, with the fields
    /// job_id, queue, visible_at_s, ready_at_s, duration_s; `#` starts a comment and
    /// `# horizon_s=N` sets the horizon.
    #[arg(value_name = "TRACE")]
    pub(crate) trace: PathBuf,

    /// The trace's format [default: JSON Lines if its first data line starts with `{`,
    /// else CSV].
    #[arg(long, value_enum, help_heading = "Input")]
    pub(crate) trace_format: Option<TraceFormatArg>,

    /// When to stop, in seconds or as a duration (1h) [default: the trace's
    /// `# horizon_s=` line, else an hour after the last job could end].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, help_heading = "Input")]
    pub(crate) horizon: Option<Duration>,

    /// Scaler environment variables (the Lambda's names and syntax, such as
    /// SCALE_OUT_COOLDOWN_PERIOD=0s), in env-file syntax, over the stack's defaults.
    /// Variables the scaler does not read are ignored with a warning.
    #[arg(long, value_name = "FILE", help_heading = "Scaler")]
    pub(crate) env_file: Option<PathBuf>,

    /// Sets a scaler variable or a world model parameter (the flag name without `--`,
    /// such as idle-period=300), after --env-file and the model flags. Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE", help_heading = "Scaler")]
    pub(crate) set: Vec<String>,

    #[command(flatten)]
    pub(crate) model: ModelArgs,

    /// Print the summary as one JSON object (a sweep: all points) instead of text.
    #[arg(long, help_heading = "Output")]
    pub(crate) json: bool,

    /// The price of one instance-hour in dollars (such as 0.0832): adds the dollar cost
    /// of the instance-minutes to the summary, the JSON (cost_usd) and the sweep.
    #[arg(long, value_name = "DOLLARS", value_parser = parse_price, help_heading = "Output")]
    pub price_per_instance_hour: Option<f64>,

    /// Write the per-job table (job, ready, start, wait, instance) to FILE: .csv, .json
    /// or .jsonl.
    #[arg(long, value_name = "FILE", value_parser = table_file, help_heading = "Output", conflicts_with = "sweep")]
    pub(crate) jobs_out: Option<PathBuf>,

    /// Write the per-poll timeline (true and observed counts, group sizes, decision) to
    /// FILE: .csv, .json or .jsonl.
    #[arg(long, value_name = "FILE", value_parser = table_file, help_heading = "Output", conflicts_with = "sweep")]
    pub(crate) timeline_out: Option<PathBuf>,

    /// Write an SVG plot of the timeline (jobs waiting and running; desired, in-service
    /// and connected capacity) to FILE.svg.
    #[arg(long, value_name = "FILE", value_parser = svg_file, help_heading = "Output", conflicts_with = "sweep")]
    pub(crate) plot: Option<PathBuf>,

    /// Run every combination of these values of a scaler variable or model parameter,
    /// in parallel, and print the cost/wait Pareto front. Repeatable: the grid is the
    /// product. Example: --sweep SCALE_OUT_COOLDOWN_PERIOD=0s,60s,300s --sweep
    /// idle-period=300,600.
    #[arg(long, value_name = "NAME=V1,V2,…", value_parser = axis, help_heading = "Sweep")]
    pub(crate) sweep: Vec<Axis>,

    /// Threads for a sweep [default: the available cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024), help_heading = "Sweep")]
    pub(crate) threads: Option<u16>,

    /// The wait figure the Pareto front trades against instance-minutes.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::P95, help_heading = "Sweep")]
    pub(crate) objective: ObjectiveArg,
}

/// The world model's constants (the reference model's defaults). Durations are seconds
/// (`0.5`) or Go durations (`500ms`, `1m15s`).
#[derive(Debug, Args)]
#[command(next_help_heading = "World model")]
pub(crate) struct ModelArgs {
    /// How often the schedule invokes the scaler Lambda (ScalerEventSchedulePeriod).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration_arg)]
    pub(crate) schedule_period: Duration,

    /// How long one poll takes; the next one starts LAMBDA_INTERVAL after it ends.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration_arg)]
    pub(crate) run_cost: Duration,

    /// The Lambda function's timeout; polling stops 2 s before it.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration_arg)]
    pub(crate) function_timeout: Duration,

    /// Age of the counts the Buildkite metrics API reports.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration_arg)]
    pub(crate) metrics_lag: Duration,

    /// The API's poll-duration header: the least time between polls (0: none).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_arg)]
    pub(crate) poll_duration: Duration,

    /// Launch to InService.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_arg)]
    pub(crate) boot: Duration,

    /// Launch to the instance's agents connected.
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = parse_duration_arg)]
    pub(crate) agent_connect: Duration,

    /// ScaleInIdlePeriod: how long all agents of an instance must be idle before they
    /// disconnect and the instance terminates itself.
    #[arg(long, value_name = "DURATION", default_value = "600s", value_parser = parse_duration_arg)]
    pub(crate) idle_period: Duration,

    /// Agents disconnected to the termination call (log drain).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_arg)]
    pub(crate) drain: Duration,

    /// Termination call to the end of billing.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration_arg)]
    pub(crate) billing_tail: Duration,

    /// The group's MinSize; the group starts with this many idle instances.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) min_size: u32,

    /// The group's MaxSize.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_size: u32,

    /// WarmPoolSize: stopped instances that have booted up to the agent start; a
    /// launch takes one and its agents connect --resume later (0: no warm pool).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub warm_pool_size: u32,

    /// A warm-pool instance's start to its agents connected.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration_arg)]
    pub resume: Duration,

    /// What a stopped warm-pool instance costs as a fraction of a running one (its
    /// EBS volumes only); cost_instance_minutes counts stopped time at this ratio.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.25, value_parser = fraction)]
    pub stopped_cost_ratio: f64,

    /// Event-driven scale-out: a job's readiness to the scaler's poll for its Job
    /// Scheduled event (one event poll per LAMBDA_INTERVAL at most), or "off".
    #[arg(long, value_name = "DURATION|off", default_value = "off", value_parser = event_delay)]
    pub event_delay: EventDelay,

    /// Spot interruption notices per connected instance-hour (0: none).
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = rate)]
    pub spot_interruptions_per_hour: f64,

    /// The warning a spot interruption gives; jobs still running after it are
    /// interrupted.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration_arg)]
    pub spot_notice: Duration,

    /// The seed of the spot interruption times.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub spot_seed: u64,
}

/// `--event-delay`: a duration, or off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventDelay(pub Option<Duration>);

fn event_delay(text: &str) -> Result<EventDelay, String> {
    if text == "off" {
        return Ok(EventDelay(None));
    }
    parse_duration_arg(text).map(|delay| EventDelay(Some(delay))).map_err(|_| {
        format!("invalid --event-delay {text:?}: expected a duration such as 5s, or off")
    })
}

fn fraction(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|value| (0.0..=1.0).contains(value))
        .ok_or_else(|| format!("invalid fraction {text:?}: expected a number from 0 to 1"))
}

fn rate(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|value| value.is_finite() && *value >= 0.0)
        .ok_or_else(|| format!("invalid rate {text:?}: expected a number of 0 or more"))
}

impl ModelArgs {
    fn apply(&self, settings: &mut Settings) {
        let model = &mut settings.model;
        model.schedule_period = self.schedule_period;
        model.run_cost = self.run_cost;
        model.function_timeout = self.function_timeout;
        model.metrics_lag = self.metrics_lag;
        model.poll_duration = self.poll_duration;
        model.boot = self.boot;
        model.agent_connect = self.agent_connect;
        model.idle_period = self.idle_period;
        model.drain = self.drain;
        model.billing_tail = self.billing_tail;
        model.min_size = self.min_size;
        model.max_size = self.max_size;
        model.warm_pool_size = self.warm_pool_size;
        model.resume = self.resume;
        model.stopped_cost_ratio = self.stopped_cost_ratio;
        model.event_delay = self.event_delay.0;
        model.spot_interruptions_per_hour = self.spot_interruptions_per_hour;
        model.spot_notice = self.spot_notice;
        model.spot_seed = self.spot_seed;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TraceFormatArg {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ObjectiveArg {
    P50,
    P95,
    Max,
    Mean,
}

impl From<ObjectiveArg> for WaitObjective {
    fn from(objective: ObjectiveArg) -> WaitObjective {
        match objective {
            ObjectiveArg::P50 => WaitObjective::P50,
            ObjectiveArg::P95 => WaitObjective::P95,
            ObjectiveArg::Max => WaitObjective::Max,
            ObjectiveArg::Mean => WaitObjective::Mean,
        }
    }
}

fn table_file(text: &str) -> Result<PathBuf, String> {
    TableFormat::from_file_name(text).map(|_| PathBuf::from(text)).ok_or_else(|| {
        format!("invalid file name {text:?}: expected one ending in .csv, .json or .jsonl")
    })
}

fn svg_file(text: &str) -> Result<PathBuf, String> {
    if text.to_ascii_lowercase().ends_with(".svg") {
        Ok(PathBuf::from(text))
    } else {
        Err(format!("invalid file name {text:?}: expected one ending in .svg"))
    }
}

fn parse_price(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|price| price.is_finite() && (0.0..=1000.0).contains(price))
        .ok_or_else(|| {
            format!(
                "invalid price {text:?}: expected dollars per instance-hour from 0 to 1000, such as 0.0832"
            )
        })
}

/// The summary line of the dollar cost.
fn cost_line(summary: &Summary, price: f64) -> String {
    format!(
        "dollar cost: ${:.2} ({:.1} instance-minutes at ${price} per instance-hour)\n",
        summary.cost_usd(price),
        summary.instance_minutes
    )
}

/// The summary as JSON, with the price and cost when a price is given.
fn summary_json(summary: &Summary, price: Option<f64>) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(summary)?;
    if let (Some(price), Some(object)) = (price, value.as_object_mut()) {
        object.insert("price_per_instance_hour".to_owned(), price.into());
        object.insert("cost_usd".to_owned(), summary.cost_usd(price).into());
    }
    Ok(value)
}

fn axis(text: &str) -> Result<Axis, String> {
    parse_axis(text).map_err(|error| error.to_string())
}

/// Runs `elastic-ci simulate`.
pub(crate) fn simulate(args: &SimulateArgs, stdout: &mut dyn Write) -> anyhow::Result<()> {
    let trace_name = args.trace.display().to_string();
    let text =
        read_input(&args.trace).with_context(|| format!("failed to read trace {trace_name}"))?;
    let format = args.trace_format.map(|format| match format {
        TraceFormatArg::Csv => TraceFormat::Csv,
        TraceFormatArg::Jsonl => TraceFormat::JsonLines,
    });
    let trace =
        Trace::parse(&text, format).with_context(|| format!("invalid trace {trace_name}"))?;
    let settings = settings(args)?;
    let horizon_us =
        args.horizon.map(|horizon| micros_from_secs(horizon.as_secs_f64()).unwrap_or(u64::MAX));
    if !args.sweep.is_empty() {
        return sweep(args, &trace_name, &trace, &settings, horizon_us, stdout);
    }
    let run = run(&trace, &settings, horizon_us)?;
    info!(
        jobs = run.summary.jobs,
        polls = run.summary.polls,
        instances = run.summary.instances_launched,
        "simulated"
    );
    let mut written = Vec::new();
    if let Some(path) = &args.jobs_out {
        let rows = job_rows(&trace, &run);
        write_table(path, &rows)?;
        written.push(path);
    }
    if let Some(path) = &args.timeline_out {
        let rows = tick_rows(&run.outcome.timeline);
        write_table(path, &rows)?;
        written.push(path);
    }
    if let Some(path) = &args.plot {
        write_atomically(path, plot(&trace_name, &settings, &run).as_bytes())?;
        written.push(path);
    }
    if args.json {
        let value = summary_json(&run.summary, args.price_per_instance_hour)?;
        writeln!(stdout, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        stdout.write_all(human_summary(&trace_name, &settings, &run).as_bytes())?;
        if let Some(price) = args.price_per_instance_hour {
            stdout.write_all(cost_line(&run.summary, price).as_bytes())?;
        }
        for path in written {
            writeln!(stdout, "wrote {}", path.display())?;
        }
    }
    stdout.flush()?;
    Ok(())
}

fn read_input(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().lock().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

fn settings(args: &SimulateArgs) -> anyhow::Result<Settings> {
    let mut settings = Settings::stack_defaults();
    if let Some(path) = &args.env_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read env file {}", path.display()))?;
        let ignored = settings
            .apply_env_file(&text)
            .with_context(|| format!("invalid env file {}", path.display()))?;
        for name in ignored {
            warn!(env_file = %path.display(), variable = %name, "ignoring a variable the scaler does not read");
        }
    }
    args.model.apply(&mut settings);
    for assignment in &args.set {
        settings.set_assignment(assignment).context("invalid --set")?;
    }
    // Fail on bad scaler settings before reading anything else.
    settings.scaler_config()?;
    Ok(settings)
}

fn plot(trace_name: &str, settings: &Settings, run: &Run) -> String {
    let summary = &run.summary;
    let file_name = Path::new(trace_name)
        .file_name()
        .map_or_else(|| trace_name.to_owned(), |name| name.to_string_lossy().into_owned());
    let title = format!(
        "{file_name}: wait p50 {}, p95 {}, max {}; {:.0} instance-minutes",
        human_secs(summary.wait_p50_s),
        human_secs(summary.wait_p95_s),
        human_secs(summary.wait_max_s),
        summary.instance_minutes
    );
    let changes: Vec<String> =
        settings.env_changes().iter().map(|(name, value)| format!("{name}={value}")).collect();
    let subtitle = if changes.is_empty() {
        "scaler: the stack defaults".to_owned()
    } else {
        format!("scaler: the stack defaults with {}", changes.join(" "))
    };
    let per_instance = run.config.policy.agents_per_instance.map_or(1, |n| n.get());
    timeline_svg(&run.outcome.timeline, per_instance, run.outcome.horizon_us, &title, &subtitle)
}

fn write_table<T: Serialize + elastic_ci_simulator::render::CsvRow>(
    path: &Path,
    rows: &[T],
) -> anyhow::Result<()> {
    let name = path.display().to_string();
    let format = TableFormat::from_file_name(&name)
        .with_context(|| format!("invalid file name {name:?}: expected .csv, .json or .jsonl"))?;
    let text = table(rows, format).with_context(|| format!("failed to render {name}"))?;
    write_atomically(path, text.as_bytes())
}

/// Writes `contents` to a temporary file beside `path` and renames it into place, so
/// that `path` is never left half-written.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(directory)
        .with_context(|| format!("failed to create a file in {}", directory.display()))?;
    file.write_all(contents).with_context(|| format!("failed to write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("failed to set the mode of {}", path.display()))?;
    }
    file.persist(path).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

#[derive(Serialize)]
struct SweepReport<'a> {
    trace: &'a str,
    objective: WaitObjective,
    axes: Vec<&'a str>,
    points: Vec<PointReport>,
}

#[derive(Serialize)]
struct PointReport {
    settings: serde_json::Map<String, serde_json::Value>,
    pareto: bool,
    summary: serde_json::Value,
}

fn sweep(
    args: &SimulateArgs,
    trace_name: &str,
    trace: &Trace,
    settings: &Settings,
    horizon_us: Option<u64>,
    stdout: &mut dyn Write,
) -> anyhow::Result<()> {
    let combinations = grid(settings, &args.sweep)?;
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        usize::from,
    );
    let objective = WaitObjective::from(args.objective);
    info!(combinations = combinations.len(), threads, "sweeping");
    let points = run_grid(trace, settings, combinations, horizon_us, threads, objective)?;
    let axes: Vec<&str> = args.sweep.iter().map(|axis| axis.name.as_str()).collect();
    if args.json {
        let report = SweepReport {
            trace: trace_name,
            objective,
            axes: axes.clone(),
            points: points
                .iter()
                .map(|point| {
                    Ok(PointReport {
                        settings: point
                            .settings
                            .iter()
                            .map(|(name, value)| {
                                (name.clone(), serde_json::Value::from(value.as_str()))
                            })
                            .collect(),
                        pareto: point.pareto,
                        summary: summary_json(&point.summary, args.price_per_instance_hour)?,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        };
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        let table =
            front_table(trace_name, &axes, &points, objective, args.price_per_instance_hour);
        stdout.write_all(table.as_bytes())?;
    }
    stdout.flush()?;
    Ok(())
}

/// The Pareto front as an aligned text table, cheapest first.
fn front_table(
    trace_name: &str,
    axes: &[&str],
    points: &[Point],
    objective: WaitObjective,
    price: Option<f64>,
) -> String {
    let mut front: Vec<&Point> = points.iter().filter(|point| point.pareto).collect();
    front.sort_by(|a, b| a.summary.instance_minutes.total_cmp(&b.summary.instance_minutes));
    let mut header: Vec<String> = axes.iter().map(|name| (*name).to_owned()).collect();
    header.push("instance-min".to_owned());
    if price.is_some() {
        header.push("cost $".to_owned());
    }
    header.extend(["wait p50", "wait p95", "wait max", "unstarted", "launched"].map(str::to_owned));
    let mut rows = vec![header];
    for point in &front {
        let summary = &point.summary;
        let mut row: Vec<String> = point.settings.iter().map(|(_, value)| value.clone()).collect();
        row.push(format!("{:.1}", summary.instance_minutes));
        if let Some(price) = price {
            row.push(format!("{:.2}", summary.cost_usd(price)));
        }
        row.push(human_secs(summary.wait_p50_s));
        row.push(human_secs(summary.wait_p95_s));
        row.push(human_secs(summary.wait_max_s));
        row.push(summary.unstarted_jobs.to_string());
        row.push(summary.instances_launched.to_string());
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "{trace_name}: {} combinations of {}; the Pareto front of instance-minutes against {} wait:\n",
        points.len(),
        axes.join(", "),
        objective.label()
    );
    for row in rows {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} of {} combinations are on the front; --json prints every one.\n",
        front.len(),
        points.len()
    ));
    if let Some(price) = price {
        out.push_str(&format!("cost $ is at ${price} per instance-hour.\n"));
    }
    out
}
