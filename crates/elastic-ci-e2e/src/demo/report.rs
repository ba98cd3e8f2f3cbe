//! What a run shows: the summary on the terminal, the HTML report with the timeline
//! (the capacity simulator's plot, fed with the samples of the live stack), and, with
//! `--check`, the end-to-end assertions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use elastic_ci_core::boot::plan::{AGENT_CONFIG_PATH, AGENT_ENV_FILE_PATH};
use elastic_ci_core::secret::Secret;
use elastic_ci_simulator::plot::{TimelinePoint, points_svg};
use elastic_ci_testkit::buildkite::{JobRecord, QueueMetrics};

use super::host::{HostReport, JobRun};
use super::scaler::ScalerPoll;
use super::stack::Stack;
use super::trace::DemoTrace;
use super::{Scenario, Timings, plural};

/// The queue and the group at one moment of the run.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: Duration,
    pub(crate) metrics: QueueMetrics,
    pub(crate) desired: u32,
    /// Instances in the group (moto has them in service at once).
    pub(crate) in_service: u32,
    pub(crate) jobs_done: usize,
}

/// One instance: when the group had it, and what its host did.
#[derive(Debug)]
pub(crate) struct HostRecord<'a> {
    pub(crate) instance_id: String,
    /// The group that launched it.
    pub(crate) group: String,
    pub(crate) launched_at: Duration,
    pub(crate) gone_at: Duration,
    /// When the group let go of it while its agents ran (the termination hook's wait).
    pub(crate) removed_at: Option<Duration>,
    pub(crate) report: Option<&'a HostReport>,
}

/// Everything a run recorded.
#[derive(Debug)]
pub(crate) struct RunRecord<'a> {
    pub(crate) trace: &'a DemoTrace,
    pub(crate) stack: &'a Stack,
    pub(crate) timings: &'a Timings,
    pub(crate) samples: &'a [Sample],
    pub(crate) hosts: Vec<HostRecord<'a>>,
    pub(crate) jobs: Vec<JobRecord>,
    pub(crate) polls: &'a [ScalerPoll],
    /// From loading the jobs to the end.
    pub(crate) elapsed: Duration,
    /// Including the deploy.
    pub(crate) wall_time: Duration,
    pub(crate) out: &'a Path,
    pub(crate) scenario: Option<Scenario>,
    /// The update scenario: when and how the group was replaced.
    pub(crate) replacement: Option<&'a GroupReplacement>,
}

/// A stack update that replaced the Auto Scaling group.
#[derive(Debug, Clone)]
pub(crate) struct GroupReplacement {
    /// When the update began.
    pub(crate) at: Duration,
    pub(crate) old_group: String,
    pub(crate) new_group: String,
    /// Instances left in the old group when the fleet loop last looked.
    pub(crate) old_instances_left: usize,
}

/// One end-to-end check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) passed: bool,
    pub(crate) detail: String,
}

/// Mean and percentiles of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    pub(crate) n: usize,
    pub(crate) mean: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) max: f64,
}

impl Stats {
    /// Nearest-rank percentiles, in seconds.
    pub(crate) fn of(durations: &[Duration]) -> Stats {
        let mut secs: Vec<f64> = durations.iter().map(Duration::as_secs_f64).collect();
        secs.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if secs.is_empty() {
                return 0.0;
            }
            #[allow(clippy::cast_precision_loss, reason = "a handful of jobs")]
            let n = secs.len() as f64;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a rank between 1 and the number of jobs"
            )]
            let index = ((p * n).ceil() as usize).clamp(1, secs.len()) - 1;
            secs[index]
        };
        #[allow(clippy::cast_precision_loss, reason = "a handful of jobs")]
        let mean = if secs.is_empty() { 0.0 } else { secs.iter().sum::<f64>() / secs.len() as f64 };
        Stats { n: secs.len(), mean, p50: rank(0.5), p90: rank(0.9), max: rank(1.0) }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mean {:.1} s, p50 {:.1} s, p90 {:.1} s, max {:.1} s",
            self.mean, self.p50, self.p90, self.max
        )
    }
}

/// The run in numbers.
struct Summary<'a> {
    n_jobs: usize,
    n_finished: usize,
    waits: Stats,
    boots: Stats,
    instance_minutes: f64,
    peak_desired: u32,
    n_polls: usize,
    n_failed_polls: usize,
    changes: Vec<&'a ScalerPoll>,
}

fn summarize<'a>(record: &'a RunRecord<'_>) -> Summary<'a> {
    let waits: Vec<Duration> = record
        .jobs
        .iter()
        .filter_map(|job| job.started_at.map(|started| started.saturating_sub(job.spec.ready_at)))
        .collect();
    let boots: Vec<Duration> = record
        .hosts
        .iter()
        .filter_map(|host| host.report.and_then(|report| report.boot.as_ref().ok().copied()))
        .collect();
    let instance_minutes = record
        .hosts
        .iter()
        .map(|host| host.gone_at.saturating_sub(host.launched_at).as_secs_f64() / 60.0)
        .sum();
    Summary {
        n_jobs: record.jobs.len(),
        n_finished: record
            .jobs
            .iter()
            .filter(|job| {
                job.finished_at.is_some() && !job.interrupted && job.exit_status == Some(0)
            })
            .count(),
        waits: Stats::of(&waits),
        boots: Stats::of(&boots),
        instance_minutes,
        peak_desired: record.samples.iter().map(|sample| sample.desired).max().unwrap_or(0),
        n_polls: record.polls.len(),
        n_failed_polls: record.polls.iter().filter(|poll| poll.error.is_some()).count(),
        changes: record.polls.iter().filter(|poll| poll.set_to.is_some()).collect(),
    }
}

/// The summary on stdout.
pub(crate) fn print_summary(record: &RunRecord<'_>, checks: &[Check], report: &Path) {
    let summary = summarize(record);
    println!();
    println!(
        "demo finished in {:.0} s ({:.0} s after the jobs were queued)",
        record.wall_time.as_secs_f64(),
        record.elapsed.as_secs_f64()
    );
    println!("  jobs               {} of {} ran and succeeded", summary.n_finished, summary.n_jobs);
    println!("  wait for an agent  {}", summary.waits);
    println!(
        "  instances          {} launched, peak desired capacity {}, {:.1} instance-minutes",
        record.hosts.len(),
        summary.peak_desired,
        summary.instance_minutes
    );
    println!("  boot               {}", summary.boots);
    println!(
        "  scaler             {} polls ({} failed), {} capacity changes:",
        summary.n_polls,
        summary.n_failed_polls,
        summary.changes.len()
    );
    for poll in &summary.changes {
        println!(
            "    {:>6.1} s  {} -> {}  {}",
            poll.at.as_secs_f64(),
            poll.desired.unwrap_or_default(),
            poll.set_to.unwrap_or_default(),
            poll.reason
        );
    }
    for check in checks {
        println!(
            "  {} {}: {}",
            if check.passed { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    println!("  report             {}", report.display());
}

/// Writes `report.html` (with the timeline inline) and `timeline.svg` into the run's
/// directory and returns the report's path.
pub(crate) fn write(record: &RunRecord<'_>, checks: &[Check]) -> anyhow::Result<PathBuf> {
    let summary = summarize(record);
    let per_instance = record.timings.agents_per_instance;
    let points: Vec<TimelinePoint> = record
        .samples
        .iter()
        .map(|sample| TimelinePoint {
            time_us: u64::try_from(sample.at.as_micros()).unwrap_or(u64::MAX),
            waiting_jobs: sample.metrics.waiting_jobs,
            scheduled_jobs: sample.metrics.scheduled_jobs,
            running_jobs: sample.metrics.running_jobs,
            desired_agents: sample.desired.saturating_mul(per_instance),
            in_service_agents: sample.in_service.saturating_mul(per_instance),
            connected_agents: sample.metrics.idle_agents + sample.metrics.busy_agents,
        })
        .collect();
    // A little room after the last sample, so that the final drop to zero shows.
    let horizon_us = points.last().map_or(1, |point| point.time_us + point.time_us / 40 + 1);
    let svg = points_svg(
        &points,
        per_instance > 1,
        horizon_us,
        &format!("cargo xtask demo: stack {} on moto", record.stack.name),
        &format!(
            "{} jobs from {}; {} agents per instance; idle period {} s",
            record.trace.jobs.len(),
            record.trace.source,
            per_instance,
            record.timings.idle_period_secs
        ),
    );
    let svg_path = record.out.join("timeline.svg");
    std::fs::write(&svg_path, &svg)
        .with_context(|| format!("failed to write {}", svg_path.display()))?;

    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Elastic CI Stack demo: {name}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}}.fail{{color:#b00}}</style></head><body>\n\
         <h1>Elastic CI Stack demo</h1>\n<p>Stack <code>{name}</code> (template version <code>{version}</code>) deployed into moto; \
         the real scaler, bootstrapper and hooks; a fake Buildkite queue fed with {n_jobs} jobs from {source}. \
         The run took {wall:.0} s, {elapsed:.0} s of them after the jobs were queued.</p>\n{svg}\n",
        name = escape(&record.stack.name),
        version = escape(&record.stack.version),
        n_jobs = record.trace.jobs.len(),
        source = escape(&record.trace.source),
        wall = record.wall_time.as_secs_f64(),
        elapsed = record.elapsed.as_secs_f64(),
    );
    let _ = write!(
        html,
        "<h2>Summary</h2><table>\n<tr><th>jobs that ran and succeeded</th><td>{} of {}</td></tr>\n\
         <tr><th>wait for an agent</th><td>{}</td></tr>\n<tr><th>instances</th><td>{} launched, peak desired capacity {}, {:.1} instance-minutes</td></tr>\n\
         <tr><th>boot</th><td>{}</td></tr>\n<tr><th>scaler polls</th><td>{} ({} failed)</td></tr>\n</table>\n",
        summary.n_finished,
        summary.n_jobs,
        summary.waits,
        record.hosts.len(),
        summary.peak_desired,
        summary.instance_minutes,
        summary.boots,
        summary.n_polls,
        summary.n_failed_polls,
    );
    html.push_str("<h2>Checks</h2><table>\n");
    if checks.is_empty() {
        html.push_str("<tr><td>not checked: the run did not settle</td></tr>\n");
    }
    for check in checks {
        let _ = writeln!(
            html,
            "<tr><td{}>{}</td><th>{}</th><td>{}</td></tr>",
            if check.passed { "" } else { " class=\"fail\"" },
            if check.passed { "ok" } else { "FAILED" },
            escape(check.name),
            escape(&check.detail)
        );
    }
    html.push_str("</table>\n");
    html.push_str(
        "<h2>Scaling decisions</h2><table><tr><th>at</th><th>desired</th><th>reason</th></tr>\n",
    );
    for poll in &summary.changes {
        let _ = writeln!(
            html,
            "<tr><td>{:.1} s</td><td>{} &rarr; {}</td><td>{}</td></tr>",
            poll.at.as_secs_f64(),
            poll.desired.unwrap_or_default(),
            poll.set_to.unwrap_or_default(),
            escape(&poll.reason)
        );
    }
    html.push_str("</table>\n<h2>Instances</h2><table><tr><th>instance</th><th>launched</th><th>boot</th><th>jobs</th><th>agent stopped</th><th>left the group</th><th>terminate</th></tr>\n");
    for host in &record.hosts {
        let report = host.report;
        let boot = match report.map(|report| &report.boot) {
            Some(Ok(duration)) => format!("{:.1} s", duration.as_secs_f64()),
            Some(Err(error)) => error.clone(),
            None => "?".to_owned(),
        };
        let terminate = match report.and_then(|report| report.terminate.as_ref()) {
            Some(Ok(())) => "done".to_owned(),
            Some(Err(error)) => error.clone(),
            None => "not run".to_owned(),
        };
        let _ = writeln!(
            html,
            "<tr><td><a href=\"hosts/{id}\">{id}</a></td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td><td>{}</td></tr>",
            host.launched_at.as_secs_f64(),
            escape(&boot),
            report.map_or(0, |report| report.jobs.len()),
            report
                .and_then(|report| report.agent_stopped_at)
                .map_or_else(String::new, |at| format!("{:.1} s", at.as_secs_f64())),
            host.gone_at.as_secs_f64(),
            escape(&terminate),
            id = escape(&host.instance_id),
        );
    }
    html.push_str("</table>\n<h2>Jobs</h2><table><tr><th>job</th><th>ready</th><th>started</th><th>wait</th><th>finished</th><th>agent</th><th>exit</th></tr>\n");
    let secs = |at: Option<Duration>| {
        at.map_or_else(String::new, |at| format!("{:.1} s", at.as_secs_f64()))
    };
    for job in &record.jobs {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&job.spec.id),
            secs(Some(job.spec.ready_at)),
            secs(job.started_at),
            secs(job.started_at.map(|started| started.saturating_sub(job.spec.ready_at))),
            secs(job.finished_at),
            escape(job.agent.as_deref().unwrap_or_default()),
            if job.interrupted {
                "interrupted".to_owned()
            } else {
                job.exit_status.map_or_else(String::new, |status| status.to_string())
            },
        );
    }
    html.push_str("</table>\n<h2>Stack parameters</h2><table>\n");
    for (key, value) in &record.stack.parameters {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            escape(key),
            escape(value)
        );
    }
    let _ = write!(
        html,
        "<tr><th>BuildkiteAgentToken</th><td>(a fresh random token)</td></tr></table>\n\
         <p>Not stack parameters: a simulated instance starts {} s after launch, and \
         <code>elastic-ci-bootstrap terminate</code> runs with <code>--drain-secs {}</code>.</p>\n\
         <p>Files: <a href=\"scaler.log\">scaler.log</a>, <a href=\"moto.log\">moto.log</a>, \
         <a href=\"aws-stack.yml\">aws-stack.yml</a>, <a href=\"hosts\">hosts/</a> (per instance: boot.log, actions.jsonl, \
         jobs/, stub-calls.log, terminate.log, root/).</p>\n</body></html>\n",
        record.timings.instance_start.as_secs(),
        record.timings.terminate_drain_secs,
    );
    let path = record.out.join("report.html");
    std::fs::write(&path, html).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// The end-to-end checks: what must hold after any run.
pub(crate) fn checks(record: &RunRecord<'_>, token: &Secret) -> Vec<Check> {
    let runs: Vec<&JobRun> = record
        .hosts
        .iter()
        .filter_map(|host| host.report)
        .flat_map(|report| &report.jobs)
        .collect();
    let mut checks = vec![
        every_job_ran_once(record, &runs),
        hooks_ran_with_the_secrets(record, &runs),
        no_job_interrupted(record),
    ];
    checks.extend(scenario_check(record));
    checks.push(instances_booted_and_retired(record));
    checks.push(fleet_scaled_up_and_down(record));
    checks.push(token_only_in_agent_configuration(record, token));
    checks
}

/// One check: passed when there are no problems; the detail lists up to five of them,
/// or says what was checked.
fn check(name: &'static str, problems: Vec<String>, ok: String) -> Check {
    let passed = problems.is_empty();
    let detail = match problems.len() {
        0 => ok,
        1..=5 => problems.join("; "),
        n => format!("{}; and {} more", problems[..5].join("; "), n - 5),
    };
    Check { name, passed, detail }
}

/// Every job ran once and succeeded.
fn every_job_ran_once(record: &RunRecord<'_>, runs: &[&JobRun]) -> Check {
    let mut problems = Vec::new();
    if record.jobs.len() != record.trace.jobs.len() {
        problems.push(format!("{} jobs queued of {}", record.jobs.len(), record.trace.jobs.len()));
    }
    for job in &record.jobs {
        let n_runs = runs.iter().filter(|run| run.job_id == job.spec.id).count();
        if job.finished_at.is_none() || job.exit_status != Some(0) || n_runs != 1 {
            problems.push(format!(
                "{} finished={} exit={:?} runs={n_runs}",
                job.spec.id,
                job.finished_at.is_some(),
                job.exit_status
            ));
        }
    }
    check("every job ran once and succeeded", problems, plural(record.jobs.len(), "job"))
}

/// The hooks ran around each job, with the secrets.
fn hooks_ran_with_the_secrets(record: &RunRecord<'_>, runs: &[&JobRun]) -> Check {
    let secrets = &record.stack.secrets;
    let expected_secret = sha256_hex(secrets.bucket_secret.as_bytes());
    let expected_password = sha256_hex(secrets.docker_password.as_bytes());
    let mut problems = Vec::new();
    for run in runs {
        let hooks: Vec<String> =
            run.hooks.iter().map(|(hook, status)| format!("{hook}={status}")).collect();
        if hooks != ["environment=0", "pre-command=0", "pre-exit=0"] {
            problems.push(format!("{}: hooks {}", run.job_id, hooks.join(",")));
        }
        let log = std::fs::read_to_string(&run.log).unwrap_or_default();
        let evidence = log.lines().find(|line| line.starts_with("demo-evidence: ")).unwrap_or("");
        let wanted = [
            format!("job={}", run.job_id),
            format!("bucket_secret_sha256={}", expected_secret.as_deref().unwrap_or("?")),
            format!("pipeline_setting={}", secrets.pipeline_setting),
            format!("agent_env={}", secrets.agent_env),
            "docker_config=set".to_owned(),
        ];
        for want in &wanted {
            if !evidence.split(' ').any(|field| field == want) {
                problems.push(format!("{}: the command did not see {want:?}", run.job_id));
            }
        }
        let stub_log = run
            .log
            .parent()
            .and_then(Path::parent)
            .map(|dir| std::fs::read_to_string(dir.join("stub-calls.log")).unwrap_or_default())
            .unwrap_or_default();
        let logged_in = stub_log.lines().any(|line| {
            line.starts_with(&format!("{} docker login", run.job_id))
                && line.contains(&secrets.docker_user)
                && line.contains("--password-stdin")
                && expected_password
                    .as_ref()
                    .is_some_and(|digest| line.ends_with(&format!("stdin-sha256={digest}")))
        });
        if !logged_in {
            problems.push(format!(
                "{}: no docker login with the bucket's credentials on stdin",
                run.job_id
            ));
        }
    }
    check(
        "each job ran its hooks with the bucket's secrets",
        problems,
        format!(
            "{}: environment, pre-command, pre-exit exited 0; the command saw DEMO_BUCKET_SECRET, DEMO_PIPELINE_SETTING, DEMO_AGENT_ENV and DOCKER_CONFIG; docker login got the password on stdin",
            plural(runs.len(), "job")
        ),
    )
}

/// No job was interrupted: none lost its agent, and no instance left the group
/// before its jobs had finished.
fn no_job_interrupted(record: &RunRecord<'_>) -> Check {
    let mut problems = Vec::new();
    for job in &record.jobs {
        if job.interrupted {
            problems.push(format!("{} was interrupted", job.spec.id));
        }
        let host = record.hosts.iter().find(|host| {
            host.report
                .is_some_and(|report| report.jobs.iter().any(|run| run.job_id == job.spec.id))
        });
        if let (Some(host), Some(finished)) = (host, job.finished_at)
            && host.gone_at < finished
        {
            problems.push(format!(
                "{} left the group before {} finished",
                host.instance_id, job.spec.id
            ));
        }
    }
    check(
        "no job was interrupted",
        problems,
        "every job finished before its instance left".to_owned(),
    )
}

/// The scenario's own check, if one was run.
fn scenario_check(record: &RunRecord<'_>) -> Option<Check> {
    match record.scenario {
        Some(Scenario::Spot) => {
            let (problems, ok) = spot_drained(record);
            Some(check("the spot interruption notice drained its instance in time", problems, ok))
        }
        Some(Scenario::ScaleIn) => {
            let (problems, ok) = scale_in_drained(record);
            Some(check("the instance removed under running jobs drained first", problems, ok))
        }
        Some(Scenario::Warm) => {
            let (problems, ok) = warm_starts(record);
            Some(check("jobs on warm instances started within 5 s of the resume", problems, ok))
        }
        Some(Scenario::Update) => {
            let (problems, ok) = update_drained(record);
            Some(check(
                "the replaced group drained, and later jobs ran on the new group",
                problems,
                ok,
            ))
        }
        None => None,
    }
}

/// Every instance booted from the stack's inputs and retired itself.
fn instances_booted_and_retired(record: &RunRecord<'_>) -> Check {
    let secrets = &record.stack.secrets;
    let mut problems = Vec::new();
    for host in &record.hosts {
        let Some(report) = host.report else {
            problems.push(format!("{}: no report", host.instance_id));
            continue;
        };
        if let Err(error) = &report.boot {
            problems.push(format!("{}: {error}", host.instance_id));
            continue;
        }
        let root = report.dir.join("root");
        let read = |path: &str| {
            std::fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap_or_default()
        };
        if !read("/var/lib/elastic-ci-demo/bootstrap-script-ran").contains(&record.stack.name) {
            problems
                .push(format!("{}: the bootstrap script from S3 did not run", host.instance_id));
        }
        if !read(AGENT_ENV_FILE_PATH).contains(&format!("DEMO_AGENT_ENV=\"{}\"", secrets.agent_env))
        {
            problems.push(format!("{}: the env file from SSM is missing", host.instance_id));
        }
        if report.terminate != Some(Ok(())) {
            problems.push(format!("{}: terminate {:?}", host.instance_id, report.terminate));
        }
        problems.extend(
            report.problems.iter().map(|problem| format!("{}: {problem}", host.instance_id)),
        );
    }
    check(
        "every instance booted from the stack's inputs and terminated itself",
        problems,
        format!(
            "{}: bootstrap script from S3, env file from SSM, terminate",
            plural(record.hosts.len(), "instance")
        ),
    )
}

/// The fleet went from zero to work and back to MinSize.
fn fleet_scaled_up_and_down(record: &RunRecord<'_>) -> Check {
    let first = record.samples.first();
    let last = record.samples.last();
    let peak = record.samples.iter().map(|sample| sample.desired).max().unwrap_or(0);
    let mut problems = Vec::new();
    if first.is_none_or(|sample| sample.desired != 0 || sample.in_service != 0) {
        problems.push("the group did not start empty".to_owned());
    }
    if peak == 0 || record.hosts.is_empty() {
        problems.push("the group never scaled out".to_owned());
    }
    if last.is_none_or(|sample| sample.desired != 0 || sample.in_service != 0) {
        problems.push(format!(
            "the group ended at desired {:?}, {:?} instances, not MinSize 0",
            last.map(|sample| sample.desired),
            last.map(|sample| sample.in_service)
        ));
    }
    check(
        "the fleet scaled up from zero and back down to MinSize",
        problems,
        format!("0 -> peak {peak} -> 0 instances"),
    )
}

/// The agent token is in no file but the agent configurations.
fn token_only_in_agent_configuration(record: &RunRecord<'_>, token: &Secret) -> Check {
    let mut problems = Vec::new();
    let holders = files_containing(record.out, token.expose().as_bytes());
    for path in &holders {
        if !path.ends_with(AGENT_CONFIG_PATH.trim_start_matches('/')) {
            problems.push(format!("the agent token is in {}", path.display()));
        }
    }
    let n_configs = holders.len() - problems.len();
    let booted = record
        .hosts
        .iter()
        .filter(|host| host.report.is_some_and(|report| report.boot.is_ok()))
        .count();
    if n_configs != booted {
        problems.push(format!(
            "{n_configs} agent configurations hold the token, {booted} instances booted"
        ));
    }
    check(
        "the agent token appears only in the agent configuration",
        problems,
        format!(
            "searched every file under {}: only in {}",
            record.out.display(),
            plural(n_configs, "agent configuration")
        ),
    )
}

/// The jobs an instance's agents ran, from the fake API's records.
fn jobs_of<'a>(record: &'a RunRecord<'_>, host: &HostRecord<'_>) -> Vec<&'a JobRecord> {
    let Some(report) = host.report else { return Vec::new() };
    record
        .jobs
        .iter()
        .filter(|job| job.agent.as_ref().is_some_and(|agent| report.agent_names.contains(agent)))
        .collect()
}

/// Whether `host` had a job running at `at` (its notice), and the problems: a job taken
/// after its agent saw `watch` ask it to stop, or no such request at all while busy.
fn drained_from(
    record: &RunRecord<'_>,
    host: &HostRecord<'_>,
    at: Duration,
) -> (Vec<String>, bool) {
    let mut problems = Vec::new();
    let jobs = jobs_of(record, host);
    let busy = jobs.iter().any(|job| {
        job.started_at.is_some_and(|started| started <= at)
            && job.finished_at.is_some_and(|finished| finished >= at)
    });
    match host.report.and_then(|report| report.drain_seen_at) {
        Some(seen) => {
            for job in &jobs {
                if job.started_at.is_some_and(|started| started > seen) {
                    problems.push(format!(
                        "{} took {} after it was asked to stop",
                        host.instance_id, job.spec.id
                    ));
                }
            }
        }
        None if busy => {
            problems
                .push(format!("{}: its agent never saw watch ask it to stop", host.instance_id));
        }
        None => {}
    }
    (problems, busy)
}

fn spot_drained(record: &RunRecord<'_>) -> (Vec<String>, String) {
    let notices: Vec<(&HostRecord<'_>, Duration)> =
        record.hosts.iter().filter_map(|host| Some((host, host.report?.spot_notice_at?))).collect();
    let [(host, at)] = notices[..] else {
        return (
            vec![format!("{} spot notices announced, expected 1", notices.len())],
            String::new(),
        );
    };
    let (mut problems, busy) = drained_from(record, host, at);
    if !busy {
        problems.push(format!("{}: no job was running at the notice", host.instance_id));
    }
    let deadline = at + record.timings.spot_notice;
    match host.report.and_then(|report| report.agent_stopped_at) {
        Some(stopped) if stopped <= deadline => {}
        stopped => problems.push(format!(
            "{}: agents stopped at {stopped:?}, after the interruption at {deadline:?}",
            host.instance_id
        )),
    }
    let ok = format!(
        "{}: notice at {:.1} s under a running job; no new job, running jobs finished, agents stopped before the {} s were up",
        host.instance_id,
        at.as_secs_f64(),
        record.timings.spot_notice.as_secs()
    );
    (problems, ok)
}

fn scale_in_drained(record: &RunRecord<'_>) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    let mut n_busy = 0;
    for host in &record.hosts {
        let Some(at) = host.removed_at else { continue };
        let (host_problems, busy) = drained_from(record, host, at);
        problems.extend(host_problems);
        n_busy += usize::from(busy);
    }
    if n_busy == 0 {
        problems.push("no instance left the group while its agents ran a job".to_owned());
    }
    (
        problems,
        format!(
            "{} left the group under running jobs; each took no new job and was held until they finished",
            plural(n_busy, "instance")
        ),
    )
}

/// The update scenario: the old group's agents took no job once the replacement began,
/// those busy finished their jobs before their instances went, every job queued after
/// the replacement ran on the new group, and the old group ended empty.
fn update_drained(record: &RunRecord<'_>) -> (Vec<String>, String) {
    let Some(replacement) = record.replacement else {
        return (vec!["the group was never replaced".to_owned()], String::new());
    };
    let mut problems = Vec::new();
    let mut n_busy = 0;
    for host in record.hosts.iter().filter(|host| host.group == replacement.old_group) {
        let (host_problems, busy) = drained_from(record, host, replacement.at);
        problems.extend(host_problems);
        n_busy += usize::from(busy);
        for job in jobs_of(record, host) {
            if job.started_at.is_some_and(|started| started > replacement.at) {
                problems.push(format!(
                    "{} of the old group took {} after the replacement began",
                    host.instance_id, job.spec.id
                ));
            }
        }
    }
    if n_busy == 0 {
        problems.push("no instance of the old group ran a job when it was replaced".to_owned());
    }
    let later: Vec<&JobRecord> =
        record.jobs.iter().filter(|job| job.spec.visible_at > replacement.at).collect();
    if later.is_empty() {
        problems.push("no job was queued after the replacement".to_owned());
    }
    for job in &later {
        let on_new_group = record
            .hosts
            .iter()
            .filter(|host| host.group == replacement.new_group)
            .any(|host| jobs_of(record, host).iter().any(|run| run.spec.id == job.spec.id));
        if !on_new_group {
            problems.push(format!("{} did not run on the new group", job.spec.id));
        }
    }
    if replacement.old_instances_left != 0 {
        problems.push(format!(
            "the old group {} still has {}",
            replacement.old_group,
            plural(replacement.old_instances_left, "instance")
        ));
    }
    let ok = format!(
        "{} replaced at {:.1} s: {} of it busy took no new job and went once its jobs finished; {} queued later ran on {}; the old group ended empty",
        replacement.old_group,
        replacement.at.as_secs_f64(),
        plural(n_busy, "instance"),
        plural(later.len(), "job"),
        replacement.new_group
    );
    (problems, ok)
}

/// The most a job may wait on an instance out of the warm pool, from the start of its
/// resume to the job's start.
const WARM_START_LIMIT: Duration = Duration::from_secs(5);

fn warm_starts(record: &RunRecord<'_>) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    let mut starts = Vec::new();
    for host in &record.hosts {
        let Some(resumed) = host.report.and_then(|report| report.resumed_at) else { continue };
        let first = jobs_of(record, host).iter().filter_map(|job| job.started_at).min();
        match first {
            Some(first) if first.saturating_sub(resumed) <= WARM_START_LIMIT => {
                starts.push(first.saturating_sub(resumed));
            }
            Some(first) => problems.push(format!(
                "{}: first job {:.1} s after its resume",
                host.instance_id,
                first.saturating_sub(resumed).as_secs_f64()
            )),
            None => problems.push(format!("{}: resumed but ran no job", host.instance_id)),
        }
    }
    if starts.is_empty() && problems.is_empty() {
        problems.push("no instance came out of the warm pool".to_owned());
    }
    let detail =
        starts.iter().map(|start| format!("{:.1} s", start.as_secs_f64())).collect::<Vec<_>>();
    (
        problems,
        format!(
            "{} out of the warm pool; first job {} after the resume began",
            plural(starts.len(), "instance"),
            detail.join(", ")
        ),
    )
}

/// Regular files under `dir` (symbolic links not followed) that contain `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file()
                && let Ok(bytes) = std::fs::read(entry.path())
                && !needle.is_empty()
                && bytes.windows(needle.len()).any(|window| window == needle)
            {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// SHA-256 of `bytes` in lower-case hex, as `sha256sum` prints it (the hash the job
/// command and the docker stub print). Always `Some`: the `Option` is the checks'
/// interface, which predates the in-process hash.
fn sha256_hex(bytes: &[u8]) -> Option<String> {
    use sha2::Digest;
    Some(sha2::Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_use_nearest_ranks() {
        let waits: Vec<Duration> = [4, 1, 3, 2, 10].into_iter().map(Duration::from_secs).collect();
        let stats = Stats::of(&waits);
        assert_eq!((stats.n, stats.p50, stats.p90, stats.max), (5, 3.0, 10.0, 10.0));
        assert!((stats.mean - 4.0).abs() < 1e-9);
        assert_eq!(Stats::of(&[]).max, 0.0);
    }

    #[test]
    fn finds_every_file_holding_a_value_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/cfg"), "token=\"bk-123\"\n").unwrap();
        std::fs::write(dir.path().join("a/log"), "nothing here bk-12\n").unwrap();
        std::fs::write(dir.path().join("leak"), b"\x00bk-123\x00").unwrap();
        std::os::unix::fs::symlink(dir.path().join("leak"), dir.path().join("a/link")).unwrap();
        let found = files_containing(dir.path(), b"bk-123");
        assert_eq!(found, [dir.path().join("a/b/cfg"), dir.path().join("leak")]);
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            sha256_hex(b"abc").as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }
}
