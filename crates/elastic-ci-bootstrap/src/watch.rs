//! `watch`: the instance's removal-notice listener (a systemd service started at every
//! boot). It polls the instance metadata service every few seconds for the Auto Scaling
//! target lifecycle state, a spot interruption and a rebalance recommendation, and on
//! the first notice drains the agents so that no running job is cut short:
//!
//! - **termination hook** (`Terminated`): the agents are asked to stop (running jobs
//!   finish), a heartbeat keeps the hook waiting while they run, then the lifecycle
//!   action is completed with `CONTINUE`;
//! - **into the warm pool** (`Warmed:*`): the same, without terminating: the group
//!   stops the instance and starts it again later;
//! - **spot interruption**: the agents stop taking jobs, and are told to cancel theirs
//!   20 seconds before the interruption so they can deregister;
//! - **rebalance recommendation**: the agents stop taking jobs and finish theirs, and
//!   the instance retires as after any agent stop. `watch` goes on polling meanwhile:
//!   a termination hook that follows (Capacity Rebalancing replaces the instance, or
//!   its own retirement) gets its heartbeats and its completion, and a spot
//!   interruption that follows its cancel 20 seconds ahead (without a second SIGTERM,
//!   which would cancel the jobs at once).
//!
//! For the first two, a marker file (under `/run`, so it is gone after a reboot) tells
//! `terminate` (the agent unit's `ExecStopPost`) to leave the instance to Auto
//! Scaling: terminating it there would lower the desired capacity a second time, and
//! would end an instance the group only meant to stop into its pool.
//!
//! It exits once it has acted on a notice that means the instance is leaving (any but
//! a rebalance recommendation); a metadata outage is logged and polled through.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use elastic_ci_aws::autoscaling::{LifecycleAction, ScalingGroup};
use elastic_ci_aws::imds::{InstanceMetadata, LifecycleNotices};
use elastic_ci_core::boot::action::SystemAction;
use elastic_ci_core::fleet::LifecycleActionResult;
use elastic_ci_core::lifecycle::{Notice, notice};
use tracing::{info, warn};

use crate::files::write_atomic;
use crate::stop::{Stopped, cancel_before, drain_before, group_name};
use crate::system::System;

/// The termination lifecycle hook the stack declares on its group.
pub const LIFECYCLE_HOOK_NAME: &str = elastic_ci_core::lifecycle::DRAIN_HOOK_NAME;

/// The longest a lifecycle action can be kept waiting, whatever its heartbeats.
pub const MAX_GLOBAL_TIMEOUT: Duration = Duration::from_secs(48 * 3600);

/// How `watch` paces itself.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// Between two polls of the metadata service (AWS advises 5 s).
    pub poll: Duration,
    /// Between two looks for remaining agent processes while draining.
    pub agent_poll: Duration,
    /// Between two lifecycle heartbeats while jobs run: below the hook's heartbeat
    /// timeout (the stack allows no timeout under 120 s; the default is 60 s).
    pub heartbeat_every: Duration,
    /// The longest drain: the hook's global timeout (100 heartbeat timeouts, at most
    /// 48 hours), after which Auto Scaling goes on anyway.
    pub max_drain: Duration,
    /// The hook to complete.
    pub lifecycle_hook: String,
    /// The instance's group; from its `aws:autoscaling:groupName` tag when `None`.
    pub group: Option<String>,
    /// Where the drain marker goes.
    pub drain_marker: PathBuf,
}

/// What `watch` saw and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub notice: Notice,
    pub stopped: Stopped,
    /// Heartbeats sent while the agents drained.
    pub n_heartbeats: u32,
    /// Whether the lifecycle action was completed (`false` when no hook waited).
    pub completed: bool,
}

/// The clients `watch` uses.
pub struct WatchDeps<'a> {
    pub system: &'a dyn System,
    pub notices: &'a dyn LifecycleNotices,
    pub metadata: &'a dyn InstanceMetadata,
    pub scaling: &'a dyn ScalingGroup,
}

/// Polls until a notice that the instance is leaving arrives, then handles it. A
/// rebalance recommendation on the way stops the agents, and polling goes on.
pub async fn watch(deps: &WatchDeps<'_>, settings: &WatchSettings) -> anyhow::Result<Watched> {
    info!(poll_secs = settings.poll.as_secs_f64(), "watching for removal notices");
    let mut agents_stopping = false;
    loop {
        let notices = match deps.notices.notices().await {
            Ok(notices) => notices,
            Err(error) => {
                warn!(error = %error, "could not read the removal notices; polling on");
                tokio::time::sleep(settings.poll).await;
                continue;
            }
        };
        match notice(&notices, SystemTime::now()) {
            Some(Notice::Rebalance) if agents_stopping => {}
            Some(Notice::Rebalance) => {
                info!(
                    "rebalance recommendation: the agents finish their jobs and stop; watching on"
                );
                stop_agents(deps.system).await?;
                agents_stopping = true;
            }
            Some(notice) => return handle(deps, settings, notice, agents_stopping).await,
            None => {}
        }
        tokio::time::sleep(settings.poll).await;
    }
}

/// Drains the agents for `notice` and, for a lifecycle hook, completes its action.
/// `agents_stopping`: the agents were already asked to stop (after a rebalance
/// recommendation), and must not be signalled to stop again.
pub async fn handle(
    deps: &WatchDeps<'_>,
    settings: &WatchSettings,
    notice: Notice,
    agents_stopping: bool,
) -> anyhow::Result<Watched> {
    info!(?notice, agents_stopping, "removal notice: draining the agents");
    match &notice {
        Notice::SpotInterruption { time } if agents_stopping => {
            let stopped = cancel_before(deps.system, *time, settings.agent_poll).await?;
            Ok(Watched { notice, stopped, n_heartbeats: 0, completed: false })
        }
        Notice::SpotInterruption { time } => {
            let stopped = drain_before(deps.system, *time, settings.agent_poll).await?;
            Ok(Watched { notice, stopped, n_heartbeats: 0, completed: false })
        }
        Notice::Rebalance => {
            stop_agents(deps.system).await?;
            let deadline = SystemTime::now() + MAX_GLOBAL_TIMEOUT;
            let (stopped, _) =
                wait_for_agents(deps.system, settings.agent_poll, deadline, None).await?;
            Ok(Watched { notice, stopped, n_heartbeats: 0, completed: false })
        }
        Notice::Terminating | Notice::ToWarmPool(_) => {
            let marker = format!("{notice:?}\n");
            write_atomic(&settings.drain_marker, 0o644, marker.as_bytes()).with_context(|| {
                format!("failed to write the drain marker {}", settings.drain_marker.display())
            })?;
            let action = lifecycle_action(deps, settings).await?;
            let deadline = SystemTime::now() + settings.max_drain.min(MAX_GLOBAL_TIMEOUT);
            let heartbeat = Heartbeat {
                scaling: deps.scaling,
                action: &action,
                every: settings.heartbeat_every,
            };
            if !agents_stopping {
                stop_agents(deps.system).await?;
            }
            let (stopped, n_heartbeats) =
                wait_for_agents(deps.system, settings.agent_poll, deadline, Some(heartbeat))
                    .await?;
            let completed = complete(deps.scaling, &action).await;
            Ok(Watched { notice, stopped, n_heartbeats, completed })
        }
    }
}

/// Keeps a waiting lifecycle action alive.
struct Heartbeat<'a> {
    scaling: &'a dyn ScalingGroup,
    action: &'a LifecycleAction,
    every: Duration,
}

/// Asks the agent unit to stop without waiting for it: its running jobs finish.
async fn stop_agents(system: &dyn System) -> anyhow::Result<()> {
    system.perform(&SystemAction::systemctl(&["stop", "--no-block", "buildkite-agent"])).await
}

/// Looks for agent processes every `poll` until none is left or `deadline` passes,
/// sending a lifecycle heartbeat whenever one is due. Returns how the agents ended and
/// the number of heartbeats sent.
async fn wait_for_agents(
    system: &dyn System,
    poll: Duration,
    deadline: SystemTime,
    heartbeat: Option<Heartbeat<'_>>,
) -> anyhow::Result<(Stopped, u32)> {
    let mut n_heartbeats = 0;
    let mut last_beat = SystemTime::now();
    loop {
        if !system.agent_processes_running().await? {
            info!("All buildkite-agent processes have stopped");
            return Ok((Stopped::Gracefully, n_heartbeats));
        }
        if SystemTime::now() >= deadline {
            warn!("the lifecycle action's time is up with jobs still running");
            return Ok((Stopped::Cancelled, n_heartbeats));
        }
        if let Some(heartbeat) = &heartbeat
            && last_beat.elapsed().unwrap_or_default() >= heartbeat.every
        {
            match heartbeat.scaling.record_lifecycle_action_heartbeat(heartbeat.action).await {
                Ok(()) => {
                    n_heartbeats += 1;
                    info!(n_heartbeats, "jobs still running: lifecycle heartbeat sent");
                }
                Err(error) => warn!(error = %error, "lifecycle heartbeat failed"),
            }
            last_beat = SystemTime::now();
        }
        tokio::time::sleep(poll).await;
    }
}

async fn lifecycle_action(
    deps: &WatchDeps<'_>,
    settings: &WatchSettings,
) -> anyhow::Result<LifecycleAction> {
    let instance_id =
        deps.metadata.instance_id().await.context("could not read the instance id")?;
    let group_name = group_name(deps.metadata, settings.group.as_deref()).await?;
    Ok(LifecycleAction {
        group_name,
        hook_name: settings.lifecycle_hook.clone(),
        instance_id,
        token: None,
    })
}

/// Completes the action with `CONTINUE`, three attempts a second apart. A refusal is
/// logged, not fatal: without a waiting hook (none declared, or it already timed out)
/// there is nothing to complete, and Auto Scaling goes on by itself.
async fn complete(scaling: &dyn ScalingGroup, action: &LifecycleAction) -> bool {
    for attempt in 1..=3 {
        match scaling.complete_lifecycle_action(action, LifecycleActionResult::Continue).await {
            Ok(()) => {
                info!(group = %action.group_name, hook = %action.hook_name, "completed the lifecycle action (CONTINUE)");
                return true;
            }
            Err(error) => {
                warn!(error = %error, attempt, "could not complete the lifecycle action");
                if attempt < 3 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    false
}
