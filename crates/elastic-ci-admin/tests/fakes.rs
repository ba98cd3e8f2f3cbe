//! The state `why`, `upgrade` and `drain` work on, from the in-memory fakes for what moto
//! cannot show: pending instances, scaling activities, FAILURE signals, a refused token,
//! an update executed to its end or rolled back, instances leaving the group.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use elastic_ci_admin::clients::Clients;
use elastic_ci_admin::commands::drain::{DRAIN_COMMAND, DRAIN_UNIT, DrainArgs, drain};
use elastic_ci_admin::commands::log_filters::{CopyLogFiltersArgs, copy_log_filters};
use elastic_ci_admin::commands::pause::{PauseArgs, ResumeArgs, pause, resume};
use elastic_ci_admin::commands::upgrade::{UpgradeArgs, upgrade};
use elastic_ci_admin::state::PAUSE_TAG;
use elastic_ci_admin::state::gather;
use elastic_ci_admin::target::from_cloudformation;
use elastic_ci_admin::why::{Cause, LaunchFailure, causes};
use elastic_ci_admin::{Context, MutateArgs, StackArgs};
use elastic_ci_aws::cloudformation::{ResourceChange, Stacks};
use elastic_ci_aws::fake::{
    ChangeSetOutcome, FakeLogEvents, FakeNetwork, FakeObjectStore, FakeParameterStore, FakeRules,
    FakeScalingGroup, FakeStacks,
};
use elastic_ci_aws::logs::{
    LogGroupFilters, MetricFilter, MetricTransformation, SubscriptionFilter,
};
use elastic_ci_core::fleet::{GroupSnapshot, Health, LifecycleState, ScalingActivity};

struct World {
    clients: Clients,
    group: Arc<FakeScalingGroup>,
    logs: Arc<FakeLogEvents>,
    network: Arc<FakeNetwork>,
    stacks: Arc<FakeStacks>,
    rules: Arc<FakeRules>,
    parameters: Arc<FakeParameterStore>,
}

fn world() -> World {
    let stacks = Arc::new(FakeStacks::default());
    stacks.insert_stack(
        "ci",
        &[("BuildkiteQueue", "builds")],
        &[
            ("AgentAutoScaleGroup", "AWS::AutoScaling::AutoScalingGroup", "ci-asg"),
            ("AutoscalingFunction", "AWS::Lambda::Function", "ci-scaler"),
            ("AutoscalingSchedule", "AWS::Events::Rule", "ci-schedule"),
            ("ScalerLogGroup", "AWS::Logs::LogGroup", "/buildkite/ci/scaler"),
        ],
    );
    let group = Arc::new(FakeScalingGroup::default());
    group.insert_group(GroupSnapshot {
        name: "ci-asg".to_owned(),
        min_size: 0,
        max_size: 5,
        desired_capacity: 2,
        instances: Vec::new(),
    });
    let rules = Arc::new(FakeRules::default());
    rules.insert("ci-schedule", true);
    let logs = Arc::new(FakeLogEvents::default());
    logs.create_group("/buildkite/ci/scaler");
    let parameters = Arc::new(FakeParameterStore::default());
    let network = Arc::new(FakeNetwork::default());
    let clients = Clients {
        region: "us-east-1".to_owned(),
        stacks: stacks.clone(),
        groups: group.clone(),
        group_admin: group.clone(),
        rules: rules.clone(),
        logs: logs.clone(),
        log_filters: logs.clone(),
        parameters: parameters.clone(),
        parameter_admin: parameters.clone(),
        commands: parameters.clone(),
        objects: Arc::new(FakeObjectStore::default()),
        images: Arc::new(elastic_ci_aws::fake::FakeMachineImages::default()),
        network: network.clone(),
    };
    World { clients, group, logs, network, stacks, rules, parameters }
}

fn poll(now: SystemTime, ago_secs: u64, body: &str) -> (SystemTime, String) {
    let time = now - Duration::from_secs(ago_secs);
    (
        time,
        format!(
            r#"{{"target":"elastic_ci_scaler::poll","timestamp":"{}",{body}}}"#,
            elastic_ci_core::lifecycle::format_rfc3339(time)
        ),
    )
}

async fn causes_of(world: &World, now: SystemTime) -> Vec<Cause> {
    let target = from_cloudformation(world.stacks.as_ref() as &dyn Stacks, "ci").await.unwrap();
    let state = gather(&world.clients, &target, now).await.unwrap();
    causes(&state.snapshot())
}

#[tokio::test]
async fn booting_instances_and_failed_launches_come_from_the_group() {
    let world = world();
    let now = SystemTime::now();
    let (time, line) = poll(
        now,
        30,
        r#""scheduled_jobs":4,"running_jobs":0,"waiting_jobs":0,"desired_capacity":2,"reason":"n: scale out from 1 to 2""#,
    );
    world.logs.put("/buildkite/ci/scaler", "s", time, &line);
    world.group.add_instance("ci-asg", "i-pending", LifecycleState::Pending);
    world.network.set_launch_time("i-pending", now - Duration::from_secs(95));
    world.group.add_activity("ci-asg", ScalingActivity {
        start_time: now - Duration::from_secs(60),
        end_time: None,
        status: "Failed".to_owned(),
        description: "Launching a new EC2 instance.  Status Reason: We currently do not have sufficient m5.large capacity in the Availability Zone you requested.".to_owned(),
        cause: String::new(),
    });
    let causes = causes_of(&world, now).await;
    assert!(
        causes.contains(&Cause::Booting { instances: 1, longest_secs: Some(95) }),
        "{causes:?}"
    );
    assert!(
        causes.iter().any(|cause| matches!(
            cause,
            Cause::LaunchesFailing { kind: LaunchFailure::InsufficientCapacity, .. }
        )),
        "{causes:?}"
    );
}

#[tokio::test]
async fn unhealthy_instances_failure_signals_and_a_refused_token() {
    let world = world();
    let now = SystemTime::now();
    let (time, line) = poll(
        now,
        20,
        r#""error":"GET u: the agent token was refused (HTTP 401): no","error_type":"BuildkiteUnauthorized""#,
    );
    world.logs.put("/buildkite/ci/scaler", "s", time, &line);
    world.group.add_instance("ci-asg", "i-sick", LifecycleState::InService);
    world.group.set_health("i-sick", Health::Unhealthy);
    let causes = causes_of(&world, now).await;
    assert!(causes.contains(&Cause::ScalerUnauthorized), "{causes:?}");
    assert!(causes.contains(&Cause::NoSuccessfulPoll { minutes: None }), "{causes:?}");
    assert!(
        causes.contains(&Cause::BootsFailing {
            unhealthy: vec!["i-sick".to_owned()],
            failure_signals: 0
        }),
        "{causes:?}"
    );
}

#[tokio::test]
async fn a_stale_scaler_and_the_max_size() {
    let world = world();
    let now = SystemTime::now();
    let (time, line) = poll(
        now,
        15 * 60,
        r#""scheduled_jobs":9,"running_jobs":5,"waiting_jobs":0,"reason":"n: steady""#,
    );
    world.logs.put("/buildkite/ci/scaler", "s", time, &line);
    let mut group = world.group.group("ci-asg").unwrap();
    group.desired_capacity = 5;
    world.group.insert_group(group);
    let causes = causes_of(&world, now).await;
    assert!(causes.contains(&Cause::NoSuccessfulPoll { minutes: Some(15) }), "{causes:?}");
    assert!(causes.contains(&Cause::AtMaxSize { max_size: 5, jobs: 9 }), "{causes:?}");
}

fn upgrade_args(set: &[(&str, &str)]) -> UpgradeArgs {
    UpgradeArgs {
        stack: stack_args(),
        template_url: Some("https://s3.amazonaws.com/releases/v2.0.0/aws-stack.yml".to_owned()),
        version: None,
        release_bucket: None,
        set: set.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect(),
        poll_interval: Duration::from_millis(10),
        mutate: MutateArgs { dry_run: false, yes: true },
    }
}

/// The stack of [`world`] with parameters an upgrade works on, a new template without
/// `Retired`, and a change set that modifies the launch template.
async fn upgrade_world() -> (World, Context) {
    let world = world();
    world.stacks.insert_stack(
        "ci",
        &[("BuildkiteQueue", "builds"), ("MaxSize", "3"), ("Retired", "old")],
        &[("AgentAutoScaleGroup", "AWS::AutoScaling::AutoScalingGroup", "ci-asg")],
    );
    world.stacks.set_template_parameters(&["BuildkiteQueue", "MaxSize", "New"]);
    world.stacks.set_planned_changes(vec![ResourceChange {
        action: "Modify".to_owned(),
        logical_id: "AgentLaunchTemplate".to_owned(),
        resource_type: "AWS::EC2::LaunchTemplate".to_owned(),
        replacement: Some("False".to_owned()),
        properties: vec!["LaunchTemplateData".to_owned()],
    }]);
    let context = context(&world).await;
    (world, context)
}

/// The context a command of stack `ci` runs with.
async fn context(world: &World) -> Context {
    let target = from_cloudformation(world.stacks.as_ref() as &dyn Stacks, "ci").await.unwrap();
    Context { clients: world.clients.clone(), target, env: HashMap::new(), now: SystemTime::now() }
}

#[tokio::test]
async fn upgrade_executes_the_change_set_and_follows_it_to_the_end() {
    let (world, context) = upgrade_world().await;
    let mut out = Vec::new();
    upgrade(&context, &upgrade_args(&[("MaxSize", "5")]), &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("parameter Retired is not in the new template: dropped (it was \"old\")"),
        "{out}"
    );
    assert!(out.contains("parameter MaxSize: \"3\" -> \"5\""), "{out}");
    assert!(
        out.contains("  Modify AgentLaunchTemplate (AWS::EC2::LaunchTemplate): LaunchTemplateData"),
        "{out}"
    );
    assert!(out.contains("the Auto Scaling group will be replaced"), "{out}");
    assert!(out.contains(" UPDATE_IN_PROGRESS ci AWS::CloudFormation::Stack"), "{out}");
    assert!(out.contains("stack ci: UPDATE_COMPLETE in "), "{out}");
    assert!(!out.contains("log filters:"), "no original groups, no note: {out}");
    let parameters = world.stacks.parameters("ci");
    assert_eq!(parameters.get("MaxSize").map(String::as_str), Some("5"));
    assert_eq!(parameters.get("BuildkiteQueue").map(String::as_str), Some("builds"));
    assert!(!parameters.contains_key("Retired"), "{parameters:?}");
    // The kept parameter went as UsePreviousValue, never as a value read back.
    let change_sets = world.stacks.change_sets();
    let request = change_sets.values().next().unwrap();
    let queue = request.parameters.iter().find(|parameter| parameter.key == "BuildkiteQueue");
    assert_eq!(queue.and_then(|parameter| parameter.value.clone()), None);
}

#[tokio::test]
async fn a_rolled_back_upgrade_fails_naming_the_first_failed_resource() {
    let (world, context) = upgrade_world().await;
    world.stacks.set_outcome(ChangeSetOutcome::RollBack {
        resource: "AgentAutoScaleGroup".to_owned(),
        reason: "Received 0 SUCCESS signal(s) out of 1".to_owned(),
    });
    let mut out = Vec::new();
    let error = upgrade(&context, &upgrade_args(&[]), &mut out).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the update of stack ci failed and rolled back (UPDATE_ROLLBACK_COMPLETE): first failed resource AgentAutoScaleGroup: Received 0 SUCCESS signal(s) out of 1"
    );
    assert!(error.downcast_ref::<elastic_ci_admin::error::InputError>().is_none());
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("UPDATE_FAILED AgentAutoScaleGroup"), "{out}");
    assert_eq!(world.stacks.parameters("ci").get("MaxSize").map(String::as_str), Some("3"));
}

fn stack_args() -> StackArgs {
    StackArgs {
        stack: Some("ci".to_owned()),
        terraform_output: None,
        profile: None,
        region: None,
        endpoint_url: None,
    }
}

fn drain_args(instances: &[&str], all: bool, wait: bool, dry_run: bool) -> DrainArgs {
    DrainArgs {
        stack: stack_args(),
        instance: instances.iter().map(|id| (*id).to_owned()).collect(),
        all,
        wait,
        timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
        mutate: MutateArgs { dry_run, yes: true },
    }
}

/// The stack of [`world`] with two instances in service and one already terminating.
async fn drain_world() -> (World, Context) {
    let world = world();
    for (id, state) in [
        ("i-1", LifecycleState::InService),
        ("i-2", LifecycleState::InService),
        ("i-3", LifecycleState::Terminating),
    ] {
        world.group.add_instance("ci-asg", id, state);
    }
    let context = context(&world).await;
    (world, context)
}

fn drains(instances: &[&str]) -> (Vec<String>, Vec<String>) {
    (instances.iter().map(|id| (*id).to_owned()).collect(), vec![DRAIN_COMMAND.to_owned()])
}

#[tokio::test]
async fn drain_sends_the_command_to_the_instance_named_only() {
    let (world, context) = drain_world().await;
    let mut out = Vec::new();
    drain(&context, &drain_args(&["i-2"], false, false, false), &mut out).await.unwrap();
    assert_eq!(world.parameters.commands(), [drains(&["i-2"])]);
    assert_eq!(String::from_utf8(out).unwrap(), "draining i-2 (SSM command command-1)\n");
    // The scaler keeps running: the group replaces the instance as jobs need.
    assert_eq!(world.rules.enabled("ci-schedule"), Some(true));

    let error = drain(&context, &drain_args(&["i-3"], false, false, false), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "instance \"i-3\" is not in service in group ci-asg");
    assert!(error.downcast_ref::<elastic_ci_admin::error::InputError>().is_some());
    assert_eq!(world.parameters.commands().len(), 1);
}

/// SSM's SendCommand names at most 50 instances: 120 in service go out as three
/// commands of 50, 50 and 20.
#[tokio::test]
async fn drain_all_sends_the_command_in_batches_of_fifty() {
    let world = world();
    let ids: Vec<String> = (1..=120).map(|n| format!("i-{n:03}")).collect();
    for id in &ids {
        world.group.add_instance("ci-asg", id, LifecycleState::InService);
    }
    let context = context(&world).await;
    let mut out = Vec::new();
    drain(&context, &drain_args(&[], true, false, false), &mut out).await.unwrap();
    let sizes: Vec<usize> =
        world.parameters.commands().iter().map(|(instances, _)| instances.len()).collect();
    assert_eq!(sizes, [50, 50, 20]);
    let sent: Vec<String> =
        world.parameters.commands().into_iter().flat_map(|(instances, _)| instances).collect();
    assert_eq!(sent, ids);
    assert_eq!(String::from_utf8(out).unwrap().matches("draining ").count(), 3);
}

#[tokio::test]
async fn a_dry_run_drains_nothing_and_pauses_nothing() {
    let (world, context) = drain_world().await;
    let mut out = Vec::new();
    drain(&context, &drain_args(&[], true, true, true), &mut out).await.unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("would pause the scaler\nwould drain i-1, i-2: `{DRAIN_COMMAND}` through SSM\n")
    );
    assert!(world.parameters.commands().is_empty());
    assert_eq!(world.rules.enabled("ci-schedule"), Some(true));
    assert!(world.group.tags("ci-asg").is_empty());
}

#[tokio::test]
async fn drain_all_pauses_the_scaler_and_waits_for_every_instance_to_leave() {
    let (world, context) = drain_world().await;
    let group = world.group.clone();
    // The instances leave a little later, as their agents finish their jobs.
    let leaving = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        group.remove_instance("i-1");
        tokio::time::sleep(Duration::from_millis(300)).await;
        group.remove_instance("i-2");
    });
    let mut out = Vec::new();
    drain(&context, &drain_args(&[], true, true, false), &mut out).await.unwrap();
    leaving.await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("disable the scaler's schedule ci-schedule\n"), "{out}");
    assert!(out.contains("paused\ndraining i-1, i-2 (SSM command command-1)\n"), "{out}");
    assert!(out.contains("waiting for i-1, i-2 to finish their jobs and leave\n"), "{out}");
    assert!(out.contains("waiting for i-2 to finish their jobs and leave\n"), "{out}");
    assert!(out.ends_with("drained: every instance has left the group\n"), "{out}");
    assert_eq!(world.parameters.commands(), [drains(&["i-1", "i-2"])]);
    assert_eq!(world.rules.enabled("ci-schedule"), Some(false));
    assert!(world.group.tags("ci-asg").contains_key(PAUSE_TAG));
}

#[tokio::test]
async fn waiting_ends_with_an_error_naming_the_instances_that_stayed() {
    let (_world, context) = drain_world().await;
    let mut args = drain_args(&["i-1"], false, true, false);
    args.timeout = Duration::from_millis(30);
    let error = drain(&context, &args, &mut Vec::new()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "still in the group after 0 s: i-1 (their jobs may still be running)"
    );
}

/// What SSM runs on the instance is a unit the image installs.
#[test]
fn the_drain_command_starts_a_unit_of_the_image() {
    assert!(DRAIN_COMMAND.ends_with(&format!(" {DRAIN_UNIT}")), "{DRAIN_COMMAND}");
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packer/linux/conf/systemd")
        .join(DRAIN_UNIT);
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/elastic-ci-bootstrap stop-gracefully"),
        "{text}"
    );
}

/// A stack with a Buildkite partner event bus: `pause` disables the job-event rule too
/// (a job would otherwise start the scaler again), `resume` enables it again, and a
/// rule that was off before the pause stays off.
#[tokio::test]
async fn pause_and_resume_take_the_job_event_rule_along() {
    const JOB_RULE: &str = "aws.partner/buildkite.com/acme/x|ci-JobScheduled-1";
    let world = world();
    world.stacks.insert_stack(
        "ci",
        &[("BuildkiteQueue", "builds")],
        &[
            ("AgentAutoScaleGroup", "AWS::AutoScaling::AutoScalingGroup", "ci-asg"),
            ("AutoscalingSchedule", "AWS::Events::Rule", "ci-schedule"),
            ("AutoscalingJobScheduledRule", "AWS::Events::Rule", JOB_RULE),
        ],
    );
    world.rules.insert(JOB_RULE, true);
    let context = context(&world).await;
    assert_eq!(context.target.job_event_rule.as_deref(), Some(JOB_RULE));
    let pause_args = PauseArgs {
        stack: stack_args(),
        to: None,
        mutate: MutateArgs { dry_run: false, yes: true },
    };
    let resume_args = ResumeArgs {
        stack: stack_args(),
        force: false,
        mutate: MutateArgs { dry_run: false, yes: true },
    };

    let mut out = Vec::new();
    pause(&context, &pause_args, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains(&format!("disable the scaler's job-event rule {JOB_RULE}")), "{out}");
    assert_eq!(world.rules.enabled("ci-schedule"), Some(false));
    assert_eq!(world.rules.enabled(JOB_RULE), Some(false));

    let mut out = Vec::new();
    resume(&context, &resume_args, &mut out).await.unwrap();
    assert_eq!(world.rules.enabled("ci-schedule"), Some(true));
    assert_eq!(world.rules.enabled(JOB_RULE), Some(true), "{}", String::from_utf8_lossy(&out));

    // A job-event rule an operator turned off stays off through a pause and resume.
    world.rules.insert(JOB_RULE, false);
    pause(&context, &pause_args, &mut Vec::new()).await.unwrap();
    resume(&context, &resume_args, &mut Vec::new()).await.unwrap();
    assert_eq!(world.rules.enabled("ci-schedule"), Some(true));
    assert_eq!(world.rules.enabled(JOB_RULE), Some(false));
}

fn metric_filter(name: &str) -> MetricFilter {
    MetricFilter {
        name: name.to_owned(),
        pattern: "\"ERROR\"".to_owned(),
        transformations: vec![MetricTransformation {
            metric_name: format!("{name}-count"),
            metric_namespace: "Team/CI".to_owned(),
            metric_value: "1".to_owned(),
            default_value: Some(0.0),
            unit: Some("Count".to_owned()),
            dimensions: [("Queue".to_owned(), "$.queue".to_owned())].into(),
        }],
        apply_on_transformed_logs: false,
    }
}

fn subscription_filter(name: &str, destination: &str) -> SubscriptionFilter {
    SubscriptionFilter {
        name: name.to_owned(),
        pattern: String::new(),
        destination_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{destination}"),
        role_arn: None,
        distribution: "Random".to_owned(),
        apply_on_transformed_logs: false,
    }
}

fn copy_args(from_scaler: Option<&str>, dry_run: bool) -> CopyLogFiltersArgs {
    CopyLogFiltersArgs {
        stack: stack_args(),
        from_scaler_log_group: from_scaler.map(str::to_owned),
        json: false,
        mutate: MutateArgs { dry_run, yes: true },
    }
}

/// The original's groups with filters on them, beside the stack's new groups; the new
/// system group already has a subscription filter of its own, so it takes one more.
async fn log_filters_world() -> World {
    let world = world();
    for group in [
        "/buildkite/buildkite-agent",
        "/buildkite/system",
        "/buildkite/cfn-init",
        "/aws/lambda/ci-Autoscaling-old",
        "/buildkite/ci/buildkite-agent",
        "/buildkite/ci/system",
    ] {
        world.logs.create_group(group);
    }
    let logs: &dyn LogGroupFilters = world.logs.as_ref();
    logs.put_metric_filter("/buildkite/buildkite-agent", &metric_filter("agent-errors"))
        .await
        .unwrap();
    logs.put_subscription_filter(
        "/buildkite/buildkite-agent",
        &subscription_filter("to-siem", "siem"),
    )
    .await
    .unwrap();
    for name in ["to-store", "to-search"] {
        logs.put_subscription_filter("/buildkite/system", &subscription_filter(name, name))
            .await
            .unwrap();
    }
    logs.put_subscription_filter("/buildkite/ci/system", &subscription_filter("ours", "ours"))
        .await
        .unwrap();
    logs.put_metric_filter("/buildkite/cfn-init", &metric_filter("cfn")).await.unwrap();
    logs.put_metric_filter("/aws/lambda/ci-Autoscaling-old", &metric_filter("scaler-errors"))
        .await
        .unwrap();
    world
}

/// Runs `copy-log-filters` with the scaler's group, expecting a failure.
async fn copy_failing(context: &Context) -> (anyhow::Error, String) {
    let mut out = Vec::new();
    let args = copy_args(Some("/aws/lambda/ci-Autoscaling-old"), false);
    let error = copy_log_filters(context, &args, &mut out).await.unwrap_err();
    (error, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn copy_log_filters_reports_the_limit_and_a_refused_destination_and_copies_the_rest() {
    let world = log_filters_world().await;
    world.logs.refuse_destination("arn:aws:lambda:us-east-1:123456789012:function:siem");
    let logs: &dyn LogGroupFilters = world.logs.as_ref();
    let old_agent = logs.subscription_filters("/buildkite/buildkite-agent").await.unwrap();
    let context = context(&world).await;
    let (error, out) = copy_failing(&context).await;
    assert_eq!(error.to_string(), "2 of 6 filters were not copied", "{out}");
    assert!(error.downcast_ref::<elastic_ci_admin::error::InputError>().is_none());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "copied metric filter \"agent-errors\": /buildkite/buildkite-agent -> /buildkite/ci/buildkite-agent",
            "failed subscription filter \"to-siem\": /buildkite/buildkite-agent -> /buildkite/ci/buildkite-agent: PutSubscriptionFilter /buildkite/ci/buildkite-agent: invalid request (InvalidParameterException): Could not deliver test message to specified destination.",
            "copied subscription filter \"to-store\": /buildkite/system -> /buildkite/ci/system",
            "failed subscription filter \"to-search\": /buildkite/system -> /buildkite/ci/system: PutSubscriptionFilter /buildkite/ci/system: invalid request (LimitExceededException): Resource limit exceeded. (a log group takes two subscription filters at most: delete one from it, or combine two, and run again)",
        ],
        "{out}"
    );
    assert!(
        out.contains("no counterpart metric filter \"cfn\": /buildkite/cfn-init: this stack writes no such log"),
        "{out}"
    );
    assert!(
        out.contains("copied metric filter \"scaler-errors\": /aws/lambda/ci-Autoscaling-old -> /buildkite/ci/scaler"),
        "{out}"
    );
    assert!(out.ends_with("3 copied, 1 no counterpart, 2 failed\n"), "{out}");

    // The copies carry every setting; the old groups are as they were.
    assert_eq!(
        logs.metric_filters("/buildkite/ci/buildkite-agent").await.unwrap(),
        [metric_filter("agent-errors")]
    );
    assert_eq!(
        logs.subscription_filters("/buildkite/ci/system").await.unwrap(),
        [subscription_filter("ours", "ours"), subscription_filter("to-store", "to-store")]
    );
    assert_eq!(logs.subscription_filters("/buildkite/buildkite-agent").await.unwrap(), old_agent);
    assert_eq!(logs.subscription_filters("/buildkite/system").await.unwrap().len(), 2);

    // A second run copies nothing again and tries the refused ones again.
    let (error, out) = copy_failing(&context).await;
    assert_eq!(error.to_string(), "2 of 6 filters were not copied", "{out}");
    assert!(out.ends_with("3 already present, 1 no counterpart, 2 failed\n"), "{out}");
}

#[tokio::test]
async fn copy_log_filters_dry_run_writes_nothing_and_a_changed_filter_is_left_alone() {
    let world = log_filters_world().await;
    let logs: &dyn LogGroupFilters = world.logs.as_ref();
    let mut changed = metric_filter("agent-errors");
    changed.pattern = "\"FATAL\"".to_owned();
    logs.put_metric_filter("/buildkite/ci/buildkite-agent", &changed).await.unwrap();
    let context = context(&world).await;
    let mut out = Vec::new();
    copy_log_filters(&context, &copy_args(None, true), &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with("differs metric filter \"agent-errors\": /buildkite/buildkite-agent -> /buildkite/ci/buildkite-agent: the new group has a filter of that name with other settings; left as it is\n"),
        "{out}"
    );
    assert!(out.contains("would copy subscription filter \"to-search\""), "{out}");
    assert!(!out.contains("scaler-errors"), "the scaler's group only when named: {out}");
    assert!(out.ends_with("3 would copy, 1 differs, 1 no counterpart\n"), "{out}");
    assert_eq!(logs.metric_filters("/buildkite/ci/buildkite-agent").await.unwrap(), [changed]);
    assert!(logs.subscription_filters("/buildkite/ci/buildkite-agent").await.unwrap().is_empty());
    assert_eq!(logs.subscription_filters("/buildkite/ci/system").await.unwrap().len(), 1);

    // A scaler group that is gone is the user's mistake, reported before any change.
    let error =
        copy_log_filters(&context, &copy_args(Some("/aws/lambda/gone"), false), &mut Vec::new())
            .await
            .unwrap_err();
    assert!(error.downcast_ref::<elastic_ci_admin::error::InputError>().is_some());
    assert_eq!(
        error.to_string(),
        "log group \"/aws/lambda/gone\" (--from-scaler-log-group) does not exist: the switch from the original stack deletes the original scaler with its log group"
    );
    assert!(logs.subscription_filters("/buildkite/ci/buildkite-agent").await.unwrap().is_empty());
}

#[tokio::test]
async fn upgrade_notes_the_original_groups_filters_left_to_copy() {
    let (world, context) = upgrade_world().await;
    world.logs.create_group("/buildkite/elastic-stack");
    let logs: &dyn LogGroupFilters = world.logs.as_ref();
    logs.put_metric_filter("/buildkite/elastic-stack", &metric_filter("boots")).await.unwrap();
    let mut args = upgrade_args(&[]);
    args.mutate.dry_run = true;
    let mut out = Vec::new();
    upgrade(&context, &args, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("log filters: the original stack's log groups (/buildkite/buildkite-agent, …) have 1 metric or subscription filters that this stack's groups lack; after the update, `elastic-ci copy-log-filters --stack ci` creates them there"),
        "{out}"
    );
}
