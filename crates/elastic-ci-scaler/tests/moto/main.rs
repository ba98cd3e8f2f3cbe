//! The scaler end to end: the fake Buildkite API, and the local AWS emulator (moto) for
//! Auto Scaling, SSM and CloudWatch, through the production adapters and binary.
//!
//! Needs `ELASTIC_CI_MOTO_ENDPOINT` (set by `cargo xtask ci` or `cargo xtask moto
//! start`); skips without it, except in CI, where it fails.

mod cli;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_smithy_types::DateTime;
use elastic_ci_aws::autoscaling::AutoScalingGroups;
use elastic_ci_aws::cloudwatch::CloudWatchMetrics;
use elastic_ci_aws::ssm::SsmParameterStore;
use elastic_ci_buildkite::{AgentMetricsClient, ClientSettings};
use elastic_ci_core::scaling::Reason;
use elastic_ci_core::scaling::config::ScalerConfig;
use elastic_ci_core::secret::Secret;
use elastic_ci_scaler::clock::ManualClock;
use elastic_ci_scaler::{Applied, Deps, handle, run_once};
use elastic_ci_testkit::buildkite::{FakeBuildkite, Fault, QueueMetrics};
use elastic_ci_testkit::moto::{Moto, moto};
use elastic_ci_testkit::names::unique_name;

const TOKEN: &str = "moto-suite-agent-token";

struct Stack {
    moto: Moto,
    buildkite: FakeBuildkite,
    group: String,
    queue: String,
    clock: ManualClock,
}

impl Stack {
    async fn new(moto: Moto, min: i32, max: i32, desired: i32) -> Stack {
        let group = moto.scaling_group("scaler", min, max, desired).await;
        Stack {
            moto,
            buildkite: FakeBuildkite::start(TOKEN),
            group,
            queue: unique_name("queue"),
            clock: ManualClock::new(SystemTime::now()),
        }
    }

    fn env(&self, vars: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("BUILDKITE_QUEUE", self.queue.as_str()),
            ("ASG_NAME", self.group.as_str()),
            ("AGENTS_PER_INSTANCE", "1"),
            ("BUILDKITE_AGENT_TOKEN", TOKEN),
            ("AVAILABILITY_THRESHOLD", "0"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        env.insert("BUILDKITE_AGENT_ENDPOINT".to_owned(), self.buildkite.endpoint());
        for (name, value) in vars {
            env.insert((*name).to_owned(), (*value).to_owned());
        }
        env
    }

    fn deps(&self, vars: &[(&str, &str)]) -> Deps {
        deps_from(&self.moto, &self.clock, &self.env(vars))
    }

    fn set_jobs(&self, scheduled: u32, running: u32) {
        self.buildkite.set_queue(&self.queue, QueueMetrics::jobs(scheduled, running, 0));
    }

    async fn desired(&self) -> i32 {
        desired_capacity(&self.moto, &self.group).await
    }
}

async fn desired_capacity(moto: &Moto, group: &str) -> i32 {
    let output = moto
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .unwrap();
    output.auto_scaling_groups()[0].desired_capacity().unwrap()
}

/// The production adapters against moto, with the configuration from `env`.
fn deps_from(moto: &Moto, clock: &ManualClock, env: &HashMap<String, String>) -> Deps {
    let config = ScalerConfig::from_env_map(env).unwrap();
    let sdk_config = moto.sdk_config();
    let client =
        AgentMetricsClient::new(&config.agent_endpoint, &ClientSettings::standard()).unwrap();
    Deps::new(
        config,
        Arc::new(AutoScalingGroups::new(&sdk_config)),
        Arc::new(CloudWatchMetrics::new(&sdk_config)),
        Arc::new(SsmParameterStore::new(&sdk_config)),
        Arc::new(client),
        Arc::new(clock.clone()),
    )
}

async fn poll(deps: &Deps) -> elastic_ci_scaler::PollReport {
    run_once(deps, &Secret::new(TOKEN)).await
}

#[tokio::test]
async fn scales_from_zero() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    let deps = stack.deps(&[]);
    stack.set_jobs(3, 0);
    let report = poll(&deps).await;
    assert_eq!(report.error, None);
    assert_eq!(report.applied, Applied::Set);
    assert_eq!(stack.desired().await, 3);
    // Moto starts the instances at once: the next poll sees them in service and holds.
    let report = poll(&deps).await;
    assert_eq!(report.decision.map(|d| (d.group.in_service, d.reason)), Some((3, Reason::Steady)));
}

#[tokio::test]
async fn caps_at_max_size_and_holds_min_size() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 1, 4, 1).await;
    let deps = stack.deps(&[]);
    stack.set_jobs(10, 5);
    poll(&deps).await;
    assert_eq!(stack.desired().await, 4);
    stack.set_jobs(0, 0);
    let report = poll(&deps).await;
    assert_eq!(report.decision.map(|d| d.computed), Some(1));
    assert_eq!(stack.desired().await, 1, "scale-in stops at MinSize");
}

#[tokio::test]
async fn cooldowns_hold_in_both_directions_on_a_simulated_clock() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    let deps =
        stack.deps(&[("SCALE_OUT_COOLDOWN_PERIOD", "300s"), ("SCALE_IN_COOLDOWN_PERIOD", "1h")]);
    stack.set_jobs(2, 0);
    poll(&deps).await;
    assert_eq!(stack.desired().await, 2);

    stack.set_jobs(6, 0);
    stack.clock.advance(Duration::from_secs(120));
    let report = poll(&deps).await;
    assert_eq!(
        report.decision.map(|d| d.reason),
        Some(Reason::ScaleOutCooldown { remaining: Duration::from_secs(180) })
    );
    assert_eq!(stack.desired().await, 2);
    stack.clock.advance(Duration::from_secs(180));
    poll(&deps).await;
    assert_eq!(stack.desired().await, 6);

    stack.set_jobs(1, 0);
    poll(&deps).await;
    assert_eq!(stack.desired().await, 1, "the first scale-in has no cooldown to wait for");
    stack.set_jobs(0, 0);
    stack.clock.advance(Duration::from_secs(1800));
    let report = poll(&deps).await;
    assert!(matches!(report.decision.map(|d| d.reason), Some(Reason::ScaleInCooldown { .. })));
    assert_eq!(stack.desired().await, 1);
    stack.clock.advance(Duration::from_secs(1800));
    poll(&deps).await;
    assert_eq!(stack.desired().await, 0);
}

#[tokio::test]
async fn an_api_outage_or_bad_answer_never_changes_capacity() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 3).await;
    let deps = stack.deps(&[]);
    // An empty queue would scale in to zero, if the failures were read as zeros.
    stack.set_jobs(0, 0);
    for fault in [Fault::Status(500), Fault::Status(503), Fault::InvalidJson, Fault::EmptyObject] {
        stack.buildkite.fail_next(fault.clone(), 1);
        let report = poll(&deps).await;
        assert!(report.error.is_some(), "{fault:?}");
        assert_eq!(stack.desired().await, 3, "{fault:?}");
    }

    // The API entirely down.
    let env = stack.env(&[("LAMBDA_TIMEOUT", "1s")]);
    drop(stack.buildkite);
    let deps = deps_from(&stack.moto, &stack.clock, &env);
    let error = handle(&deps, None).await.unwrap_err();
    assert_eq!(error.error_type(), "BuildkiteUnavailable");
    assert_eq!(desired_capacity(&stack.moto, &stack.group).await, 3);
}

#[tokio::test]
async fn reads_the_token_from_ssm_by_name_and_by_arn() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    let name = format!("/{}/agent-token", unique_name("buildkite"));
    stack.moto.put_parameter(&name, TOKEN, true).await;
    stack.set_jobs(2, 0);
    let arn = format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}");
    for key in [name.as_str(), arn.as_str()] {
        let mut env =
            stack.env(&[("BUILDKITE_AGENT_TOKEN_SSM_KEY", key), ("LAMBDA_TIMEOUT", "1s")]);
        env.remove("BUILDKITE_AGENT_TOKEN");
        let deps = deps_from(&stack.moto, &stack.clock, &env);
        let summary = handle(&deps, None).await.unwrap();
        assert_eq!(summary.failed_polls, 0, "{key}");
    }
    assert_eq!(stack.desired().await, 2);
    let authorizations: Vec<_> = stack
        .buildkite
        .requests()
        .into_iter()
        .map(|request| request.authorization.unwrap_or_default())
        .collect();
    assert_eq!(authorizations, [format!("Token {TOKEN}"), format!("Token {TOKEN}")]);
}

#[tokio::test]
async fn published_metrics_are_readable_with_get_metric_data() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    let deps = stack.deps(&[("CLOUDWATCH_METRICS", "true")]);
    stack.buildkite.set_queue(&stack.queue, QueueMetrics::jobs(3, 2, 1).with_agents(1, 2));
    assert_eq!(poll(&deps).await.error, None);

    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let now = SystemTime::now();
    let mut request = stack
        .moto
        .cloudwatch()
        .get_metric_data()
        .start_time(DateTime::from(now - Duration::from_secs(600)))
        .end_time(DateTime::from(now + Duration::from_secs(600)));
    let names = [
        ("ScheduledJobsCount", 3.0),
        ("RunningJobsCount", 2.0),
        ("WaitingJobsCount", 1.0),
        ("IdleAgentCount", 1.0),
        ("BusyAgentCount", 2.0),
        ("TotalAgentCount", 3.0),
    ];
    for (index, (name, _)) in names.iter().enumerate() {
        let metric = Metric::builder()
            .namespace("Buildkite")
            .metric_name(*name)
            .dimensions(Dimension::builder().name("Org").value("test-org").build())
            .dimensions(Dimension::builder().name("Queue").value(&stack.queue).build())
            .build();
        request = request.metric_data_queries(
            MetricDataQuery::builder()
                .id(format!("m{index}"))
                .metric_stat(
                    MetricStat::builder().metric(metric).period(60).stat("Maximum").build(),
                )
                .build(),
        );
    }
    let output = request.send().await.unwrap();
    for (index, (name, value)) in names.iter().enumerate() {
        let result = output
            .metric_data_results()
            .iter()
            .find(|result| result.id() == Some(format!("m{index}").as_str()))
            .unwrap();
        assert_eq!(result.values(), [*value], "{name}");
    }
}
