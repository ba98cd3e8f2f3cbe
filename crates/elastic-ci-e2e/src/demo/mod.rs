//! `elastic-ci-demo` (`cargo xtask demo`): the whole stack running on one machine.
//!
//! - AWS is moto, started here (or `cargo xtask ci`'s), and the stack is the rendered
//!   template deployed into it with `create_stack` ([`stack`]): its Auto Scaling group,
//!   token parameter, secrets bucket and log groups are the template's own.
//! - Buildkite is the testkit's fake agent API, fed with a job trace ([`trace`]).
//! - The scaler is the real `elastic-ci-scaler run` with the scaler function's
//!   environment ([`scaler`]).
//! - Every instance the group launches becomes a simulated host that runs the real
//!   `elastic-ci-bootstrap boot`, a simulated agent around the real hooks, and the real
//!   `elastic-ci-bootstrap terminate` when its agents have been idle long enough
//!   ([`host`]).
//!
//! A live view on stderr follows the queue and the group; the run ends when every job
//! is done and the group is back at MinSize, with a summary and an HTML report
//! ([`report`]). Every run then checks that every job ran once, with its hooks and the
//! bucket's secrets, none was interrupted, the fleet went from zero to work and back,
//! and the agent token is in no file but the agent configuration, and fails if not.
//! `--check` is the same on a small trace with shorter timings: the end-to-end test
//! that `cargo xtask ci` runs, against its own emulator (`--moto-endpoint`).
//!
//! `--scenario` exercises a removal path or the warm pool, each with a check of its own
//! beside "no job interrupted": `spot` (the fake metadata service announces a spot
//! interruption under a running job) and `scale-in` (scale-in enabled without
//! protection, and the group shrinks while every agent runs a job). moto removes no
//! instance when the desired capacity drops, and knows no termination hook: the fleet
//! loop plays Auto Scaling's part, choosing the instances above the desired capacity,
//! announcing `Terminated` in their metadata (`Terminating:Wait`), and terminating each
//! once its host has drained.
//! `warm` prepares a warm pool of two instances (the boot's warm phase) before the jobs
//! arrive; the group's launches take them, and their resume phase starts the agents.
//! `update` updates the stack while every agent of the group runs a job, with a changed
//! launch template input, and the group is replaced ([`stack::replace_group`]): moto
//! neither replaces a group as CloudFormation does nor runs custom resources, so the
//! demo creates the replacement group, runs the template's own stop-agents function
//! code, restarts the scaler with the updated function environment, and holds the old
//! group's instances in `Terminating:Wait` until they have drained, as the deletion of
//! the old group in the update's cleanup does.

mod host;
mod report;
mod scaler;
mod stack;
mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use elastic_ci_aws::autoscaling::{AutoScalingGroups, ScalingGroup};
use elastic_ci_core::fleet::GroupSnapshot;
use elastic_ci_core::secret::Secret;
use elastic_ci_testkit::buildkite::{FakeBuildkite, JobSpec, JobState};
use elastic_ci_testkit::imds::FakeImds;
use elastic_ci_testkit::moto::Moto;

use xtask::{moto, project};

/// What `--help` says after the flags: the settings that are not flags.
pub const DEMO_AFTER_HELP: &str = "\
The stack is deployed with settings that make the run take minutes: AgentsPerInstance=2,
MaxSize=6, ScaleInIdlePeriod=30, ScaleOutCooldownPeriod=30, ScalerMinPollInterval=2s
(--check: MaxSize=3, ScaleInIdlePeriod=8, ScaleOutCooldownPeriod=15, ScalerMinPollInterval=1s).
Outside the template, simulated instances start 3 s after launch (--check: 1 s) and run
elastic-ci-bootstrap terminate with --drain-secs 0.
Needs Python 3 (for moto, installed on first use) and bash; no Docker, systemd or root:
system actions of the boot are recorded, and docker, sudo and buildkite-agent are
recording stubs. Everything a run writes is kept in its output directory.";

/// Run the whole stack on this machine: the template deployed into a local AWS
/// (moto), a fake Buildkite queue fed from a job trace, the real scaler, and a
/// simulated instance (real bootstrapper and hooks) for every instance the group
/// launches. Shows the queue and the fleet live, then a summary and an HTML report.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask demo", bin_name = "cargo xtask demo", after_long_help = DEMO_AFTER_HELP)]
pub struct DemoArgs {
    /// A job trace to replay instead of the built-in burst: CSV or JSON Lines with
    /// job_id, queue, visible_at_s, ready_at_s and duration_s, as `elastic-ci simulate`
    /// reads. The stack serves the trace's first queue.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Replay the jobs that become visible in the trace's first N minutes [default: the
    /// whole built-in trace, or the first 10 minutes of a file].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=240))]
    pub minutes: Option<u64>,
    /// The end-to-end test that `cargo xtask ci` runs: a small built-in trace (unless
    /// --trace is given) and shorter timings. Like every run, it fails unless every job
    /// ran once with its hooks and the secrets bucket's values, none was interrupted,
    /// the group scaled out from zero and back to MinSize, and the agent token is in no
    /// file but the agent configuration.
    #[arg(long)]
    pub check: bool,
    /// The directory for logs, per-instance roots and the report [default: a new one
    /// under <target dir>/demo].
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Use the local AWS emulator already listening at URL (as `cargo xtask ci` does)
    /// instead of starting one.
    #[arg(long, value_name = "URL", hide = true)]
    pub moto_endpoint: Option<String>,
    /// Remove instances under running jobs, on a trace of its own, and check that no
    /// job is interrupted: spot (a spot interruption is announced under a running
    /// job), scale-in (scale-in enabled, the group shrinks while jobs run), warm (a
    /// warm pool of 2: jobs land on resumed instances within seconds) or update (a
    /// stack update replaces the group while its agents run jobs).
    #[arg(long, value_enum, value_name = "NAME")]
    pub scenario: Option<Scenario>,
}

/// A removal path the demo exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A spot interruption notice reaches an instance under a running job.
    Spot,
    /// Scale-in enabled (no scale-in protection, the termination hook on) and the
    /// group shrinks while every agent runs a job.
    ScaleIn,
    /// A warm pool of two stopped instances that ran the boot's warm phase; the group
    /// takes them when it scales out, and their resume phase starts the agents.
    Warm,
    /// A stack update replaces the Auto Scaling group while every agent of the old
    /// group runs a job.
    Update,
}

/// One of the stack's Auto Scaling groups, and the variables its launch template's
/// UserData hands `elastic-ci-bootstrap boot`.
#[derive(Debug)]
pub(crate) struct FleetGroup {
    pub(crate) name: String,
    pub(crate) boot_inputs: Vec<(String, String)>,
}

/// The warm scenario's pool.
const WARM_POOL_SIZE: u32 = 2;

/// The organization the fake Buildkite reports.
const ORGANIZATION: &str = "demo-org";

/// How the stack and the simulation are tuned for a run that lasts minutes, not hours.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    pub(crate) agents_per_instance: u32,
    pub(crate) max_size: u32,
    /// `ScaleInIdlePeriod`: how long every agent of an instance must be idle before it
    /// stops and the instance terminates.
    pub(crate) idle_period_secs: u64,
    /// `ScaleOutCooldownPeriod`.
    pub(crate) scale_out_cooldown_secs: u64,
    /// `ScalerMinPollInterval` (the scaler's `LAMBDA_INTERVAL`).
    pub(crate) poll_interval_secs: u64,
    /// Not a stack parameter: how long a simulated instance takes to start before the
    /// UserData runs.
    pub(crate) instance_start: Duration,
    /// Not a stack parameter: `elastic-ci-bootstrap terminate --drain-secs`.
    pub(crate) terminate_drain_secs: u64,
    /// The spot scenario: the warning an interruption gives (AWS: 2 minutes).
    pub(crate) spot_notice: Duration,
}

impl Timings {
    const DEMO: Timings = Timings {
        agents_per_instance: 2,
        max_size: 6,
        idle_period_secs: 30,
        scale_out_cooldown_secs: 30,
        poll_interval_secs: 2,
        instance_start: Duration::from_secs(3),
        terminate_drain_secs: 0,
        spot_notice: Duration::from_secs(120),
    };
    const CHECK: Timings = Timings {
        agents_per_instance: 2,
        max_size: 3,
        idle_period_secs: 8,
        scale_out_cooldown_secs: 15,
        poll_interval_secs: 1,
        instance_start: Duration::from_secs(1),
        terminate_drain_secs: 0,
        spot_notice: Duration::from_secs(40),
    };
}

/// The three binaries the demo runs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) scaler: PathBuf,
    pub(crate) bootstrap: PathBuf,
    pub(crate) hooks: PathBuf,
}

impl Binaries {
    /// The binaries beside this one: the workspace's debug build (which `cargo xtask
    /// demo` runs first) puts them all in the same directory.
    fn beside_this_one() -> anyhow::Result<Binaries> {
        let this = std::env::current_exe().context("failed to find this binary's path")?;
        let dir = this.parent().context("this binary's path has no directory")?;
        let path = |name: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            ensure!(
                path.is_file(),
                "{} is missing: build it with `cargo build --workspace --tests`",
                path.display()
            );
            Ok(path)
        };
        Ok(Binaries {
            scaler: path("elastic-ci-scaler")?,
            bootstrap: path("elastic-ci-bootstrap")?,
            hooks: path("elastic-ci-hooks")?,
        })
    }
}

/// What every simulated host shares.
pub(crate) struct World {
    pub(crate) moto: Moto,
    pub(crate) binaries: Binaries,
    pub(crate) out: PathBuf,
    /// The stack's group as deployed (the update scenario adds its replacement).
    pub(crate) group: Arc<FleetGroup>,
    pub(crate) timings: Timings,
    pub(crate) scenario: Option<Scenario>,
    /// The spot scenario announces one interruption.
    pub(crate) spot_announced: AtomicBool,
    /// Each host's fake metadata service, for the fleet loop to announce removals.
    metadata: Mutex<BTreeMap<String, Arc<FakeImds>>>,
    /// The warm scenario: prepared warm-pool instances not yet taken by the group.
    warm_pool: Mutex<Vec<PathBuf>>,
    started: Instant,
    stop: AtomicBool,
    events: Mutex<Vec<(Duration, String)>>,
}

impl World {
    /// Time since the jobs were loaded: the clock of the fake queue and of the report.
    pub(crate) fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Queues a line for the live view.
    pub(crate) fn say(&self, message: String) {
        if let Ok(mut events) = self.events.lock() {
            events.push((self.now(), message));
        }
    }

    /// Whether the run is being cut short: agents stop and nothing terminates.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The variables that point our binaries at the local AWS.
    pub(crate) fn aws_env(&self) -> Vec<(String, String)> {
        self.moto.env()
    }

    /// A warm-pool instance for the group's next launch, if one is left.
    pub(crate) fn take_warm(&self) -> Option<PathBuf> {
        let mut pool = self.warm_pool.lock().ok()?;
        (!pool.is_empty()).then(|| pool.remove(0))
    }

    pub(crate) fn register_metadata(&self, instance_id: &str, imds: Arc<FakeImds>) {
        if let Ok(mut metadata) = self.metadata.lock() {
            metadata.insert(instance_id.to_owned(), imds);
        }
    }

    /// The host's agents stopped: from now on a removal needs no drain.
    pub(crate) fn agents_stopped(&self, instance_id: &str) {
        if let Ok(mut metadata) = self.metadata.lock() {
            metadata.remove(instance_id);
        }
    }

    /// Auto Scaling holds a leaving instance in `Terminating:Wait` for the termination
    /// hook, and its metadata says `Terminated`. False when its agents already stopped.
    fn announce_termination(&self, instance_id: &str) -> bool {
        let imds =
            self.metadata.lock().ok().and_then(|metadata| metadata.get(instance_id).cloned());
        match imds {
            Some(imds) => {
                imds.set_target_lifecycle_state(Some("Terminated"));
                true
            }
            None => false,
        }
    }
}

/// Runs the demo: with its own emulator, or with the one at `--moto-endpoint`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let (text, source, built_in) = match (&args.trace, args.scenario) {
        (Some(path), _) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("failed to read trace {}", path.display()))?,
            path.display().to_string(),
            false,
        ),
        (None, Some(Scenario::Spot)) => {
            (trace::SPOT.to_owned(), "the built-in spot scenario".to_owned(), true)
        }
        (None, Some(Scenario::ScaleIn)) => {
            (trace::SCALE_IN.to_owned(), "the built-in scale-in scenario".to_owned(), true)
        }
        (None, Some(Scenario::Warm)) => {
            (trace::WARM.to_owned(), "the built-in warm-pool scenario".to_owned(), true)
        }
        (None, Some(Scenario::Update)) => {
            (trace::UPDATE.to_owned(), "the built-in stack update scenario".to_owned(), true)
        }
        (None, None) if args.check => {
            (trace::CHECK.to_owned(), "the built-in check trace".to_owned(), true)
        }
        (None, None) => (trace::BURST.to_owned(), "the built-in burst".to_owned(), true),
    };
    let trace = trace::load(&text, &source, args.minutes, built_in)?;
    let interrupted = on_interrupt();
    let binaries = Binaries::beside_this_one()?;
    let out = output_dir(args.output.as_deref(), if args.check { "check" } else { "run" })?;
    let moto_dir = moto::moto_dir()?;
    let timings = if args.check { Timings::CHECK } else { Timings::DEMO };
    let python = moto_dir.join("venv/bin/python");
    let scenario = args.scenario;
    if let Some(endpoint) = &args.moto_endpoint {
        let moto = Moto { endpoint: endpoint.clone() };
        return demo(Setup { moto, python, binaries, trace, timings, out, interrupted, scenario });
    }
    eprintln!("starting moto (the local AWS) …");
    let server = moto::Server::start_with_log(&moto_dir, &out.join("moto.log"))?;
    let moto = Moto { endpoint: server.endpoint.clone() };
    let result = demo(Setup { moto, python, binaries, trace, timings, out, interrupted, scenario });
    drop(server);
    result
}

struct Setup {
    moto: Moto,
    python: PathBuf,
    binaries: Binaries,
    trace: trace::DemoTrace,
    timings: Timings,
    out: PathBuf,
    /// Set on Ctrl-C: the run stops early but still cleans up.
    interrupted: Arc<AtomicBool>,
    scenario: Option<Scenario>,
}

/// Catches Ctrl-C from now on, so that the run can stop its scaler and its emulator
/// (which runs in a process group of its own) instead of dying with them running. The
/// children in the terminal's process group get the interrupt themselves.
fn on_interrupt() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let (ready, wait_ready) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        // The handler is installed when the stream is created.
        let signal = {
            let _entered = runtime.enter();
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        };
        let _ = ready.send(());
        let Ok(mut signal) = signal else { return };
        if runtime.block_on(signal.recv()).is_some() {
            flag.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: stopping the run and cleaning up …");
        }
    });
    let _ = wait_ready.recv_timeout(Duration::from_secs(5));
    interrupted
}

/// One simulated instance, as the fleet loop follows it.
struct HostEntry {
    /// The name of the group that launched it.
    group: String,
    launched_at: Duration,
    gone_at: Option<Duration>,
    /// When the group let go of it while its host still ran: Auto Scaling's
    /// `Terminating:Wait`, announced in its metadata.
    removed_at: Option<Duration>,
    thread: Option<JoinHandle<host::HostReport>>,
    report: Option<host::HostReport>,
}

fn demo(setup: Setup) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let Setup { moto, python, binaries, trace, timings, out, interrupted, scenario } = setup;
    let token = Secret::new(format!("bkdemo-{}", random_hex(16)));
    let fake = FakeBuildkite::start(token.expose());
    fake.state().organization = ORGANIZATION.to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start a runtime")?;

    eprintln!("deploying the stack template into moto with create_stack …");
    let settings = stack::StackSettings {
        queue: &trace.queue,
        agent_endpoint: &fake.endpoint(),
        agent_token: &token,
        max_size: timings.max_size,
        agents_per_instance: timings.agents_per_instance,
        idle_period_secs: timings.idle_period_secs,
        scale_out_cooldown_secs: timings.scale_out_cooldown_secs,
        poll_interval: &format!("{}s", timings.poll_interval_secs),
        scale_in: scenario == Some(Scenario::ScaleIn),
        replaceable: scenario == Some(Scenario::Update),
    };
    let stack = runtime.block_on(stack::deploy(&moto, &python, &out, &settings))?;
    print_setup(&stack, &trace, &timings, &out);

    let world = Arc::new(World {
        moto: moto.clone(),
        binaries,
        out: out.clone(),
        group: Arc::new(FleetGroup {
            name: stack.group.clone(),
            boot_inputs: stack.boot_inputs.clone(),
        }),
        timings,
        scenario,
        spot_announced: AtomicBool::new(false),
        metadata: Mutex::new(BTreeMap::new()),
        warm_pool: Mutex::new(Vec::new()),
        started: Instant::now(),
        stop: AtomicBool::new(false),
        events: Mutex::new(Vec::new()),
    });
    if scenario == Some(Scenario::Warm) {
        prepare_warm_pool(&world)?;
    }
    load_jobs(&fake, &world, &trace);
    let mut scaler = scaler::Scaler::start(&world, &stack.scaler_env, &out.join("scaler.log"))?;

    let scaling = AutoScalingGroups::new(&moto.sdk_config());
    let mut view = LiveView::new();
    let mut hosts: BTreeMap<String, HostEntry> = BTreeMap::new();
    let mut samples: Vec<report::Sample> = Vec::new();
    let deadline = settle_deadline(&trace, &timings);
    let mut scaled_in = false;
    let mut groups = vec![world.group.clone()];
    let mut replacement: Option<report::GroupReplacement> = None;
    let mut polls = Vec::new();
    let outcome: anyhow::Result<()> = loop {
        let described = runtime.block_on(describe_groups(&scaling, &groups));
        let now = world.now();
        let described = match described {
            Ok(described) => described,
            Err(error) if now <= deadline => {
                world.say(format!("could not describe the group: {error}"));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            Err(error) => {
                break Err(anyhow::Error::new(error).context("could not describe the group"));
            }
        };
        let current: BTreeSet<&str> = described
            .iter()
            .flat_map(|group| group.instances.iter().map(|instance| instance.id.as_str()))
            .collect();
        for (group, snapshot) in groups.iter().zip(&described) {
            let members: BTreeSet<&str> =
                snapshot.instances.iter().map(|instance| instance.id.as_str()).collect();
            start_hosts(&world, group, &mut hosts, &members, now)?;
            hold_instances_above_desired(
                &world,
                &mut hosts,
                &members,
                snapshot.desired_capacity,
                now,
            );
        }
        reap_hosts(&world, &mut hosts, &current, now, |id| {
            runtime.block_on(scaling.terminate_instance(id, false))
        });
        let first = &described[0];
        if let Some(replaced) = &mut replacement {
            replaced.old_instances_left = first.instances.len();
        }
        if scenario == Some(Scenario::ScaleIn) && !scaled_in {
            scaled_in = shrink_under_running_jobs(&runtime, &scaling, &fake, first, &world)?;
        }
        if scenario == Some(Scenario::Update)
            && replacement.is_none()
            && !first.instances.is_empty()
            && every_agent_busy(&fake, first, &world).is_some()
        {
            let replace = Replace { moto: &moto, python: &python, out: &out, stack: &stack };
            let (replaced, group, new_scaler) =
                replace_group_under_jobs(&runtime, &world, &replace, &token, first, now)?;
            // CloudFormation's update of the scaler function: new invocations run with
            // the new group's name.
            polls.extend(std::mem::replace(&mut scaler, new_scaler).stop());
            replacement = Some(replaced);
            groups.push(group);
        }
        let (sample, all_ended) = sample_run(&fake, &trace.queue, &described, current.len(), now);
        view.show(&world, &sample, trace.jobs.len());
        samples.push(sample);

        let hosts_done = hosts.values().all(|entry| entry.thread.is_none());
        let settled = described
            .iter()
            .all(|group| group.desired_capacity == group.min_size && group.instances.is_empty());
        if all_ended && settled && hosts_done {
            break Ok(());
        }
        if interrupted.load(Ordering::SeqCst) {
            break Err(anyhow::anyhow!("interrupted"));
        }
        if let Some(status) = scaler.exited() {
            break Err(anyhow::anyhow!(
                "the scaler exited ({status}); see {}",
                out.join("scaler.log").display()
            ));
        }
        if now > deadline {
            break Err(anyhow::anyhow!(
                "the run did not settle within {} s (jobs done, group back at MinSize)",
                deadline.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    world.stop.store(true, Ordering::SeqCst);
    // The pool's unused instances go with the stack.
    while let Some(dir) = world.take_warm() {
        let _ = std::fs::remove_dir_all(dir);
    }
    polls.extend(scaler.stop());
    for entry in hosts.values_mut() {
        if let Some(thread) = entry.thread.take() {
            entry.report = thread.join().ok();
        }
        entry.gone_at.get_or_insert(world.now());
    }
    view.flush(&world);

    let record = report::RunRecord {
        trace: &trace,
        stack: &stack,
        timings: &timings,
        samples: &samples,
        hosts: host_records(&hosts),
        jobs: fake.state().job_records().to_vec(),
        polls: &polls,
        elapsed: world.now(),
        wall_time: run_started.elapsed(),
        out: &out,
        scenario,
        replacement: replacement.as_ref(),
    };
    check_and_report(&record, &token, outcome)
}

/// Each host as the report shows it.
fn host_records(hosts: &BTreeMap<String, HostEntry>) -> Vec<report::HostRecord<'_>> {
    hosts
        .iter()
        .map(|(id, entry)| report::HostRecord {
            instance_id: id.clone(),
            group: entry.group.clone(),
            launched_at: entry.launched_at,
            gone_at: entry.gone_at.unwrap_or_default(),
            removed_at: entry.removed_at,
            report: entry.report.as_ref(),
        })
        .collect()
}

/// Checks a settled run, writes the report and prints the summary; the run's error,
/// or the failed checks, fail the demo.
fn check_and_report(
    record: &report::RunRecord<'_>,
    token: &Secret,
    outcome: anyhow::Result<()>,
) -> anyhow::Result<()> {
    // A run that did not settle is not checked: its checks would only repeat that.
    let checks = if outcome.is_ok() { report::checks(record, token) } else { Vec::new() };
    let report_path = report::write(record, &checks)?;
    report::print_summary(record, &checks, &report_path);
    outcome?;
    let failed: Vec<String> = checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| format!("{}: {}", check.name, check.detail))
        .collect();
    if !failed.is_empty() {
        bail!("the end-to-end checks failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// What a stack update needs to replace the group.
struct Replace<'a> {
    moto: &'a Moto,
    python: &'a Path,
    out: &'a Path,
    stack: &'a stack::Stack,
}

/// The update scenario's stack update, while `first`'s agents all run jobs: the
/// replacement group, its record for the report, and the scaler restarted with the
/// new group's name.
fn replace_group_under_jobs(
    runtime: &tokio::runtime::Runtime,
    world: &Arc<World>,
    replace: &Replace<'_>,
    token: &Secret,
    first: &GroupSnapshot,
    now: Duration,
) -> anyhow::Result<(report::GroupReplacement, Arc<FleetGroup>, scaler::Scaler)> {
    world.say(format!("stack update: replacing {} while its agents run jobs", first.name));
    let replaced = runtime.block_on(stack::replace_group(
        replace.moto,
        replace.python,
        replace.out,
        replace.stack,
        token,
    ))?;
    world.say(format!(
        "stack update: {} replaces {}; the old group is at zero and its agents were told to stop",
        replaced.group, first.name
    ));
    let scaler = scaler::Scaler::start(
        world,
        &replaced.scaler_env,
        &replace.out.join("scaler-after-update.log"),
    )?;
    let record = report::GroupReplacement {
        at: now,
        old_group: first.name.clone(),
        new_group: replaced.group.clone(),
        old_instances_left: first.instances.len(),
    };
    let group = Arc::new(FleetGroup { name: replaced.group, boot_inputs: replaced.boot_inputs });
    Ok((record, group, scaler))
}

/// One sample of the run: the queue's counts, the groups' capacity, the jobs done;
/// and whether every job has ended.
fn sample_run(
    fake: &FakeBuildkite,
    queue: &str,
    described: &[GroupSnapshot],
    in_service: usize,
    now: Duration,
) -> (report::Sample, bool) {
    let state = fake.state();
    let records = state.job_records();
    let jobs_done =
        records.iter().filter(|job| matches!(job.state_at(now), JobState::Finished)).count();
    let all_ended = records.iter().all(|job| job.finished_at.is_some());
    let sample = report::Sample {
        at: now,
        metrics: state.modelled_metrics(queue),
        desired: described.iter().map(|group| group.desired_capacity).sum(),
        in_service: u32::try_from(in_service).unwrap_or(u32::MAX),
        jobs_done,
    };
    (sample, all_ended)
}

/// What Auto Scaling does when a warm pool is created: launch its instances, run their
/// warm phase and stop them. The scenario's jobs arrive after this.
fn prepare_warm_pool(world: &World) -> anyhow::Result<()> {
    for index in 0..WARM_POOL_SIZE {
        let dir = host::prepare_warm(world, index)?;
        world.say(format!("warm pool: instance {index} ran the warm phase and stopped"));
        if let Ok(mut pool) = world.warm_pool.lock() {
            pool.push(dir);
        }
    }
    Ok(())
}

/// Feeds the trace's jobs to the fake queue, on the world's clock.
fn load_jobs(fake: &FakeBuildkite, world: &Arc<World>, trace: &trace::DemoTrace) {
    let clock = world.clone();
    let mut state = fake.state();
    state.set_clock(move || clock.now());
    state.add_jobs(trace.jobs.iter().map(|job| JobSpec {
        id: job.id.clone(),
        queue: trace.queue.clone(),
        visible_at: job.visible_at,
        ready_at: job.ready_at,
        env: job_env(job),
    }));
}

/// Describes each of the stack's groups, in order.
async fn describe_groups(
    scaling: &AutoScalingGroups,
    groups: &[Arc<FleetGroup>],
) -> Result<Vec<elastic_ci_core::fleet::GroupSnapshot>, elastic_ci_aws::error::AwsError> {
    let mut described = Vec::with_capacity(groups.len());
    for group in groups {
        described.push(scaling.describe_group(&group.name).await?);
    }
    Ok(described)
}

/// A simulated host for every instance `group` has and the demo does not yet.
fn start_hosts(
    world: &Arc<World>,
    group: &Arc<FleetGroup>,
    hosts: &mut BTreeMap<String, HostEntry>,
    current: &BTreeSet<&str>,
    now: Duration,
) -> anyhow::Result<()> {
    for id in current {
        if hosts.contains_key(*id) {
            continue;
        }
        world.say(format!("{id}: launched by the group; starting"));
        let host_world = world.clone();
        let host_group = group.clone();
        let instance_id = (*id).to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("host {id}"))
            .spawn(move || host::run(&host_world, &host_group, &instance_id))
            .context("failed to start a host thread")?;
        hosts.insert(
            (*id).to_owned(),
            HostEntry {
                group: group.name.clone(),
                launched_at: now,
                gone_at: None,
                removed_at: None,
                thread: Some(thread),
                report: None,
            },
        );
    }
    Ok(())
}

/// Auto Scaling's part that moto lacks: above the desired capacity, the group removes
/// instances, each held in `Terminating:Wait` (its metadata says `Terminated`) until
/// its host has drained ([`reap_hosts`] then terminates it).
fn hold_instances_above_desired(
    world: &World,
    hosts: &mut BTreeMap<String, HostEntry>,
    current: &BTreeSet<&str>,
    desired: u32,
    now: Duration,
) {
    let n_held = hosts
        .values()
        .filter(|entry| entry.removed_at.is_some() && entry.gone_at.is_none())
        .count();
    let desired = usize::try_from(desired).unwrap_or(usize::MAX);
    let mut n_excess = current.len().saturating_sub(desired.saturating_add(n_held));
    for (id, entry) in hosts.iter_mut().rev() {
        if n_excess == 0 {
            break;
        }
        let running = entry.thread.as_ref().is_some_and(|thread| !thread.is_finished());
        if entry.removed_at.is_none()
            && current.contains(id.as_str())
            && running
            && world.announce_termination(id)
        {
            world.say(format!(
                "{id}: removed by the group while its agents run: Terminated announced, held until they drain"
            ));
            entry.removed_at = Some(now);
            n_excess -= 1;
        }
    }
}

/// Notes the instances that left the group, collects the reports of finished hosts,
/// and terminates (with `terminate`) the held instances whose hosts have drained: the
/// hook's action is complete.
fn reap_hosts<E: std::fmt::Display>(
    world: &World,
    hosts: &mut BTreeMap<String, HostEntry>,
    current: &BTreeSet<&str>,
    now: Duration,
    terminate: impl Fn(&str) -> Result<(), E>,
) {
    for (id, entry) in hosts.iter_mut() {
        if entry.gone_at.is_none() && !current.contains(id.as_str()) {
            entry.gone_at = Some(now);
        }
        if entry.thread.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(thread) = entry.thread.take()
        {
            entry.report = thread.join().ok();
            if entry.removed_at.is_some() && entry.gone_at.is_none() {
                if let Err(error) = terminate(id) {
                    world.say(format!("{id}: could not terminate after its drain: {error}"));
                }
                world.say(format!("{id}: drained; the group terminates it"));
            }
        }
    }
}

/// The scale-in scenario: once two or more instances are in service and every agent
/// runs a job, the desired capacity goes down by one, as the scaler's scale-in does.
/// Returns whether it did.
fn shrink_under_running_jobs(
    runtime: &tokio::runtime::Runtime,
    scaling: &AutoScalingGroups,
    fake: &FakeBuildkite,
    group: &elastic_ci_core::fleet::GroupSnapshot,
    world: &World,
) -> anyhow::Result<bool> {
    let Some(running) = every_agent_busy(fake, group, world) else { return Ok(false) };
    if group.instances.len() < 2 {
        return Ok(false);
    }
    let target = group.desired_capacity.saturating_sub(1);
    runtime
        .block_on(scaling.set_desired_capacity(&group.name, target))
        .context("could not lower the desired capacity")?;
    world.say(format!(
        "scale-in: desired capacity {} -> {target} while {running} jobs run on every agent",
        group.desired_capacity
    ));
    Ok(true)
}

/// The number of running jobs, when they are enough to keep every agent of `group`
/// busy.
fn every_agent_busy(
    fake: &FakeBuildkite,
    group: &elastic_ci_core::fleet::GroupSnapshot,
    world: &World,
) -> Option<usize> {
    let running = {
        let state = fake.state();
        let now = world.now();
        state
            .job_records()
            .iter()
            .filter(|job| matches!(job.state_at(now), JobState::Running))
            .count()
    };
    let per_instance = usize::try_from(world.timings.agents_per_instance).unwrap_or(usize::MAX);
    let agents = group.instances.len().saturating_mul(per_instance);
    (running >= agents).then_some(running)
}

/// When a run that has not settled is given up: the trace's jobs run back to back on
/// every agent the group may have, plus an idle period, an instance start and three
/// minutes to spare.
fn settle_deadline(trace: &trace::DemoTrace, timings: &Timings) -> Duration {
    let work: Duration = trace.jobs.iter().map(|job| job.duration).sum();
    let agents = timings.max_size.saturating_mul(timings.agents_per_instance).max(1);
    let last_ready = trace.jobs.iter().map(|job| job.ready_at).max().unwrap_or_default();
    trace.last_end().max(last_ready + work / agents)
        + Duration::from_secs(timings.idle_period_secs)
        + timings.instance_start
        + Duration::from_secs(180)
}

/// The environment a pipeline step gives its job; the command sleeps for the job's
/// duration, then prints what it can see of the secrets, as evidence for the check.
fn job_env(job: &trace::DemoJob) -> BTreeMap<String, String> {
    let command = format!(
        "sleep {:.3}\n\
         printf 'demo-evidence: job=%s bucket_secret_sha256=%s pipeline_setting=%s agent_env=%s docker_config=%s\\n' \
         \"$BUILDKITE_JOB_ID\" \"$(printf %s \"${{DEMO_BUCKET_SECRET-}}\" | sha256sum | cut -d' ' -f1)\" \
         \"${{DEMO_PIPELINE_SETTING-}}\" \"${{DEMO_AGENT_ENV-}}\" \"${{DOCKER_CONFIG:+set}}\"",
        job.duration.as_secs_f64()
    );
    [
        ("BUILDKITE_COMMAND", command),
        ("BUILDKITE_LABEL", job.id.clone()),
        ("BUILDKITE_PIPELINE_SLUG", stack::PIPELINE.to_owned()),
        ("BUILDKITE_ORGANIZATION_SLUG", ORGANIZATION.to_owned()),
        ("BUILDKITE_BUILD_NUMBER", "1".to_owned()),
        ("BUILDKITE_BRANCH", "main".to_owned()),
        ("BUILDKITE_REPO", "https://github.com/example/demo.git".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

fn print_setup(stack: &stack::Stack, trace: &trace::DemoTrace, timings: &Timings, out: &Path) {
    eprintln!("stack {} (template version {}) is CREATE_COMPLETE:", stack.name, stack.version);
    eprintln!("  Auto Scaling group  {}", stack.group);
    eprintln!(
        "  agent token         SSM {} (a SecureString, made one by the template's AgentTokenParameterFunction)",
        stack.token_parameter
    );
    eprintln!(
        "  secrets bucket      s3://{} (env and {}/env put there)",
        stack.secrets_bucket,
        stack::PIPELINE
    );
    eprintln!("  log groups          {}", stack.log_groups.len());
    eprintln!("  bootstrap script    s3://{}/bootstrap.sh", stack.config_bucket);
    eprintln!(
        "  parameters          {}",
        stack.parameters.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    );
    eprintln!(
        "not stack parameters: instances start {} s after launch; terminate --drain-secs {}",
        timings.instance_start.as_secs(),
        timings.terminate_drain_secs
    );
    let mut note = format!(
        "{} on queue {} from {}",
        plural(trace.jobs.len(), "job"),
        trace.queue,
        trace.source
    );
    if trace.n_other_queues > 0 {
        note.push_str(&format!(
            "; {} of other queues left out",
            plural(trace.n_other_queues, "job")
        ));
    }
    if trace.n_after_window > 0 {
        note.push_str(&format!(
            "; {} after the first {} minutes left out (--minutes)",
            plural(trace.n_after_window, "job"),
            trace.window.as_secs() / 60
        ));
    }
    eprintln!("{note}");
    eprintln!("logs and per-instance roots: {}", out.display());
}

/// The live view on stderr: events as they happen, and a status line, redrawn in
/// place on a terminal and printed when it changes elsewhere.
struct LiveView {
    terminal: bool,
    last: String,
}

impl LiveView {
    fn new() -> LiveView {
        LiveView { terminal: std::io::stderr().is_terminal(), last: String::new() }
    }

    fn show(&mut self, world: &World, sample: &report::Sample, n_jobs: usize) {
        let metrics = &sample.metrics;
        let status = format!(
            "queue: {} waiting, {} scheduled, {} running | group: desired {}, in service {} | agents: {} ({} busy) | jobs done: {}/{n_jobs}",
            metrics.waiting_jobs,
            metrics.scheduled_jobs,
            metrics.running_jobs,
            sample.desired,
            sample.in_service,
            metrics.idle_agents + metrics.busy_agents,
            metrics.busy_agents,
            sample.jobs_done,
        );
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K");
        }
        self.print_events(world, &mut stderr);
        if self.terminal {
            let _ = write!(stderr, "{:>6}  {status}", seconds(sample.at));
        } else if status != self.last {
            let _ = writeln!(stderr, "{:>6}  {status}", seconds(sample.at));
        }
        let _ = stderr.flush();
        self.last = status;
    }

    fn flush(&mut self, world: &World) {
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = writeln!(stderr);
        }
        self.print_events(world, &mut stderr);
    }

    fn print_events(&self, world: &World, out: &mut impl Write) {
        let events = world.events.lock().map(|mut events| std::mem::take(&mut *events));
        for (at, message) in events.unwrap_or_default() {
            let _ = writeln!(out, "{:>6}  {message}", seconds(at));
        }
    }
}

/// `1 job`, `2 jobs`.
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// `12.3s`.
fn seconds(at: Duration) -> String {
    format!("{:.1}s", at.as_secs_f64())
}

/// How many runs of each kind `<target dir>/demo` keeps.
const KEPT_RUNS: usize = 10;

/// `--output`, or a fresh directory under `<target dir>/demo` (where only the latest
/// [`KEPT_RUNS`] runs of each kind are kept).
fn output_dir(given: Option<&Path>, kind: &str) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir.to_owned(),
        None => {
            let parent = project::target_dir()?.join("demo");
            prune_runs(&parent, kind);
            let stamp =
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            parent.join(format!("{kind}-{stamp}-{}", random_hex(2)))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("failed to resolve {}", dir.display()))?;
    Ok(dir)
}

/// Removes all but the newest `KEPT_RUNS - 1` directories named `KIND-<unix time>-…`.
fn prune_runs(parent: &Path, kind: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let prefix = format!("{kind}-");
    let mut runs: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stamp = name.strip_prefix(&prefix)?.split('-').next()?.parse().ok()?;
            entry.file_type().ok()?.is_dir().then(|| (stamp, entry.path()))
        })
        .collect();
    runs.sort();
    let n_old = runs.len().saturating_sub(KEPT_RUNS - 1);
    for (_, path) in runs.into_iter().take(n_old) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// `n` random bytes as lower-case hex, from the operating system's generator.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // Linux's getrandom(2) blocks until the pool is ready and does not fail for a
    // request this small.
    getrandom::fill(&mut bytes).expect("the operating system gives random bytes");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_runs_of_a_kind() {
        let dir = tempfile::tempdir().unwrap();
        for stamp in 100..112 {
            std::fs::create_dir(dir.path().join(format!("run-{stamp}-ab"))).unwrap();
        }
        std::fs::create_dir(dir.path().join("check-1-cd")).unwrap();
        std::fs::write(dir.path().join("run-1-file"), "").unwrap();
        prune_runs(dir.path(), "run");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = (103..112).map(|stamp| format!("run-{stamp}-ab")).collect();
        expected.extend(["check-1-cd".to_owned(), "run-1-file".to_owned()]);
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn the_help_states_the_timings() {
        let help = DEMO_AFTER_HELP.replace('\n', " ");
        for (prefix, timings) in [("", Timings::DEMO), ("--check: ", Timings::CHECK)] {
            let stated = format!(
                "{prefix}MaxSize={}, ScaleInIdlePeriod={}, ScaleOutCooldownPeriod={}, ScalerMinPollInterval={}s",
                timings.max_size,
                timings.idle_period_secs,
                timings.scale_out_cooldown_secs,
                timings.poll_interval_secs
            );
            assert!(help.contains(&stated), "{stated:?} is not in the help");
            assert_eq!(timings.agents_per_instance, 2, "the help says AgentsPerInstance=2");
            assert_eq!(timings.terminate_drain_secs, 0, "the help says --drain-secs 0");
        }
        assert!(help.contains("start 3 s after launch (--check: 1 s)"));
        assert_eq!(
            (Timings::DEMO.instance_start, Timings::CHECK.instance_start),
            (Duration::from_secs(3), Duration::from_secs(1))
        );
    }

    #[test]
    fn the_deadline_allows_for_the_backlog() {
        let text = "job_id,queue,visible_at_s,ready_at_s,duration_s\n\
                    a,q,0,0,600\nb,q,0,0,600\nc,q,0,0,600\nd,q,10,10,60\n";
        let trace = trace::load(text, "t.csv", None, false).unwrap();
        let timings = Timings { max_size: 1, agents_per_instance: 2, ..Timings::CHECK };
        // 1860 s of work on 2 agents after the last job is ready, then idle, start, spare.
        assert_eq!(settle_deadline(&trace, &timings), Duration::from_secs(10 + 930 + 8 + 1 + 180));
        assert_eq!(plural(1, "job"), "1 job");
        assert_eq!(plural(3, "instance"), "3 instances");
    }
}
