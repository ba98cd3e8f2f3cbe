//! `stop-gracefully`: spot interruptions, plain stops and lifecycle hooks, with a
//! scripted system whose agent processes exit after a few polls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use elastic_ci_aws::autoscaling::ScalingGroup;
use elastic_ci_aws::fake::ScalingCall;
use elastic_ci_aws::imds::{Imds, InstanceMetadata};
use elastic_ci_bootstrap::stop::{PollIntervals, StopRequest, Stopped, stop_gracefully};
use elastic_ci_bootstrap::system::System;
use elastic_ci_core::boot::action::SystemAction;
use elastic_ci_core::boot::storage::{BlockDevice, Mount};
use elastic_ci_core::fleet::{LifecycleActionResult, LifecycleState};
use elastic_ci_core::lifecycle::Transition;
use elastic_ci_testkit::imds::FakeImds;

use crate::{command, recorded, stderr};

/// Agent processes that keep running for `n_polls` checks.
pub(crate) struct Scripted {
    actions: Mutex<Vec<String>>,
    n_polls: AtomicU32,
}

impl Scripted {
    pub(crate) fn running_for(n_polls: u32) -> Scripted {
        Scripted { actions: Mutex::new(Vec::new()), n_polls: AtomicU32::new(n_polls) }
    }

    pub(crate) fn actions(&self) -> Vec<String> {
        self.actions.lock().unwrap().clone()
    }
}

#[async_trait]
impl System for Scripted {
    async fn perform(&self, action: &SystemAction) -> anyhow::Result<()> {
        self.actions.lock().unwrap().push(action.to_string());
        Ok(())
    }

    async fn docker_version(&self) -> anyhow::Result<String> {
        Ok("27.0.0".into())
    }

    async fn agent_processes_running(&self) -> anyhow::Result<bool> {
        Ok(self
            .n_polls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok())
    }
    // stop-gracefully asks none of these.
    async fn mounts(&self) -> anyhow::Result<Vec<Mount>> {
        anyhow::bail!("not asked by stop-gracefully")
    }

    async fn nvme_list(&self) -> anyhow::Result<String> {
        anyhow::bail!("not asked by stop-gracefully")
    }

    async fn block_device(&self, _device: &str) -> anyhow::Result<BlockDevice> {
        anyhow::bail!("not asked by stop-gracefully")
    }

    async fn user_id(&self, _user: &str) -> anyhow::Result<u32> {
        anyhow::bail!("not asked by stop-gracefully")
    }

    async fn group_id(&self, _group: &str) -> anyhow::Result<u32> {
        anyhow::bail!("not asked by stop-gracefully")
    }
}

const FAST: PollIntervals =
    PollIntervals { spot: Duration::from_millis(5), stop: Duration::from_millis(5) };

fn request(transition: Transition, time: Option<&str>) -> StopRequest {
    StopRequest {
        transition,
        instance_id: None,
        termination_time: time.map(str::to_owned),
        lifecycle_hook: None,
        group: None,
    }
}

#[tokio::test]
async fn spot_interruption_waits_for_jobs_while_there_is_time() {
    let system = Scripted::running_for(3);
    let request = request(Transition::SpotInterruption, Some("2099-01-01T00:00:00Z"));
    let stopped = stop_gracefully(&system, &request, FAST, None).await.unwrap();
    assert_eq!(stopped, Stopped::Gracefully);
    assert_eq!(
        system.actions(),
        ["systemctl kill --signal=SIGTERM --kill-who=main buildkite-agent"]
    );
}

#[tokio::test]
async fn spot_interruption_cancels_jobs_twenty_seconds_ahead() {
    let system = Scripted::running_for(u32::MAX);
    // Already inside the last 20 seconds.
    let request = request(Transition::SpotInterruption, Some("2000-01-01T00:00:00Z"));
    let stopped = stop_gracefully(&system, &request, FAST, None).await.unwrap();
    assert_eq!(stopped, Stopped::Cancelled);
    assert_eq!(
        system.actions(),
        [
            "systemctl kill --signal=SIGTERM --kill-who=main buildkite-agent",
            "systemctl kill --signal=SIGQUIT --kill-who=main buildkite-agent"
        ]
    );
}

#[tokio::test]
async fn other_transitions_stop_the_unit_and_wait_for_every_process() {
    let system = Scripted::running_for(2);
    let stopped =
        stop_gracefully(&system, &request(Transition::Other(String::new()), None), FAST, None)
            .await
            .unwrap();
    assert_eq!(stopped, Stopped::Gracefully);
    assert_eq!(system.actions(), ["systemctl stop buildkite-agent"]);
    assert_eq!(system.n_polls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminating_lifecycle_hook_is_completed_after_the_stop() {
    let scaling = crate::watch::one_instance_group(LifecycleState::Terminating);
    let fake_imds = FakeImds::start("i-0123456789abcdef0", "us-east-1");
    fake_imds.set_tag("aws:autoscaling:groupName", "ci-asg");
    let imds = Imds::new(Some(&fake_imds.endpoint())).unwrap();
    let system = Scripted::running_for(1);
    let mut request = request(Transition::Terminating, None);
    request.lifecycle_hook = Some("drain".into());
    let lifecycle = Some((&scaling as &dyn ScalingGroup, &imds as &dyn InstanceMetadata));
    stop_gracefully(&system, &request, FAST, lifecycle).await.unwrap();
    assert_eq!(system.actions(), ["systemctl stop buildkite-agent"]);
    assert_eq!(
        scaling.calls(),
        [ScalingCall::CompleteLifecycleAction {
            instance_id: "i-0123456789abcdef0".into(),
            hook_name: "drain".into(),
            result: LifecycleActionResult::Continue
        }]
    );

    // Without tags in metadata the group must be given.
    fake_imds.disable_tags();
    let error =
        stop_gracefully(&Scripted::running_for(0), &request, FAST, lifecycle).await.unwrap_err();
    assert!(format!("{error:#}").contains("pass --group"), "{error:#}");
}

#[test]
fn the_command_records_its_actions() {
    let dir = tempfile::tempdir().unwrap();
    let actions = dir.path().join("actions.jsonl");
    let output = command(&HashMap::new())
        .args([
            "stop-gracefully",
            "ec2:SPOT_INSTANCE_TERMINATION",
            "i-0123456789abcdef0",
            "2099-01-01T00:00:00Z",
        ])
        .arg("--record-actions")
        .arg(&actions)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("Stopping buildkite-agent gracefully due to the lifecycle transition: ec2:SPOT_INSTANCE_TERMINATION"));
    assert!(stderr(&output).contains("All buildkite agents have stopped gracefully"));
    assert_eq!(
        recorded(&actions),
        [
            serde_json::json!({"action": "systemctl", "args": ["kill", "--signal=SIGTERM", "--kill-who=main", "buildkite-agent"]})
        ]
    );
}
