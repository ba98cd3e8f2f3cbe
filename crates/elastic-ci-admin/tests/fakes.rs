//! The state `why` and `pause` work on, gathered from the in-memory fakes for what moto
//! cannot show: pending instances, scaling activities, FAILURE signals, a refused token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use elastic_ci_admin::clients::Clients;
use elastic_ci_admin::state::gather;
use elastic_ci_admin::target::from_cloudformation;
use elastic_ci_admin::why::{Cause, LaunchFailure, causes};
use elastic_ci_aws::cloudformation::Stacks;
use elastic_ci_aws::fake::{
    FakeLogEvents, FakeNetwork, FakeObjectStore, FakeParameterStore, FakeRules, FakeScalingGroup,
    FakeStacks,
};
use elastic_ci_core::fleet::{GroupSnapshot, Health, LifecycleState, ScalingActivity};

struct World {
    clients: Clients,
    group: Arc<FakeScalingGroup>,
    logs: Arc<FakeLogEvents>,
    network: Arc<FakeNetwork>,
    stacks: Arc<FakeStacks>,
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
        rules,
        logs: logs.clone(),
        parameters: parameters.clone(),
        parameter_admin: parameters.clone(),
        commands: parameters,
        objects: Arc::new(FakeObjectStore::default()),
        images: Arc::new(elastic_ci_aws::fake::FakeMachineImages::default()),
        network: network.clone(),
    };
    World { clients, group, logs, network, stacks }
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
