//! "Why are my jobs waiting?": a pure function from a snapshot of the stack (the
//! scaler's schedule, the group, its activities, the scaler's recent polls, the stack's
//! events) to the causes, each in words.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use elastic_ci_core::fleet::{Health, ScalingActivity};
use elastic_ci_core::lifecycle::format_rfc3339;
use serde::Serialize;

use crate::polls::PollLine;

/// A poll older than this means the scaler has stopped working.
pub const POLL_STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// An instance of the group as `why` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub id: String,
    /// The Auto Scaling lifecycle state's API word.
    pub lifecycle_state: String,
    pub health: Health,
    pub launched: Option<SystemTime>,
}

/// Everything `why` looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub now: SystemTime,
    pub queue: String,
    /// Whether the stack has a scaler (MinSize below MaxSize).
    pub has_scaler: bool,
    /// Whether the scaler's schedule rule is disabled.
    pub paused: bool,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    pub instances: Vec<InstanceView>,
    /// The group's scaling activities, newest first.
    pub activities: Vec<ScalingActivity>,
    /// The scaler's polls in the window read, oldest first.
    pub polls: Vec<PollLine>,
    /// Boot failures the stack recorded (FAILURE signals), newest first.
    pub failure_signals: Vec<String>,
}

/// Why launching an instance failed, from the activity's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchFailure {
    InsufficientCapacity,
    ServiceQuota,
    Image,
    Other,
}

/// One cause of waiting jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "cause")]
pub enum Cause {
    NoScaler,
    Paused,
    ScalerUnauthorized,
    ScalerThrottled { error: String },
    ScalerFailing { error: String },
    NoSuccessfulPoll { minutes: Option<u64> },
    NoJobsForQueue,
    AtMaxSize { max_size: u32, jobs: u64 },
    Cooldown { until_secs: u64 },
    Booting { instances: usize, longest_secs: Option<u64> },
    BootsFailing { unhealthy: Vec<String>, failure_signals: usize },
    LaunchesFailing { kind: LaunchFailure, message: String },
}

/// All causes that hold, most fundamental first.
pub fn causes(snapshot: &Snapshot) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !snapshot.has_scaler {
        causes.push(Cause::NoScaler);
    }
    if snapshot.paused {
        causes.push(Cause::Paused);
    }
    let last_ok = snapshot.polls.iter().rev().find(|poll| poll.succeeded());
    let last = snapshot.polls.last();
    if snapshot.has_scaler && !snapshot.paused {
        if let Some(failed) = last.filter(|poll| !poll.succeeded()) {
            let error = failed.error.clone().unwrap_or_default();
            let error_type = failed.error_type.as_deref().unwrap_or_default();
            if error_type == "BuildkiteUnauthorized" || error.contains("HTTP 401") {
                causes.push(Cause::ScalerUnauthorized);
            } else if error_type == "AwsThrottled"
                || error.contains("HTTP 429")
                || error.contains("rate limited")
            {
                causes.push(Cause::ScalerThrottled { error });
            } else {
                causes.push(Cause::ScalerFailing { error });
            }
        }
        let stale = last_ok.is_none_or(|poll| {
            snapshot.now.duration_since(poll.time).unwrap_or_default() >= POLL_STALE_AFTER
        });
        if stale {
            let minutes = last_ok.map(|poll| {
                snapshot.now.duration_since(poll.time).unwrap_or_default().as_secs() / 60
            });
            causes.push(Cause::NoSuccessfulPoll { minutes });
        }
    }
    if let Some(poll) = last_ok {
        let jobs = poll.jobs_wanting_agents();
        if jobs == 0 && poll.running_jobs.unwrap_or(0) == 0 {
            causes.push(Cause::NoJobsForQueue);
        } else if jobs > 0 && snapshot.desired_capacity >= snapshot.max_size {
            causes.push(Cause::AtMaxSize { max_size: snapshot.max_size, jobs });
        }
        if let Some(until) = cooldown_until(poll).filter(|until| *until > snapshot.now) {
            let until_secs =
                until.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
            causes.push(Cause::Cooldown { until_secs });
        }
    }
    let booting: Vec<&InstanceView> = snapshot
        .instances
        .iter()
        .filter(|instance| instance.lifecycle_state.starts_with("Pending"))
        .collect();
    if !booting.is_empty() {
        let longest_secs = booting
            .iter()
            .filter_map(|instance| instance.launched)
            .filter_map(|launched| snapshot.now.duration_since(launched).ok())
            .map(|age| age.as_secs())
            .max();
        causes.push(Cause::Booting { instances: booting.len(), longest_secs });
    }
    let unhealthy: Vec<String> = snapshot
        .instances
        .iter()
        .filter(|instance| instance.health == Health::Unhealthy)
        .map(|instance| instance.id.clone())
        .collect();
    if !unhealthy.is_empty() || !snapshot.failure_signals.is_empty() {
        causes.push(Cause::BootsFailing {
            unhealthy,
            failure_signals: snapshot.failure_signals.len(),
        });
    }
    let last_launch = snapshot
        .activities
        .iter()
        .find(|activity| activity.description.starts_with("Launching a new EC2 instance"));
    if let Some(activity) = last_launch.filter(|activity| is_failed(&activity.status)) {
        let message = activity_message(activity);
        causes.push(Cause::LaunchesFailing { kind: classify_launch_failure(&message), message });
    }
    causes
}

fn is_failed(status: &str) -> bool {
    matches!(status, "Failed" | "Cancelled")
}

/// The activity's own words: its description and cause, without repeats.
fn activity_message(activity: &ScalingActivity) -> String {
    let description = activity.description.trim();
    match description.split_once("Status Reason:") {
        Some((_, reason)) => reason.trim().to_owned(),
        None => description.to_owned(),
    }
}

/// What kind of launch failure a message describes.
pub fn classify_launch_failure(message: &str) -> LaunchFailure {
    let lower = message.to_lowercase();
    if lower.contains("insufficientinstancecapacity")
        || lower.contains("sufficient") && lower.contains("capacity")
    {
        LaunchFailure::InsufficientCapacity
    } else if lower.contains("quota")
        || lower.contains("limitexceeded")
        || lower.contains("limit exceeded")
        || lower.contains("you have requested more")
    {
        LaunchFailure::ServiceQuota
    } else if lower.contains("ami") || lower.contains("image id") || lower.contains("imageid") {
        LaunchFailure::Image
    } else {
        LaunchFailure::Other
    }
}

/// The end of a cooldown the poll reported (`scale-out cooldown, 42.0s left`).
fn cooldown_until(poll: &PollLine) -> Option<SystemTime> {
    let conclusion = poll.conclusion()?;
    let rest = conclusion
        .strip_prefix("scale-out cooldown, ")
        .or_else(|| conclusion.strip_prefix("scale-in cooldown, "))?;
    let secs: f64 = rest.strip_suffix("s left")?.parse().ok()?;
    let remaining = Duration::try_from_secs_f64(secs).ok()?;
    poll.time.checked_add(remaining)
}

/// One cause in words.
pub fn describe(cause: &Cause, snapshot: &Snapshot) -> String {
    match cause {
        Cause::NoScaler => "the stack has no scaler (MinSize equals MaxSize), so the group stays at its fixed size".to_owned(),
        Cause::Paused => "the scaler is paused: its schedule is disabled (`elastic-ci resume` restarts it)".to_owned(),
        Cause::ScalerUnauthorized => "the scaler's last poll failed: Buildkite refused the agent token (HTTP 401); rotate it with `elastic-ci rotate-token`".to_owned(),
        Cause::ScalerThrottled { error } => format!("the scaler is being throttled: {error}"),
        Cause::ScalerFailing { error } => format!("the scaler's last poll failed: {error}"),
        Cause::NoSuccessfulPoll { minutes: Some(minutes) } => {
            format!("the scaler has not polled successfully for {minutes} minutes")
        }
        Cause::NoSuccessfulPoll { minutes: None } => {
            "the scaler has not polled successfully in the window read (see `elastic-ci logs --source scaler`)".to_owned()
        }
        Cause::NoJobsForQueue => format!(
            "the scaler sees no jobs for queue {:?}: check that the steps target it (agents: queue={})",
            snapshot.queue, snapshot.queue
        ),
        Cause::AtMaxSize { max_size, jobs } => format!(
            "the group is at its MaxSize of {max_size} with {jobs} jobs still wanting agents; raise MaxSize with `elastic-ci upgrade --set MaxSize=N`"
        ),
        Cause::Cooldown { until_secs } => format!(
            "the scaler is in a cooldown until {}",
            format_rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(*until_secs))
        ),
        Cause::Booting { instances, longest_secs: Some(secs) } => {
            format!("{} booting, the oldest for {secs} s", instances_are(*instances))
        }
        Cause::Booting { instances, longest_secs: None } => {
            format!("{} booting", instances_are(*instances))
        }
        Cause::BootsFailing { unhealthy, failure_signals } => {
            let mut text = "boots are failing:".to_owned();
            if !unhealthy.is_empty() {
                let _ = write!(text, " unhealthy instances {}", unhealthy.join(", "));
            }
            if *failure_signals > 0 {
                let _ = write!(
                    text,
                    "{}{failure_signals} FAILURE signals to the stack",
                    if unhealthy.is_empty() { " " } else { "; " }
                );
            }
            text.push_str(" (see `elastic-ci logs --source elastic-stack`)");
            text
        }
        Cause::LaunchesFailing { kind, message } => {
            let kind = match kind {
                LaunchFailure::InsufficientCapacity => "EC2 has insufficient capacity for the instance types",
                LaunchFailure::ServiceQuota => "a service quota blocks them",
                LaunchFailure::Image => "the AMI is missing or invalid",
                LaunchFailure::Other => "the last launch failed",
            };
            format!("launches are failing: {kind} ({message})")
        }
    }
}

fn instances_are(count: usize) -> String {
    if count == 1 { "1 instance is".to_owned() } else { format!("{count} instances are") }
}

/// The answer as one paragraph.
pub fn paragraph(snapshot: &Snapshot) -> String {
    let causes = causes(snapshot);
    if causes.is_empty() {
        return format!(
            "Nothing is holding jobs on queue {:?} back: the scaler is polling, the group has room (desired {}, MaxSize {}), and no launch or boot is failing.",
            snapshot.queue, snapshot.desired_capacity, snapshot.max_size
        );
    }
    let parts: Vec<String> = causes.iter().map(|cause| describe(cause, snapshot)).collect();
    format!("Jobs on queue {:?} are waiting because {}.", snapshot.queue, parts.join("; and "))
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn poll(time: SystemTime, scheduled: u64, reason: &str) -> PollLine {
        PollLine {
            time,
            scheduled_jobs: Some(scheduled),
            running_jobs: Some(0),
            waiting_jobs: Some(0),
            total_agents: Some(0),
            min_size: Some(0),
            max_size: Some(4),
            desired_capacity: Some(2),
            in_service: Some(2),
            pending: Some(0),
            target_capacity: None,
            reason: Some(format!("numbers: {reason}")),
            error: None,
            error_type: None,
        }
    }

    fn failed(time: SystemTime, error_type: &str, error: &str) -> PollLine {
        PollLine {
            error: Some(error.to_owned()),
            error_type: Some(error_type.to_owned()),
            reason: None,
            ..poll(time, 0, "")
        }
    }

    fn instance(id: &str, state: &str, health: Health) -> InstanceView {
        InstanceView {
            id: id.to_owned(),
            lifecycle_state: state.to_owned(),
            health,
            launched: Some(at(400)),
        }
    }

    fn activity(status: &str, description: &str) -> ScalingActivity {
        ScalingActivity {
            start_time: at(500),
            end_time: None,
            status: status.to_owned(),
            description: description.to_owned(),
            cause: String::new(),
        }
    }

    /// A healthy stack: polled a minute ago, jobs scheduled, room to grow.
    fn healthy() -> Snapshot {
        Snapshot {
            now: at(600),
            queue: "default".to_owned(),
            has_scaler: true,
            paused: false,
            min_size: 0,
            max_size: 4,
            desired_capacity: 2,
            instances: vec![instance("i-1", "InService", Health::Healthy)],
            activities: vec![activity("Successful", "Launching a new EC2 instance: i-1")],
            polls: vec![poll(at(540), 1, "scale out from 1 to 2")],
            failure_signals: Vec::new(),
        }
    }

    #[test]
    fn a_healthy_stack_has_no_cause() {
        assert_eq!(causes(&healthy()), []);
        assert!(paragraph(&healthy()).starts_with("Nothing is holding jobs"));
    }

    fn paused(s: &mut Snapshot) {
        s.paused = true;
    }
    fn at_max(s: &mut Snapshot) {
        s.desired_capacity = 4;
    }
    fn cooldown(s: &mut Snapshot) {
        s.polls = vec![poll(at(540), 3, "scale-out cooldown, 120.0s left")];
    }
    fn unauthorized(s: &mut Snapshot) {
        s.polls.push(failed(
            at(590),
            "BuildkiteUnauthorized",
            "GET u: the agent token was refused (HTTP 401): no",
        ));
    }
    fn throttled(s: &mut Snapshot) {
        s.polls.push(failed(at(590), "AwsThrottled", "DescribeAutoScalingGroups g: throttled"));
    }
    fn stale(s: &mut Snapshot) {
        s.polls = vec![poll(at(0), 1, "steady")];
    }
    fn booting(s: &mut Snapshot) {
        s.instances.push(instance("i-2", "Pending", Health::Healthy));
    }
    fn unhealthy(s: &mut Snapshot) {
        s.instances.push(instance("i-3", "InService", Health::Unhealthy));
    }
    fn failure_signal(s: &mut Snapshot) {
        s.failure_signals.push("Received FAILURE signal with UniqueId i-4".to_owned());
    }
    fn no_capacity(s: &mut Snapshot) {
        s.activities.insert(0, activity("Failed", "Launching a new EC2 instance.  Status Reason: We currently do not have sufficient c5.large capacity in the Availability Zone you requested (us-east-1a). Launching EC2 instance failed."));
    }
    fn quota(s: &mut Snapshot) {
        s.activities.insert(0, activity("Failed", "Launching a new EC2 instance.  Status Reason: You have requested more vCPU capacity than your current vCPU limit of 32 allows. Launching EC2 instance failed."));
    }
    fn bad_ami(s: &mut Snapshot) {
        s.activities.insert(0, activity("Failed", "Launching a new EC2 instance.  Status Reason: The image id '[ami-0bad]' does not exist. Launching EC2 instance failed."));
    }
    fn no_jobs(s: &mut Snapshot) {
        s.polls = vec![poll(at(540), 0, "steady")];
    }
    fn no_scaler(s: &mut Snapshot) {
        s.has_scaler = false;
        s.polls.clear();
    }

    #[test_case(paused, "the scaler is paused"; "paused")]
    #[test_case(at_max, "at its MaxSize of 4 with 1 jobs"; "at max size")]
    #[test_case(cooldown, "in a cooldown until 2023-11-14T22:24:20Z"; "cooldown")]
    #[test_case(unauthorized, "refused the agent token (HTTP 401)"; "buildkite 401")]
    #[test_case(throttled, "being throttled: DescribeAutoScalingGroups"; "throttled")]
    #[test_case(stale, "has not polled successfully for 10 minutes"; "no successful poll")]
    #[test_case(booting, "1 instance is booting, the oldest for 200 s"; "booting")]
    #[test_case(unhealthy, "boots are failing: unhealthy instances i-3"; "unhealthy")]
    #[test_case(failure_signal, "boots are failing: 1 FAILURE signals"; "failure signal")]
    #[test_case(no_capacity, "EC2 has insufficient capacity"; "insufficient capacity")]
    #[test_case(quota, "a service quota blocks them"; "quota")]
    #[test_case(bad_ami, "the AMI is missing or invalid"; "ami")]
    #[test_case(no_jobs, "sees no jobs for queue \"default\""; "wrong queue")]
    #[test_case(no_scaler, "has no scaler"; "fixed size")]
    fn names_the_cause(setup: fn(&mut Snapshot), expected: &str) {
        let mut snapshot = healthy();
        setup(&mut snapshot);
        let answer = paragraph(&snapshot);
        assert!(answer.contains(expected), "{answer}");
        assert!(answer.starts_with("Jobs on queue \"default\" are waiting because"), "{answer}");
    }

    #[test]
    fn pending_instances_count_as_booting_even_without_a_launch_time() {
        let mut snapshot = healthy();
        snapshot.instances.push(InstanceView {
            launched: None,
            ..instance("i-9", "Pending:Wait", Health::Healthy)
        });
        assert!(causes(&snapshot).contains(&Cause::Booting { instances: 1, longest_secs: None }));
    }

    #[test]
    fn a_past_cooldown_is_not_a_cause() {
        let mut snapshot = healthy();
        snapshot.polls = vec![poll(at(300), 1, "scale-out cooldown, 10.0s left")];
        assert_eq!(causes(&snapshot), []);
    }
}
