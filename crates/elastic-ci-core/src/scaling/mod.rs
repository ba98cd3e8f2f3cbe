//! Scaling decisions: from a queue's job and agent counts and an Auto Scaling group's
//! sizes to the group's new desired capacity.
//!
//! [`decide`] is the one entry point. It is pure and cheap (no allocation, no I/O, no
//! clock: the current time is an argument), so the Lambda calls it once per poll and a
//! capacity simulator can call it millions of times.
//!
//! By default it reproduces the original scaler exactly, quirks included. The
//! behaviour-changing fixes are switched on by [`ScalingPolicy`] fields:
//! `route_by_desired_capacity` routes on the computed capacity versus the group's
//! desired capacity only, so an increase is never blocked by the scale-in settings while
//! instances drain, and never calls SetDesiredCapacity with the current value.
//! `mode` ([`ScalingMode::Responsive`], `SCALER_MODE=responsive`) lets scale-outs skip
//! the cooldown once requested instances have connected, a policy designed and
//! measured with the capacity simulator of `elastic-ci simulate`.
//!
//! - [`config`]: the scaler's environment variables.
//! - [`goparse`]: the Go syntax of booleans and durations those variables use.
//! - [`history`]: the cooldown state rebuilt from scaling activities on a cold start.
//! - [`jitter`]: the deterministic startup delay.

pub mod config;
pub mod goparse;
pub mod history;
pub mod jitter;

use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::fleet::{GroupSnapshot, LifecycleState};

/// The settings [`decide`] applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingPolicy {
    /// `AGENTS_PER_INSTANCE`; `None` (zero or less) means one instance per agent needed,
    /// without the instance cap.
    pub agents_per_instance: Option<NonZeroU32>,
    /// `INCLUDE_WAITING`: count waiting jobs when there are more of them than running ones.
    pub include_waiting: bool,
    /// `INSTANCE_BUFFER`: extra instances while any job exists.
    pub instance_buffer: u32,
    /// `MAX_INSTANCE_CAP`: caps the job-based count and the buffer.
    pub max_instance_cap: Option<NonZeroU32>,
    /// `AVAILABILITY_THRESHOLD`: below this share of expected agents connected, add an
    /// instance; zero disables.
    pub availability_threshold: f64,
    /// `SCALE_OUT_FACTOR`: multiplier of each scale-out step, rounded up; zero means 1.
    pub scale_out_factor: f64,
    /// `SCALE_IN_FACTOR`: multiplier of each scale-in step, rounded down; zero means 1.
    pub scale_in_factor: f64,
    /// `SCALE_OUT_COOLDOWN_PERIOD`.
    pub scale_out_cooldown: Duration,
    /// `SCALE_IN_COOLDOWN_PERIOD`.
    pub scale_in_cooldown: Duration,
    /// `SCALE_ONLY_AFTER_ALL_EVENT`: measure each cooldown from the latest event of
    /// either direction.
    pub scale_only_after_all_events: bool,
    /// `DISABLE_SCALE_IN` (ignored in Elastic CI mode, as in the original).
    pub disable_scale_in: bool,
    /// `DISABLE_SCALE_OUT`.
    pub disable_scale_out: bool,
    /// `ELASTIC_CI_MODE`: scale-in always enabled, none while instances are pending, and
    /// a dangling-instance check when instances run but no agent is connected.
    pub elastic_ci_mode: bool,
    /// `ROUTE_BY_DESIRED_CAPACITY`: route on the computed capacity versus the group's
    /// desired capacity alone, and skip calls that would not change it.
    pub route_by_desired_capacity: bool,
    /// `SCALER_MODE`: the original's scale-out rules, or the responsive ones.
    pub mode: ScalingMode,
}

/// `SCALER_MODE`: how the scale-out cooldown applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMode {
    /// `original`: every scale-out waits for `SCALE_OUT_COOLDOWN_PERIOD`.
    Original,
    /// `responsive`: a scale-out skips the cooldown once every agent of the desired
    /// capacity has connected and more jobs wait than a quarter of the running ones,
    /// so jobs that arrive after the last scale-out's instances came up get new
    /// instances at the next poll rather than minutes later; and the
    /// agent-availability rule adds instances only while jobs wait for an agent.
    Responsive,
}

/// A queue's counts, as the Buildkite agent metrics API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QueueCounts {
    pub scheduled_jobs: u32,
    pub running_jobs: u32,
    pub waiting_jobs: u32,
    pub idle_agents: u32,
    pub busy_agents: u32,
    pub total_agents: u32,
}

/// What [`decide`] needs to know about the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupSizes {
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    /// Instances whose lifecycle state is exactly `InService`.
    pub in_service: u32,
    /// Instances in a `Pending` state.
    pub pending: u32,
}

impl GroupSizes {
    pub fn from_snapshot(group: &GroupSnapshot) -> GroupSizes {
        let count = |state: LifecycleState| {
            let n = group.instances.iter().filter(|i| i.lifecycle_state == state).count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        GroupSizes {
            min_size: group.min_size,
            max_size: group.max_size,
            desired_capacity: group.desired_capacity,
            in_service: count(LifecycleState::InService),
            pending: count(LifecycleState::Pending),
        }
    }
}

/// When the scaler last changed the capacity in each direction; `None` is never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScalingState {
    pub last_scale_out: Option<SystemTime>,
    pub last_scale_in: Option<SystemTime>,
}

impl ScalingState {
    /// Records that `action` was carried out at `now`; a failed or skipped call must not
    /// be recorded, so that it does not start a cooldown.
    pub fn record(&mut self, action: Action, now: SystemTime) {
        match action {
            Action::SetDesiredCapacity { direction: Direction::Out, .. } => {
                self.last_scale_out = Some(now);
            }
            Action::SetDesiredCapacity { direction: Direction::In, .. } => {
                self.last_scale_in = Some(now);
            }
            Action::None => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Out,
    In,
}

/// What the scaler should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    None,
    /// Call SetDesiredCapacity. `to` may equal `from` (a no-op call the original makes)
    /// and, in the original's routing, a scale-in may raise the capacity.
    SetDesiredCapacity {
        direction: Direction,
        from: u32,
        to: u32,
    },
}

/// Why the decision is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    ScaleOut,
    ScaleIn,
    ScaleOutDisabled,
    ScaleInDisabled,
    #[serde(serialize_with = "serialize_cooldown")]
    ScaleOutCooldown {
        remaining: Duration,
    },
    #[serde(serialize_with = "serialize_cooldown")]
    ScaleInCooldown {
        remaining: Duration,
    },
    /// The computed capacity is above the instances in service but already requested.
    Converging,
    /// Elastic CI mode does not scale in while instances are pending.
    PendingInstances,
    /// Elastic CI mode: instances but no agents; the original checks for dangling
    /// instances instead of scaling.
    NoAgentsConnected,
    /// Nothing to change.
    Steady,
}

fn serialize_cooldown<S: serde::Serializer>(
    remaining: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut state = serializer.serialize_struct("Cooldown", 1)?;
    state.serialize_field("remaining_secs", &remaining.as_secs_f64())?;
    state.end()
}

/// How the agent-availability rule acted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Availability {
    /// Threshold zero, or no job needs an agent.
    NotChecked,
    /// Enough of the expected agents are connected.
    Sufficient { ratio: f64 },
    /// Too few agents, and the group has converged: at least `target` instances.
    Boost { ratio: f64, target: u32 },
    /// Too few agents, but instances are still starting: no boost.
    StillConverging { ratio: f64 },
}

/// A decision with every number it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    pub counts: QueueCounts,
    pub group: GroupSizes,
    /// Instances in service, or the desired capacity when none is.
    pub instance_count: u32,
    /// Scheduled jobs plus running (or, with `INCLUDE_WAITING`, waiting) jobs.
    pub agents_required: u64,
    /// Instances those agents need, capped by `MAX_INSTANCE_CAP`.
    pub job_based: u64,
    pub availability: Availability,
    /// Instances added by `INSTANCE_BUFFER`.
    pub buffer: u64,
    /// The desired capacity after the buffer and clamping to the group's bounds.
    pub computed: u32,
    pub action: Action,
    pub reason: Reason,
}

/// Decides the group's desired capacity.
pub fn decide(
    policy: &ScalingPolicy,
    state: &ScalingState,
    counts: &QueueCounts,
    group: &GroupSizes,
    now: SystemTime,
) -> Decision {
    let scheduled = u64::from(counts.scheduled_jobs);
    let running = u64::from(counts.running_jobs);
    let waiting = u64::from(counts.waiting_jobs);

    // Waiting jobs replace running ones when there are more of them: the instances will
    // be ready when they unblock, reusing agents that running jobs free.
    let agents_required =
        scheduled + if policy.include_waiting && waiting > running { waiting } else { running };
    let job_based = if agents_required > 0 { instances_for(policy, agents_required) } else { 0 };
    let instance_count =
        if group.in_service != 0 { group.in_service } else { group.desired_capacity };

    let mut desired = job_based;
    let availability = availability(policy, counts, group, agents_required, instance_count);
    if let Availability::Boost { target, .. } = availability {
        desired = desired.max(u64::from(target));
    }

    let mut buffer = 0;
    if scheduled > 0 || running > 0 || waiting > 0 {
        let total_jobs = scheduled + running + if policy.include_waiting { waiting } else { 0 };
        buffer = instances_for(policy, total_jobs).min(u64::from(policy.instance_buffer));
    }
    desired += buffer;

    let mut computed = u32::try_from(desired.min(u64::from(group.max_size))).unwrap_or(u32::MAX);
    if computed < group.min_size {
        computed = group.min_size;
    }

    let (action, reason) = route(policy, state, counts, group, instance_count, computed, now);
    Decision {
        counts: *counts,
        group: *group,
        instance_count,
        agents_required,
        job_based,
        availability,
        buffer,
        computed,
        action,
        reason,
    }
}

/// Instances needed for `agents` agents: `ceil(agents / AGENTS_PER_INSTANCE)` capped by
/// `MAX_INSTANCE_CAP`, or one per agent (uncapped) when agents per instance is unset.
fn instances_for(policy: &ScalingPolicy, agents: u64) -> u64 {
    match policy.agents_per_instance {
        None => agents,
        Some(per_instance) => {
            let instances = agents.div_ceil(u64::from(per_instance.get()));
            policy.max_instance_cap.map_or(instances, |cap| instances.min(u64::from(cap.get())))
        }
    }
}

fn availability(
    policy: &ScalingPolicy,
    counts: &QueueCounts,
    group: &GroupSizes,
    agents_required: u64,
    instance_count: u32,
) -> Availability {
    // The responsive mode adds instances for missing agents only while a job waits for
    // one: agents also go missing for a moment when idle instances terminate
    // themselves, and an instance added then would find no work.
    let no_job_waits = policy.mode == ScalingMode::Responsive && counts.scheduled_jobs == 0;
    if policy.availability_threshold <= 0.0 || agents_required == 0 || no_job_waits {
        return Availability::NotChecked;
    }
    let expected_agents =
        policy.agents_per_instance.map_or(0, |n| u64::from(n.get()) * u64::from(instance_count));
    #[allow(clippy::cast_precision_loss, reason = "agent counts are far below 2^52")]
    let ratio = if expected_agents > 0 {
        f64::from(counts.total_agents) / expected_agents as f64
    } else {
        1.0
    };
    if ratio >= policy.availability_threshold {
        return Availability::Sufficient { ratio };
    }
    if group.in_service != group.desired_capacity {
        return Availability::StillConverging { ratio };
    }
    // The original asks for one instance when none is desired; with no instance desired
    // the ratio is 1.0 above, so that case never gets here and one more is the rule.
    let target = group.desired_capacity.saturating_add(1);
    Availability::Boost { ratio, target }
}

fn route(
    policy: &ScalingPolicy,
    state: &ScalingState,
    counts: &QueueCounts,
    group: &GroupSizes,
    instance_count: u32,
    computed: u32,
    now: SystemTime,
) -> (Action, Reason) {
    let desired_capacity = group.desired_capacity;
    let no_agents = policy.elastic_ci_mode && instance_count > 0 && counts.total_agents == 0;
    if policy.route_by_desired_capacity {
        return if computed > desired_capacity {
            scale_out(policy, state, counts, group, computed, now)
        } else if computed < desired_capacity {
            if policy.elastic_ci_mode && group.pending > 0 {
                (Action::None, Reason::PendingInstances)
            } else {
                scale_in(policy, state, group, computed, now)
            }
        } else if no_agents {
            (Action::None, Reason::NoAgentsConnected)
        } else if computed > instance_count {
            (Action::None, Reason::Converging)
        } else {
            (Action::None, Reason::Steady)
        };
    }
    if computed > instance_count {
        if computed > desired_capacity {
            scale_out(policy, state, counts, group, computed, now)
        } else if computed < desired_capacity {
            scale_in(policy, state, group, computed, now)
        } else {
            (Action::None, Reason::Converging)
        }
    } else if desired_capacity > computed {
        scale_in(policy, state, group, computed, now)
    } else if instance_count > computed {
        if policy.elastic_ci_mode && group.pending > 0 {
            (Action::None, Reason::PendingInstances)
        } else {
            // The original routes this through scale-in even when `computed` is above
            // the desired capacity (an increase) or equal to it (a no-op call).
            scale_in(policy, state, group, computed, now)
        }
    } else if no_agents {
        (Action::None, Reason::NoAgentsConnected)
    } else {
        (Action::None, Reason::Steady)
    }
}

fn scale_out(
    policy: &ScalingPolicy,
    state: &ScalingState,
    counts: &QueueCounts,
    group: &GroupSizes,
    computed: u32,
    now: SystemTime,
) -> (Action, Reason) {
    if policy.disable_scale_out {
        return (Action::None, Reason::ScaleOutDisabled);
    }
    if let Some(remaining) = cooldown_remaining(
        state.last_scale_out,
        state.last_scale_in,
        policy.scale_out_cooldown,
        policy.scale_only_after_all_events,
        now,
    ) && !(policy.mode == ScalingMode::Responsive && skips_cooldown(policy, counts, group))
    {
        return (Action::None, Reason::ScaleOutCooldown { remaining });
    }
    let from = group.desired_capacity;
    let mut to = computed;
    if policy.scale_out_factor != 0.0 {
        // Every step saturates: the factor is bounded by the configuration, but a step
        // that wrapped around would lower the capacity it was meant to raise.
        let step = f64::from(computed.saturating_sub(from)) * policy.scale_out_factor.abs();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a non-negative step; the float-to-int cast saturates (NaN to 0)"
        )]
        let step = step.ceil() as u64;
        let raised = u64::from(from).saturating_add(step).min(u64::from(group.max_size));
        to = u32::try_from(raised).unwrap_or(u32::MAX).max(from);
    }
    (Action::SetDesiredCapacity { direction: Direction::Out, from, to }, Reason::ScaleOut)
}

fn scale_in(
    policy: &ScalingPolicy,
    state: &ScalingState,
    group: &GroupSizes,
    computed: u32,
    now: SystemTime,
) -> (Action, Reason) {
    if policy.disable_scale_in && !policy.elastic_ci_mode {
        return (Action::None, Reason::ScaleInDisabled);
    }
    if let Some(remaining) = cooldown_remaining(
        state.last_scale_in,
        state.last_scale_out,
        policy.scale_in_cooldown,
        policy.scale_only_after_all_events,
        now,
    ) {
        return (Action::None, Reason::ScaleInCooldown { remaining });
    }
    let from = group.desired_capacity;
    let mut to = i64::from(computed);
    if policy.scale_in_factor != 0.0 {
        let step = (to - i64::from(from)) as f64 * policy.scale_in_factor;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "a step between -2^33 and 2^33 times a factor; the cast saturates"
        )]
        let step = step.floor() as i64;
        to = (i64::from(from).saturating_add(step)).max(i64::from(group.min_size));
    }
    let to = u32::try_from(to.max(0)).unwrap_or(u32::MAX);
    if policy.route_by_desired_capacity && to == from {
        return (Action::None, Reason::Steady);
    }
    (Action::SetDesiredCapacity { direction: Direction::In, from, to }, Reason::ScaleIn)
}

/// Whether the responsive mode scales out within the scale-out cooldown:
/// - every agent the desired capacity stands for has connected (`AGENTS_PER_INSTANCE`
///   unset counts one agent per instance), so no instance the scaler asked for is
///   still on its way; while one is, the instances coming already cover the jobs seen
///   when they were requested, and the agent-availability rule would mistake their
///   unconnected agents for lost ones;
/// - and more jobs wait for an agent than a quarter of the running ones. A running
///   CI job of five to ten minutes frees its agent within the minute and a half a new
///   instance takes to connect about once in four, so a smaller backlog is usually
///   taken by the agents already there, and instances launched for it would find no
///   work and idle until they terminate. Such a backlog waits for the cooldown as in
///   the original.
fn skips_cooldown(policy: &ScalingPolicy, counts: &QueueCounts, group: &GroupSizes) -> bool {
    let per_instance = policy.agents_per_instance.map_or(1, |n| u64::from(n.get()));
    let all_connected =
        u64::from(counts.total_agents) >= per_instance * u64::from(group.desired_capacity);
    let backlog_beyond_turnover =
        u64::from(counts.scheduled_jobs) * 4 > u64::from(counts.running_jobs);
    all_connected && backlog_beyond_turnover
}

/// Time left before scaling in one direction is allowed again, if any. Only counted
/// when that direction has happened; with `after_all_events` the reference is the later
/// of both directions. A reference in the future (clock skew) blocks, as in the original.
fn cooldown_remaining(
    last_same: Option<SystemTime>,
    last_other: Option<SystemTime>,
    cooldown: Duration,
    after_all_events: bool,
    now: SystemTime,
) -> Option<Duration> {
    let mut reference = last_same?;
    if after_all_events && let Some(other) = last_other.filter(|other| *other > reference) {
        reference = other;
    }
    match now.duration_since(reference) {
        Ok(elapsed) => cooldown.checked_sub(elapsed).filter(|remaining| !remaining.is_zero()),
        Err(ahead) => Some(cooldown.saturating_add(ahead.duration())),
    }
}

impl fmt::Display for Decision {
    /// The decision in words, with its numbers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = &self.counts;
        write!(
            f,
            "{} scheduled, {} running, {} waiting jobs need {} agents, {} instances",
            counts.scheduled_jobs,
            counts.running_jobs,
            counts.waiting_jobs,
            self.agents_required,
            self.job_based
        )?;
        match self.availability {
            Availability::NotChecked | Availability::Sufficient { .. } => {}
            Availability::Boost { ratio, target } => write!(
                f,
                "; only {:.0}% of expected agents connected, so at least {target}",
                ratio * 100.0
            )?,
            Availability::StillConverging { ratio } => write!(
                f,
                "; only {:.0}% of expected agents connected, instances still starting",
                ratio * 100.0
            )?,
        }
        if self.buffer > 0 {
            write!(f, "; plus {} buffer", self.buffer)?;
        }
        write!(
            f,
            "; capacity {} within [{}, {}]; group desired {}, in service {}, pending {}: ",
            self.computed,
            self.group.min_size,
            self.group.max_size,
            self.group.desired_capacity,
            self.group.in_service,
            self.group.pending
        )?;
        match (self.reason, self.action) {
            (Reason::ScaleOut | Reason::ScaleIn, Action::SetDesiredCapacity { from, to, .. })
                if from == to =>
            {
                write!(f, "set desired capacity to {to} (unchanged)")
            }
            (Reason::ScaleOut, Action::SetDesiredCapacity { from, to, .. }) => {
                write!(f, "scale out from {from} to {to}")
            }
            (Reason::ScaleIn, Action::SetDesiredCapacity { from, to, .. }) => {
                write!(f, "scale in from {from} to {to}")
            }
            (Reason::ScaleOutDisabled, _) => f.write_str("scale-out needed but disabled"),
            (Reason::ScaleInDisabled, _) => f.write_str("scale-in needed but disabled"),
            (Reason::ScaleOutCooldown { remaining }, _) => {
                write!(f, "scale-out cooldown, {:.1}s left", remaining.as_secs_f64())
            }
            (Reason::ScaleInCooldown { remaining }, _) => {
                write!(f, "scale-in cooldown, {:.1}s left", remaining.as_secs_f64())
            }
            (Reason::Converging, _) => f.write_str("waiting for requested instances"),
            (Reason::PendingInstances, _) => f.write_str("no scale-in while instances are pending"),
            (Reason::NoAgentsConnected, _) => {
                f.write_str("instances but no connected agents: dangling-instance check")
            }
            (Reason::Steady | Reason::ScaleOut | Reason::ScaleIn, _) => f.write_str("no change"),
        }
    }
}

#[cfg(test)]
mod tests;
