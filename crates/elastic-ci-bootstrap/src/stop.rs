//! `stop-gracefully`: the original's lifecycle handler for spot interruptions and lifecycle
//! notices. It stops the agent so running jobs can finish, and, for an Auto Scaling
//! lifecycle hook, completes the lifecycle action once the agent is gone.
//!
//! Unlike the original it never sources `cfn-env`: that file lives in a directory the
//! agent user owns, and this handler runs as root.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use elastic_ci_aws::autoscaling::{LifecycleAction, ScalingGroup};
use elastic_ci_aws::imds::InstanceMetadata;
use elastic_ci_core::boot::action::SystemAction;
use elastic_ci_core::fleet::LifecycleActionResult;
use elastic_ci_core::lifecycle::{SPOT_MARGIN, SPOT_NOTICE, Transition, parse_rfc3339};
use tracing::{info, warn};

use crate::system::System;

/// What the handler was asked to do.
#[derive(Debug, Clone)]
pub struct StopRequest {
    pub transition: Transition,
    pub instance_id: Option<String>,
    /// The spot interruption time, RFC 3339.
    pub termination_time: Option<String>,
    /// For `autoscaling:EC2_INSTANCE_TERMINATING`: the lifecycle hook to complete.
    pub lifecycle_hook: Option<String>,
    /// The instance's Auto Scaling group; from the instance's tags when `None`.
    pub group: Option<String>,
}

/// How often the handler looks for remaining agent processes.
#[derive(Debug, Clone, Copy)]
pub struct PollIntervals {
    pub spot: Duration,
    pub stop: Duration,
}

impl PollIntervals {
    pub(crate) const DEFAULT: PollIntervals =
        PollIntervals { spot: Duration::from_secs(1), stop: Duration::from_secs(5) };
}

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Gracefully,
    /// Jobs were still running close to the spot interruption: the agent was told to
    /// cancel them.
    Cancelled,
}

fn kill(signal: &str) -> SystemAction {
    SystemAction::systemctl(&[
        "kill",
        &format!("--signal={signal}"),
        "--kill-who=main",
        "buildkite-agent",
    ])
}

/// Stops the agent for `request`.
pub async fn stop_gracefully(
    system: &dyn System,
    request: &StopRequest,
    intervals: PollIntervals,
    lifecycle: Option<(&dyn ScalingGroup, &dyn InstanceMetadata)>,
) -> anyhow::Result<Stopped> {
    let name = match &request.transition {
        Transition::SpotInterruption => "ec2:SPOT_INSTANCE_TERMINATION",
        Transition::Terminating => "autoscaling:EC2_INSTANCE_TERMINATING",
        Transition::Other(other) => other.as_str(),
    };
    info!(
        transition = name,
        "Stopping buildkite-agent gracefully due to the lifecycle transition: {name}"
    );
    let stopped = if request.transition == Transition::SpotInterruption {
        stop_before_interruption(system, request.termination_time.as_deref(), intervals.spot)
            .await?
    } else {
        system.perform(&SystemAction::systemctl(&["stop", "buildkite-agent"])).await?;
        while system.agent_processes_running().await? {
            info!("Waiting for all buildkite-agent processes to have stopped...");
            tokio::time::sleep(intervals.stop).await;
        }
        info!("All buildkite-agent processes have stopped");
        Stopped::Gracefully
    };
    if request.transition == Transition::Terminating {
        complete_lifecycle_action(request, lifecycle).await?;
    }
    Ok(stopped)
}

/// Asks the agent to stop taking jobs, waits for its jobs until 20 s before the
/// interruption, then tells it to cancel them so it can deregister in time.
async fn stop_before_interruption(
    system: &dyn System,
    termination_time: Option<&str>,
    poll: Duration,
) -> anyhow::Result<Stopped> {
    // A spot notice comes two minutes ahead; without a readable time assume that.
    let interruption = match termination_time.and_then(parse_rfc3339) {
        Some(time) => time,
        None => {
            warn!(time = ?termination_time, "no readable termination time: assuming two minutes from now");
            SystemTime::now() + SPOT_NOTICE
        }
    };
    drain_before(system, interruption, poll).await
}

/// Asks the agent to stop taking jobs (SIGTERM to its main process), waits for its
/// jobs until 20 s before `interruption`, then tells it to cancel them (SIGQUIT) so it
/// can still deregister before the hard stop.
pub async fn drain_before(
    system: &dyn System,
    interruption: SystemTime,
    poll: Duration,
) -> anyhow::Result<Stopped> {
    system.perform(&kill("SIGTERM")).await?;
    cancel_before(system, interruption, poll).await
}

/// For agents already asked to stop: waits for their jobs until 20 s before
/// `interruption`, then tells them to cancel (SIGQUIT). A second SIGTERM is never
/// sent: the agent takes it as an order to cancel its jobs at once.
pub async fn cancel_before(
    system: &dyn System,
    interruption: SystemTime,
    poll: Duration,
) -> anyhow::Result<Stopped> {
    let deadline = interruption.checked_sub(SPOT_MARGIN).unwrap_or(interruption);
    loop {
        if !system.agent_processes_running().await? {
            info!("All buildkite agents have stopped gracefully");
            return Ok(Stopped::Gracefully);
        }
        if SystemTime::now() >= deadline {
            info!("Agents are still running. Sending SIGQUIT ahead of forced spot termination");
            system.perform(&kill("SIGQUIT")).await?;
            return Ok(Stopped::Cancelled);
        }
        tokio::time::sleep(poll).await;
    }
}

async fn complete_lifecycle_action(
    request: &StopRequest,
    lifecycle: Option<(&dyn ScalingGroup, &dyn InstanceMetadata)>,
) -> anyhow::Result<()> {
    let Some(hook) = &request.lifecycle_hook else {
        info!("no lifecycle hook named (--lifecycle-hook): nothing to complete");
        return Ok(());
    };
    let (scaling, metadata) = lifecycle.context("internal: no Auto Scaling client")?;
    let instance_id = match &request.instance_id {
        Some(id) => id.clone(),
        None => metadata.instance_id().await.context("could not read the instance id")?,
    };
    let group = group_name(metadata, request.group.as_deref()).await?;
    let action =
        LifecycleAction { group_name: group, hook_name: hook.clone(), instance_id, token: None };
    scaling
        .complete_lifecycle_action(&action, LifecycleActionResult::Continue)
        .await
        .context("could not complete the lifecycle action")?;
    info!(group = %action.group_name, hook = %action.hook_name, "completed the lifecycle action (CONTINUE)");
    Ok(())
}

/// The instance's Auto Scaling group: `given`, or its `aws:autoscaling:groupName` tag
/// from the metadata service.
pub async fn group_name(
    metadata: &dyn InstanceMetadata,
    given: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(group) = given {
        return Ok(group.to_owned());
    }
    metadata
        .tags()
        .await
        .context("could not read the instance's tags")?
        .remove("aws:autoscaling:groupName")
        .context("the instance has no aws:autoscaling:groupName tag in its metadata (pass --group)")
}
