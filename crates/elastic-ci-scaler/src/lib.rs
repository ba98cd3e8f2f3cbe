//! `elastic-ci-scaler`: sets an Auto Scaling group's desired capacity from a Buildkite
//! queue's metrics.
//!
//! One binary, two ways to run:
//! - as the Lambda function (when `AWS_LAMBDA_RUNTIME_API` is set), invoked every minute
//!   by a schedule: [`handle`] waits its startup jitter, then polls every
//!   `LAMBDA_INTERVAL` until `LAMBDA_TIMEOUT` or shortly before the Lambda deadline;
//!   and, with Buildkite's EventBridge integration, by each "Job Scheduled" event of the
//!   queue: [`handle_job_event`] polls once at once, at most once per `LAMBDA_INTERVAL`
//!   however many events arrive ([`handle_event`] tells the two apart);
//! - as `elastic-ci-scaler run [--once] [--dry-run]` for operators, with the same
//!   variables, until SIGTERM or SIGINT.
//!
//! Each poll ([`run_once`]) reads the queue's metrics, publishes them to CloudWatch,
//! describes the group, calls [`elastic_ci_core::scaling::decide`], applies the
//! decision, and logs one JSON line with all of it. A failed read or call never lowers
//! capacity: the poll stops there and the next one tries again.
//!
//! ## Configuration
//!
//! Every variable of [`ScalerConfig::ENV_VARS`]: `BUILDKITE_QUEUE`, `ASG_NAME`,
//! `AGENTS_PER_INSTANCE` (required); `BUILDKITE_AGENT_TOKEN` or
//! `BUILDKITE_AGENT_TOKEN_SSM_KEY`; `BUILDKITE_AGENT_ENDPOINT`; `LAMBDA_INTERVAL`,
//! `LAMBDA_TIMEOUT`, `LAMBDA_STARTUP_JITTER_MAX`; `ASG_ACTIVITY_TIMEOUT`,
//! `MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES`; `SCALE_OUT_FACTOR`, `SCALE_IN_FACTOR`,
//! `SCALE_OUT_COOLDOWN_PERIOD`, `SCALE_IN_COOLDOWN_PERIOD`, `SCALE_ONLY_AFTER_ALL_EVENT`;
//! `INCLUDE_WAITING`, `INSTANCE_BUFFER`, `AVAILABILITY_THRESHOLD`, `MAX_INSTANCE_CAP`;
//! `DISABLE_SCALE_IN`, `DISABLE_SCALE_OUT`; `CLOUDWATCH_METRICS`,
//! `IGNORE_CLOUDWATCH_METRICS_ERRORS`; `ROUTE_BY_DESIRED_CAPACITY`; `SCALER_MODE`; `ELASTIC_CI_MODE`,
//! `DANGLING_CHECK_MINIMUM_INSTANCE_UPTIME`, `MAX_DANGLING_INSTANCES_TO_CHECK`; `DEBUG`.
//!
//! Logging: `AWS_LAMBDA_LOG_LEVEL` (in Lambda) or `ELASTIC_CI_LOG` (filter, default
//! `info`). AWS: the standard variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, …).

pub mod cli;
pub mod clock;
pub mod error;
pub mod token;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use elastic_ci_aws::autoscaling::ScalingGroup;
use elastic_ci_aws::cloudwatch::{MetricDatum, MetricUnit, Metrics};
use elastic_ci_aws::error::AwsError;
use elastic_ci_aws::ssm::ParameterStore;
use elastic_ci_buildkite::{AgentMetrics, QueueReport};
use elastic_ci_core::scaling::config::{ScalerConfig, TokenSource};
use elastic_ci_core::scaling::history::ActivityScan;
use elastic_ci_core::scaling::jitter::startup_jitter;
use elastic_ci_core::scaling::{Action, Decision, GroupSizes, ScalingState, decide};
use elastic_ci_core::secret::Secret;
use serde::Serialize;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::error::ScalerError;
use crate::token::agent_token;

/// The CloudWatch namespace of the queue metrics.
pub(crate) const METRICS_NAMESPACE: &str = "Buildkite";

/// The log target of the per-poll line.
pub const POLL_LOG_TARGET: &str = "elastic_ci_scaler::poll";

/// How long before the Lambda deadline the loop stops, so the invocation returns
/// instead of being killed (the original looped until killed when `LAMBDA_TIMEOUT` was
/// unset).
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// Everything a poll needs, built once per process (one Lambda execution environment).
pub struct Deps {
    pub(crate) config: ScalerConfig,
    pub(crate) scaling_group: Arc<dyn ScalingGroup>,
    pub(crate) metrics: Arc<dyn Metrics>,
    pub(crate) parameters: Arc<dyn ParameterStore>,
    pub(crate) buildkite: Arc<dyn AgentMetrics>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Compute and log, change nothing (no SetDesiredCapacity, no PutMetricData).
    pub(crate) dry_run: bool,
    state: Mutex<SharedState>,
}

/// What outlives one invocation in a warm execution environment.
#[derive(Debug, Default)]
struct SharedState {
    scaling: ScalingState,
    /// Whether the cooldown state was rebuilt from the group's activities.
    restored: bool,
    /// When a job event last led to a poll, for the debounce.
    last_event_poll: Option<SystemTime>,
}

impl Deps {
    pub fn new(
        config: ScalerConfig,
        scaling_group: Arc<dyn ScalingGroup>,
        metrics: Arc<dyn Metrics>,
        parameters: Arc<dyn ParameterStore>,
        buildkite: Arc<dyn AgentMetrics>,
        clock: Arc<dyn Clock>,
    ) -> Deps {
        Deps {
            config,
            scaling_group,
            metrics,
            parameters,
            buildkite,
            clock,
            dry_run: false,
            state: Mutex::new(SharedState::default()),
        }
    }

    /// The cooldown state: when the scaler last scaled out and in.
    pub(crate) fn scaling_state(&self) -> ScalingState {
        self.lock().scaling
    }

    fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Refuses configurations this implementation does not carry out.
pub(crate) fn check_supported(config: &ScalerConfig) -> Result<(), ScalerError> {
    if config.policy.elastic_ci_mode {
        return Err(ScalerError::Unsupported(
            "ELASTIC_CI_MODE=true is not supported: its SSM-driven graceful scale-in and dangling-instance checks are not implemented; instances scale in by themselves after ScaleInIdlePeriod".to_owned(),
        ));
    }
    Ok(())
}

/// A request to stop, from a signal handler; checked between and during polls.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shutdown(Arc<(AtomicBool, Notify)>);

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.0.0.store(true, Ordering::SeqCst);
        self.0.1.notify_waiters();
    }

    pub(crate) fn is_triggered(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }

    /// Returns once triggered.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

/// What happened to the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// Nothing to do.
    Nothing,
    /// SetDesiredCapacity succeeded.
    Set,
    /// Dry run: the call was not made.
    DryRun,
    /// The call failed; see the error.
    Failed,
}

/// One poll: what was read, decided and done.
#[derive(Debug, Clone, PartialEq)]
pub struct PollReport {
    pub(crate) metrics: Option<QueueReport>,
    pub decision: Option<Decision>,
    pub applied: Applied,
    pub error: Option<ScalerError>,
}

/// The result of a series of polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// A job event that arrived within `LAMBDA_INTERVAL` of the previous one's poll:
    /// no poll was made for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub debounced: bool,
    pub polls: u32,
    pub failed_polls: u32,
    pub(crate) capacity_changes: u32,
    /// The group's desired capacity after the last successful poll.
    pub(crate) desired_capacity: Option<u32>,
    pub(crate) last_error: Option<String>,
    #[serde(skip)]
    last_error_value: Option<ScalerError>,
}

impl RunSummary {
    fn add(&mut self, report: &PollReport) {
        self.polls += 1;
        if report.applied == Applied::Set {
            self.capacity_changes += 1;
        }
        if let Some(decision) = &report.decision {
            self.desired_capacity = Some(match (report.applied, decision.action) {
                (Applied::Set, Action::SetDesiredCapacity { to, .. }) => to,
                _ => decision.group.desired_capacity,
            });
        }
        if let Some(error) = &report.error {
            self.failed_polls += 1;
            self.last_error = Some(error.to_string());
            self.last_error_value = Some(error.clone());
        }
    }

    /// The invocation's result: an error when every poll failed, so that the function's
    /// error metric shows an outage; a summary otherwise.
    pub(crate) fn into_result(self) -> Result<RunSummary, ScalerError> {
        match &self.last_error_value {
            Some(error) if self.failed_polls == self.polls => Err(error.clone()),
            _ => Ok(self),
        }
    }
}

/// One poll: metrics, CloudWatch, group, decision, action, one log line.
pub async fn run_once(deps: &Deps, token: &Secret) -> PollReport {
    let mut report =
        PollReport { metrics: None, decision: None, applied: Applied::Nothing, error: None };
    if let Err(error) = poll(deps, token, &mut report).await {
        report.error = Some(error);
        if report.decision.is_some() {
            report.applied = Applied::Failed;
        }
    }
    log_poll(deps, &report);
    report
}

async fn poll(deps: &Deps, token: &Secret, report: &mut PollReport) -> Result<(), ScalerError> {
    let config = &deps.config;
    let metrics = deps.buildkite.queue_metrics(&config.queue, token).await?;
    let publishing = config.cloudwatch_metrics && !deps.dry_run;
    let published = if publishing { publish(deps, &metrics).await } else { Ok(()) };
    report.metrics = Some(metrics);
    if let Err(error) = published {
        if !config.ignore_cloudwatch_metrics_errors {
            return Err(error.into());
        }
        warn!(error = %error, "publishing the queue metrics failed; scaling anyway");
    }
    let counts = report.metrics.as_ref().map(|metrics| metrics.counts).unwrap_or_default();
    let group = deps.scaling_group.describe_group(&config.group_name).await?;
    let sizes = GroupSizes::from_snapshot(&group);
    let scaling = deps.scaling_state();
    let decision = decide(&config.policy, &scaling, &counts, &sizes, deps.clock.now());
    report.decision = Some(decision);
    if let Action::SetDesiredCapacity { to, .. } = decision.action {
        if deps.dry_run {
            report.applied = Applied::DryRun;
        } else {
            deps.scaling_group.set_desired_capacity(&config.group_name, to).await?;
            let now = deps.clock.now();
            deps.lock().scaling.record(decision.action, now);
            report.applied = Applied::Set;
        }
    }
    Ok(())
}

async fn publish(deps: &Deps, metrics: &QueueReport) -> Result<(), AwsError> {
    let dimensions = vec![
        ("Org".to_owned(), metrics.organization_slug.clone()),
        ("Queue".to_owned(), deps.config.queue.clone()),
    ];
    let counts = metrics.counts;
    let timestamp = deps.clock.now();
    let data: Vec<MetricDatum> = [
        ("ScheduledJobsCount", counts.scheduled_jobs),
        ("RunningJobsCount", counts.running_jobs),
        ("WaitingJobsCount", counts.waiting_jobs),
        ("IdleAgentCount", counts.idle_agents),
        ("BusyAgentCount", counts.busy_agents),
        ("TotalAgentCount", counts.total_agents),
    ]
    .into_iter()
    .map(|(name, value)| MetricDatum {
        name: name.to_owned(),
        dimensions: dimensions.clone(),
        value: f64::from(value),
        unit: MetricUnit::Count,
        timestamp,
    })
    .collect();
    deps.metrics.put(METRICS_NAMESPACE, &data).await
}

/// The one structured line per poll: metrics, group, decision, action, error.
fn log_poll(deps: &Deps, report: &PollReport) {
    let counts = report.metrics.as_ref().map(|metrics| metrics.counts);
    let decision = report.decision.as_ref();
    let group = decision.map(|decision| decision.group);
    let (target, direction) = match decision.map(|decision| decision.action) {
        Some(Action::SetDesiredCapacity { to, direction, .. }) => {
            (Some(to), Some(format!("{direction:?}").to_lowercase()))
        }
        _ => (None, None),
    };
    let error = report.error.as_ref().map(tracing::field::display);
    let error_type = report.error.as_ref().map(ScalerError::error_type);
    macro_rules! poll_event {
        ($level:expr, $message:literal) => {
            tracing::event!(
                target: POLL_LOG_TARGET,
                $level,
                queue = %deps.config.queue,
                group = %deps.config.group_name,
                org = report.metrics.as_ref().map(|metrics| metrics.organization_slug.as_str()),
                scheduled_jobs = counts.map(|c| c.scheduled_jobs),
                running_jobs = counts.map(|c| c.running_jobs),
                waiting_jobs = counts.map(|c| c.waiting_jobs),
                idle_agents = counts.map(|c| c.idle_agents),
                busy_agents = counts.map(|c| c.busy_agents),
                total_agents = counts.map(|c| c.total_agents),
                min_size = group.map(|g| g.min_size),
                max_size = group.map(|g| g.max_size),
                desired_capacity = group.map(|g| g.desired_capacity),
                in_service = group.map(|g| g.in_service),
                pending = group.map(|g| g.pending),
                computed_capacity = decision.map(|d| d.computed),
                target_capacity = target,
                direction = direction.as_deref(),
                reason = decision.map(tracing::field::display),
                applied = ?report.applied,
                dry_run = deps.dry_run,
                error_type,
                error,
                $message
            )
        };
    }
    if report.error.is_some() {
        poll_event!(tracing::Level::WARN, "poll failed");
    } else {
        poll_event!(tracing::Level::INFO, "poll");
    }
}

/// Polls until `deadline` (none: until shut down), at least once.
///
/// The interval is `LAMBDA_INTERVAL`, raised to the poll-duration header of the latest
/// answer (capped at [`elastic_ci_buildkite::MAX_SERVER_WAIT`]): it comes back down when
/// a later answer asks for less or nothing, and a failed poll keeps it. A 429's
/// `Retry-After` (capped alike) delays the next poll only; one beyond the deadline ends
/// the loop. A refused token is read again from SSM before the next poll.
pub(crate) async fn run_until(
    deps: &Deps,
    token: &mut Secret,
    deadline: Option<SystemTime>,
    shutdown: &Shutdown,
) -> RunSummary {
    let mut summary = RunSummary::default();
    let mut interval = deps.config.poll_interval;
    loop {
        let report = tokio::select! {
            report = run_once(deps, token) => report,
            () = shutdown.wait() => break,
        };
        summary.add(&report);
        if let Some(metrics) = &report.metrics {
            interval = next_interval(deps.config.poll_interval, metrics.poll_duration);
        }
        let mut wait = interval;
        if let Some(ScalerError::Buildkite(error)) = &report.error {
            if let Some(retry_after) = error.retry_after() {
                wait = wait.max(retry_after);
            }
            if error.is_unauthorized() {
                refresh_token(deps, token).await;
            }
        }
        if shutdown.is_triggered() {
            break;
        }
        if let Some(deadline) = deadline
            && deps.clock.now().checked_add(wait).is_none_or(|next| next > deadline)
        {
            // The next poll would start after the deadline: return now rather than
            // sleep until it.
            break;
        }
        tokio::select! {
            () = deps.clock.sleep(wait) => {}
            () = shutdown.wait() => break,
        }
    }
    summary
}

/// The wait between polls after an answer: the configured interval, or the API's poll
/// duration when that is longer, never more than
/// [`elastic_ci_buildkite::MAX_SERVER_WAIT`] beyond what was configured.
fn next_interval(configured: Duration, poll_duration: Option<Duration>) -> Duration {
    poll_duration.map_or(configured, |asked| {
        asked.min(elastic_ci_buildkite::MAX_SERVER_WAIT).max(configured)
    })
}

async fn refresh_token(deps: &Deps, token: &mut Secret) {
    if !matches!(deps.config.agent_token, TokenSource::Ssm(_)) {
        return;
    }
    match agent_token(&deps.config.agent_token, deps.parameters.as_ref()).await {
        Ok(fresh) => *token = fresh,
        Err(error) => warn!(error = %error, "reading the agent token again failed"),
    }
}

/// Rebuilds the cooldown state from the group's scaling activities, once per process
/// A failure or timeout is logged and retried next time; scaling
/// goes on without cooldown memory meanwhile, as in the original.
pub(crate) async fn restore_cooldowns(deps: &Deps) {
    if deps.lock().restored {
        return;
    }
    let policy = &deps.config.policy;
    let want_out = !policy.disable_scale_out;
    let want_in = !policy.disable_scale_in || policy.elastic_ci_mode;
    let scan = ActivityScan::new(want_out, want_in);
    if scan.is_done() {
        deps.lock().restored = true;
        return;
    }
    match tokio::time::timeout(deps.config.activity_timeout, scan_activities(deps, scan)).await {
        Ok(Ok((found, n_pages))) => {
            let mut state = deps.lock();
            state.scaling.last_scale_out = state.scaling.last_scale_out.max(found.last_scale_out);
            state.scaling.last_scale_in = state.scaling.last_scale_in.max(found.last_scale_in);
            state.restored = true;
            info!(
                n_pages,
                last_scale_out = ?found.last_scale_out,
                last_scale_in = ?found.last_scale_in,
                "restored cooldown state from scaling activities"
            );
        }
        Ok(Err(error)) => {
            warn!(error = %error, "could not read scaling activities; cooldowns start fresh");
        }
        Err(_) => warn!(
            timeout_secs = deps.config.activity_timeout.as_secs_f64(),
            "reading scaling activities timed out (ASG_ACTIVITY_TIMEOUT); cooldowns start fresh"
        ),
    }
}

async fn scan_activities(
    deps: &Deps,
    mut scan: ActivityScan,
) -> Result<(ScalingState, u32), AwsError> {
    let mut next_token: Option<String> = None;
    let mut n_pages = 0;
    loop {
        // At most MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES pages, then stop without error.
        if deps.config.max_activity_pages.is_some_and(|max| n_pages >= max) {
            break;
        }
        let page = deps
            .scaling_group
            .scaling_activities_page(&deps.config.group_name, next_token.as_deref())
            .await?;
        n_pages += 1;
        scan.observe(&page.activities);
        if scan.is_done() {
            break;
        }
        match page.next_token {
            Some(token) => next_token = Some(token),
            None => break,
        }
    }
    Ok((scan.state(), n_pages))
}

/// One Lambda invocation: jitter, cooldown restore, token, polling loop.
/// `lambda_deadline` is the invocation's deadline from the Lambda context.
pub async fn handle(
    deps: &Deps,
    lambda_deadline: Option<SystemTime>,
) -> Result<RunSummary, ScalerError> {
    let config = &deps.config;
    let mut jitter = startup_jitter(&config.group_name, config.startup_jitter_max);
    if let Some(deadline) = lambda_deadline {
        let remaining = deadline.duration_since(deps.clock.now()).unwrap_or_default();
        jitter = jitter.min(remaining.saturating_sub(DEADLINE_MARGIN));
    }
    if !jitter.is_zero() {
        info!(jitter_secs = jitter.as_secs_f64(), "waiting for the startup jitter");
        deps.clock.sleep(jitter).await;
    }
    // The timeout starts after the jitter, so the jitter does not eat the polling time.
    let started = deps.clock.now();
    let deadline = earliest(
        config.invocation_timeout.and_then(|timeout| started.checked_add(timeout)),
        lambda_deadline.map(|deadline| deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline)),
    );
    restore_cooldowns(deps).await;
    let mut token = agent_token(&config.agent_token, deps.parameters.as_ref()).await?;
    run_until(deps, &mut token, deadline, &Shutdown::default()).await.into_result()
}

/// What invoked the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule (or any event that is not a job event).
    Schedule,
    /// Buildkite's "Job Scheduled" event, from its partner event bus.
    JobScheduled {
        /// The event's `id`.
        id: Option<String>,
    },
}

impl Trigger {
    /// Tells a Buildkite "Job Scheduled" event (`source` starting
    /// `aws.partner/buildkite.com/`) from the schedule's and anything else.
    pub fn from_event(event: &serde_json::Value) -> Trigger {
        let source = event.get("source").and_then(serde_json::Value::as_str).unwrap_or_default();
        let detail_type =
            event.get("detail-type").and_then(serde_json::Value::as_str).unwrap_or_default();
        if source.starts_with("aws.partner/buildkite.com/") && detail_type == "Job Scheduled" {
            let id = event.get("id").and_then(serde_json::Value::as_str).map(str::to_owned);
            Trigger::JobScheduled { id }
        } else {
            Trigger::Schedule
        }
    }
}

/// One Lambda invocation of either kind.
pub async fn handle_event(
    deps: &Deps,
    event: &serde_json::Value,
    lambda_deadline: Option<SystemTime>,
) -> Result<RunSummary, ScalerError> {
    match Trigger::from_event(event) {
        Trigger::Schedule => handle(deps, lambda_deadline).await,
        Trigger::JobScheduled { id } => handle_job_event(deps, id.as_deref()).await,
    }
}

/// A job of the queue was scheduled: one poll now, with the same decision and
/// cooldowns as a scheduled poll, unless a job event already led to a poll less than
/// `LAMBDA_INTERVAL` ago in this execution environment (a burst of events is one poll;
/// the jobs it missed are counted by the next poll, event or schedule). No startup
/// jitter: the point is to act at once.
pub async fn handle_job_event(
    deps: &Deps,
    event_id: Option<&str>,
) -> Result<RunSummary, ScalerError> {
    let now = deps.clock.now();
    {
        let mut state = deps.lock();
        let recent =
            state.last_event_poll.and_then(|last| last.checked_add(deps.config.poll_interval));
        if recent.is_some_and(|until| now < until) {
            info!(event_id, "job event within the poll interval of the last one: debounced");
            return Ok(RunSummary { debounced: true, ..RunSummary::default() });
        }
        state.last_event_poll = Some(now);
    }
    info!(event_id, "job scheduled: polling now");
    restore_cooldowns(deps).await;
    let token = agent_token(&deps.config.agent_token, deps.parameters.as_ref()).await?;
    let report = run_once(deps, &token).await;
    let mut summary = RunSummary::default();
    summary.add(&report);
    summary.into_result()
}

fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
