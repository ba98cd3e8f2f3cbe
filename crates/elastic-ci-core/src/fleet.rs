//! Snapshots of an Auto Scaling group and its instances, as the AWS adapters report
//! them and the scaling and termination logic consume them.

use std::fmt;
use std::time::SystemTime;

/// One Auto Scaling group at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    pub instances: Vec<InstanceSnapshot>,
}

/// One instance of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSnapshot {
    pub id: String,
    pub lifecycle_state: LifecycleState,
    pub health: Health,
    pub protected_from_scale_in: bool,
}

/// The Auto Scaling lifecycle states that matter to the stack; the rest are `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleState {
    Pending,
    InService,
    Terminating,
    Terminated,
    /// In the group's warm pool (`Warmed:Pending`, `Warmed:Stopped`, …): neither
    /// capacity nor on its way to being capacity until the group takes it out.
    Warmed,
    Other(String),
}

impl LifecycleState {
    /// Parses the state names the Auto Scaling API uses (`Pending:Wait` counts as
    /// pending, every `Warmed:…` state as warmed).
    pub fn from_api(state: &str) -> LifecycleState {
        match state {
            "Pending" | "Pending:Wait" | "Pending:Proceed" => LifecycleState::Pending,
            "InService" => LifecycleState::InService,
            "Terminating" | "Terminating:Wait" | "Terminating:Proceed" => {
                LifecycleState::Terminating
            }
            "Terminated" => LifecycleState::Terminated,
            warmed if warmed.starts_with("Warmed:") => LifecycleState::Warmed,
            other => LifecycleState::Other(other.to_owned()),
        }
    }
}

/// A group's warm pool: stopped (or running, or hibernated) instances that are
/// initialised and wait to be taken into the group. They are not part of the group's
/// desired capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmPoolSnapshot {
    pub min_size: u32,
    /// `MaxGroupPreparedCapacity`; `None` when the group's MaxSize bounds the pool.
    pub max_group_prepared_capacity: Option<u32>,
    /// `Stopped`, `Running` or `Hibernated`.
    pub pool_state: String,
    pub instances: Vec<InstanceSnapshot>,
}

/// Health as Auto Scaling records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_api(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
        }
    }

    pub fn from_api(status: &str) -> Health {
        if status.eq_ignore_ascii_case("unhealthy") { Health::Unhealthy } else { Health::Healthy }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api())
    }
}

/// A past scaling activity of a group, used to rebuild cooldown state on a cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingActivity {
    pub start_time: SystemTime,
    pub end_time: Option<SystemTime>,
    pub status: String,
    pub description: String,
    pub cause: String,
}

/// The outcome reported when completing a lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleActionResult {
    Continue,
    Abandon,
}

impl LifecycleActionResult {
    pub fn as_api(self) -> &'static str {
        match self {
            LifecycleActionResult::Continue => "CONTINUE",
            LifecycleActionResult::Abandon => "ABANDON",
        }
    }
}
