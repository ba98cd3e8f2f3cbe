//! One simulated instance, from launch to termination:
//!
//! 1. what the AMI installs: the hook shims from `packer/linux/conf/buildkite-agent/hooks`
//!    and the instance binaries in `/usr/local/bin`, under a directory that stands for
//!    `/`;
//! 2. a fake metadata service answering for the instance id moto gave it;
//! 3. the real `elastic-ci-bootstrap boot --root … --record-actions …` with the inputs
//!    of the launch template's UserData, against moto;
//! 4. the Buildkite agent, simulated: it reads the configuration the boot wrote (token,
//!    name, tags, endpoint, spawn count, idle timeout, hooks and build paths) and the
//!    environment file, registers its agents with the fake Buildkite API, takes jobs,
//!    and runs the real hooks around each one through the shims, as the agent does,
//!    with a `sleep` standing in for the command;
//! 5. beside it, the real `elastic-ci-bootstrap watch` polls the fake metadata service
//!    for removal notices; when it asks the agent to stop (a recorded `systemctl stop`
//!    or `kill --signal=SIGTERM`), the simulated agent takes no new job, finishes its
//!    running ones and stops, as the real agent does;
//! 6. once every agent has been idle for the configured timeout, or has drained, the
//!    agent stops and, as its systemd unit's `ExecStopPost` does, the real
//!    `elastic-ci-bootstrap terminate` retires the instance in moto (or stands down
//!    when `watch` left its marker: Auto Scaling removes the instance itself).
//!
//! System actions are recorded, not performed, and `docker`, `sudo` and
//! `buildkite-agent` are recording stubs: nothing needs root, systemd or Docker.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use elastic_ci_core::boot::plan::{
    AGENT_CONFIG_PATH, AGENT_ENV_FILE_PATH, AGENT_HOME, DRAIN_MARKER_PATH,
};
use elastic_ci_core::lifecycle::format_rfc3339;
use elastic_ci_core::secret::Secret;
use elastic_ci_testkit::buildkite::{AgentClient, AssignedJob};
use elastic_ci_testkit::imds::FakeImds;
use elastic_ci_testkit::moto::REGION;

use super::{FleetGroup, Scenario, World};

/// The hooks the simulated agent runs, in order, around the command.
const HOOKS_BEFORE: [&str; 2] = ["environment", "pre-command"];
const HOOK_AFTER: &str = "pre-exit";

/// A stand-in for `docker`: records each call (with the job id), answers `ps`, and for
/// `login` records a digest of the password it reads on stdin, never the password.
const DOCKER_STUB: &str = r#"#!/bin/bash
log="${DEMO_STUB_LOG:?}"
case "${1-}" in
  login)
    digest=$(sha256sum | cut -d' ' -f1)
    printf '%s docker %s stdin-sha256=%s\n' "${BUILDKITE_JOB_ID-}" "$*" "$digest" >> "$log"
    echo "Login Succeeded" ;;
  ps)
    printf '%s docker %s\n' "${BUILDKITE_JOB_ID-}" "$*" >> "$log"
    echo "CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   NAMES" ;;
  *) printf '%s docker %s\n' "${BUILDKITE_JOB_ID-}" "$*" >> "$log" ;;
esac
"#;

/// A stand-in for `sudo`: records the command it would run as root (fix-permissions
/// changes owners to a `buildkite-agent` user this machine does not have).
const SUDO_STUB: &str = r#"#!/bin/bash
printf '%s sudo %s\n' "${BUILDKITE_JOB_ID-}" "$*" >> "${DEMO_STUB_LOG:?}"
"#;

/// A stand-in for the agent's own CLI (`buildkite-agent redactor add`): records the
/// call and how many bytes it was given, never the values.
const AGENT_CLI_STUB: &str = r#"#!/bin/bash
bytes=$(wc -c | tr -d ' ')
printf '%s buildkite-agent %s (%s bytes on stdin)\n' "${BUILDKITE_JOB_ID-}" "$*" "$bytes" >> "${DEMO_STUB_LOG:?}"
"#;

/// What became of one instance.
#[derive(Debug)]
pub(crate) struct HostReport {
    pub(crate) dir: PathBuf,
    /// How long `boot` took, or why it failed.
    pub(crate) boot: Result<Duration, String>,
    pub(crate) agent_names: Vec<String>,
    pub(crate) jobs: Vec<JobRun>,
    pub(crate) agent_stopped_at: Option<Duration>,
    /// `terminate`'s result; `None` when it did not run.
    pub(crate) terminate: Option<Result<(), String>>,
    /// When this host announced a spot interruption to itself (the spot scenario).
    pub(crate) spot_notice_at: Option<Duration>,
    /// When the agent saw `watch` ask it to stop.
    pub(crate) drain_seen_at: Option<Duration>,
    /// When the agents started: after the boot, or after the resume from the warm pool.
    pub(crate) agents_started_at: Option<Duration>,
    /// A warm-pool instance: when the group took it and its resume phase began.
    pub(crate) resumed_at: Option<Duration>,
    pub(crate) problems: Vec<String>,
}

/// One job as the simulated agent ran it.
#[derive(Debug, Clone)]
pub(crate) struct JobRun {
    pub(crate) job_id: String,
    /// Each hook that ran and its exit status.
    pub(crate) hooks: Vec<(String, i32)>,
    /// The command's exit status, when it ran.
    pub(crate) command: Option<i32>,
    pub(crate) exit_status: i32,
    pub(crate) log: PathBuf,
}

/// The agent's settings, from the configuration file the boot wrote.
#[derive(Debug)]
pub(crate) struct AgentSettings {
    pub(crate) name: String,
    pub(crate) token: Secret,
    pub(crate) tags: Vec<String>,
    pub(crate) endpoint: String,
    pub(crate) spawn: u32,
    pub(crate) idle_timeout: Duration,
    pub(crate) hooks_path: String,
    pub(crate) build_path: String,
}

/// Reads `buildkite-agent.cfg`: `key=value` lines, one pair of double quotes stripped,
/// as the agent reads it.
pub(crate) fn parse_agent_config(text: &str) -> anyhow::Result<AgentSettings> {
    let mut values = BTreeMap::new();
    for line in
        text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'))
    {
        let Some((key, value)) = line.split_once('=') else {
            bail!("agent configuration line {line:?} is not key=value");
        };
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        values.insert(key.trim().to_owned(), value.to_owned());
    }
    let mut take = |key: &str| {
        values.remove(key).with_context(|| format!("the agent configuration has no {key}"))
    };
    let spawn = take("spawn")?;
    let idle = take("disconnect-after-idle-timeout")?;
    Ok(AgentSettings {
        name: take("name")?,
        token: Secret::new(take("token")?),
        tags: take("tags")?.split(',').filter(|tag| !tag.is_empty()).map(str::to_owned).collect(),
        endpoint: take("endpoint")?,
        spawn: spawn
            .parse()
            .ok()
            .filter(|spawn| *spawn > 0)
            .with_context(|| format!("invalid spawn {spawn:?}: expected a positive number"))?,
        idle_timeout: Duration::from_secs(idle.parse().with_context(|| {
            format!("invalid disconnect-after-idle-timeout {idle:?}: expected seconds")
        })?),
        hooks_path: take("hooks-path")?,
        build_path: take("build-path")?,
    })
}

/// Prepares one instance of the warm pool: the image, then the boot's warm phase (the
/// metadata service says `Warmed:Stopped`), after which the instance is stopped. Returns
/// its directory, which the instance the group later takes out of the pool runs in.
pub(crate) fn prepare_warm(world: &World, index: u32) -> anyhow::Result<PathBuf> {
    let dir = world.out.join("warm-pool").join(format!("warm-{index}"));
    let root = dir.join("root");
    install_image(world, &root, &dir.join("bin"))?;
    let imds = FakeImds::start(&format!("i-{:017x}", 0xa_0000 + index), REGION);
    imds.set_tag("aws:autoscaling:groupName", &world.group.name);
    imds.set_target_lifecycle_state(Some("Warmed:Stopped"));
    let mut boot = boot_command(world, &world.group, &root, &dir, &imds);
    let status = run_logged(&mut boot, &dir.join("warm-boot.log"))?;
    ensure!(
        status.success(),
        "the warm phase failed ({status}); see {}",
        dir.join("warm-boot.log").display()
    );
    Ok(dir)
}

fn boot_command(
    world: &World,
    group: &FleetGroup,
    root: &Path,
    dir: &Path,
    imds: &FakeImds,
) -> Command {
    let mut boot = Command::new(&world.binaries.bootstrap);
    boot.arg("boot")
        .arg("--root")
        .arg(root)
        .arg("--record-actions")
        .arg(dir.join("actions.jsonl"))
        .args(["--metadata-retry-delay-ms", "200"])
        .env_clear()
        .envs(group.boot_inputs.iter().map(|(name, value)| (name, value)))
        .envs(world.aws_env())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint())
        .env("PATH", format!("{}:/usr/bin:/bin", dir.join("bin").display()))
        .env("ELASTIC_CI_LOG", "info")
        .env("ELASTIC_CI_DEMO_ROOT", root);
    boot
}

/// Runs the life of one instance of `group`; never panics, so that the fleet loop
/// always gets a report.
pub(crate) fn run(world: &Arc<World>, group: &FleetGroup, instance_id: &str) -> HostReport {
    // An instance taken out of the warm pool runs where its warm phase ran (the hook
    // shims name their root).
    let warm = world.take_warm();
    let dir = warm.clone().unwrap_or_else(|| world.out.join("hosts").join(instance_id));
    let mut report = HostReport {
        dir: dir.clone(),
        boot: Err("not started".to_owned()),
        agent_names: Vec::new(),
        jobs: Vec::new(),
        agent_stopped_at: None,
        terminate: None,
        spot_notice_at: None,
        drain_seen_at: None,
        agents_started_at: None,
        resumed_at: None,
        problems: Vec::new(),
    };
    if let Err(error) = live(world, group, instance_id, &dir, warm.is_some(), &mut report) {
        world.say(format!("{instance_id}: {error:#}"));
        report.problems.push(format!("{error:#}"));
    }
    report
}

fn live(
    world: &Arc<World>,
    group: &FleetGroup,
    instance_id: &str,
    dir: &Path,
    from_warm_pool: bool,
    report: &mut HostReport,
) -> anyhow::Result<()> {
    let root = dir.join("root");
    let bin = dir.join("bin");
    if !from_warm_pool {
        install_image(world, &root, &bin)?;
    }
    let imds = Arc::new(FakeImds::start(instance_id, REGION));
    if from_warm_pool {
        imds.set_target_lifecycle_state(Some("InService"));
    }
    imds.set_tag("aws:autoscaling:groupName", &group.name);
    imds.set_tag("Role", "buildkite-agent");
    world.register_metadata(instance_id, imds.clone());
    std::thread::sleep(world.timings.instance_start);
    let mut watch = Watch::start(world, &group.name, &root, dir, &imds)?;

    // cloud-init runs the UserData: its inputs, exported, then the bootstrapper (the
    // resume phase, for an instance out of the warm pool).
    let started = Instant::now();
    if from_warm_pool {
        report.resumed_at = Some(world.now());
    }
    let status =
        run_logged(&mut boot_command(world, group, &root, dir, &imds), &dir.join("boot.log"))?;
    if !status.success() {
        let message = format!("boot failed ({status}); see {}", dir.join("boot.log").display());
        report.boot = Err(message.clone());
        bail!(message);
    }
    report.boot = Ok(started.elapsed());

    let config_path = root.join(AGENT_CONFIG_PATH.trim_start_matches('/'));
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("the boot wrote no {}", config_path.display()))?;
    let settings = parse_agent_config(&config)?;
    world.say(format!(
        "{instance_id}: {} in {:.1} s; starting {} agent{}",
        if from_warm_pool { "resumed from the warm pool" } else { "booted" },
        started.elapsed().as_secs_f64(),
        settings.spawn,
        if settings.spawn == 1 { "" } else { "s" }
    ));
    let agent_env = agent_environment(world, &root, &bin, dir, &imds)?;
    let agent = Agent {
        world: world.clone(),
        instance_id,
        root: &root,
        dir,
        settings,
        env: agent_env,
        imds: &imds,
        watch_actions: watch.actions.clone(),
    };
    report.agents_started_at = Some(world.now());
    let outcome = agent.run(report);
    report.agent_stopped_at = Some(world.now());
    world.agents_stopped(instance_id);
    // `watch` completes the lifecycle action once the agent has stopped (moto refuses
    // it: its hooks are inert), then exits; it is stopped here otherwise.
    watch.finish(Duration::from_secs(if report.drain_seen_at.is_some() { 10 } else { 0 }));
    outcome?;
    if world.stopping() {
        return Ok(());
    }

    // The agent unit's ExecStopPost. Its drain pause (10 s by default, for the last
    // log lines to reach CloudWatch) is set to the demo's.
    let mut terminate = Command::new(&world.binaries.bootstrap);
    terminate
        .arg("terminate")
        .args(["--drain-secs", &world.timings.terminate_drain_secs.to_string()])
        .args(["--metadata-retry-delay-ms", "200"])
        .env_clear()
        .envs(world.aws_env())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint())
        .env("PATH", "/usr/bin:/bin")
        .env("ELASTIC_CI_LOG", "info");
    terminate.arg("--drain-marker").arg(root.join(DRAIN_MARKER_PATH.trim_start_matches('/')));
    let status = run_logged(&mut terminate, &dir.join("terminate.log"))?;
    report.terminate = Some(if status.success() {
        if root.join(DRAIN_MARKER_PATH.trim_start_matches('/')).exists() {
            world.say(format!(
                "{instance_id}: terminate stood down: the lifecycle hook removes the instance"
            ));
        } else {
            world.say(format!("{instance_id}: terminated itself (elastic-ci-bootstrap terminate)"));
        }
        Ok(())
    } else {
        Err(format!("terminate failed ({status}); see {}", dir.join("terminate.log").display()))
    });
    Ok(())
}

/// The instance's `elastic-ci-bootstrap watch` (the `elastic-ci-watch` service), its
/// system actions recorded to a file the simulated agent reads.
struct Watch {
    child: std::process::Child,
    actions: PathBuf,
}

impl Watch {
    fn start(
        world: &World,
        group: &str,
        root: &Path,
        dir: &Path,
        imds: &FakeImds,
    ) -> anyhow::Result<Watch> {
        let actions = dir.join("watch-actions.jsonl");
        let log = File::create(dir.join("watch.log")).context("failed to create watch.log")?;
        let child = Command::new(&world.binaries.bootstrap)
            .arg("watch")
            .args(["--poll-secs", "1", "--heartbeat-secs", "5"])
            .arg("--group")
            .arg(group)
            .arg("--record-actions")
            .arg(&actions)
            .arg("--drain-marker")
            .arg(root.join(DRAIN_MARKER_PATH.trim_start_matches('/')))
            .env_clear()
            .envs(world.aws_env())
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint())
            .env("PATH", "/usr/bin:/bin")
            .env("ELASTIC_CI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("failed to start elastic-ci-bootstrap watch")?;
        Ok(Watch { child, actions })
    }

    /// Waits up to `grace` for `watch` to exit by itself, then stops it.
    fn finish(&mut self, grace: Duration) {
        let started = Instant::now();
        while started.elapsed() < grace {
            if self.child.try_wait().is_ok_and(|status| status.is_some()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `watch` asked of the agent so far, from its recorded actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopRequest {
    None,
    /// Stop taking jobs; finish the running ones (SIGTERM, or `systemctl stop`).
    Graceful,
    /// Cancel the running jobs (SIGQUIT before a spot interruption).
    Cancel,
}

fn stop_request(actions: &Path) -> StopRequest {
    let text = std::fs::read_to_string(actions).unwrap_or_default();
    let mut request = StopRequest::None;
    for line in text.lines() {
        let Ok(action) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if action["action"] != "systemctl" {
            continue;
        }
        let args: Vec<&str> = action["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        if args.contains(&"--signal=SIGQUIT") {
            return StopRequest::Cancel;
        }
        if args.first() == Some(&"stop") || args.contains(&"--signal=SIGTERM") {
            request = StopRequest::Graceful;
        }
    }
    request
}

/// What the AMI provides: the hook shims, the binaries in `/usr/local/bin`, and here
/// the recording stubs in a directory of their own, first on `PATH`.
fn install_image(world: &World, root: &Path, bin: &Path) -> anyhow::Result<()> {
    let local_bin = root.join("usr/local/bin");
    for dir in [&local_bin, bin, &root.join("var/tmp")] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    // The shims' paths are constants under one root line, rewritten to this root.
    for hook in HOOKS_BEFORE.iter().chain([&HOOK_AFTER]) {
        elastic_ci_testkit::image::install_hook_shim(root, hook)
            .with_context(|| format!("failed to install the {hook} hook"))?;
    }
    std::os::unix::fs::symlink(&world.binaries.bootstrap, local_bin.join("elastic-ci-bootstrap"))
        .context("failed to install elastic-ci-bootstrap")?;
    // A hard link (a copy across file systems), not a symlink: the hooks find the
    // image's other programs from their own path, which the kernel reports with
    // symlinks resolved.
    let hooks = local_bin.join("elastic-ci-hooks");
    std::fs::hard_link(&world.binaries.hooks, &hooks)
        .or_else(|_| std::fs::copy(&world.binaries.hooks, &hooks).map(drop))
        .context("failed to install elastic-ci-hooks")?;
    // The agent's command line also where the image has it, for the hooks' stop on a
    // full disk.
    let usr_bin = root.join("usr/bin");
    std::fs::create_dir_all(&usr_bin)
        .with_context(|| format!("failed to create {}", usr_bin.display()))?;
    for (path, script) in [
        (bin.join("docker"), DOCKER_STUB),
        (bin.join("sudo"), SUDO_STUB),
        (bin.join("buildkite-agent"), AGENT_CLI_STUB),
        (usr_bin.join("buildkite-agent"), AGENT_CLI_STUB),
    ] {
        std::fs::write(&path, script)
            .with_context(|| format!("failed to write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The agent process's environment: the systemd unit's `Environment=` lines and its
/// `EnvironmentFile=` (the env file the boot fetched), with paths under the simulated
/// root, plus what points the binaries at the local AWS and metadata service.
fn agent_environment(
    world: &World,
    root: &Path,
    bin: &Path,
    dir: &Path,
    imds: &FakeImds,
) -> anyhow::Result<BTreeMap<String, String>> {
    let under_root = |path: &str| root.join(path.trim_start_matches('/')).display().to_string();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("HOME".into(), under_root(AGENT_HOME));
    env.insert("USER".into(), "buildkite-agent".into());
    env.insert(
        "PATH".into(),
        format!("{}:{}:/usr/bin:/bin", bin.display(), under_root("/usr/local/bin")),
    );
    env.insert("TMPDIR".into(), under_root("/var/tmp"));
    let env_file = root.join(AGENT_ENV_FILE_PATH.trim_start_matches('/'));
    if let Ok(text) = std::fs::read_to_string(&env_file) {
        let assignments = elastic_ci_core::envfile::parse(&text)
            .with_context(|| format!("invalid agent env file {}", env_file.display()))?;
        for (name, value) in assignments {
            env.insert(name.as_str().to_owned(), value);
        }
    }
    env.extend(world.aws_env());
    env.insert("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), imds.endpoint());
    env.insert("DEMO_STUB_LOG".into(), dir.join("stub-calls.log").display().to_string());
    Ok(env)
}

/// The simulated Buildkite agent of one instance, with `spawn` workers.
struct Agent<'a> {
    world: Arc<World>,
    instance_id: &'a str,
    root: &'a Path,
    dir: &'a Path,
    settings: AgentSettings,
    env: BTreeMap<String, String>,
    imds: &'a FakeImds,
    /// Where `watch` records what it asks of the agent.
    watch_actions: PathBuf,
}

/// One registered agent and the job it runs.
struct Worker {
    client: AgentClient,
    job: Option<JoinHandle<JobRun>>,
}

impl Agent<'_> {
    fn run(&self, report: &mut HostReport) -> anyhow::Result<()> {
        let mut workers = Vec::new();
        for n in 1..=self.settings.spawn {
            let name = self.settings.name.replace("%spawn", &n.to_string());
            let client = AgentClient::register(
                &self.settings.endpoint,
                self.settings.token.expose(),
                &name,
                &self.settings.tags,
            )
            .with_context(|| format!("agent {name} could not register"))?;
            client.connect().with_context(|| format!("agent {name} could not connect"))?;
            report.agent_names.push(name);
            workers.push(Worker { client, job: None });
        }
        let mut idle_since = Instant::now();
        let result = loop {
            for worker in &mut workers {
                if worker.job.as_ref().is_some_and(JoinHandle::is_finished)
                    && let Some(handle) = worker.job.take()
                {
                    let run =
                        handle.join().map_err(|_| anyhow::anyhow!("a job thread panicked"))?;
                    worker.client.finish(&run.job_id, run.exit_status).with_context(|| {
                        format!("agent {} could not finish job {}", worker.client.name, run.job_id)
                    })?;
                    self.world.say(format!(
                        "{}: finished {} (exit {})",
                        worker.client.name, run.job_id, run.exit_status
                    ));
                    report.jobs.push(run);
                    idle_since = Instant::now();
                }
            }
            let busy = workers.iter().any(|worker| worker.job.is_some());
            if self.world.stopping() {
                break Ok(());
            }
            match stop_request(&self.watch_actions) {
                StopRequest::None => {}
                StopRequest::Graceful => {
                    if report.drain_seen_at.is_none() {
                        report.drain_seen_at = Some(self.world.now());
                        self.world.say(format!(
                            "{}: watch asked the agent to stop: no new jobs, running ones finish",
                            self.instance_id
                        ));
                    }
                    if !busy {
                        break Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                // Jobs still running are abandoned: the disconnect below interrupts them.
                StopRequest::Cancel => break Ok(()),
            }
            if !busy && idle_since.elapsed() >= self.settings.idle_timeout {
                self.world.say(format!(
                    "{}: every agent idle for {} s: the agent stops",
                    self.instance_id,
                    self.settings.idle_timeout.as_secs()
                ));
                break Ok(());
            }
            for worker in workers.iter_mut().filter(|worker| worker.job.is_none()) {
                match worker.client.ping() {
                    Ok(Some(job)) => {
                        self.world.say(format!("{}: took {}", worker.client.name, job.id));
                        worker.job = Some(self.start_job(&worker.client, job)?);
                        self.announce_spot_interruption(report);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        report
                            .problems
                            .push(format!("{} could not ping: {error}", worker.client.name));
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        // Jobs still running (only when the demo is stopped early) end first; an agent
        // that disconnects while it holds a job interrupts it.
        for worker in &mut workers {
            if let Some(handle) = worker.job.take()
                && let Ok(run) = handle.join()
            {
                report.jobs.push(run);
            }
            if let Err(error) = worker.client.disconnect() {
                report
                    .problems
                    .push(format!("{} could not disconnect: {error}", worker.client.name));
            }
        }
        result
    }

    fn start_job(
        &self,
        client: &AgentClient,
        job: AssignedJob,
    ) -> anyhow::Result<JoinHandle<JobRun>> {
        let build_path = self.under_root(&self.settings.build_path);
        let organization = job.env.get("BUILDKITE_ORGANIZATION_SLUG").cloned().unwrap_or_default();
        let pipeline = job.env.get("BUILDKITE_PIPELINE_SLUG").cloned().unwrap_or_default();
        let checkout = build_path.join(&client.name).join(&organization).join(&pipeline);
        std::fs::create_dir_all(&checkout)
            .with_context(|| format!("failed to create {}", checkout.display()))?;
        let mut env = self.env.clone();
        env.extend(job.env);
        for (name, value) in [
            ("BUILDKITE", "true".to_owned()),
            ("CI", "true".to_owned()),
            ("BUILDKITE_JOB_ID", job.id.clone()),
            ("BUILDKITE_AGENT_NAME", client.name.clone()),
            ("BUILDKITE_AGENT_ID", client.id.clone()),
            ("BUILDKITE_BUILD_PATH", build_path.display().to_string()),
            ("BUILDKITE_BUILD_CHECKOUT_PATH", checkout.display().to_string()),
            (
                "BUILDKITE_HOOKS_PATH",
                self.under_root(&self.settings.hooks_path).display().to_string(),
            ),
        ] {
            env.insert(name.to_owned(), value);
        }
        let jobs_dir = self.dir.join("jobs");
        std::fs::create_dir_all(&jobs_dir)?;
        let context = JobContext {
            log: jobs_dir.join(format!("{}.log", job.id)),
            job_id: job.id,
            agent: client.name.clone(),
            hooks_dir: self.under_root(&self.settings.hooks_path),
            scratch: self.dir.join("scratch"),
            env,
        };
        std::thread::Builder::new()
            .name(format!("job {}", context.job_id))
            .spawn(move || context.run())
            .context("failed to start a job thread")
    }

    fn under_root(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The spot scenario: the first host to take a job hears, under that running job,
    /// that it will be interrupted `spot_notice` from now.
    fn announce_spot_interruption(&self, report: &mut HostReport) {
        if self.world.scenario != Some(Scenario::Spot)
            || self.world.spot_announced.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let at = std::time::SystemTime::now() + self.world.timings.spot_notice;
        self.imds.set_spot_instance_action(Some(("terminate", &format_rfc3339(at))));
        report.spot_notice_at = Some(self.world.now());
        self.world.say(format!(
            "{}: spot interruption announced for {} s from now",
            self.instance_id,
            self.world.timings.spot_notice.as_secs()
        ));
    }
}

/// Everything one job's thread needs.
struct JobContext {
    job_id: String,
    agent: String,
    hooks_dir: PathBuf,
    /// The job log: what the hooks and the command print, with section headers.
    log: PathBuf,
    /// Private scratch space for the environment dumps between hooks.
    scratch: PathBuf,
    env: BTreeMap<String, String>,
}

impl JobContext {
    /// The agent's job lifecycle: the `environment` and `pre-command` hooks, the
    /// command if they succeeded, then `pre-exit` whatever happened. Each hook is
    /// sourced by bash with the job environment, and the environment it leaves is the
    /// next step's, as the agent does.
    fn run(mut self) -> JobRun {
        let mut run = JobRun {
            job_id: self.job_id.clone(),
            hooks: Vec::new(),
            command: None,
            exit_status: 0,
            log: self.log.clone(),
        };
        let _ = self.section(&format!("~~~ job {} on {}", self.job_id, self.agent));
        for hook in HOOKS_BEFORE {
            let status = self.hook(hook);
            run.hooks.push((hook.to_owned(), status));
            if status != 0 {
                run.exit_status = status;
                break;
            }
        }
        if run.exit_status == 0 {
            let command = self.env.get("BUILDKITE_COMMAND").cloned().unwrap_or_default();
            let _ = self.section(&format!("+++ running the command\n{command}"));
            let status = self.spawn_bash(&["-c", &command], None);
            run.command = Some(status);
            run.exit_status = status;
        }
        let status = self.hook(HOOK_AFTER);
        run.hooks.push((HOOK_AFTER.to_owned(), status));
        if run.exit_status == 0 {
            run.exit_status = status;
        }
        let _ = self.section(&format!("~~~ job {} exited {}", self.job_id, run.exit_status));
        run
    }

    /// Sources a hook as the agent does and takes the environment it leaves; returns
    /// its exit status (the environment is kept as it was when the hook failed).
    fn hook(&mut self, hook: &str) -> i32 {
        let path = self.hooks_dir.join(hook);
        if !path.exists() {
            return 0;
        }
        let _ = self.section(&format!("~~~ running the {hook} hook"));
        if std::fs::create_dir_all(&self.scratch)
            .and_then(|()| {
                std::fs::set_permissions(&self.scratch, std::fs::Permissions::from_mode(0o700))
            })
            .is_err()
        {
            return 1;
        }
        let dump = self.scratch.join(format!("{}-{hook}.env", self.job_id));
        let status = self.spawn_bash(
            &["-c", r#"source "$1" && env -0 > "$2""#, "agent-hook-wrapper"],
            Some((&path, &dump)),
        );
        if status == 0 {
            match std::fs::read(&dump) {
                Ok(bytes) => {
                    self.env = bytes
                        .split(|byte| *byte == 0)
                        .filter_map(|record| {
                            let text = String::from_utf8_lossy(record);
                            let (name, value) = text.split_once('=')?;
                            Some((name.to_owned(), value.to_owned()))
                        })
                        .collect();
                }
                Err(_) => return 1,
            }
        }
        // The dump holds the job's secrets: it lives only between two hooks.
        let _ = std::fs::remove_file(&dump);
        status
    }

    fn spawn_bash(&self, args: &[&str], files: Option<(&Path, &Path)>) -> i32 {
        let Ok(log) = File::options().create(true).append(true).open(&self.log) else { return 1 };
        let Ok(log_err) = log.try_clone() else { return 1 };
        let mut command = Command::new("bash");
        command.args(args);
        if let Some((first, second)) = files {
            command.arg(first).arg(second);
        }
        let status = command
            .env_clear()
            .envs(&self.env)
            .current_dir(self.env.get("BUILDKITE_BUILD_CHECKOUT_PATH").map_or("/", String::as_str))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .status();
        match status {
            Ok(status) => status.code().unwrap_or(1),
            Err(_) => 1,
        }
    }

    fn section(&self, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut log = File::options().create(true).append(true).open(&self.log)?;
        writeln!(log, "{text}")
    }
}

/// Runs a command with stdout and stderr going to `log`, and returns its status.
fn run_logged(command: &mut Command, log: &Path) -> anyhow::Result<std::process::ExitStatus> {
    let file = File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("failed to run {:?}", command.get_program()))?;
    ensure!(status.code().is_some(), "{:?} was killed by a signal", command.get_program());
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_agent_configuration_the_boot_writes() {
        let text = "# Written by elastic-ci-bootstrap\nname=\"demo-i-0abc-%spawn\"\ntoken=\"bkat-secret\"\n\
                    tags=queue=default,docker=unknown,demo=true\nendpoint=http://127.0.0.1:9/v3\n\
                    spawn=2\ndisconnect-after-idle-timeout=30\nhooks-path=/etc/buildkite-agent/hooks\n\
                    build-path=/var/lib/buildkite-agent/builds\ngit-mirrors-path=\"\"\n";
        let settings = parse_agent_config(text).unwrap();
        assert_eq!(settings.name, "demo-i-0abc-%spawn");
        assert_eq!(settings.token.expose(), "bkat-secret");
        assert_eq!(settings.tags, ["queue=default", "docker=unknown", "demo=true"]);
        assert_eq!((settings.spawn, settings.idle_timeout), (2, Duration::from_secs(30)));
        assert!(!format!("{settings:?}").contains("bkat-secret"));
        let error = parse_agent_config(&text.replace("spawn=2", "spawn=0")).unwrap_err();
        assert!(error.to_string().contains("invalid spawn \"0\""), "{error}");
        let error = parse_agent_config("name=x\n").unwrap_err();
        assert!(error.to_string().contains("no spawn"), "{error}");
    }
}
