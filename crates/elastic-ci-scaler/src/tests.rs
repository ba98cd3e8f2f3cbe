//! The poll, the loop and the invocation against the in-memory AWS fakes (for what the
//! emulator cannot do: pending instances, scaling activities, throttling, injected
//! failures) and the fake Buildkite API, on a manual clock.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use elastic_ci_aws::error::AwsErrorKind;
use elastic_ci_aws::fake::{FakeMetrics, FakeParameterStore, FakeScalingGroup, ScalingCall};
use elastic_ci_buildkite::{AgentMetricsClient, ClientSettings};
use elastic_ci_core::fleet::{GroupSnapshot, LifecycleState, ScalingActivity};
use elastic_ci_core::scaling::config::ScalerConfig;
use elastic_ci_core::scaling::{Direction, Reason};
use elastic_ci_testkit::buildkite::{FakeBuildkite, Fault, QueueMetrics};

use super::*;
use crate::clock::ManualClock;

const TOKEN: &str = "agent-token-abc";
const GROUP: &str = "stack-a-AgentAutoScaleGroup";

struct Harness {
    deps: Deps,
    group: Arc<FakeScalingGroup>,
    metrics: Arc<FakeMetrics>,
    parameters: Arc<FakeParameterStore>,
    buildkite: FakeBuildkite,
    clock: ManualClock,
}

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn harness(vars: &[(&str, &str)]) -> Harness {
    let buildkite = FakeBuildkite::start(TOKEN);
    let mut env: HashMap<String, String> = [
        ("BUILDKITE_QUEUE", "default"),
        ("ASG_NAME", GROUP),
        ("AGENTS_PER_INSTANCE", "1"),
        ("BUILDKITE_AGENT_TOKEN", TOKEN),
        ("AVAILABILITY_THRESHOLD", "0"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    env.insert("BUILDKITE_AGENT_ENDPOINT".to_owned(), buildkite.endpoint());
    for (name, value) in vars {
        env.insert((*name).to_owned(), (*value).to_owned());
    }
    let config = ScalerConfig::from_env_map(&env).unwrap();
    let group = Arc::new(FakeScalingGroup::default());
    group.insert_group(GroupSnapshot {
        name: GROUP.to_owned(),
        min_size: 0,
        max_size: 10,
        desired_capacity: 0,
        instances: Vec::new(),
    });
    let metrics = Arc::new(FakeMetrics::default());
    let parameters = Arc::new(FakeParameterStore::default());
    let settings = ClientSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
    };
    let client = AgentMetricsClient::new(&config.agent_endpoint, &settings).unwrap();
    let clock = ManualClock::new(start());
    let deps = Deps::new(
        config,
        group.clone(),
        metrics.clone(),
        parameters.clone(),
        Arc::new(client),
        Arc::new(clock.clone()),
    );
    Harness { deps, group, metrics, parameters, buildkite, clock }
}

impl Harness {
    fn desired(&self) -> u32 {
        self.group.group(GROUP).unwrap().desired_capacity
    }

    fn set_calls(&self) -> Vec<u32> {
        self.group
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                ScalingCall::SetDesiredCapacity { desired, .. } => Some(desired),
                _ => None,
            })
            .collect()
    }

    async fn poll(&self) -> PollReport {
        run_once(&self.deps, &Secret::new(TOKEN)).await
    }
}

/// Captures the JSON log lines emitted on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn poll_lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|line| line["target"] == POLL_LOG_TARGET)
            .collect()
    }
}

#[tokio::test]
async fn scales_out_and_logs_one_json_line_per_poll() {
    let h = harness(&[]);
    h.buildkite.set_queue("default", QueueMetrics::jobs(3, 1, 2).with_agents(0, 1));
    let log = Captured::default();
    let _guard = log.install();

    let report = h.poll().await;
    assert_eq!(report.error, None);
    assert_eq!(report.applied, Applied::Set);
    assert_eq!(h.desired(), 4);
    assert_eq!(h.deps.scaling_state().last_scale_out, Some(start()));

    let lines = log.poll_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["queue"], "default");
    assert_eq!(line["org"], "test-org");
    assert_eq!(line["scheduled_jobs"], 3);
    assert_eq!(line["running_jobs"], 1);
    assert_eq!(line["waiting_jobs"], 2);
    assert_eq!(line["total_agents"], 1);
    assert_eq!(line["desired_capacity"], 0);
    assert_eq!(line["in_service"], 0);
    assert_eq!(line["computed_capacity"], 4);
    assert_eq!(line["target_capacity"], 4);
    assert_eq!(line["direction"], "out");
    assert_eq!(line["applied"], "Set");
    assert!(line["reason"].as_str().unwrap().ends_with("scale out from 0 to 4"), "{line}");
    assert!(line.get("error").is_none());
}

#[tokio::test]
async fn api_failures_never_touch_the_group() {
    let h = harness(&[]);
    h.group.set_desired_capacity(GROUP, 5).await.unwrap();
    h.buildkite.set_queue("default", QueueMetrics::jobs(0, 0, 0));
    let faults = [
        (Fault::Status(500), "HTTP 500"),
        (Fault::RateLimited { retry_after_secs: 20 }, "HTTP 429"),
        (Fault::DropConnection, "connection closed"),
        (Fault::InvalidJson, "not the documented JSON"),
        (Fault::EmptyObject, "no \"jobs\" object"),
        (Fault::Slow(Duration::from_secs(3)), "timed out"),
    ];
    let log = Captured::default();
    let _guard = log.install();
    for (fault, expected) in faults {
        h.buildkite.fail_next(fault.clone(), 1);
        let report = h.poll().await;
        let error = report.error.expect("the poll fails");
        assert_eq!(error.error_type(), "BuildkiteUnavailable", "{fault:?}");
        assert!(error.to_string().contains(expected), "{fault:?}: {error}");
        assert_eq!(report.decision, None);
        assert_eq!(report.applied, Applied::Nothing);
    }
    // Only the setup call: the empty queue would have scaled in to 0 otherwise.
    assert_eq!(h.set_calls(), [5]);
    assert_eq!(h.desired(), 5);
    assert!(h.metrics.published().is_empty());
    let lines = log.poll_lines();
    assert_eq!(lines.len(), 6);
    assert!(
        lines
            .iter()
            .all(|line| line["level"] == "WARN" && line["error_type"] == "BuildkiteUnavailable")
    );

    // A refused token too.
    let wrong = run_once(&h.deps, &Secret::new("not-the-token")).await;
    assert_eq!(wrong.error.map(|e| e.error_type()), Some("BuildkiteUnauthorized"));
    // And once the API is back, the poll scales in as the queue says.
    assert_eq!(h.poll().await.applied, Applied::Set);
    assert_eq!(h.desired(), 0);
}

#[tokio::test]
async fn aws_failures_change_nothing_and_start_no_cooldown() {
    let h = harness(&[("SCALE_OUT_COOLDOWN_PERIOD", "5m")]);
    h.buildkite.set_queue("default", QueueMetrics::jobs(2, 0, 0));

    h.group.faults.fail_next("DescribeAutoScalingGroups", AwsErrorKind::Throttled, 1);
    let report = h.poll().await;
    assert_eq!(report.error.as_ref().map(ScalerError::error_type), Some("AwsThrottled"));
    assert_eq!(report.decision, None);

    h.group.faults.fail_next("SetDesiredCapacity", AwsErrorKind::Throttled, 1);
    let report = h.poll().await;
    assert_eq!(report.applied, Applied::Failed);
    assert_eq!(h.deps.scaling_state(), ScalingState::default());

    // The next poll retries at once: the failure did not start the cooldown.
    assert_eq!(h.poll().await.applied, Applied::Set);
    assert_eq!(h.set_calls(), [2]);
}

#[tokio::test]
async fn publishes_six_queue_metrics_with_org_and_queue_dimensions() {
    let h = harness(&[("CLOUDWATCH_METRICS", "1")]);
    h.buildkite.set_queue("default", QueueMetrics::jobs(3, 2, 1).with_agents(4, 2));
    h.poll().await;
    let published = h.metrics.published();
    let names: Vec<(&str, f64)> = published
        .iter()
        .map(|(namespace, datum)| {
            assert_eq!(namespace, "Buildkite");
            assert_eq!(
                datum.dimensions,
                [
                    ("Org".to_owned(), "test-org".to_owned()),
                    ("Queue".to_owned(), "default".to_owned())
                ]
            );
            (datum.name.as_str(), datum.value)
        })
        .collect();
    assert_eq!(
        names,
        [
            ("ScheduledJobsCount", 3.0),
            ("RunningJobsCount", 2.0),
            ("WaitingJobsCount", 1.0),
            ("IdleAgentCount", 4.0),
            ("BusyAgentCount", 2.0),
            ("TotalAgentCount", 6.0)
        ]
    );
}

#[tokio::test]
async fn a_metrics_failure_skips_scaling_unless_told_to_ignore_it() {
    let parity = harness(&[("CLOUDWATCH_METRICS", "true")]);
    parity.buildkite.set_queue("default", QueueMetrics::jobs(2, 0, 0));
    parity.metrics.faults.fail_next("PutMetricData", AwsErrorKind::Throttled, 1);
    let report = parity.poll().await;
    assert_eq!(report.error.map(|e| e.error_type()), Some("AwsThrottled"));
    assert!(parity.set_calls().is_empty());

    let fixed =
        harness(&[("CLOUDWATCH_METRICS", "true"), ("IGNORE_CLOUDWATCH_METRICS_ERRORS", "1")]);
    fixed.buildkite.set_queue("default", QueueMetrics::jobs(2, 0, 0));
    fixed.metrics.faults.fail_next("PutMetricData", AwsErrorKind::Throttled, 1);
    let report = fixed.poll().await;
    assert_eq!(report.error, None);
    assert_eq!(fixed.set_calls(), [2]);
}

#[tokio::test]
async fn a_dry_run_computes_and_changes_nothing() {
    let mut h = harness(&[("CLOUDWATCH_METRICS", "true")]);
    h.deps.dry_run = true;
    h.buildkite.set_queue("default", QueueMetrics::jobs(4, 0, 0));
    let report = h.poll().await;
    assert_eq!(report.applied, Applied::DryRun);
    assert_eq!(report.decision.map(|d| d.computed), Some(4));
    assert!(h.group.calls().is_empty());
    assert!(h.metrics.published().is_empty());
    assert_eq!(h.deps.scaling_state(), ScalingState::default());
}

#[tokio::test]
async fn pending_instances_count_as_requested() {
    let h = harness(&[]);
    h.group.set_desired_capacity(GROUP, 3).await.unwrap();
    h.group.add_instance(GROUP, "i-1", LifecycleState::InService);
    h.group.add_instance(GROUP, "i-2", LifecycleState::Pending);
    h.group.add_instance(GROUP, "i-3", LifecycleState::Pending);
    h.buildkite.set_queue("default", QueueMetrics::jobs(3, 0, 0));
    let report = h.poll().await;
    let decision = report.decision.unwrap();
    assert_eq!((decision.group.in_service, decision.group.pending), (1, 2));
    assert_eq!(decision.reason, Reason::Converging);
    assert_eq!(h.set_calls(), [3]);
}

#[tokio::test]
async fn cooldowns_hold_on_the_simulated_clock_in_both_directions() {
    let h = harness(&[("SCALE_OUT_COOLDOWN_PERIOD", "5m"), ("SCALE_IN_COOLDOWN_PERIOD", "1h")]);
    h.buildkite.set_queue("default", QueueMetrics::jobs(2, 0, 0));
    assert_eq!(h.poll().await.applied, Applied::Set);
    h.buildkite.set_queue("default", QueueMetrics::jobs(5, 0, 0));
    h.clock.advance(Duration::from_secs(299));
    let held = h.poll().await.decision.unwrap();
    assert_eq!(held.reason, Reason::ScaleOutCooldown { remaining: Duration::from_secs(1) });
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.poll().await.applied, Applied::Set);
    assert_eq!(h.desired(), 5);

    // Scale-in: the first is allowed (no scale-in yet), the next waits an hour.
    h.buildkite.set_queue("default", QueueMetrics::jobs(1, 0, 0));
    assert_eq!(h.poll().await.applied, Applied::Set);
    h.buildkite.set_queue("default", QueueMetrics::jobs(0, 0, 0));
    h.clock.advance(Duration::from_secs(3599));
    assert!(matches!(h.poll().await.decision.unwrap().reason, Reason::ScaleInCooldown { .. }));
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.poll().await.applied, Applied::Set);
    assert_eq!(h.set_calls(), [2, 5, 1, 0]);
}

#[tokio::test]
async fn the_loop_polls_every_interval_until_the_timeout() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s"), ("LAMBDA_TIMEOUT", "50s")]);
    let summary = handle(&h.deps, None).await.unwrap();
    // Polls at +0, +10, +20, +30, +40 and +50 (a poll takes no simulated time here).
    assert_eq!(summary.polls, 6);
    assert_eq!(h.clock.sleeps(), vec![Duration::from_secs(10); 5]);
    assert_eq!(h.buildkite.requests().len(), 6);
}

#[tokio::test]
async fn the_lambda_deadline_bounds_the_loop_when_no_timeout_is_set() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s")]);
    let summary = handle(&h.deps, Some(start() + Duration::from_secs(35))).await.unwrap();
    // Deadline 35 s minus the 2 s margin: polls at +0, +10, +20, +30.
    assert_eq!(summary.polls, 4);
}

#[tokio::test]
async fn the_poll_duration_header_raises_the_interval_for_the_rest_of_the_invocation() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s"), ("LAMBDA_TIMEOUT", "50s")]);
    h.buildkite.state().poll_duration_secs = Some(15);
    let summary = handle(&h.deps, None).await.unwrap();
    assert_eq!(summary.polls, 4);
    assert_eq!(h.clock.sleeps(), vec![Duration::from_secs(15); 3]);
}

/// The real client, with the fake's poll-duration header set from a script before each
/// request: the fake answers every request alike otherwise.
struct ScriptedPollDurations {
    client: AgentMetricsClient,
    buildkite: FakeBuildkite,
    script: Mutex<std::collections::VecDeque<Option<u64>>>,
}

#[async_trait::async_trait]
impl AgentMetrics for ScriptedPollDurations {
    async fn queue_metrics(
        &self,
        queue: &str,
        token: &Secret,
    ) -> Result<QueueReport, elastic_ci_buildkite::MetricsError> {
        let next = self.script.lock().unwrap().pop_front().flatten();
        self.buildkite.state().poll_duration_secs = next;
        self.client.queue_metrics(queue, token).await
    }
}

#[tokio::test]
async fn a_huge_poll_duration_is_capped_and_the_interval_comes_back_down() {
    let Harness { deps, group, metrics, parameters, buildkite, clock } =
        harness(&[("LAMBDA_INTERVAL", "10s")]);
    let client =
        AgentMetricsClient::new(&deps.config.agent_endpoint, &ClientSettings::standard()).unwrap();
    let scripted = ScriptedPollDurations {
        client,
        buildkite,
        script: Mutex::new([Some(u64::MAX), Some(20), None, Some(5)].into_iter().collect()),
    };
    let deps = Deps::new(
        deps.config.clone(),
        group,
        metrics,
        parameters,
        Arc::new(scripted),
        Arc::new(clock.clone()),
    );
    let deadline = start() + Duration::from_secs(340);
    let summary =
        run_until(&deps, &mut Secret::new(TOKEN), Some(deadline), &Shutdown::default()).await;
    assert_eq!(summary.failed_polls, 0);
    // u64::MAX seconds is capped at five minutes; then 20 s; then no header and a
    // smaller one both mean the configured 10 s again.
    let secs: Vec<u64> = clock.sleeps().iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [300, 20, 10, 10]);
    assert_eq!(summary.polls, 5);
}

#[tokio::test]
async fn an_enormous_retry_after_neither_panics_nor_stops_polling() {
    for value in ["18446744073709551615", "99999999999999999999"] {
        let h = harness(&[("LAMBDA_INTERVAL", "10s")]);
        h.buildkite.fail_next(Fault::RateLimitedWith { retry_after: value.to_owned() }, 1);
        let deadline = start() + Duration::from_secs(330);
        let summary =
            run_until(&h.deps, &mut Secret::new(TOKEN), Some(deadline), &Shutdown::default()).await;
        let secs: Vec<u64> = h.clock.sleeps().iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [300, 10, 10, 10], "{value}");
        assert_eq!((summary.polls, summary.failed_polls), (5, 1), "{value}");
    }
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_ends_the_invocation() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s"), ("LAMBDA_TIMEOUT", "50s")]);
    h.buildkite.fail_next(Fault::RateLimitedWith { retry_after: "99999999999999999999".into() }, 1);
    let error = handle(&h.deps, None).await.unwrap_err();
    assert_eq!(error.error_type(), "BuildkiteUnavailable");
    assert!(h.clock.sleeps().is_empty());
}

#[tokio::test]
async fn an_oversized_answer_is_refused_without_scaling() {
    for chunked in [false, true] {
        let h = harness(&[]);
        h.buildkite.set_queue("default", QueueMetrics::jobs(3, 0, 0));
        let bytes = elastic_ci_buildkite::MAX_BODY_BYTES + 1;
        h.buildkite.fail_next(Fault::LargeBody { bytes, chunked }, 1);
        let error = h.poll().await.error.expect("the poll fails");
        assert!(
            error.to_string().ends_with("the answer is larger than the limit of 1048576 bytes"),
            "{error}"
        );
        assert!(h.set_calls().is_empty());
        // Padded to just the limit, the same answer is read.
        let bytes = elastic_ci_buildkite::MAX_BODY_BYTES;
        h.buildkite.fail_next(Fault::LargeBody { bytes, chunked }, 1);
        assert_eq!(h.poll().await.error, None);
        assert_eq!(h.set_calls(), [3]);
    }
}

#[tokio::test]
async fn a_token_with_surrounding_whitespace_is_sent_trimmed() {
    let ssm_key = "/buildkite/agent-token-with-newline";
    let from_ssm = harness(&[("BUILDKITE_AGENT_TOKEN_SSM_KEY", ssm_key), ("LAMBDA_TIMEOUT", "1s")]);
    from_ssm.parameters.put(ssm_key, &format!("  {TOKEN}\n"));
    let in_clear =
        harness(&[("BUILDKITE_AGENT_TOKEN", &format!("  {TOKEN}\n")), ("LAMBDA_TIMEOUT", "1s")]);
    for h in [from_ssm, in_clear] {
        h.buildkite.set_queue("default", QueueMetrics::jobs(1, 0, 0));
        let summary = handle(&h.deps, None).await.unwrap();
        assert_eq!(summary.failed_polls, 0);
        let requests = h.buildkite.requests();
        assert_eq!(requests[0].authorization.as_deref(), Some(&*format!("Token {TOKEN}")));
        assert_eq!(h.set_calls(), [1]);
    }
}

#[tokio::test]
async fn a_blank_ssm_token_names_the_parameter_and_polls_nothing() {
    let ssm_key = "/buildkite/blank-token";
    let h = harness(&[("BUILDKITE_AGENT_TOKEN_SSM_KEY", ssm_key)]);
    h.parameters.put(ssm_key, " \n\t");
    let error = handle(&h.deps, None).await.unwrap_err();
    assert_eq!(error.error_type(), "AgentTokenUnavailable");
    assert_eq!(
        error.to_string(),
        "the agent token in SSM parameter \"/buildkite/blank-token\" is empty or only whitespace (BUILDKITE_AGENT_TOKEN_SSM_KEY)"
    );
    assert!(h.buildkite.requests().is_empty());
}

#[tokio::test]
async fn retry_after_delays_only_the_next_poll() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s"), ("LAMBDA_TIMEOUT", "50s")]);
    h.buildkite.fail_next(Fault::RateLimited { retry_after_secs: 25 }, 1);
    let summary = handle(&h.deps, None).await.unwrap();
    assert_eq!(summary.failed_polls, 1);
    assert_eq!(&h.clock.sleeps()[..2], [Duration::from_secs(25), Duration::from_secs(10)]);
}

#[tokio::test]
async fn an_invocation_fails_only_when_every_poll_failed() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s"), ("LAMBDA_TIMEOUT", "15s")]);
    h.buildkite.fail_next(Fault::Status(502), 2);
    let error = handle(&h.deps, None).await.unwrap_err();
    assert_eq!(error.error_type(), "BuildkiteUnavailable");
    assert!(error.to_string().contains("HTTP 502"), "{error}");

    h.buildkite.fail_next(Fault::Status(502), 1);
    let summary = handle(&h.deps, None).await.unwrap();
    assert_eq!((summary.polls, summary.failed_polls), (2, 1));
}

#[tokio::test]
async fn the_startup_jitter_is_stable_per_group_and_precedes_the_timeout() {
    let h = harness(&[
        ("LAMBDA_STARTUP_JITTER_MAX", "30s"),
        ("LAMBDA_INTERVAL", "10s"),
        ("LAMBDA_TIMEOUT", "20s"),
    ]);
    let summary = handle(&h.deps, None).await.unwrap();
    assert_eq!(summary.polls, 3);
    let sleeps = h.clock.sleeps();
    assert_eq!(sleeps[0], Duration::from_nanos(1_737_151_707));
    assert_eq!(&sleeps[1..], [Duration::from_secs(10); 2]);
}

fn explicit_activity(at: SystemTime, increase: bool) -> ScalingActivity {
    let cause = if increase {
        "At 2026-08-05T10:35:05Z a user request explicitly set group desired capacity changing the desired capacity from 1 to 2. At 2026-08-05T10:35:14Z an instance was started in response to a difference between desired and actual capacity, increasing the capacity from 1 to 2."
    } else {
        "At 2026-08-05T11:00:00Z a user request explicitly set group desired capacity changing the desired capacity from 2 to 1. At 2026-08-05T11:00:05Z an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from 2 to 1."
    };
    ScalingActivity {
        start_time: at,
        end_time: None,
        status: "Successful".to_owned(),
        description: String::new(),
        cause: cause.to_owned(),
    }
}

#[tokio::test]
async fn a_cold_start_restores_cooldowns_from_scaling_activities_once() {
    let h = harness(&[("SCALE_OUT_COOLDOWN_PERIOD", "5m"), ("LAMBDA_TIMEOUT", "1s")]);
    h.group.add_activity(GROUP, explicit_activity(start() - Duration::from_secs(100), true));
    h.group.add_activity(GROUP, explicit_activity(start() - Duration::from_secs(1000), false));
    h.buildkite.set_queue("default", QueueMetrics::jobs(3, 0, 0));
    let log = Captured::default();
    let _guard = log.install();

    handle(&h.deps, None).await.unwrap();
    let state = h.deps.scaling_state();
    assert_eq!(state.last_scale_out, Some(start() - Duration::from_secs(100)));
    assert_eq!(state.last_scale_in, Some(start() - Duration::from_secs(1000)));
    assert!(h.set_calls().is_empty(), "the restored cooldown holds the scale-out");
    let reason = &log.poll_lines()[0]["reason"];
    assert!(reason.as_str().unwrap().ends_with("scale-out cooldown, 200.0s left"), "{reason}");

    handle(&h.deps, None).await.unwrap();
    assert_eq!(h.group.activity_page_requests(), 1, "scanned once per process");
}

#[tokio::test]
async fn the_activity_scan_is_capped_retried_after_errors_and_skipped_when_pointless() {
    let h = harness(&[("MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES", "2"), ("LAMBDA_TIMEOUT", "1s")]);
    for i in 0..250 {
        let mut activity = explicit_activity(start() - Duration::from_secs(10 + i), true);
        activity.status = "Failed".to_owned();
        h.group.add_activity(GROUP, activity);
    }
    h.group.faults.fail_next("DescribeScalingActivities", AwsErrorKind::AccessDenied, 1);
    handle(&h.deps, None).await.unwrap();
    assert_eq!(h.group.activity_page_requests(), 0, "the denied call counts no page");
    handle(&h.deps, None).await.unwrap();
    assert_eq!(h.group.activity_page_requests(), 2, "at most two pages");
    handle(&h.deps, None).await.unwrap();
    assert_eq!(h.group.activity_page_requests(), 2, "done once it succeeded");

    let neither = harness(&[
        ("DISABLE_SCALE_IN", "true"),
        ("DISABLE_SCALE_OUT", "true"),
        ("LAMBDA_TIMEOUT", "1s"),
    ]);
    handle(&neither.deps, None).await.unwrap();
    assert_eq!(neither.group.activity_page_requests(), 0);
}

#[tokio::test]
async fn a_refused_token_is_read_again_from_ssm() {
    let ssm_key = "/buildkite/agent-token";
    let h = harness(&[("BUILDKITE_AGENT_TOKEN_SSM_KEY", ssm_key)]);
    h.parameters.put(ssm_key, TOKEN);
    let mut token = Secret::new("rotated-away");
    let shutdown = Shutdown::default();
    let summary =
        run_until(&h.deps, &mut token, Some(start() + Duration::from_secs(15)), &shutdown).await;
    assert_eq!((summary.polls, summary.failed_polls), (2, 1));
    assert_eq!(token.expose(), TOKEN);
}

#[tokio::test]
async fn a_missing_ssm_token_fails_the_invocation_without_polling() {
    let h = harness(&[("BUILDKITE_AGENT_TOKEN_SSM_KEY", "/missing/token")]);
    let error = handle(&h.deps, None).await.unwrap_err();
    assert_eq!(error.error_type(), "AgentTokenUnavailable");
    assert!(error.to_string().contains("/missing/token"), "{error}");
    assert!(h.buildkite.requests().is_empty());
}

#[tokio::test]
async fn shutdown_stops_the_loop() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s")]);
    let shutdown = Shutdown::default();
    shutdown.trigger();
    let summary = run_until(&h.deps, &mut Secret::new(TOKEN), None, &shutdown).await;
    assert!(summary.polls <= 1);
}

#[tokio::test]
async fn elastic_ci_mode_is_refused_with_a_clear_error() {
    let h = harness(&[("ELASTIC_CI_MODE", "true")]);
    let error = check_supported(&h.deps.config).unwrap_err();
    assert_eq!(error.error_type(), "InvalidConfig");
    assert!(error.to_string().contains("ELASTIC_CI_MODE"), "{error}");
}

#[tokio::test]
async fn scale_in_routes_follow_the_fix_setting() {
    // Desired 2, five protected instances draining, four jobs: the original routes the
    // increase through scale-in, which the stack's DISABLE_SCALE_IN blocks.
    for (fix, expected) in [("false", None), ("true", Some(4))] {
        let h = harness(&[("DISABLE_SCALE_IN", "true"), ("ROUTE_BY_DESIRED_CAPACITY", fix)]);
        h.group.set_desired_capacity(GROUP, 2).await.unwrap();
        for i in 0..5 {
            h.group.add_instance(GROUP, &format!("i-{i}"), LifecycleState::InService);
        }
        h.buildkite.set_queue("default", QueueMetrics::jobs(4, 0, 0));
        let decision = h.poll().await.decision.unwrap();
        match expected {
            None => assert_eq!(decision.reason, Reason::ScaleInDisabled),
            Some(to) => assert_eq!(
                decision.action,
                Action::SetDesiredCapacity { direction: Direction::Out, from: 2, to }
            ),
        }
    }
}

/// A second scaler over the same group and queue, as an overlapping invocation in
/// another Lambda execution environment has: its own clock and cooldown memory.
fn second_scaler(h: &Harness) -> (Deps, ManualClock) {
    let clock = ManualClock::new(start());
    let client =
        AgentMetricsClient::new(&h.deps.config.agent_endpoint, &ClientSettings::standard())
            .unwrap();
    let deps = Deps::new(
        h.deps.config.clone(),
        h.group.clone(),
        h.metrics.clone(),
        h.parameters.clone(),
        Arc::new(client),
        Arc::new(clock.clone()),
    );
    (deps, clock)
}

#[tokio::test]
async fn overlapping_invocations_write_the_same_absolute_capacity() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s"), ("SCALE_OUT_COOLDOWN_PERIOD", "5m")]);
    let (other, _) = second_scaler(&h);
    h.buildkite.set_queue("default", QueueMetrics::jobs(4, 0, 0));
    let deadline = Some(start() + Duration::from_secs(40));
    let (mut token, mut other_token, shutdown) =
        (Secret::new(TOKEN), Secret::new(TOKEN), Shutdown::default());
    let (first, second) = tokio::join!(
        run_until(&h.deps, &mut token, deadline, &shutdown),
        run_until(&other, &mut other_token, deadline, &shutdown),
    );
    assert_eq!((first.failed_polls, second.failed_polls), (0, 0));
    // SetDesiredCapacity sets a value computed from the queue, never an increment: a
    // race repeats the same value at worst.
    let calls = h.set_calls();
    assert!(!calls.is_empty() && calls.iter().all(|desired| *desired == 4), "{calls:?}");
    assert_eq!(h.desired(), 4);
}

#[tokio::test]
async fn an_overlapping_warm_scaler_does_not_share_the_cooldown_but_never_overshoots() {
    let h = harness(&[("SCALE_OUT_COOLDOWN_PERIOD", "5m")]);
    let (other, _) = second_scaler(&h);
    h.buildkite.set_queue("default", QueueMetrics::jobs(5, 0, 0));
    assert_eq!(h.poll().await.applied, Applied::Set);
    // The other scaler reads the raised capacity and leaves it.
    let steady = run_once(&other, &Secret::new(TOKEN)).await;
    assert_eq!(steady.applied, Applied::Nothing);
    // More jobs: the first scaler waits for its cooldown; the other, whose memory has
    // no scale-out, raises the capacity to what the queue needs, as one scaler without
    // a cooldown would, and no further.
    h.buildkite.set_queue("default", QueueMetrics::jobs(8, 0, 0));
    let held = h.poll().await.decision.unwrap();
    assert!(matches!(held.reason, Reason::ScaleOutCooldown { .. }), "{held:?}");
    assert_eq!(run_once(&other, &Secret::new(TOKEN)).await.applied, Applied::Set);
    assert_eq!(h.set_calls(), [5, 8]);
}

fn job_scheduled(id: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": id,
        "detail-type": "Job Scheduled",
        "source": "aws.partner/buildkite.com/acme/0106-187c-12cd4fe",
        "detail": {"version": 1, "job": {"uuid": "j-1", "agent_query_rules": ["queue=default"]}}
    })
}

#[test]
fn tells_job_events_from_the_schedule() {
    assert_eq!(
        Trigger::from_event(&job_scheduled("e-1")),
        Trigger::JobScheduled { id: Some("e-1".into()) }
    );
    let schedule = serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"});
    assert_eq!(Trigger::from_event(&schedule), Trigger::Schedule);
    // Another partner's event, or another Buildkite event, is no job event.
    let mut other = job_scheduled("e-2");
    other["source"] = "aws.partner/example.com/x".into();
    assert_eq!(Trigger::from_event(&other), Trigger::Schedule);
    let mut finished = job_scheduled("e-3");
    finished["detail-type"] = "Job Finished".into();
    assert_eq!(Trigger::from_event(&finished), Trigger::Schedule);
    assert_eq!(Trigger::from_event(&serde_json::Value::Null), Trigger::Schedule);
}

#[tokio::test]
async fn a_burst_of_job_events_is_one_poll_per_interval_with_the_same_cooldowns() {
    let h = harness(&[("LAMBDA_INTERVAL", "10s"), ("SCALE_OUT_COOLDOWN_PERIOD", "5m")]);
    h.buildkite.set_queue("default", QueueMetrics::jobs(2, 0, 0));
    let first = handle_event(&h.deps, &job_scheduled("e-1"), None).await.unwrap();
    assert_eq!((first.polls, first.debounced, first.desired_capacity), (1, false, Some(2)));
    // The rest of the burst, within the interval: no poll at all.
    for id in ["e-2", "e-3", "e-4"] {
        h.clock.advance(Duration::from_secs(2));
        let summary = handle_event(&h.deps, &job_scheduled(id), None).await.unwrap();
        assert_eq!((summary.polls, summary.debounced), (0, true), "{id}");
    }
    assert_eq!(h.buildkite.requests().len(), 1, "one metrics request for the whole burst");
    // After the interval, an event polls again, and the scale-out cooldown of the first
    // poll holds exactly as for a scheduled poll.
    h.clock.advance(Duration::from_secs(5));
    h.buildkite.set_queue("default", QueueMetrics::jobs(4, 0, 0));
    let later = handle_event(&h.deps, &job_scheduled("e-5"), None).await.unwrap();
    assert_eq!((later.polls, later.capacity_changes), (1, 0));
    assert_eq!(h.set_calls(), [2], "still in the scale-out cooldown");
    h.clock.advance(Duration::from_secs(300));
    let after_cooldown = handle_event(&h.deps, &job_scheduled("e-6"), None).await.unwrap();
    assert_eq!(after_cooldown.capacity_changes, 1);
    assert_eq!(h.set_calls(), [2, 4]);
}

#[tokio::test]
async fn warm_pool_instances_are_neither_in_service_nor_pending() {
    let h = harness(&[]);
    h.group.set_desired_capacity(GROUP, 1).await.unwrap();
    h.group.add_instance(GROUP, "i-1", LifecycleState::InService);
    h.group.add_instance(GROUP, "i-2", LifecycleState::from_api("Warmed:Stopped"));
    h.group.add_instance(GROUP, "i-3", LifecycleState::from_api("Warmed:Pending:Wait"));
    h.buildkite.set_queue("default", QueueMetrics::jobs(3, 0, 0));
    let decision = h.poll().await.decision.unwrap();
    assert_eq!((decision.group.in_service, decision.group.pending), (1, 0));
    // Two more instances are needed: the pool's instances are not capacity until the
    // group takes them out of the pool, which this raise does.
    assert_eq!(h.set_calls(), [1, 3]);
}

/// The stack's metric filters count the lines this scaler writes: a successful poll as
/// SuccessfulPolls and a failed one as PollErrors, never the other way round (the
/// module's patterns are the template's, which `elastic-ci-e2e`'s parity test checks).
#[tokio::test]
async fn the_stacks_metric_filters_count_successful_and_failed_polls() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cloudformation/aws-stack.yml");
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pattern = |resource: &str| {
        template["Resources"][resource]["Properties"]["FilterPattern"].as_str().unwrap().to_owned()
    };
    let successful = pattern("ScalerPollsMetricFilter");
    let failed = pattern("ScalerPollErrorsMetricFilter");

    let h = harness(&[]);
    h.buildkite.set_queue("default", QueueMetrics::jobs(2, 0, 0));
    let log = Captured::default();
    let _guard = log.install();
    assert_eq!(h.poll().await.error, None);
    h.buildkite.fail_next(Fault::Status(500), 1);
    assert!(h.poll().await.error.is_some());
    let wrong = run_once(&h.deps, &Secret::new("not-the-token")).await;
    assert!(wrong.error.is_some());

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let count = |pattern: &str| {
        text.lines()
            .filter(|line| elastic_ci_testkit::log_filter::matches(pattern, line).unwrap())
            .count()
    };
    assert_eq!(count(&successful), 1, "{successful}: {text}");
    assert_eq!(count(&failed), 2, "{failed}: {text}");
}
