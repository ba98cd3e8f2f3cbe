//! `watch`: each removal notice the fake metadata service announces drains the agents
//! without cutting a job short, with heartbeats and the lifecycle action completed
//! where a hook waits; and `terminate` stands down while Auto Scaling removes the
//! instance itself.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use elastic_ci_aws::error::AwsErrorKind;
use elastic_ci_aws::fake::{FakeScalingGroup, ScalingCall};
use elastic_ci_aws::imds::Imds;
use elastic_ci_bootstrap::stop::Stopped;
use elastic_ci_bootstrap::watch::{WatchDeps, WatchSettings, Watched, watch};
use elastic_ci_core::fleet::{GroupSnapshot, LifecycleActionResult, LifecycleState};
use elastic_ci_core::lifecycle::{Notice, format_rfc3339};
use elastic_ci_testkit::imds::FakeImds;

use crate::stop::Scripted;
use crate::{command, stderr};

const INSTANCE: &str = "i-0123456789abcdef0";

fn scaling() -> FakeScalingGroup {
    one_instance_group(LifecycleState::InService)
}

/// The group `ci-asg` with this instance in `state`.
pub(crate) fn one_instance_group(state: LifecycleState) -> FakeScalingGroup {
    let scaling = FakeScalingGroup::default();
    scaling.insert_group(GroupSnapshot {
        name: "ci-asg".into(),
        min_size: 0,
        max_size: 2,
        desired_capacity: 1,
        instances: vec![],
    });
    scaling.add_instance("ci-asg", INSTANCE, state);
    scaling
}

fn fake_imds() -> FakeImds {
    let fake = FakeImds::start(INSTANCE, "us-east-1");
    fake.set_tag("aws:autoscaling:groupName", "ci-asg");
    fake
}

fn settings(marker: &Path) -> WatchSettings {
    WatchSettings {
        poll: Duration::from_millis(10),
        agent_poll: Duration::from_millis(5),
        heartbeat_every: Duration::ZERO,
        max_drain: Duration::from_secs(60),
        lifecycle_hook: "buildkite-agent-drain".into(),
        group: None,
        drain_marker: marker.to_owned(),
    }
}

async fn run(
    fake: &FakeImds,
    scaling: &FakeScalingGroup,
    system: &Scripted,
    marker: &Path,
) -> Watched {
    let imds = Imds::new(Some(&fake.endpoint())).unwrap();
    let deps = WatchDeps { system, notices: &imds, metadata: &imds, scaling };
    tokio::time::timeout(Duration::from_secs(20), watch(&deps, &settings(marker)))
        .await
        .expect("watch returns once a notice is handled")
        .unwrap()
}

fn heartbeats(scaling: &FakeScalingGroup) -> usize {
    scaling
        .calls()
        .iter()
        .filter(|call| matches!(call, ScalingCall::RecordLifecycleActionHeartbeat { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_termination_hook_waits_for_running_jobs_with_heartbeats_then_continues() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("run/elastic-ci/lifecycle-drain");
    let fake = fake_imds();
    fake.set_target_lifecycle_state(Some("Terminated"));
    let scaling = scaling();
    // The job runs for three more looks at the agent processes.
    let system = Scripted::running_for(3);
    let watched = run(&fake, &scaling, &system, &marker).await;
    assert_eq!(
        watched,
        Watched {
            notice: Notice::Terminating,
            stopped: Stopped::Gracefully,
            n_heartbeats: 3,
            completed: true
        }
    );
    assert_eq!(system.actions(), ["systemctl stop --no-block buildkite-agent"]);
    assert_eq!(heartbeats(&scaling), 3);
    assert_eq!(
        scaling.calls().last(),
        Some(&ScalingCall::CompleteLifecycleAction {
            instance_id: INSTANCE.into(),
            hook_name: "buildkite-agent-drain".into(),
            result: LifecycleActionResult::Continue
        }),
        "completed only after the agents stopped"
    );
    assert!(marker.exists(), "terminate must stand down while the hook removes the instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_into_the_warm_pool_stops_the_agents_and_never_terminates() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("lifecycle-drain");
    let fake = fake_imds();
    fake.set_target_lifecycle_state(Some("Warmed:Stopped"));
    let scaling = scaling();
    let system = Scripted::running_for(0);
    let watched = run(&fake, &scaling, &system, &marker).await;
    assert_eq!(watched.notice, Notice::ToWarmPool("Stopped".into()));
    assert!(watched.completed);
    assert!(marker.exists());
    assert!(
        !scaling.calls().iter().any(|call| matches!(call, ScalingCall::TerminateInstance { .. })),
        "{:?}",
        scaling.calls()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spot_notice_under_a_running_job_lets_it_finish_while_there_is_time() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("lifecycle-drain");
    let fake = fake_imds();
    fake.set_target_lifecycle_state(Some("InService"));
    fake.set_spot_instance_action(Some(("terminate", "2099-01-01T00:00:00Z")));
    let scaling = scaling();
    let system = Scripted::running_for(3);
    let watched = run(&fake, &scaling, &system, &marker).await;
    assert_eq!(watched.stopped, Stopped::Gracefully);
    assert_eq!(
        watched.notice,
        Notice::SpotInterruption { time: UNIX_EPOCH + Duration::from_secs(4_070_908_800) }
    );
    assert_eq!(
        system.actions(),
        ["systemctl kill --signal=SIGTERM --kill-who=main buildkite-agent"]
    );
    assert!(scaling.calls().is_empty(), "a spot interruption has no hook to complete");
    assert!(!marker.exists(), "the instance retires as after any agent stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_outlives_its_spot_notice_is_cancelled_twenty_seconds_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_imds();
    let soon = SystemTime::now() + Duration::from_secs(10);
    fake.set_spot_instance_action(Some(("terminate", &format_rfc3339(soon))));
    let system = Scripted::running_for(u32::MAX);
    let watched = run(&fake, &scaling(), &system, &dir.path().join("m")).await;
    assert_eq!(watched.stopped, Stopped::Cancelled);
    assert_eq!(
        system.actions(),
        [
            "systemctl kill --signal=SIGTERM --kill-who=main buildkite-agent",
            "systemctl kill --signal=SIGQUIT --kill-who=main buildkite-agent"
        ]
    );
}

/// Runs `watch` while `announce` changes what the metadata service says.
async fn watch_while(
    fake: &FakeImds,
    scaling: &FakeScalingGroup,
    system: &Scripted,
    marker: &Path,
    announce: impl Future<Output = ()>,
) -> Watched {
    let imds = Imds::new(Some(&fake.endpoint())).unwrap();
    let deps = WatchDeps { system, notices: &imds, metadata: &imds, scaling };
    let settings = settings(marker);
    let (watched, ()) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(watch(&deps, &settings), announce)
    })
    .await
    .expect("watch returns once the instance is leaving");
    watched.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_recommendation_stops_the_agents_and_watches_on_until_the_instance_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_imds();
    fake.set_rebalance_recommendation(Some("2026-01-05T18:00:00Z"));
    let scaling = scaling();
    let system = Scripted::running_for(0);
    let announce = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(system.actions(), ["systemctl stop --no-block buildkite-agent"]);
        assert!(scaling.calls().is_empty());
        // The agents are gone and the instance retires itself: its termination hook
        // waits, and is completed at once.
        fake.set_target_lifecycle_state(Some("Terminated"));
    };
    let watched = watch_while(&fake, &scaling, &system, &dir.path().join("m"), announce).await;
    assert_eq!((watched.notice, watched.stopped), (Notice::Terminating, Stopped::Gracefully));
    assert_eq!(system.actions(), ["systemctl stop --no-block buildkite-agent"]);
    assert_eq!(heartbeats(&scaling), 0);
    assert!(watched.completed);
}

/// Capacity Rebalancing: the recommendation comes first, then the group replaces the
/// instance through its termination hook while the jobs still run. The hook gets its
/// heartbeats, and is completed only once the jobs have finished.
#[tokio::test(flavor = "multi_thread")]
async fn a_termination_hook_after_a_rebalance_recommendation_gets_heartbeats_and_completion() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("lifecycle-drain");
    let fake = fake_imds();
    fake.set_rebalance_recommendation(Some("2026-01-05T18:00:00Z"));
    let scaling = scaling();
    let system = Scripted::running_for(4);
    let announce = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fake.set_target_lifecycle_state(Some("Terminated"));
    };
    let watched = watch_while(&fake, &scaling, &system, &marker, announce).await;
    assert_eq!(
        watched,
        Watched {
            notice: Notice::Terminating,
            stopped: Stopped::Gracefully,
            n_heartbeats: 4,
            completed: true
        }
    );
    assert_eq!(heartbeats(&scaling), 4);
    assert_eq!(
        scaling.calls().last(),
        Some(&ScalingCall::CompleteLifecycleAction {
            instance_id: INSTANCE.into(),
            hook_name: "buildkite-agent-drain".into(),
            result: LifecycleActionResult::Continue
        })
    );
    assert!(marker.exists(), "terminate must stand down while the hook removes the instance");
}

/// A spot interruption after a rebalance recommendation: the agents, already stopping,
/// are told to cancel 20 seconds before the interruption (and never get a second
/// SIGTERM, which would cancel their jobs at once).
#[tokio::test(flavor = "multi_thread")]
async fn a_spot_notice_after_a_rebalance_recommendation_cancels_the_jobs_ahead_of_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_imds();
    fake.set_rebalance_recommendation(Some("2026-01-05T18:00:00Z"));
    let scaling = scaling();
    let system = Scripted::running_for(u32::MAX);
    let interruption = SystemTime::now() + Duration::from_secs(22);
    let announce = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fake.set_spot_instance_action(Some(("terminate", &format_rfc3339(interruption))));
    };
    let watched = watch_while(&fake, &scaling, &system, &dir.path().join("m"), announce).await;
    let cancelled_at = SystemTime::now();
    assert_eq!(watched.stopped, Stopped::Cancelled);
    assert!(matches!(watched.notice, Notice::SpotInterruption { .. }));
    assert_eq!(
        system.actions(),
        [
            "systemctl stop --no-block buildkite-agent",
            "systemctl kill --signal=SIGQUIT --kill-who=main buildkite-agent"
        ]
    );
    assert!(
        cancelled_at + Duration::from_secs(15) <= interruption,
        "cancelled about 20 s ahead of the interruption"
    );
    assert!(scaling.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn polls_through_a_metadata_outage_until_a_notice_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_imds();
    fake.down();
    let scaling = scaling();
    let system = Scripted::running_for(0);
    let imds = Imds::new(Some(&fake.endpoint())).unwrap();
    let deps = WatchDeps { system: &system, notices: &imds, metadata: &imds, scaling: &scaling };
    let settings = settings(&dir.path().join("m"));
    let watching = watch(&deps, &settings);
    let announce = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(system.actions().is_empty(), "an outage is no notice");
        fake.up();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(system.actions().is_empty(), "nothing announced yet");
        fake.set_target_lifecycle_state(Some("Terminated"));
    };
    let (watched, ()) =
        tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(watching, announce) })
            .await
            .unwrap();
    assert_eq!(watched.unwrap().notice, Notice::Terminating);
    assert!(fake.n_failed() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_completion_is_logged_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_imds();
    fake.set_target_lifecycle_state(Some("Terminated"));
    let scaling = scaling();
    scaling.faults.fail_next("CompleteLifecycleAction", AwsErrorKind::Validation, 3);
    let watched = run(&fake, &scaling, &Scripted::running_for(0), &dir.path().join("m")).await;
    assert!(!watched.completed);
}

#[test]
fn terminate_stands_down_while_auto_scaling_removes_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("lifecycle-drain");
    std::fs::write(&marker, "Terminating\n").unwrap();
    // No metadata service and no AWS: without the marker this fails to identify the
    // instance; with it, nothing is asked of either.
    let env = HashMap::from([(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT".to_owned(),
        "http://127.0.0.1:9".to_owned(),
    )]);
    let output = command(&env)
        .args(["terminate", "--drain-secs", "0", "--metadata-retry-delay-ms", "0"])
        .arg("--drain-marker")
        .arg(&marker)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("leaving it to the lifecycle hook"), "{}", stderr(&output));
}

#[test]
fn the_help_names_every_notice() {
    crate::assert_help_mentions(
        &["watch"],
        &[
            "autoscaling/target-lifecycle-state",
            "spot/instance-action",
            "events/recommendations/rebalance",
            "CONTINUE",
        ],
    );
}
