//! The world the scaler acts on, in virtual time.
//!
//! Event-driven: the simulation jumps from one event to the next (a job becomes visible
//! or ready, an agent finishes a job, an instance boots, connects, idles out or stops
//! billing, the scheduled Lambda polls), so its cost grows with the number of events,
//! not with the simulated time. Every poll calls the real
//! [`elastic_ci_core::scaling::decide`] with the counts the metrics API would report
//! and the sizes DescribeAutoScalingGroups would return, and applies its decision.
//!
//! The world:
//! - **Lambda**: invoked every `schedule_period` (plus the configured startup jitter);
//!   each invocation polls at once, then every `run_cost + max(LAMBDA_INTERVAL, poll
//!   duration header)` while the next poll would still start before its deadline
//!   (`LAMBDA_TIMEOUT`, and the function timeout minus the scaler's 2 s margin).
//!   With the defaults: polls at +0, +10.5, +21, +31.5 and +42 s.
//! - **Metrics API**: exact counts of the world `metrics_lag` earlier.
//! - **Auto Scaling group**: whenever fewer instances are alive than desired, it
//!   launches the difference at once; an instance is Pending, InService `boot` after
//!   launch, and its agents connect `agent_connect` after launch. Instances are
//!   protected from scale-in: lowering the desired capacity terminates nothing.
//! - **Agents**: `AGENTS_PER_INSTANCE` per instance. Ready jobs go first come, first
//!   served to an idle agent at once, on the oldest instance that has one.
//! - **Self-termination**: once every agent of an instance has been idle for
//!   `idle_period`, the agents disconnect; `drain` later the instance terminates itself
//!   with decrement of the desired capacity, or, when that would go below MinSize, is
//!   marked unhealthy and replaced; billing stops `billing_tail` after that.
//! - The group starts at MinSize with those instances booted and idle.
//! - **Warm pool** (`warm_pool_size` above 0): that many stopped instances that have
//!   booted up to the agent start. A launch takes one when one is ready: it is InService
//!   and its agents connect `resume` after; the pool then launches a replacement, which
//!   runs the boot (`agent_connect`) and then stops. Stopped time is counted apart
//!   (`stopped_minutes`), as it is billed for its EBS volumes only.
//! - **Job events** (`event_delay` set): every job that becomes ready invokes the scaler
//!   `event_delay` later for one poll, unless an event poll happened less than
//!   `LAMBDA_INTERVAL` before (the Lambda's debounce); the schedule stays.
//! - **Spot interruptions** (`spot_interruptions_per_hour` above 0): each connected
//!   instance gets a notice after an exponentially distributed time (seeded by
//!   `spot_seed`); it takes no new job from then, its idle agents disconnect, and
//!   `spot_notice` later it stops: jobs still running are interrupted (counted in
//!   `jobs_interrupted`) and the group replaces it. On every other removal path (idle
//!   self-termination, warm-pool stops) no job is interrupted.
//!
//! Events at the same instant are applied in this order: instance and job events,
//! jobs becoming visible and ready, assignment of ready jobs to idle agents, idle
//! timeouts, then the scaler. So a poll sees everything that happened at its instant,
//! and an agent that frees up takes a job ready at that instant rather than idling out.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::time::{Duration, SystemTime};

use elastic_ci_core::scaling::config::{ScalerConfig, TokenSource};
use elastic_ci_core::scaling::history::ActivityScan;
use elastic_ci_core::scaling::jitter::startup_jitter;
use elastic_ci_core::scaling::{Action, Decision, GroupSizes, QueueCounts, ScalingState, decide};
use serde::Serialize;

/// The world model's constants, each an `elastic-ci simulate` flag.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    /// How often the schedule invokes the Lambda (`ScalerEventSchedulePeriod`).
    pub schedule_period: Duration,
    /// How long one poll takes.
    pub run_cost: Duration,
    /// The Lambda function's timeout.
    pub function_timeout: Duration,
    /// Age of the counts the metrics API reports.
    pub metrics_lag: Duration,
    /// The `Buildkite-Agent-Metrics-Poll-Duration` header; zero for none.
    pub poll_duration: Duration,
    /// Launch to InService.
    pub boot: Duration,
    /// Launch to agents connected.
    pub agent_connect: Duration,
    /// `ScaleInIdlePeriod`: how long every agent of an instance must be idle before
    /// it disconnects.
    pub idle_period: Duration,
    /// Agents disconnected to the termination call (log drain).
    pub drain: Duration,
    /// Termination call to the end of billing.
    pub billing_tail: Duration,
    /// The group's MinSize.
    pub min_size: u32,
    /// The group's MaxSize.
    pub max_size: u32,
    /// Stopped instances in the group's warm pool; 0 for none.
    pub warm_pool_size: u32,
    /// A warm instance's start to agents connected.
    pub resume: Duration,
    /// A job's readiness to the scaler's event-driven poll; `None` polls on the
    /// schedule only.
    pub event_delay: Option<Duration>,
    /// Spot interruption notices per connected instance-hour; 0 for none.
    pub spot_interruptions_per_hour: f64,
    /// The warning a spot interruption gives.
    pub spot_notice: Duration,
    /// The seed of the interruption times.
    pub spot_seed: u64,
    /// What a stopped warm-pool instance costs, as a fraction of a running one: its
    /// EBS volumes only. 0.25 is the stack's defaults (a 250 GB gp3 root volume,
    /// $0.0274 an hour, beside a t3.large at $0.0832, us-east-1 on-demand prices).
    pub stopped_cost_ratio: f64,
}

impl ModelParams {
    /// The reference model's defaults, with the stack's MinSize 0 and MaxSize 100.
    pub fn spec_defaults() -> ModelParams {
        ModelParams {
            schedule_period: Duration::from_secs(60),
            run_cost: Duration::from_millis(500),
            function_timeout: Duration::from_secs(120),
            metrics_lag: Duration::ZERO,
            poll_duration: Duration::from_secs(10),
            boot: Duration::from_secs(30),
            agent_connect: Duration::from_secs(75),
            idle_period: Duration::from_secs(600),
            drain: Duration::from_secs(10),
            billing_tail: Duration::from_secs(20),
            min_size: 0,
            max_size: 100,
            warm_pool_size: 0,
            resume: Duration::from_secs(20),
            event_delay: None,
            spot_interruptions_per_hour: 0.0,
            spot_notice: Duration::from_secs(120),
            spot_seed: 1,
            stopped_cost_ratio: 0.25,
        }
    }
}

/// Settings the model cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("invalid --schedule-period 0s: the Lambda must be invoked at intervals above zero")]
    ZeroSchedulePeriod,
    #[error(
        "LAMBDA_INTERVAL 0s with --run-cost 0s would poll endlessly at one instant: one of them must be above zero"
    )]
    ZeroPollSpacing,
    #[error("invalid --min-size {min_size}: above --max-size {max_size}")]
    MinAboveMax { min_size: u32, max_size: u32 },
    #[error(
        "invalid --spot-interruptions-per-hour {0}: expected a rate of at least 0 (and finite)"
    )]
    InvalidSpotRate(String),
}

/// The jobs to replay, in the trace's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    pub visible_at_us: u64,
    pub ready_at_us: u64,
    pub duration_us: u64,
}

/// What happened to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobOutcome {
    pub start_us: Option<u64>,
    /// Index into [`Outcome::instances`].
    pub instance: Option<u32>,
}

/// The life of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InstanceRecord {
    pub launched_us: u64,
    pub connected_us: Option<u64>,
    pub disconnected_us: Option<u64>,
    pub terminated_us: Option<u64>,
    /// Its termination could not decrement the desired capacity, so it was replaced.
    pub replaced: bool,
    pub jobs_run: u64,
    /// A warm-pool instance: when it stopped into the pool.
    pub warmed_us: Option<u64>,
    /// A warm-pool instance: when the group took it out of the pool.
    pub resumed_us: Option<u64>,
    /// When a spot interruption notice reached it.
    pub spot_notice_us: Option<u64>,
    /// Jobs still running when it stopped (a spot interruption).
    pub jobs_interrupted: u64,
}

impl InstanceRecord {
    /// Time stopped in the warm pool, until `horizon_us`.
    pub fn stopped_us(&self, horizon_us: u64) -> u64 {
        let Some(warmed) = self.warmed_us else { return 0 };
        let end = self.resumed_us.or(self.terminated_us).unwrap_or(horizon_us).min(horizon_us);
        end.saturating_sub(warmed)
    }
}

/// Calls made to the APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ApiCalls {
    /// Buildkite `GET /metrics/queue`, one per poll.
    pub buildkite_metrics: u64,
    pub describe_auto_scaling_groups: u64,
    pub set_desired_capacity: u64,
    pub put_metric_data: u64,
    /// The agent token, once per invocation when it is read from SSM.
    pub get_parameter: u64,
    /// The cold-start cooldown restore (one page).
    pub describe_scaling_activities: u64,
    /// Made by instances terminating themselves.
    pub terminate_instance_in_auto_scaling_group: u64,
    /// Made by instances whose decrement failed.
    pub set_instance_health: u64,
}

impl ApiCalls {
    /// Every AWS call (the Buildkite one excluded).
    pub fn aws_total(&self) -> u64 {
        self.describe_auto_scaling_groups
            + self.set_desired_capacity
            + self.put_metric_data
            + self.get_parameter
            + self.describe_scaling_activities
            + self.terminate_instance_in_auto_scaling_group
            + self.set_instance_health
    }
}

/// One poll of the scaler: the world at that instant and what the scaler decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    pub time_us: u64,
    /// Which invocation (0-based) made the poll.
    pub invocation: u64,
    /// The true counts at the poll (the decision holds the counts the scaler saw).
    pub world: QueueCounts,
    /// Instances not yet terminated, including draining ones.
    pub live_instances: u32,
    pub decision: Decision,
    /// The desired capacity after the poll.
    pub desired_after: u32,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub jobs: Vec<JobOutcome>,
    pub instances: Vec<InstanceRecord>,
    pub timeline: Vec<Tick>,
    pub calls: ApiCalls,
    pub invocations: u64,
    pub polls: u64,
    pub horizon_us: u64,
    /// Instances ever alive at once.
    pub peak_live_instances: u32,
    /// Polls made for job events (also counted in `polls`).
    pub event_polls: u64,
}

/// How long before the Lambda deadline the scaler stops polling; the same margin as
/// `elastic_ci_scaler::DEADLINE_MARGIN`.
const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// The wall-clock instant of simulated time zero handed to `decide`.
fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A duration in whole microseconds (saturating).
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Replays `jobs` until `horizon_us` against the scaler configured by `config`.
pub fn simulate(
    config: &ScalerConfig,
    model: &ModelParams,
    jobs: &[JobSpec],
    horizon_us: u64,
) -> Result<Outcome, ModelError> {
    if model.schedule_period.is_zero() {
        return Err(ModelError::ZeroSchedulePeriod);
    }
    if model.run_cost.is_zero() && config.poll_interval.is_zero() && model.poll_duration.is_zero() {
        return Err(ModelError::ZeroPollSpacing);
    }
    if model.min_size > model.max_size {
        return Err(ModelError::MinAboveMax { min_size: model.min_size, max_size: model.max_size });
    }
    let rate = model.spot_interruptions_per_hour;
    if !rate.is_finite() || rate < 0.0 {
        return Err(ModelError::InvalidSpotRate(rate.to_string()));
    }
    let mut world = World::new(config, model, jobs, horizon_us);
    world.run();
    Ok(world.finish())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Jobs finishing, instances booting, connecting and terminating.
    World = 0,
    IdleTimeout = 1,
    Scaler = 2,
}

#[derive(Debug, Clone, Copy)]
enum EventKind {
    JobFinished {
        instance: u32,
    },
    InService {
        instance: u32,
    },
    AgentsConnect {
        instance: u32,
    },
    Terminate {
        instance: u32,
    },
    IdleTimeout {
        instance: u32,
        generation: u32,
    },
    Invocation {
        index: u64,
    },
    Poll {
        invocation: u64,
        deadline_us: u64,
    },
    /// A warm-pool instance has booted and stops into the pool.
    Warmed {
        instance: u32,
    },
    SpotNotice {
        instance: u32,
    },
    SpotStop {
        instance: u32,
    },
    /// A job event reaches the scaler.
    JobEvent,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    time_us: u64,
    phase: Phase,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Event) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed, so that the max-heap pops the earliest event first.
    fn cmp(&self, other: &Event) -> Ordering {
        (other.time_us, other.phase as u8, other.seq).cmp(&(
            self.time_us,
            self.phase as u8,
            self.seq,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LifeState {
    Pending,
    InService,
    Terminated,
    /// In the warm pool: booting (`ready` false) or stopped.
    Warm {
        ready: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Instance {
    state: LifeState,
    connected: bool,
    idle_agents: u32,
    busy_agents: u32,
    /// Bumped whenever the instance takes a job, so that idle timeouts scheduled
    /// before are recognised as stale.
    generation: u32,
    /// A spot interruption notice arrived: it takes no new job.
    interrupted: bool,
}

struct World<'a> {
    config: &'a ScalerConfig,
    model: &'a ModelParams,
    jobs: &'a [JobSpec],
    horizon_us: u64,
    agents_per_instance: u32,

    now_us: u64,
    events: BinaryHeap<Event>,
    seq: u64,

    /// Visibility times, sorted, and the next one to reach.
    visible_times: Vec<u64>,
    next_visible: usize,
    /// Job indices by readiness (ties in trace order), and the next one to reach.
    by_ready: Vec<u32>,
    next_ready: usize,
    /// Ready jobs no agent has taken yet, first come first served.
    scheduled: VecDeque<u32>,
    n_visible: u32,
    n_ready: u32,
    n_running: u32,

    instances: Vec<Instance>,
    records: Vec<InstanceRecord>,
    /// Connected instances with an idle agent, by launch order.
    with_idle_agent: BTreeSet<u32>,
    total_agents: u32,
    desired: u32,
    live: u32,
    in_service: u32,
    pending: u32,
    peak_live: u32,

    state: ScalingState,
    /// Counts as they changed, for a lagged metrics API: (time, counts) pairs with the
    /// first one at or before the oldest instant still to be read.
    history: VecDeque<(u64, QueueCounts)>,

    outcomes: Vec<JobOutcome>,
    timeline: Vec<Tick>,
    calls: ApiCalls,
    invocations: u64,
    polls: u64,

    /// Stopped warm-pool instances, oldest first.
    warm_ready: VecDeque<u32>,
    /// Warm-pool instances, booting or stopped.
    n_warm: u32,
    last_event_poll_us: Option<u64>,
    event_polls: u64,
    spot_random: crate::pyrandom::PyRandom,
}

impl<'a> World<'a> {
    fn new(
        config: &'a ScalerConfig,
        model: &'a ModelParams,
        jobs: &'a [JobSpec],
        horizon_us: u64,
    ) -> World<'a> {
        let mut visible_times: Vec<u64> = jobs.iter().map(|job| job.visible_at_us).collect();
        visible_times.sort_unstable();
        let mut by_ready: Vec<u32> = (0..u32::try_from(jobs.len()).unwrap_or(u32::MAX)).collect();
        by_ready.sort_by_key(|index| (jobs[*index as usize].ready_at_us, *index));
        let agents_per_instance = config.policy.agents_per_instance.map_or(1, |n| n.get());
        let mut world = World {
            config,
            model,
            jobs,
            horizon_us,
            agents_per_instance,
            now_us: 0,
            events: BinaryHeap::new(),
            seq: 0,
            visible_times,
            next_visible: 0,
            by_ready,
            next_ready: 0,
            scheduled: VecDeque::new(),
            n_visible: 0,
            n_ready: 0,
            n_running: 0,
            instances: Vec::new(),
            records: Vec::new(),
            with_idle_agent: BTreeSet::new(),
            total_agents: 0,
            desired: model.min_size,
            live: 0,
            in_service: 0,
            pending: 0,
            peak_live: 0,
            state: ScalingState::default(),
            history: VecDeque::new(),
            outcomes: vec![JobOutcome::default(); jobs.len()],
            timeline: Vec::new(),
            calls: ApiCalls::default(),
            invocations: 0,
            polls: 0,
            warm_ready: VecDeque::new(),
            n_warm: 0,
            last_event_poll_us: None,
            event_polls: 0,
            spot_random: crate::pyrandom::PyRandom::new(model.spot_seed),
        };
        // The stack has been up for a while: MinSize instances are in service with
        // their agents connected and idle.
        for _ in 0..model.min_size {
            let instance = world.launch();
            world.become_in_service(instance);
            world.connect(instance);
        }
        // The warm pool is full and stopped.
        for _ in 0..model.warm_pool_size {
            let instance = world.launch_warm();
            world.warmed(instance);
        }
        world.history.push_back((0, world.counts()));
        world.push(0, Phase::Scaler, EventKind::Invocation { index: 0 });
        world
    }

    fn push(&mut self, time_us: u64, phase: Phase, kind: EventKind) {
        self.seq += 1;
        self.events.push(Event { time_us, phase, seq: self.seq, kind });
    }

    fn next_time(&self) -> Option<u64> {
        let candidates = [
            self.events.peek().map(|event| event.time_us),
            self.visible_times.get(self.next_visible).copied(),
            self.by_ready.get(self.next_ready).map(|index| self.jobs[*index as usize].ready_at_us),
        ];
        candidates.into_iter().flatten().min()
    }

    fn pop_at(&mut self, time_us: u64, phase: Phase) -> Option<EventKind> {
        let next = self.events.peek()?;
        if next.time_us == time_us && next.phase == phase {
            self.events.pop().map(|event| event.kind)
        } else {
            None
        }
    }

    fn run(&mut self) {
        while let Some(time_us) = self.next_time() {
            if time_us > self.horizon_us {
                break;
            }
            self.now_us = time_us;
            while let Some(kind) = self.pop_at(time_us, Phase::World) {
                self.apply(kind);
            }
            while self.visible_times.get(self.next_visible).is_some_and(|t| *t <= time_us) {
                self.next_visible += 1;
                self.n_visible += 1;
            }
            while let Some(index) = self.by_ready.get(self.next_ready).copied() {
                if self.jobs[index as usize].ready_at_us > time_us {
                    break;
                }
                self.next_ready += 1;
                self.n_ready += 1;
                self.scheduled.push_back(index);
                if let Some(delay) = self.model.event_delay {
                    self.push(
                        time_us.saturating_add(micros(delay)),
                        Phase::Scaler,
                        EventKind::JobEvent,
                    );
                }
            }
            self.dispatch();
            while let Some(kind) = self.pop_at(time_us, Phase::IdleTimeout) {
                self.apply(kind);
            }
            self.remember_counts();
            // One scaler event at a time: a poll may launch instances whose events
            // (with zero delays) belong to this same instant and go first.
            if let Some(kind) = self.pop_at(time_us, Phase::Scaler) {
                self.apply(kind);
            }
        }
    }

    fn apply(&mut self, kind: EventKind) {
        match kind {
            EventKind::JobFinished { instance } => self.job_finished(instance),
            EventKind::InService { instance } => self.become_in_service(instance),
            EventKind::AgentsConnect { instance } => self.connect(instance),
            EventKind::Terminate { instance } => self.terminate(instance),
            EventKind::IdleTimeout { instance, generation } => {
                self.idle_timeout(instance, generation);
            }
            EventKind::Invocation { index } => self.invoke(index),
            EventKind::Poll { invocation, deadline_us } => self.poll(invocation, deadline_us),
            EventKind::Warmed { instance } => self.warmed(instance),
            EventKind::SpotNotice { instance } => self.spot_notice(instance),
            EventKind::SpotStop { instance } => self.spot_stop(instance),
            EventKind::JobEvent => self.job_event(),
        }
    }

    fn counts(&self) -> QueueCounts {
        let busy = self.n_running;
        QueueCounts {
            scheduled_jobs: u32::try_from(self.scheduled.len()).unwrap_or(u32::MAX),
            running_jobs: self.n_running,
            waiting_jobs: self.n_visible - self.n_ready,
            idle_agents: self.total_agents - busy,
            busy_agents: busy,
            total_agents: self.total_agents,
        }
    }

    fn remember_counts(&mut self) {
        if self.model.metrics_lag.is_zero() {
            return;
        }
        let counts = self.counts();
        if self.history.back().is_some_and(|(_, last)| *last == counts) {
            return;
        }
        self.history.push_back((self.now_us, counts));
    }

    /// What the metrics API reports now: the counts `metrics_lag` ago.
    fn reported_counts(&mut self) -> QueueCounts {
        let lag = micros(self.model.metrics_lag);
        if lag == 0 {
            return self.counts();
        }
        let Some(target) = self.now_us.checked_sub(lag) else {
            return self.history.front().map(|(_, counts)| *counts).unwrap_or_default();
        };
        while self.history.get(1).is_some_and(|(time, _)| *time <= target) {
            self.history.pop_front();
        }
        self.history.front().map(|(_, counts)| *counts).unwrap_or_default()
    }

    fn dispatch(&mut self) {
        while !self.scheduled.is_empty() {
            let Some(instance) = self.with_idle_agent.first().copied() else { break };
            let Some(job) = self.scheduled.pop_front() else { break };
            let spec = self.jobs[job as usize];
            let slot = &mut self.instances[instance as usize];
            slot.idle_agents -= 1;
            slot.busy_agents += 1;
            slot.generation = slot.generation.wrapping_add(1);
            if slot.idle_agents == 0 {
                self.with_idle_agent.remove(&instance);
            }
            self.records[instance as usize].jobs_run += 1;
            self.n_running += 1;
            self.outcomes[job as usize] =
                JobOutcome { start_us: Some(self.now_us), instance: Some(instance) };
            self.push(
                self.now_us.saturating_add(spec.duration_us),
                Phase::World,
                EventKind::JobFinished { instance },
            );
        }
    }

    fn job_finished(&mut self, instance: u32) {
        let slot = &mut self.instances[instance as usize];
        if slot.state == LifeState::Terminated {
            // Interrupted: counted when the instance stopped.
            return;
        }
        self.n_running -= 1;
        let slot = &mut self.instances[instance as usize];
        slot.busy_agents -= 1;
        slot.idle_agents += 1;
        let all_idle = slot.busy_agents == 0;
        let generation = slot.generation;
        if slot.interrupted {
            // Draining for a spot interruption: the agent disconnects.
            slot.idle_agents -= 1;
            self.total_agents -= 1;
            return;
        }
        self.with_idle_agent.insert(instance);
        if all_idle {
            self.schedule_idle_timeout(instance, generation);
        }
    }

    fn schedule_idle_timeout(&mut self, instance: u32, generation: u32) {
        let at = self.now_us.saturating_add(micros(self.model.idle_period));
        self.push(at, Phase::IdleTimeout, EventKind::IdleTimeout { instance, generation });
    }

    fn new_instance(&mut self, state: LifeState) -> u32 {
        let instance = u32::try_from(self.instances.len()).unwrap_or(u32::MAX);
        self.instances.push(Instance {
            state,
            connected: false,
            idle_agents: 0,
            busy_agents: 0,
            generation: 0,
            interrupted: false,
        });
        self.records.push(InstanceRecord {
            launched_us: self.now_us,
            connected_us: None,
            disconnected_us: None,
            terminated_us: None,
            replaced: false,
            jobs_run: 0,
            warmed_us: None,
            resumed_us: None,
            spot_notice_us: None,
            jobs_interrupted: 0,
        });
        instance
    }

    /// Launches an instance into the group: a stopped warm-pool instance when one is
    /// ready (which the pool then replaces), else a new one.
    fn launch(&mut self) -> u32 {
        let (instance, boot, connect) = match self.warm_ready.pop_front() {
            Some(instance) => {
                self.instances[instance as usize].state = LifeState::Pending;
                self.records[instance as usize].resumed_us = Some(self.now_us);
                self.n_warm -= 1;
                (instance, self.model.resume, self.model.resume)
            }
            None => {
                (self.new_instance(LifeState::Pending), self.model.boot, self.model.agent_connect)
            }
        };
        self.pending += 1;
        self.live += 1;
        self.peak_live = self.peak_live.max(self.live);
        self.push(
            self.now_us.saturating_add(micros(boot)),
            Phase::World,
            EventKind::InService { instance },
        );
        self.push(
            self.now_us.saturating_add(micros(connect)),
            Phase::World,
            EventKind::AgentsConnect { instance },
        );
        self.refill_warm_pool();
        instance
    }

    /// A new warm-pool instance: it boots, then stops into the pool.
    fn launch_warm(&mut self) -> u32 {
        let instance = self.new_instance(LifeState::Warm { ready: false });
        self.n_warm += 1;
        self.push(
            self.now_us.saturating_add(micros(self.model.agent_connect)),
            Phase::World,
            EventKind::Warmed { instance },
        );
        instance
    }

    fn refill_warm_pool(&mut self) {
        while self.n_warm < self.model.warm_pool_size {
            self.launch_warm();
        }
    }

    fn warmed(&mut self, instance: u32) {
        let slot = &mut self.instances[instance as usize];
        if slot.state == (LifeState::Warm { ready: false }) {
            slot.state = LifeState::Warm { ready: true };
            self.records[instance as usize].warmed_us = Some(self.now_us);
            self.warm_ready.push_back(instance);
        }
    }

    /// A job event reaches the scaler: one poll, unless an event poll happened less
    /// than `LAMBDA_INTERVAL` ago.
    fn job_event(&mut self) {
        let interval = micros(self.config.poll_interval);
        if self.last_event_poll_us.is_some_and(|last| self.now_us < last.saturating_add(interval)) {
            return;
        }
        self.last_event_poll_us = Some(self.now_us);
        self.event_polls += 1;
        self.invocations += 1;
        if matches!(self.config.agent_token, TokenSource::Ssm(_)) {
            self.calls.get_parameter += 1;
        }
        self.poll(u64::MAX, 0);
    }

    fn schedule_spot_notice(&mut self, instance: u32) {
        let rate = self.model.spot_interruptions_per_hour;
        if rate <= 0.0 {
            return;
        }
        let hours = self.spot_random.expovariate(rate);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a positive, finite number of microseconds, saturating"
        )]
        let after_us = (hours * 3_600_000_000.0).min(u64::MAX as f64) as u64;
        self.push(
            self.now_us.saturating_add(after_us),
            Phase::World,
            EventKind::SpotNotice { instance },
        );
    }

    /// A spot interruption notice: no new job; idle agents disconnect at once; the
    /// instance stops `spot_notice` later whatever still runs.
    fn spot_notice(&mut self, instance: u32) {
        let slot = &mut self.instances[instance as usize];
        if slot.state == LifeState::Terminated || !slot.connected || slot.interrupted {
            return;
        }
        slot.interrupted = true;
        let idle = slot.idle_agents;
        slot.idle_agents = 0;
        self.total_agents -= idle;
        self.with_idle_agent.remove(&instance);
        self.records[instance as usize].spot_notice_us = Some(self.now_us);
        self.push(
            self.now_us.saturating_add(micros(self.model.spot_notice)),
            Phase::World,
            EventKind::SpotStop { instance },
        );
    }

    /// The spot instance stops: running jobs are interrupted, and the group replaces
    /// it (the desired capacity is unchanged).
    fn spot_stop(&mut self, instance: u32) {
        let slot = &mut self.instances[instance as usize];
        match slot.state {
            LifeState::Pending => self.pending -= 1,
            LifeState::InService => self.in_service -= 1,
            LifeState::Terminated | LifeState::Warm { .. } => return,
        }
        let busy = slot.busy_agents;
        slot.state = LifeState::Terminated;
        slot.busy_agents = 0;
        slot.connected = false;
        self.n_running -= busy;
        self.total_agents -= busy;
        self.live -= 1;
        let record = &mut self.records[instance as usize];
        record.jobs_interrupted = u64::from(busy);
        record.disconnected_us.get_or_insert(self.now_us);
        record.terminated_us = Some(self.now_us);
        record.replaced = self.live < self.desired;
        self.reconcile();
    }

    fn become_in_service(&mut self, instance: u32) {
        let slot = &mut self.instances[instance as usize];
        if slot.state == LifeState::Pending {
            slot.state = LifeState::InService;
            self.pending -= 1;
            self.in_service += 1;
        }
    }

    fn connect(&mut self, instance: u32) {
        let slot = &mut self.instances[instance as usize];
        // Agents that disconnected never come back: the connect event of an instance
        // that started connected (MinSize) may arrive after it idled out.
        if slot.state == LifeState::Terminated
            || slot.connected
            || self.records[instance as usize].disconnected_us.is_some()
        {
            return;
        }
        slot.connected = true;
        slot.idle_agents = self.agents_per_instance;
        let generation = slot.generation;
        self.total_agents += self.agents_per_instance;
        self.with_idle_agent.insert(instance);
        self.records[instance as usize].connected_us = Some(self.now_us);
        self.schedule_idle_timeout(instance, generation);
        self.schedule_spot_notice(instance);
    }

    fn idle_timeout(&mut self, instance: u32, generation: u32) {
        let slot = &mut self.instances[instance as usize];
        if slot.generation != generation
            || !slot.connected
            || slot.busy_agents > 0
            || slot.interrupted
        {
            return;
        }
        slot.connected = false;
        slot.idle_agents = 0;
        self.total_agents -= self.agents_per_instance;
        self.with_idle_agent.remove(&instance);
        self.records[instance as usize].disconnected_us = Some(self.now_us);
        self.push(
            self.now_us.saturating_add(micros(self.model.drain)),
            Phase::World,
            EventKind::Terminate { instance },
        );
    }

    fn terminate(&mut self, instance: u32) {
        let slot = &mut self.instances[instance as usize];
        match slot.state {
            LifeState::Pending => self.pending -= 1,
            LifeState::InService => self.in_service -= 1,
            LifeState::Terminated | LifeState::Warm { .. } => return,
        }
        slot.state = LifeState::Terminated;
        self.live -= 1;
        self.calls.terminate_instance_in_auto_scaling_group += 1;
        let record = &mut self.records[instance as usize];
        record.terminated_us = Some(self.now_us);
        if self.desired > self.model.min_size {
            self.desired -= 1;
        } else {
            // The decrement is refused at MinSize; the retry without decrement fails
            // too, so the instance marks itself unhealthy and the group terminates it,
            // replacing it when that leaves fewer instances than desired.
            record.replaced = self.live < self.desired;
            self.calls.terminate_instance_in_auto_scaling_group += 1;
            self.calls.set_instance_health += 1;
        }
        self.reconcile();
    }

    /// The group launches instances until as many are alive as desired.
    fn reconcile(&mut self) {
        while self.live < self.desired {
            self.launch();
        }
    }

    fn invoke(&mut self, index: u64) {
        self.invocations += 1;
        let config = self.config;
        if matches!(config.agent_token, TokenSource::Ssm(_)) {
            self.calls.get_parameter += 1;
        }
        if index == 0 {
            let policy = &config.policy;
            let want_in = !policy.disable_scale_in || policy.elastic_ci_mode;
            if !ActivityScan::new(!policy.disable_scale_out, want_in).is_done() {
                self.calls.describe_scaling_activities += 1;
            }
        }
        let lambda_deadline = self.now_us.saturating_add(micros(self.model.function_timeout));
        let remaining = lambda_deadline - self.now_us;
        let jitter = micros(startup_jitter(&config.group_name, config.startup_jitter_max))
            .min(remaining.saturating_sub(micros(DEADLINE_MARGIN)));
        let started = self.now_us + jitter;
        let mut deadline_us = lambda_deadline.saturating_sub(micros(DEADLINE_MARGIN));
        if let Some(timeout) = config.invocation_timeout {
            deadline_us = deadline_us.min(started.saturating_add(micros(timeout)));
        }
        self.push(started, Phase::Scaler, EventKind::Poll { invocation: index, deadline_us });
        let next = micros(self.model.schedule_period).saturating_mul(index + 1);
        if next <= self.horizon_us {
            self.push(next, Phase::Scaler, EventKind::Invocation { index: index + 1 });
        }
    }

    fn poll(&mut self, invocation: u64, deadline_us: u64) {
        self.polls += 1;
        self.calls.buildkite_metrics += 1;
        if self.config.cloudwatch_metrics {
            self.calls.put_metric_data += 1;
        }
        self.calls.describe_auto_scaling_groups += 1;
        let counts = self.reported_counts();
        let group = GroupSizes {
            min_size: self.model.min_size,
            max_size: self.model.max_size,
            desired_capacity: self.desired,
            in_service: self.in_service,
            pending: self.pending,
        };
        let now = epoch() + Duration::from_micros(self.now_us);
        let decision = decide(&self.config.policy, &self.state, &counts, &group, now);
        if let Action::SetDesiredCapacity { to, .. } = decision.action {
            self.calls.set_desired_capacity += 1;
            self.desired = to;
            self.state.record(decision.action, now);
            self.reconcile();
        }
        self.timeline.push(Tick {
            time_us: self.now_us,
            invocation,
            world: self.counts(),
            live_instances: self.live,
            decision,
            desired_after: self.desired,
        });
        // The interval never falls below the poll-duration header.
        let interval = micros(self.config.poll_interval.max(self.model.poll_duration));
        let next = self.now_us.saturating_add(micros(self.model.run_cost)).saturating_add(interval);
        if next <= deadline_us {
            self.push(next, Phase::Scaler, EventKind::Poll { invocation, deadline_us });
        }
    }

    fn finish(self) -> Outcome {
        Outcome {
            jobs: self.outcomes,
            instances: self.records,
            timeline: self.timeline,
            calls: self.calls,
            invocations: self.invocations,
            polls: self.polls,
            horizon_us: self.horizon_us,
            peak_live_instances: self.peak_live,
            event_polls: self.event_polls,
        }
    }
}
