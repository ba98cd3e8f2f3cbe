//! `terminate`: retire this instance when its agents have stopped (the agent unit's
//! `ExecStopPost`). While another process of the agent service still runs (the agent
//! user's, running the image's agent binary in the agent unit: see
//! [`crate::system::System::agent_processes_running`]), the command leaves the
//! instance alone: the last agent's stop terminates it,
//! so an agent that stopped early (after a full disk) never ends its siblings' jobs.
//!
//! The ladder is the original's: terminate with the desired capacity decremented (so
//! the group does not replace it); if that is refused (typically desired equals
//! MinSize), terminate without decrement, sending `ShouldDecrementDesiredCapacity=false`
//! explicitly (the original omitted this required parameter, so its fallback could
//! never succeed: elastic-ci-stack-for-aws#1888); if that fails too, mark the
//! instance Unhealthy so the group replaces it. Only when all three fail does the
//! command fail, and systemd then restarts the agent.

use std::time::Duration;

use anyhow::Context;
use elastic_ci_aws::autoscaling::ScalingGroup;
use elastic_ci_aws::error::AwsError;
use elastic_ci_aws::imds::InstanceMetadata;
use elastic_ci_aws::retry::{self, retry};
use elastic_ci_core::backoff::Backoff;
use elastic_ci_core::fleet::Health;
use tracing::{error, info, warn};

use crate::boot::is_instance_id;

/// How the instance was retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retired {
    TerminatedWithDecrement,
    TerminatedWithoutDecrement,
    MarkedUnhealthy,
}

/// Each metadata request: 3 attempts, waiting 1 s then 2 s.
pub(crate) const METADATA_BACKOFF: Backoff =
    Backoff::doubling(3, Duration::from_secs(1), Duration::from_secs(2));

/// The instance id and region, each with its own retries.
pub(crate) async fn identify(
    metadata: &dyn InstanceMetadata,
    backoff: Backoff,
) -> anyhow::Result<(String, String)> {
    info!("fetching EC2 metadata...");
    let instance_id = fetch(backoff, "instance ID", || metadata.instance_id()).await?;
    anyhow::ensure!(
        is_instance_id(&instance_id),
        "the metadata service returned {instance_id:?}, which is not an instance id"
    );
    let region = fetch(backoff, "region", || metadata.region()).await?;
    Ok((instance_id, region))
}

async fn fetch<Fut>(backoff: Backoff, what: &str, call: impl Fn() -> Fut) -> anyhow::Result<String>
where
    Fut: Future<Output = Result<String, AwsError>>,
{
    retry(backoff, retry::always, retry::warn_retrying("Metadata fetch"), |_| call())
        .await
        .with_context(|| format!("ERROR: Failed to fetch {what} after retries"))
}

/// Terminates `instance_id`, falling back as described in the module documentation.
pub(crate) async fn retire(
    scaling: &dyn ScalingGroup,
    instance_id: &str,
) -> anyhow::Result<Retired> {
    info!(instance_id, "requesting instance termination...");
    let first = match scaling.terminate_instance(instance_id, true).await {
        Ok(()) => {
            info!("Successfully terminated instance with desired capacity decremented");
            return Ok(Retired::TerminatedWithDecrement);
        }
        Err(error) => error,
    };
    warn!(error = %first, "Termination with capacity decrement failed, attempting without decrement...");
    let second = match scaling.terminate_instance(instance_id, false).await {
        Ok(()) => {
            info!("Successfully terminated instance (ASG will launch replacement)");
            return Ok(Retired::TerminatedWithoutDecrement);
        }
        Err(error) => error,
    };
    warn!(error = %second, "Direct termination failed, marking instance as unhealthy...");
    match scaling.set_instance_health(instance_id, Health::Unhealthy).await {
        Ok(()) => {
            info!("Marked the instance unhealthy: the group will replace it");
            Ok(Retired::MarkedUnhealthy)
        }
        Err(third) => {
            error!(error = %third, "could not mark the instance unhealthy either");
            Err(anyhow::Error::new(third)).with_context(|| {
                format!("could not terminate {instance_id} (with decrement: {first}; without: {second}) nor mark it unhealthy")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use elastic_ci_aws::error::AwsErrorKind;
    use elastic_ci_aws::fake::{FakeScalingGroup, ScalingCall};
    use elastic_ci_core::fleet::{GroupSnapshot, LifecycleState};

    use super::*;

    /// A group at MinSize: the decrement is refused, as the service refuses it (the
    /// local emulator accepts it, so this path needs the fake).
    fn group_at_min_size() -> FakeScalingGroup {
        let scaling = FakeScalingGroup::default();
        scaling.insert_group(GroupSnapshot {
            name: "asg".into(),
            min_size: 1,
            max_size: 3,
            desired_capacity: 1,
            instances: vec![],
        });
        scaling.add_instance("asg", "i-0123456789abcdef0", LifecycleState::InService);
        scaling
    }

    #[tokio::test]
    async fn falls_back_to_terminating_without_decrement() {
        let scaling = group_at_min_size();
        let retired = retire(&scaling, "i-0123456789abcdef0").await.unwrap();
        assert_eq!(retired, Retired::TerminatedWithoutDecrement);
        assert_eq!(
            scaling.calls(),
            [ScalingCall::TerminateInstance {
                instance_id: "i-0123456789abcdef0".into(),
                decrement_desired: false
            }]
        );
        assert_eq!(scaling.group("asg").unwrap().desired_capacity, 1);
    }

    #[tokio::test]
    async fn marks_unhealthy_when_termination_keeps_failing() {
        let scaling = group_at_min_size();
        scaling.faults.fail_next("TerminateInstanceInAutoScalingGroup", AwsErrorKind::Service, 2);
        let retired = retire(&scaling, "i-0123456789abcdef0").await.unwrap();
        assert_eq!(retired, Retired::MarkedUnhealthy);
        assert_eq!(
            scaling.calls(),
            [ScalingCall::SetInstanceHealth {
                instance_id: "i-0123456789abcdef0".into(),
                health: Health::Unhealthy
            }]
        );
    }

    #[tokio::test]
    async fn fails_only_when_everything_fails() {
        let scaling = group_at_min_size();
        scaling.faults.fail_next(
            "TerminateInstanceInAutoScalingGroup",
            AwsErrorKind::AccessDenied,
            2,
        );
        scaling.faults.fail_next("SetInstanceHealth", AwsErrorKind::AccessDenied, 1);
        let error = retire(&scaling, "i-0123456789abcdef0").await.unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("could not terminate i-0123456789abcdef0"), "{message}");
        assert!(message.contains("SetInstanceHealth"), "{message}");
    }
}
