//! `boot`: turns a fresh instance into a configured agent host, once.
//!
//! The sequence is the plan of [`elastic_ci_core::boot::plan`], executed operation by
//! operation. Around it:
//!
//! - the every-boot steps (instance storage, Docker's configuration) run on every
//!   boot, planned from the instance's current state; then a status file makes a boot
//!   after a successful one stop there, and refuses to go on after a half-done one (the
//!   original's contract: cloud-init runs UserData on every boot);
//! - an instance launched into the warm pool (its target lifecycle state is
//!   `Warmed:*`) runs the warm phase, everything but the agent start, and the status
//!   file says `Warmed`; its next boot out of the pool runs the resume phase (token and
//!   agent environment read again, agents started) — see
//!   [`elastic_ci_core::boot::plan::BootPhase`]; a warm phase cut short (the status
//!   file still says `Warming`) runs again, or the whole boot runs when the group takes
//!   the instance into service;
//! - with a warm pool, the stack's launch lifecycle hook holds each new instance until
//!   its boot is done: the boot completes it with `CONTINUE` when it succeeds (after a
//!   warm phase, the group then stops the instance into its pool) and with `ABANDON`
//!   when it fails (the group replaces the instance). Without a hook waiting there is
//!   nothing to complete: that answer is logged, never a failure;
//! - the instance id comes from the metadata service with retries and exponential
//!   backoff, and, if the service stays down, from what cloud-init recorded, so that a
//!   failed boot can still mark its own instance unhealthy;
//! - every input is validated before anything changes, and all problems are reported
//!   together;
//! - any failure marks the instance Unhealthy, signals FAILURE to CloudFormation when
//!   the stack was deployed by it, and exits non-zero naming the failed step;
//! - the whole boot has a deadline ([`BootDeps::deadline`]) and every command a time
//!   limit ([`crate::child`]): a boot stuck on a hung `dockerd` or script takes the
//!   same failure path, naming the step it was in, instead of leaving an instance that
//!   counts as capacity but never runs an agent.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use elastic_ci_aws::autoscaling::{LifecycleAction, ScalingGroup};
use elastic_ci_aws::error::AwsErrorKind;
use elastic_ci_aws::imds::InstanceMetadata;
use elastic_ci_aws::retry::{self, Attempt, retry};
use elastic_ci_aws::s3::ObjectStore;
use elastic_ci_aws::ssm::ParameterStore;
use elastic_ci_core::archive::SeedLimits;
use elastic_ci_core::backoff::Backoff;
use elastic_ci_core::boot::action::SystemAction;
use elastic_ci_core::boot::config::{BootConfig, DockerSettings, FailureContext};
use elastic_ci_core::boot::docker::{self, RemapIds};
use elastic_ci_core::boot::plan::{
    self, BootPhase, BootPlan, CLOUD_INIT_INSTANCE_ID_PATH, EPHEMERAL_PATH, FSTAB_PATH,
    InstanceFacts, Op, ScriptShell, Step,
};
use elastic_ci_core::boot::storage::{self, StorageFacts};
use elastic_ci_core::fleet::{Health, LifecycleActionResult};
use elastic_ci_core::lifecycle::LAUNCH_HOOK_NAME;
use elastic_ci_core::secret::{Secret, agent_token};
use elastic_ci_core::uri::SourceUri;
use tracing::{error, info, warn};

use crate::fetch::{self, Backends};
use crate::files::{self, Root};
use crate::platform::INSTANCE_OS;
use crate::system::System;

/// Everything the boot reads from and acts on.
pub(crate) struct BootDeps {
    pub(crate) root: Root,
    /// The process environment: the UserData inputs, and the bootstrap script's
    /// environment.
    pub(crate) env: HashMap<String, String>,
    pub(crate) metadata: Arc<dyn InstanceMetadata>,
    pub(crate) parameters: Arc<dyn ParameterStore>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) scaling: Arc<dyn ScalingGroup>,
    pub(crate) system: Arc<dyn System>,
    pub(crate) http: reqwest::Client,
    pub(crate) metadata_backoff: Backoff,
    pub(crate) seed_limits: SeedLimits,
    /// How long the whole boot may take before it gives up and takes the failure path.
    pub(crate) deadline: Duration,
}

/// The default [`BootDeps::deadline`]: the stack's creation policy waits up to 15
/// minutes with a git-mirror seed bucket, and a boot that takes longer has failed. The
/// launch lifecycle hook waits as long.
pub(crate) const DEFAULT_DEADLINE: Duration = elastic_ci_core::lifecycle::BOOT_DEADLINE;

/// Where a boot is, for the failure path of a boot that ran out of time.
#[derive(Debug, Default)]
struct Progress {
    state: std::sync::Mutex<(String, Option<String>)>,
}

impl Progress {
    fn step(&self, step: &str) {
        if let Ok(mut state) = self.state.lock() {
            step.clone_into(&mut state.0);
        }
    }

    fn instance_id(&self, id: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.1 = Some(id.to_owned());
        }
    }

    fn snapshot(&self) -> (String, Option<String>) {
        self.state.lock().map(|state| state.clone()).unwrap_or_default()
    }
}

/// How a boot that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BootOutcome {
    Completed,
    /// The status file said `Completed`: only the every-boot steps ran.
    AlreadyCompleted,
    /// The warm phase ran: the instance waits in the warm pool, agents not started.
    Warmed,
    /// A warm-pool instance taken into service: the resume phase ran.
    Resumed,
}

/// A failed boot: the step that failed and why. The instance has been marked
/// unhealthy and the failure signalled, where that was possible.
#[derive(Debug, thiserror::Error)]
#[error("boot failed at step {step}: {message}")]
pub(crate) struct BootFailure {
    pub(crate) step: String,
    pub(crate) message: String,
    /// The exit status for the boot: the bootstrap script's own when it failed, else 1.
    pub(crate) exit_code: u8,
}

/// The user's bootstrap script exited with a failure status.
#[derive(Debug, thiserror::Error)]
#[error("the bootstrap script {script} exited with {status}")]
pub(crate) struct ScriptFailed {
    pub(crate) script: String,
    pub(crate) status: std::process::ExitStatus,
}

/// The metadata retry schedule of the original: 5 attempts, 1 s doubling to 30 s.
pub(crate) fn metadata_backoff(first_delay: Duration) -> Backoff {
    Backoff::doubling(5, first_delay, Duration::from_secs(30))
}

/// Runs the boot, within its deadline.
pub(crate) async fn boot(deps: &BootDeps) -> Result<BootOutcome, BootFailure> {
    let progress = Progress::default();
    progress.step("instance-metadata");
    match tokio::time::timeout(deps.deadline, boot_steps(deps, &progress)).await {
        Ok(outcome) => outcome,
        Err(_) => {
            // Dropping the boot killed whatever command it was waiting for.
            let (step, instance_id) = progress.snapshot();
            let failing = Failing {
                deps,
                context: FailureContext::from_env_map(&deps.env),
                instance_id: instance_id.or_else(|| fallback_instance_id(&deps.root)),
                launch_action_may_wait: true,
            };
            let error = anyhow::anyhow!(
                "the boot did not finish within its deadline of {} s",
                deps.deadline.as_secs()
            );
            Err(failing.fail(&step, &error).await)
        }
    }
}

async fn boot_steps(deps: &BootDeps, progress: &Progress) -> Result<BootOutcome, BootFailure> {
    let status_file = INSTANCE_OS.status_file();
    let status_path = deps.root.path(status_file);
    let status = match std::fs::read_to_string(&status_path) {
        Ok(status) => Some(status),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => Some(format!("<unreadable: {error}>")),
    };

    // Nothing changes before these are known: the configuration, the instance id, the
    // status file and the instance's facts.
    let config = BootConfig::from_env_map(&deps.env);
    let instance = instance_id(deps.metadata.as_ref(), deps.metadata_backoff).await;
    let known_id = match &instance {
        Ok(id) => Some(id.clone()),
        Err(_) => fallback_instance_id(&deps.root),
    };
    if let Some(id) = &known_id {
        progress.instance_id(id);
    }
    progress.step("instance-facts");
    let mut failing = Failing {
        deps,
        context: FailureContext::from_env_map(&deps.env),
        instance_id: known_id,
        launch_action_may_wait: true,
    };
    let instance_id = match instance {
        Ok(id) => id,
        Err(error) => return Err(failing.fail("instance-metadata", &error).await),
    };
    let config = match config {
        Ok(config) => config,
        Err(error) => return Err(failing.fail("configuration", &error.into()).await),
    };
    // Where Auto Scaling is taking the instance: into the warm pool, or into service.
    // One attempt: when the service cannot say, the instance boots as any other (an
    // agent started in the pool is stopped again by `watch` before the pool stops it).
    // A launch lifecycle action can only wait when Auto Scaling sets a target state;
    // when the service cannot say, the boot tries to complete one anyway.
    let to_warm_pool = match deps.metadata.target_lifecycle_state().await {
        Ok(state) => {
            failing.launch_action_may_wait = state.is_some();
            state.is_some_and(|state| state.trim().starts_with("Warmed:"))
        }
        Err(error) => {
            warn!(error = %error, "could not read the target lifecycle state; booting in full");
            false
        }
    };
    let failing = failing;
    // A half-done boot is not resumed, and its instance is not changed any further; a
    // half-done warm phase changed nothing the agents use yet, and runs again.
    let (completed, phase) = match status.as_deref().map(str::trim) {
        None if to_warm_pool => (false, BootPhase::Warm),
        None => (false, BootPhase::Full),
        Some(plan::STATUS_COMPLETED) => (true, BootPhase::Full),
        // Started again inside the pool: nothing more to do until it leaves.
        Some(plan::STATUS_WARMED) if to_warm_pool => (true, BootPhase::Warm),
        Some(plan::STATUS_WARMED) => (false, BootPhase::Resume),
        Some(plan::STATUS_WARMING) if to_warm_pool => {
            warn!("the last warm phase did not finish: running it again");
            (false, BootPhase::Warm)
        }
        Some(plan::STATUS_WARMING) => {
            warn!("the last warm phase did not finish: running the whole boot");
            (false, BootPhase::Full)
        }
        Some(other) => {
            let error = anyhow::anyhow!(
                "Bootstrap previously failed, will not continue from unknown state ({status_file} says {other:?})"
            );
            return Err(failing.fail("status", &error).await);
        }
    };
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let (facts, _) = match gather_facts(deps, &config, &instance_id, true).await {
        Ok(facts) => facts,
        Err(error) => return Err(failing.fail("instance-facts", &error).await),
    };
    info!(
        instance_id = %facts.instance_id,
        docker_version = %facts.docker_version,
        arch = %facts.arch,
        login_user = %facts.login_user,
        "instance facts"
    );
    let plan = plan::plan_phase(&config, &facts, phase);
    let (every_boot, first_boot): (Vec<&Step>, Vec<&Step>) =
        plan.steps.iter().partition(|step| step.every_boot);
    if completed {
        info!("Bootstrap already completed successfully. Running only the every-boot steps.");
    }
    let mut executor = Executor { deps, token: None, progress };
    executor.run_steps(&every_boot, &failing).await?;
    if completed {
        failing.complete_launch_action(LifecycleActionResult::Continue).await;
        return Ok(BootOutcome::AlreadyCompleted);
    }
    let started =
        if phase == BootPhase::Warm { plan::STATUS_WARMING } else { plan::STATUS_STARTED };
    if let Err(error) = files::write_atomic(&status_path, 0o644, started.as_bytes()) {
        return Err(failing.fail("status", &error).await);
    }
    executor.run_steps(&first_boot, &failing).await?;
    // Last: after a warm phase, this is what lets the group stop the instance.
    failing.complete_launch_action(LifecycleActionResult::Continue).await;
    Ok(match phase {
        BootPhase::Full => {
            info!("boot completed");
            BootOutcome::Completed
        }
        BootPhase::Warm => {
            info!("warm phase completed: the agents start when the group takes the instance");
            BootOutcome::Warmed
        }
        BootPhase::Resume => {
            info!("resumed from the warm pool: agents started");
            BootOutcome::Resumed
        }
    })
}

/// The plan `boot` would execute, as text, changing nothing. The metadata service is
/// asked once (no retries) and the token is not read; what cannot be inspected is
/// said in a note and planned as absent.
pub(crate) async fn dry_run(deps: &BootDeps) -> anyhow::Result<String> {
    let config = BootConfig::from_env_map(&deps.env)?;
    let mut out = String::new();
    let status_file = INSTANCE_OS.status_file();
    let status_path = deps.root.path(status_file);
    if let Ok(status) = std::fs::read_to_string(&status_path) {
        let _ = writeln!(
            out,
            "Note: {status_file} says {:?}: a real boot would {}.",
            status.trim(),
            match status.trim() {
                plan::STATUS_COMPLETED => "run only the every-boot steps",
                plan::STATUS_WARMED =>
                    "resume (or, still in the warm pool, run only the every-boot steps)",
                plan::STATUS_WARMING =>
                    "run the warm phase again (or the whole boot when taken into service)",
                _ => "fail at once",
            }
        );
    }
    let instance_id = match deps.metadata.instance_id().await {
        Ok(id) => id,
        Err(error) => {
            let _ = writeln!(out, "Note: the metadata service did not answer ({error}).");
            fallback_instance_id(&deps.root).unwrap_or_else(|| "<instance-id>".to_owned())
        }
    };
    let (facts, notes) = gather_facts(deps, &config, &instance_id, false).await?;
    for note in notes {
        let _ = writeln!(out, "Note: {note}.");
    }
    let _ = writeln!(
        out,
        "Boot plan for instance {} of stack {} in {} (docker {}, login user {}); --dry-run changes nothing:",
        facts.instance_id, config.stack_name, config.region, facts.docker_version, facts.login_user
    );
    for warning in &config.warnings {
        let _ = writeln!(out, "Warning: {warning}");
    }
    let plan: BootPlan = plan::plan(&config, &facts);
    let _ = write!(out, "{plan}");
    Ok(out)
}

/// The instance id from the metadata service, retried per `backoff`.
pub(crate) async fn instance_id(
    metadata: &dyn InstanceMetadata,
    backoff: Backoff,
) -> anyhow::Result<String> {
    let fetch = |attempt: Attempt| async move {
        let Attempt { number, attempts } = attempt;
        info!(attempt = number, attempts, "Attempt {number} of {attempts} to fetch metadata...");
        let id = metadata.instance_id().await?;
        anyhow::ensure!(
            is_instance_id(&id),
            "the metadata service returned {id:?}, which is not an instance id"
        );
        Ok(id)
    };
    let id = retry(backoff, retry::always, retry::warn_retrying("Metadata request"), fetch)
        .await
        .with_context(|| {
        format!("Failed to fetch EC2 metadata after {} attempts", backoff.attempts)
    })?;
    info!(instance_id = %id, "Detected INSTANCE_ID={id}");
    Ok(id)
}

/// `i-` followed by 8 to 17 hexadecimal digits.
pub(crate) fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// The instance id recorded by cloud-init (or, on Nitro instances, the DMI asset tag),
/// for the failure path when the metadata service is unreachable.
pub(crate) fn fallback_instance_id(root: &Root) -> Option<String> {
    [CLOUD_INIT_INSTANCE_ID_PATH, "/sys/devices/virtual/dmi/id/board_asset_tag"]
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(root.path(path)).ok())
        .map(|text| text.trim().to_owned())
        .find(|id| is_instance_id(id))
}

/// What the plan depends on. `strict` (a real boot) fails on anything that cannot be
/// read; otherwise (a dry run) that becomes a note and is planned as unknown or absent.
async fn gather_facts(
    deps: &BootDeps,
    config: &BootConfig,
    instance_id: &str,
    strict: bool,
) -> anyhow::Result<(InstanceFacts, Vec<String>)> {
    let mut notes = Vec::new();
    let mut lenient = |error: anyhow::Error, what: &str| {
        if strict {
            Err(error)
        } else {
            notes.push(format!("{what} ({error:#})"));
            Ok(())
        }
    };
    let docker_version = match deps.system.docker_version().await {
        Ok(version) => version,
        Err(error) => {
            lenient(
                error.context("could not read the docker version"),
                "docker's version is unknown",
            )?;
            "unknown".to_owned()
        }
    };
    let storage = match storage_facts(deps.system.as_ref(), config).await {
        Ok(storage) => storage,
        Err(error) => {
            lenient(
                error,
                "the storage could not be inspected: planned as if nothing were mounted and there were no NVMe devices",
            )?;
            StorageFacts::default()
        }
    };
    let mut remap_ids = None;
    if config.docker.userns_remap {
        match lookup_remap_ids(deps.system.as_ref()).await {
            Ok(ids) => remap_ids = Some(ids),
            Err(error) => lenient(error, "the ids of user-namespace remapping are unknown")?,
        }
    }
    let read = |path: &str| std::fs::read_to_string(deps.root.path(path)).unwrap_or_default();
    let login_user = plan::login_user(&read("/etc/os-release")).to_owned();
    let login_home = plan::home_of(&read("/etc/passwd"), &login_user);
    let facts = InstanceFacts {
        os: INSTANCE_OS,
        instance_id: instance_id.to_owned(),
        docker_version,
        arch: plan::arch_name(std::env::consts::ARCH).to_owned(),
        login_user,
        login_home,
        storage,
        remap_ids,
    };
    Ok((facts, notes))
}

/// The mount table, the instance-store devices and what they hold: only what the
/// configuration needs (nothing at all with the defaults).
async fn storage_facts(system: &dyn System, config: &BootConfig) -> anyhow::Result<StorageFacts> {
    let mut facts = StorageFacts::default();
    if !storage::needs_mounts(config.mount_tmpfs_at_tmp, config.instance_storage) {
        return Ok(facts);
    }
    let mounts = system.mounts().await.context("could not read the mount table")?;
    facts.tmp_fs_type =
        storage::mounted_at(&mounts, storage::TMP_PATH).map(|mount| mount.fs_type.clone());
    facts.ephemeral = storage::mounted_at(&mounts, EPHEMERAL_PATH).cloned();
    if !config.instance_storage || facts.ephemeral.is_some() {
        return Ok(facts);
    }
    let listing = system.nvme_list().await.context("could not list the NVMe devices")?;
    facts.devices = storage::instance_store_devices(&listing);
    for device in storage::devices_to_probe(&facts.devices) {
        let contents = system
            .block_device(&device)
            .await
            .with_context(|| format!("could not tell what {device} holds"))?;
        facts.block_devices.insert(device, contents);
    }
    Ok(facts)
}

async fn lookup_remap_ids(system: &dyn System) -> anyhow::Result<RemapIds> {
    Ok(RemapIds {
        agent_uid: system.user_id(docker::REMAP_USER).await?,
        docker_gid: system.group_id(docker::REMAP_GROUP).await?,
    })
}

/// The failure path, and the launch lifecycle action the boot ends with.
struct Failing<'a> {
    deps: &'a BootDeps,
    context: FailureContext,
    instance_id: Option<String>,
    /// Whether a launch lifecycle action may be waiting for this boot: `false` only
    /// when the metadata service said there is no target lifecycle state.
    launch_action_may_wait: bool,
}

impl Failing<'_> {
    /// Completes the launch lifecycle action with `result`. Never fails the boot: with
    /// no launch hook on the group, or none waiting, the service refuses the call
    /// (logged), and any other failure leaves the action to its default result.
    async fn complete_launch_action(&self, result: LifecycleActionResult) {
        let Some(instance_id) = self.instance_id.as_deref().filter(|_| self.launch_action_may_wait)
        else {
            return;
        };
        let group_name = match crate::stop::group_name(self.deps.metadata.as_ref(), None).await {
            Ok(group) => group,
            Err(error) => {
                warn!(error = %format!("{error:#}"), "could not complete the launch lifecycle action: the instance's group is unknown");
                return;
            }
        };
        let action = LifecycleAction {
            group_name,
            hook_name: LAUNCH_HOOK_NAME.to_owned(),
            instance_id: instance_id.to_owned(),
            token: None,
        };
        match self.deps.scaling.complete_lifecycle_action(&action, result).await {
            Ok(()) => info!(
                group = %action.group_name,
                hook = %action.hook_name,
                result = result.as_api(),
                "completed the launch lifecycle action"
            ),
            // "No active Lifecycle Action found": no launch hook, or it is not waiting.
            Err(error) if error.kind == AwsErrorKind::Validation => {
                info!(error = %error, "no launch lifecycle action waits for this instance");
            }
            Err(error) => warn!(error = %error, "could not complete the launch lifecycle action"),
        }
    }

    async fn fail(&self, step: &str, error: &anyhow::Error) -> BootFailure {
        let message = format!("{error:#}");
        error!(step, error = %message, "boot failed");
        match &self.instance_id {
            Some(id) => match self.deps.scaling.set_instance_health(id, Health::Unhealthy).await {
                Ok(()) => info!(instance_id = %id, "marked the instance unhealthy"),
                Err(error) => warn!(error = %error, "Failed to set instance health to unhealthy."),
            },
            None => warn!(
                "Skipping instance health check - INSTANCE_ID not available (metadata service may be unavailable)"
            ),
        }
        match (&self.context.stack_name, &self.instance_id) {
            (Some(stack), Some(id)) if self.context.signals_cloudformation => {
                let signal = plan::stack_signal(stack, id, false);
                if let Err(error) = self.deps.system.perform(&signal).await {
                    warn!(error = %format!("{error:#}"), "Failed to send the failure signal to CloudFormation");
                }
            }
            _ if self.context.signals_cloudformation => {
                warn!(
                    "Skipping the CloudFormation signal: the stack name or instance id is unknown"
                );
            }
            _ => info!("Skipping cfn-signal (not deployed by CloudFormation)"),
        }
        // The group replaces the instance at once instead of waiting out the hook.
        self.complete_launch_action(LifecycleActionResult::Abandon).await;
        // The script's own status is what the original's boot exited with.
        let exit_code = error
            .downcast_ref::<ScriptFailed>()
            .and_then(|failed| failed.status.code())
            .and_then(|code| u8::try_from(code).ok())
            .filter(|code| *code != 0)
            .unwrap_or(1);
        BootFailure { step: step.to_owned(), message, exit_code }
    }
}

/// Runs plan operations, holding the agent token between reading and writing it.
struct Executor<'a> {
    deps: &'a BootDeps,
    token: Option<Secret>,
    progress: &'a Progress,
}

impl Executor<'_> {
    /// Runs steps in order; a failed best-effort step is a warning, any other failure
    /// takes the failure path.
    async fn run_steps(
        &mut self,
        steps: &[&Step],
        failing: &Failing<'_>,
    ) -> Result<(), BootFailure> {
        for step in steps {
            info!(step = step.name, "starting step");
            self.progress.step(step.name);
            if let Err(error) = self.run_step(&step.ops).await {
                if step.best_effort {
                    warn!(step = step.name, error = %format!("{error:#}"), "step failed; continuing");
                } else {
                    return Err(failing.fail(step.name, &error).await);
                }
            }
        }
        Ok(())
    }

    async fn run_step(&mut self, ops: &[Op]) -> anyhow::Result<()> {
        for op in ops {
            self.run(op).await?;
        }
        Ok(())
    }

    fn backends(&self) -> Backends {
        Backends {
            objects: Some(self.deps.objects.clone()),
            parameters: Some(self.deps.parameters.clone()),
            http: self.deps.http.clone(),
        }
    }

    async fn run(&mut self, op: &Op) -> anyhow::Result<()> {
        let root = &self.deps.root;
        match op {
            Op::CreateDir { path, mode } => files::create_dir(&root.path(path), *mode),
            Op::WriteFile { path, mode, content, show } => {
                files::write_atomic(&root.path(path), *mode, content.as_bytes())?;
                if *show {
                    info!("wrote {path} ({mode:04o}):\n{}", content.trim_end());
                } else {
                    info!("wrote {path} ({mode:04o})");
                }
                Ok(())
            }
            Op::Rename { from, to } => std::fs::rename(root.path(from), root.path(to))
                .with_context(|| format!("could not rename {from} to {to}")),
            Op::Symlink { link, target } => files::replace_symlink(&root.path(link), target),
            Op::SetFstabEntry { line } => {
                let path = root.path(FSTAB_PATH);
                let fstab = files::read_if_exists(&path)?.unwrap_or_default();
                match storage::fstab_with_entry(&fstab, line) {
                    Some(text) => {
                        files::rewrite(&path, 0o644, text.as_bytes())?;
                        info!("{FSTAB_PATH} now has the line {line:?}");
                    }
                    None => info!("{FSTAB_PATH} already has the line {line:?}"),
                }
                Ok(())
            }
            Op::ConfigureDockerDaemon { path, docker, data_root } => {
                configure_docker_daemon(root, path, docker, data_root.as_deref())
            }
            Op::Note(text) => {
                info!("{text}");
                Ok(())
            }
            Op::ReadAgentToken { parameter } => {
                let token = self.deps.parameters.get(parameter).await.with_context(|| {
                    format!("could not read the agent token from SSM parameter {parameter}")
                })?;
                self.token =
                    Some(agent_token(&token.value, &format!("SSM parameter {parameter:?}"))?);
                info!(parameter = %parameter, "read the agent token");
                Ok(())
            }
            Op::WriteAgentConfig { path, mode, config } => {
                let token =
                    self.token.as_ref().context("internal: the agent token was not read")?;
                let text =
                    config.render(token).context("refusing to write the agent configuration")?;
                files::write_atomic(&root.path(path), *mode, text.expose().as_bytes())?;
                info!(path = %path, "wrote the agent configuration (not shown: it holds the token)");
                Ok(())
            }
            Op::FetchParameter { parameter, path, mode } => {
                let value = self
                    .deps
                    .parameters
                    .get(parameter)
                    .await
                    .with_context(|| format!("could not read SSM parameter {parameter}"))?;
                let mut text = value.value.expose().to_owned();
                text.push('\n');
                files::write_atomic(&root.path(path), *mode, text.as_bytes())?;
                info!(parameter = %parameter, path = %path, "wrote SSM parameter to file");
                Ok(())
            }
            Op::Fetch { source, path, mode } => {
                fetch::fetch(source, &root.path(path), *mode, &self.backends())
                    .await
                    .with_context(|| format!("fetching {source} failed"))?;
                Ok(())
            }
            Op::SeedGitMirrors { bucket, dir } => {
                let report = crate::seed::seed_git_mirrors(
                    self.deps.objects.as_ref(),
                    bucket,
                    &root.path(dir),
                    self.deps.seed_limits,
                )
                .await;
                info!(
                    n_seeded = report.seeded.len(),
                    n_skipped = report.skipped.len(),
                    "git mirror seeding done"
                );
                Ok(())
            }
            Op::RunBootstrapScript { source, shell } => {
                self.run_bootstrap_script(source, *shell).await
            }
            Op::Copy { from, to } => {
                let target = root.path(to);
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("could not create {}", dir.display()))?;
                }
                std::fs::copy(root.path(from), &target)
                    .with_context(|| format!("could not copy {from} to {to}"))?;
                info!("copied {from} to {to}");
                Ok(())
            }
            Op::Refuse(reason) => Err(anyhow::anyhow!("{reason}")),
            Op::SetLogRetention { config_path, days } => {
                let reload = [
                    "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl",
                    "-a",
                    "fetch-config",
                    "-m",
                    "ec2",
                    "-s",
                    "-c",
                    &format!("file:{config_path}"),
                ]
                .map(str::to_owned)
                .to_vec();
                self.configure_cloudwatch_agent(config_path, None, Some(*days), reload).await
            }
            Op::ConfigureCloudWatchAgent { config_path, stack_name, retention_days, reload } => {
                self.configure_cloudwatch_agent(
                    config_path,
                    Some(stack_name),
                    *retention_days,
                    reload.clone(),
                )
                .await
            }
            Op::System(action) => self.deps.system.perform(action).await,
        }
    }

    /// Rewrites the CloudWatch agent's configuration: its log groups named after the
    /// stack (the `{stack_name}` placeholder) and `retention_in_days`, each when given,
    /// then has the agent read it again. A missing configuration (an image without
    /// the agent) is a warning.
    async fn configure_cloudwatch_agent(
        &self,
        config_path: &str,
        stack_name: Option<&str>,
        retention_days: Option<u32>,
        reload: Vec<String>,
    ) -> anyhow::Result<()> {
        let path = self.deps.root.path(config_path);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                warn!(path = %config_path, "the CloudWatch agent configuration is missing: its logs are not set up");
                return Ok(());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("could not read {config_path}"));
            }
        };
        let mut updated = match stack_name {
            Some(stack_name) => text.replace("{stack_name}", stack_name),
            None => text,
        };
        if let Some(days) = retention_days {
            updated = with_log_retention(&updated, days)
                .with_context(|| format!("could not update {config_path}"))?;
        }
        files::write_atomic(&path, 0o644, updated.as_bytes())?;
        self.deps.system.perform(&SystemAction::Run { command: reload }).await
    }

    /// Fetches the script into a root-only directory (never `/tmp`), runs it with its
    /// shell and the boot's environment, and removes it. Its output goes to the boot
    /// log.
    async fn run_bootstrap_script(
        &self,
        source: &SourceUri,
        shell: ScriptShell,
    ) -> anyhow::Result<()> {
        let dir = self.deps.root.path(INSTANCE_OS.private_dir());
        files::create_dir(&dir, 0o700)?;
        let script =
            dir.join(format!("bootstrap-script.{}{}", std::process::id(), shell.extension()));
        fetch::fetch(source, &script, 0o700, &self.backends())
            .await
            .with_context(|| format!("fetching the bootstrap script {source} failed"))?;
        info!(source = %source, "running the bootstrap script");
        let stdout = crate::platform::stderr_for_child()
            .context("could not pass the log to the bootstrap script")?;
        // The script gets the usual umask whatever the boot runs with, so that what it
        // installs is readable by the agent user, as under the original.
        // No limit of its own: the user's script may take long, and the boot's
        // deadline bounds it (its process group is killed when the boot gives up).
        let words = shell.command(&script.display().to_string());
        let (program, args) = words.split_first().context("internal: an empty script command")?;
        let mut command = tokio::process::Command::new(program);
        command.args(args).env_clear().envs(&self.deps.env).stdin(Stdio::null()).stdout(stdout);
        let status = crate::child::status(&mut command, None).await;
        let _ = std::fs::remove_file(&script);
        let status = status?;
        if !status.success() {
            return Err(ScriptFailed { script: source.to_string(), status }.into());
        }
        Ok(())
    }
}

/// Reads `daemon.json` (absent or empty: `{}`), sets the stack's keys and writes it
/// back atomically, only when it changes. A file that is not a JSON object fails the
/// step and is left exactly as it was.
fn configure_docker_daemon(
    root: &Root,
    path: &str,
    docker: &DockerSettings,
    data_root: Option<&str>,
) -> anyhow::Result<()> {
    let file = root.path(path);
    let text = files::read_if_exists(&file)?.unwrap_or_default();
    let current: serde_json::Value = if text.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("{path} is not valid JSON (left unchanged)"))?
    };
    let config = docker::daemon_json(&current, docker, data_root)
        .with_context(|| format!("{path} (left unchanged)"))?;
    if config == current {
        info!("{path} already has the stack's settings");
        return Ok(());
    }
    let rendered = docker::render_daemon_json(&config);
    files::rewrite(&file, 0o644, rendered.as_bytes())?;
    info!("wrote {path}:\n{}", rendered.trim_end());
    Ok(())
}

/// Sets `retention_in_days` on every entry of `logs.logs_collected.files.collect_list`.
pub(crate) fn with_log_retention(config: &str, days: u32) -> anyhow::Result<String> {
    let mut json: serde_json::Value = serde_json::from_str(config).context("not valid JSON")?;
    let list = json
        .pointer_mut("/logs/logs_collected/files/collect_list")
        .and_then(serde_json::Value::as_array_mut)
        .context("no logs.logs_collected.files.collect_list array")?;
    for entry in list {
        if let Some(entry) = entry.as_object_mut() {
            entry.insert("retention_in_days".to_owned(), serde_json::Value::from(days));
        }
    }
    let mut text = serde_json::to_string_pretty(&json).context("could not serialise")?;
    text.push('\n');
    Ok(text)
}

// The lifecycle-hook tests lay out a Linux instance; the runner they drive is the same
// on Windows, where the wine suite covers the Windows plan.
#[cfg(all(test, unix))]
mod lifecycle_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_instance_ids() {
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(is_instance_id("i-12345678"));
        assert!(!is_instance_id("i-xyz"));
        assert!(!is_instance_id("curl: (28) Connection timed out"));
        assert!(!is_instance_id(""));
    }

    #[test]
    fn fallback_reads_cloud_init() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert_eq!(fallback_instance_id(&root), None);
        files::write_atomic(&root.path(CLOUD_INIT_INSTANCE_ID_PATH), 0o644, b"i-0abc12345678\n")
            .unwrap();
        assert_eq!(fallback_instance_id(&root).as_deref(), Some("i-0abc12345678"));
    }

    #[test]
    fn adds_retention_to_every_log() {
        let config = r#"{"agent":{"run_as_user":"root"},"logs":{"logs_collected":{"files":{"collect_list":[
            {"file_path":"/var/log/a","log_group_name":"/a"},{"file_path":"/var/log/b","log_group_name":"/b"}]}}}}"#;
        let updated: serde_json::Value =
            serde_json::from_str(&with_log_retention(config, 14).unwrap()).unwrap();
        let list =
            updated.pointer("/logs/logs_collected/files/collect_list").unwrap().as_array().unwrap();
        assert!(list.iter().all(|entry| entry["retention_in_days"] == 14));
        assert_eq!(updated["agent"]["run_as_user"], "root");
        assert!(with_log_retention("{}", 7).unwrap_err().to_string().contains("collect_list"));
    }
}
