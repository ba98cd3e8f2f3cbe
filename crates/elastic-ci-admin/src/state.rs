//! Gathering the state of a deployed stack: the group and its instances, the scaler's
//! schedule and recent polls, the group's activities, the pause record, the stack's
//! boot failure signals. `status` prints it and `why` reasons over it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use elastic_ci_aws::autoscaling::GroupDetails;
use elastic_ci_aws::logs::LogFilter;
use elastic_ci_core::fleet::ScalingActivity;
use serde::{Deserialize, Serialize};

use crate::clients::Clients;
use crate::polls::PollLine;
use crate::target::{LogSource, StackTarget};
use crate::why::{InstanceView, Snapshot};

/// The group tag that records what `pause` changed.
pub const PAUSE_TAG: &str = "elastic-ci:paused";

/// How far back `status` and `why` read the scaler's log.
pub const POLL_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Pages of log events read per group at most, so that a busy log cannot stall a
/// command.
pub const MAX_LOG_PAGES: usize = 20;

/// Activities shown and reasoned over.
const ACTIVITIES: usize = 10;

/// What `pause` changed, as recorded on the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRecord {
    /// When, RFC 3339.
    pub at: String,
    /// Whether the schedule was enabled before (`resume` enables it only then).
    pub schedule_was_enabled: bool,
    /// Whether the job-event rule was enabled before (absent in records of stacks
    /// without one, and in records made before `pause` disabled it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_events_were_enabled: Option<bool>,
    /// The desired capacity before `--to`, if it was changed.
    pub desired_capacity: Option<u32>,
    /// The MinSize before `--to`, if it was lowered.
    pub min_size: Option<u32>,
}

impl PauseRecord {
    /// The tag value: compact JSON.
    pub fn to_tag(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_tag(value: &str) -> Option<PauseRecord> {
        serde_json::from_str(value).ok()
    }
}

/// The state of a stack at one moment.
#[derive(Debug, Clone)]
pub struct StackState {
    pub now: SystemTime,
    pub target: StackTarget,
    pub group: GroupDetails,
    pub launch_times: BTreeMap<String, SystemTime>,
    /// `None` without a scaler.
    pub schedule_enabled: Option<bool>,
    pub pause: Option<PauseRecord>,
    /// Newest first.
    pub activities: Vec<ScalingActivity>,
    /// Oldest first.
    pub polls: Vec<PollLine>,
    pub failure_signals: Vec<String>,
}

impl StackState {
    pub fn paused(&self) -> bool {
        self.schedule_enabled == Some(false)
    }

    /// The queue the stack serves, from its parameters (or the group's tag).
    pub fn queue(&self) -> String {
        self.target
            .parameter("BuildkiteQueue")
            .or_else(|| self.group.tags.get("BuildkiteQueue").map(String::as_str))
            .unwrap_or("default")
            .to_owned()
    }

    /// What `why` needs.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            now: self.now,
            queue: self.queue(),
            has_scaler: self.target.scaler_function.is_some() || self.schedule_enabled.is_some(),
            paused: self.paused(),
            min_size: self.group.snapshot.min_size,
            max_size: self.group.snapshot.max_size,
            desired_capacity: self.group.snapshot.desired_capacity,
            instances: self
                .group
                .instances
                .iter()
                .map(|instance| InstanceView {
                    id: instance.id.clone(),
                    lifecycle_state: instance.lifecycle_state.clone(),
                    health: instance.health,
                    launched: self.launch_times.get(&instance.id).copied(),
                })
                .collect(),
            activities: self.activities.clone(),
            polls: self.polls.clone(),
            failure_signals: self.failure_signals.clone(),
        }
    }
}

/// Reads the state of `target`.
pub async fn gather(
    clients: &Clients,
    target: &StackTarget,
    now: SystemTime,
) -> anyhow::Result<StackState> {
    let group = clients
        .group_admin
        .group_details(&target.group)
        .await
        .with_context(|| format!("failed to describe group {}", target.group))?;
    let ids: Vec<String> = group.instances.iter().map(|instance| instance.id.clone()).collect();
    // Launch times only refine ages; a failure here leaves them out.
    let launch_times =
        clients.network.launch_times(&clients.region, &ids).await.unwrap_or_default();
    let schedule_enabled = match &target.schedule_rule {
        Some(rule) => Some(
            clients
                .rules
                .describe_rule(rule)
                .await
                .with_context(|| format!("failed to describe the scaler's schedule {rule}"))?
                .enabled,
        ),
        None => None,
    };
    let pause = group.tags.get(PAUSE_TAG).and_then(|value| PauseRecord::from_tag(value));
    let page =
        clients.groups.scaling_activities_page(&target.group, None).await.with_context(|| {
            format!("failed to read the scaling activities of {}", target.group)
        })?;
    let mut activities = page.activities;
    activities.truncate(ACTIVITIES);
    let polls = match target.log_groups.get(&LogSource::Scaler) {
        Some(group_name) => read_polls(clients, group_name, now.checked_sub(POLL_WINDOW)).await?,
        None => Vec::new(),
    };
    let failure_signals = if target.cloudformation {
        clients
            .stacks
            .stack_events(&target.name)
            .await
            .with_context(|| format!("failed to read the events of stack {}", target.name))?
            .into_iter()
            .filter(|event| event.logical_id == "AgentAutoScaleGroup")
            .filter_map(|event| event.reason)
            .filter(|reason| reason.contains("FAILURE signal"))
            .collect()
    } else {
        Vec::new()
    };
    Ok(StackState {
        now,
        target: target.clone(),
        group,
        launch_times,
        schedule_enabled,
        pause,
        activities,
        polls,
        failure_signals,
    })
}

/// The scaler's polls since `start`, oldest first. A log group that does not exist yet
/// (the scaler has never run) has none.
pub async fn read_polls(
    clients: &Clients,
    group_name: &str,
    start: Option<SystemTime>,
) -> anyhow::Result<Vec<PollLine>> {
    let filter =
        LogFilter { group: group_name.to_owned(), stream_prefix: None, start, pattern: None };
    let mut polls = Vec::new();
    let mut next_token: Option<String> = None;
    for _ in 0..MAX_LOG_PAGES {
        let page = match clients.logs.filter_page(&filter, next_token.as_deref()).await {
            Ok(page) => page,
            Err(error) if error.is_not_found() => return Ok(Vec::new()),
            Err(error) => {
                return Err(anyhow::Error::new(error)
                    .context(format!("failed to read the scaler's log {group_name}")));
            }
        };
        polls.extend(
            page.events.iter().filter_map(|event| PollLine::parse(&event.message, event.timestamp)),
        );
        next_token = page.next_token;
        if next_token.is_none() {
            break;
        }
    }
    polls.sort_by_key(|poll| poll.time);
    Ok(polls)
}
