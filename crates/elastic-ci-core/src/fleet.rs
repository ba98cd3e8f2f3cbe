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
    Other(String),
}

impl LifecycleState {
    /// Parses the state names the Auto Scaling API uses (`Pending:Wait` counts as pending).
    pub fn from_api(state: &str) -> LifecycleState {
        match state {
            "Pending" | "Pending:Wait" | "Pending:Proceed" => LifecycleState::Pending,
            "InService" => LifecycleState::InService,
            "Terminating" | "Terminating:Wait" | "Terminating:Proceed" => {
                LifecycleState::Terminating
            }
            "Terminated" => LifecycleState::Terminated,
            other => LifecycleState::Other(other.to_owned()),
        }
    }
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
