//! The one seam between the instance commands and the system they change.
//!
//! Every [`SystemAction`] (ownership, systemd, mounts, file systems, commands run as
//! another user, the stack signal) goes through [`System::perform`], and every question
//! about the system's state (docker's version, agent processes, the mount table, `nvme
//! list`, `blkid`, user and group ids) through the trait's other methods.
//! [`RealSystem`] performs and asks; [`RecordingSystem`] (`--record-actions FILE`)
//! appends each action to FILE as one JSON object per line instead, and answers from a
//! [`SystemState`] (`--system-state FILE`, or its defaults), so tests, the local demo
//! and operators trying a configuration run the whole boot, every branch of it, without
//! root and without touching the host.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use elastic_ci_aws::cloudformation::{ResourceSignal, StackSignal};
use elastic_ci_core::boot::action::SystemAction;
use elastic_ci_core::boot::plan::AGENT_USER;
use elastic_ci_core::boot::storage::{self, BlockDevice, Mount};
use elastic_ci_core::boot::windows;
use elastic_ci_core::{envfile, shell};
use serde::Deserialize;
use tracing::{info, warn};

use crate::child::{self, CommandTimeouts};
use crate::files::Root;
use crate::platform;

/// Performs (or records) system changes, and answers the few questions about the
/// system that the commands ask.
#[async_trait]
pub trait System: Send + Sync {
    async fn perform(&self, action: &SystemAction) -> anyhow::Result<()>;

    /// The docker version, such as `27.1.1`.
    async fn docker_version(&self) -> anyhow::Result<String>;

    /// Whether any process of the agent service is still running (the agent itself
    /// and its job executors): a process of the agent user running the image's agent
    /// binary inside the agent unit, never a job's process that merely has the name.
    async fn agent_processes_running(&self) -> anyhow::Result<bool>;

    /// The mount table (`/proc/self/mounts`).
    async fn mounts(&self) -> anyhow::Result<Vec<Mount>>;

    /// What `nvme list` prints.
    async fn nvme_list(&self) -> anyhow::Result<String>;

    /// What a device holds, from `blkid`.
    async fn block_device(&self, device: &str) -> anyhow::Result<BlockDevice>;

    /// The uid of `user`.
    async fn user_id(&self, user: &str) -> anyhow::Result<u32>;

    /// The gid of `group`.
    async fn group_id(&self, group: &str) -> anyhow::Result<u32>;
}

/// Changes the real system. Paths of actions are resolved under `root`.
pub struct RealSystem {
    root: Root,
    signals: Option<Arc<dyn StackSignal>>,
    /// The environment commands run with.
    env: HashMap<String, String>,
    timeouts: CommandTimeouts,
}

impl RealSystem {
    pub fn new(
        root: Root,
        signals: Option<Arc<dyn StackSignal>>,
        env: HashMap<String, String>,
    ) -> RealSystem {
        RealSystem { root, signals, env, timeouts: CommandTimeouts::DEFAULT }
    }

    /// The same with other command time limits.
    pub fn with_timeouts(self, timeouts: CommandTimeouts) -> RealSystem {
        RealSystem { timeouts, ..self }
    }

    async fn run(&self, program: &str, args: &[String]) -> anyhow::Result<()> {
        self.stdout_of(program, args).await.map(drop)
    }

    /// Runs a command and returns its stdout; a failure names the command and quotes
    /// its stderr.
    async fn stdout_of(&self, program: &str, args: &[String]) -> anyhow::Result<String> {
        let output = self.output(program, args).await?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(command_failed(program, args, &output))
        }
    }

    /// Runs a command within its time limit ([`CommandTimeouts`]).
    async fn output(&self, program: &str, args: &[String]) -> anyhow::Result<Output> {
        let mut command = tokio::process::Command::new(program);
        command.args(args).env_clear().envs(&self.env).stdin(Stdio::null());
        child::output(&mut command, self.timeouts.limit_for(program)).await
    }
}

impl RealSystem {
    /// The Windows-only actions, as the commands of
    /// [`elastic_ci_core::boot::windows::commands`]; a service's environment file is
    /// read here (systemd's `EnvironmentFile=` syntax, as on Linux).
    async fn perform_windows(&self, action: &SystemAction) -> anyhow::Result<()> {
        platform::require_windows(action)?;
        let mut assignments = Vec::new();
        if let SystemAction::InstallService { environment_file: Some(path), .. } = action {
            let text = std::fs::read_to_string(self.root.path(path))
                .with_context(|| format!("could not read {path}"))?;
            let parsed = envfile::parse(&text).with_context(|| format!("invalid {path}"))?;
            assignments =
                parsed.into_iter().map(|(name, value)| format!("{name}={value}")).collect();
        }
        let commands = windows::commands(action, &assignments)
            .with_context(|| format!("internal: no commands for {action}"))?;
        for command in commands {
            let (program, args) = command.split_first().context("internal: an empty command")?;
            // Not `run`: its error would quote the arguments, and a service's
            // environment may hold secrets.
            let output = self.output(program, args).await?;
            anyhow::ensure!(output.status.success(), "{program} failed ({})", output.status);
        }
        Ok(())
    }
}

fn command_failed(program: &str, args: &[String], output: &Output) -> anyhow::Error {
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::anyhow!(
        "{program} {} failed ({}): {}",
        args.join(" "),
        output.status,
        stderr.trim().replace('\n', " ")
    )
}

#[async_trait]
impl System for RealSystem {
    async fn perform(&self, action: &SystemAction) -> anyhow::Result<()> {
        info!(action = %action, "system action");
        match action {
            SystemAction::Chown { path, user, group, recursive } => {
                let path = self.root.path(path);
                let (user, group, recursive) = (user.clone(), group.clone(), *recursive);
                tokio::task::spawn_blocking(move || {
                    platform::chown_no_follow(&path, &user, &group, recursive)
                })
                .await
                .context("chown task failed")?
            }
            SystemAction::Systemctl { args } => self.run("systemctl", args).await,
            SystemAction::BindMount { source, target } => {
                let source = self.root.path(source).display().to_string();
                let target = self.root.path(target).display().to_string();
                self.run("mount", &["--bind".to_owned(), source, target]).await
            }
            SystemAction::RunAsUser { user, command } => {
                let command: Vec<String> = command.iter().map(|arg| shell::quote(arg)).collect();
                self.run("su", &["-l".to_owned(), user.clone(), "-c".to_owned(), command.join(" ")])
                    .await
            }
            SystemAction::WaitForDocker { attempts } => {
                let mut last_error = None;
                for attempt in 0..*attempts {
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    match self.run("docker", &["ps".to_owned()]).await {
                        Ok(()) => return Ok(()),
                        Err(error) => {
                            warn!(attempt = attempt + 1, error = %error, "docker is not ready yet");
                            last_error = Some(error);
                        }
                    }
                }
                Err(last_error.unwrap_or_else(|| anyhow::anyhow!("docker never answered")))
                    .context("docker is not running")
            }
            SystemAction::CheckSudoers { path } => {
                let path = self.root.path(path).display().to_string();
                self.run("visudo", &["-cf".to_owned(), path]).await
            }
            SystemAction::Run { command } => {
                let (program, args) =
                    command.split_first().context("empty command in a run action")?;
                self.run(program, args).await
            }
            SystemAction::WriteRaidConfig { path, array, devices } => {
                let scan = self
                    .stdout_of(
                        "mdadm",
                        &["--detail".to_owned(), "--brief".to_owned(), array.clone()],
                    )
                    .await?;
                let content = format!("DEVICE {}\n{}", devices.join(" "), scan.trim_end());
                crate::files::write_atomic(
                    &self.root.path(path),
                    0o644,
                    format!("{content}\n").as_bytes(),
                )?;
                info!("wrote {path}:\n{content}");
                Ok(())
            }
            SystemAction::InstallService { .. }
            | SystemAction::StartService { .. }
            | SystemAction::RestrictAccess { .. }
            | SystemAction::AddToGroup { .. } => self.perform_windows(action).await,
            SystemAction::SignalStack { stack_name, logical_resource_id, unique_id, success } => {
                let signals = self
                    .signals
                    .as_ref()
                    .context("no CloudFormation client to send the stack signal with")?;
                signals
                    .signal(&ResourceSignal {
                        stack_name: stack_name.clone(),
                        logical_resource_id: logical_resource_id.clone(),
                        unique_id: unique_id.clone(),
                        success: *success,
                    })
                    .await?;
                Ok(())
            }
        }
    }

    async fn docker_version(&self) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new("docker");
        command.arg("--version").stdin(Stdio::null());
        let output = child::output(&mut command, self.timeouts.limit_for("docker"))
            .await
            .context("could not run docker --version (is docker installed?)")?;
        anyhow::ensure!(output.status.success(), "docker --version failed ({})", output.status);
        let text = String::from_utf8_lossy(&output.stdout);
        parse_docker_version(&text)
            .with_context(|| format!("unexpected docker --version output {:?}", text.trim()))
    }

    async fn agent_processes_running(&self) -> anyhow::Result<bool> {
        let n_running = tokio::task::spawn_blocking(|| {
            platform::agent_processes_of(AGENT_USER, Path::new("/proc"))
        })
        .await
        .context("process scan failed")??;
        Ok(n_running > 0)
    }

    async fn mounts(&self) -> anyhow::Result<Vec<Mount>> {
        let text = tokio::fs::read_to_string("/proc/self/mounts")
            .await
            .context("could not read the mount table /proc/self/mounts")?;
        Ok(storage::parse_mounts(&text))
    }

    async fn nvme_list(&self) -> anyhow::Result<String> {
        // Without any NVMe controller (older instance types) there is nothing to list,
        // and nvme-cli versions differ in how they fail then.
        let controllers = std::fs::read_dir("/sys/class/nvme").map_or(0, Iterator::count);
        if controllers == 0 {
            return Ok(String::new());
        }
        self.stdout_of("nvme", &["list".to_owned()]).await
    }

    async fn block_device(&self, device: &str) -> anyhow::Result<BlockDevice> {
        if !tokio::fs::try_exists(device).await.unwrap_or(false) {
            return Ok(BlockDevice::Absent);
        }
        let args = ["-o", "value", "-s", "TYPE", device].map(str::to_owned);
        let output = self.output("blkid", &args).await?;
        let fs_type = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        match output.status.code() {
            Some(0) if !fs_type.is_empty() => Ok(BlockDevice::Formatted(fs_type)),
            // blkid exits 2 when it recognises nothing on the device.
            Some(0 | 2) => Ok(BlockDevice::Blank),
            _ => Err(command_failed("blkid", &args, &output)),
        }
    }

    async fn user_id(&self, user: &str) -> anyhow::Result<u32> {
        platform::uid_of(user)
    }

    async fn group_id(&self, group: &str) -> anyhow::Result<u32> {
        platform::gid_of(group)
    }
}

/// What a [`RecordingSystem`] answers about the system, read from `--system-state
/// FILE` (JSON; every field optional):
///
/// ```json
/// {
///   "docker_version": "27.1.1",
///   "mounts": [{"source": "tmpfs", "target": "/tmp", "fs_type": "tmpfs"}],
///   "nvme_list": "/dev/nvme1n1  AWS1 Amazon EC2 NVMe Instance Storage  1 …",
///   "block_devices": {"/dev/nvme1n1": "ext4", "/dev/nvme2n1": null},
///   "users": {"buildkite-agent": 2000},
///   "groups": {"docker": 992}
/// }
/// ```
///
/// The defaults: docker version `unknown`, nothing mounted, no NVMe devices, no block
/// devices (a device in `block_devices` with `null` exists but holds no file system),
/// `buildkite-agent` uid 2000 (the image's) and `docker` gid 992 (an example: the
/// image's is whatever the docker package got). Agent processes never run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SystemState {
    pub(crate) docker_version: String,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) nvme_list: String,
    pub(crate) block_devices: BTreeMap<String, Option<String>>,
    pub(crate) users: BTreeMap<String, u32>,
    pub(crate) groups: BTreeMap<String, u32>,
}

impl Default for SystemState {
    fn default() -> SystemState {
        SystemState {
            docker_version: "unknown".to_owned(),
            mounts: Vec::new(),
            nvme_list: String::new(),
            block_devices: BTreeMap::new(),
            users: BTreeMap::from([(AGENT_USER.to_owned(), 2000)]),
            groups: BTreeMap::from([("docker".to_owned(), 992)]),
        }
    }
}

impl SystemState {
    /// Reads a state file; users and groups it does not name keep their defaults.
    pub(crate) fn load(path: &Path) -> anyhow::Result<SystemState> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the system state {}", path.display()))?;
        let mut state: SystemState = serde_json::from_str(&text)
            .with_context(|| format!("invalid system state {}", path.display()))?;
        let defaults = SystemState::default();
        for (name, id) in defaults.users {
            state.users.entry(name).or_insert(id);
        }
        for (name, id) in defaults.groups {
            state.groups.entry(name).or_insert(id);
        }
        Ok(state)
    }
}

/// Writes every action to a file, one JSON object per line, and changes nothing.
/// Questions are answered from a [`SystemState`].
pub(crate) struct RecordingSystem {
    file: Mutex<std::fs::File>,
    path: PathBuf,
    state: SystemState,
}

impl RecordingSystem {
    /// Appends to `path`, creating it if needed.
    pub(crate) fn open(path: &Path) -> anyhow::Result<RecordingSystem> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("could not open {} to record actions", path.display()))?;
        Ok(RecordingSystem {
            file: Mutex::new(file),
            path: path.to_owned(),
            state: SystemState::default(),
        })
    }

    /// Answers questions from `state` instead of the defaults.
    pub(crate) fn with_state(self, state: SystemState) -> RecordingSystem {
        RecordingSystem { state, ..self }
    }
}

#[async_trait]
impl System for RecordingSystem {
    async fn perform(&self, action: &SystemAction) -> anyhow::Result<()> {
        info!(action = %action, "recorded system action");
        let mut line = serde_json::to_string(action).context("could not serialise an action")?;
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .with_context(|| format!("could not record an action in {}", self.path.display()))
    }

    async fn docker_version(&self) -> anyhow::Result<String> {
        Ok(self.state.docker_version.clone())
    }

    async fn agent_processes_running(&self) -> anyhow::Result<bool> {
        Ok(false)
    }

    async fn mounts(&self) -> anyhow::Result<Vec<Mount>> {
        Ok(self.state.mounts.clone())
    }

    async fn nvme_list(&self) -> anyhow::Result<String> {
        Ok(self.state.nvme_list.clone())
    }

    async fn block_device(&self, device: &str) -> anyhow::Result<BlockDevice> {
        Ok(match self.state.block_devices.get(device) {
            None => BlockDevice::Absent,
            Some(None) => BlockDevice::Blank,
            Some(Some(fs_type)) => BlockDevice::Formatted(fs_type.clone()),
        })
    }

    async fn user_id(&self, user: &str) -> anyhow::Result<u32> {
        self.state
            .users
            .get(user)
            .copied()
            .with_context(|| format!("no user {user} in the system state"))
    }

    async fn group_id(&self, group: &str) -> anyhow::Result<u32> {
        self.state
            .groups
            .get(group)
            .copied()
            .with_context(|| format!("no group {group} in the system state"))
    }
}

/// `Docker version 27.1.1, build 6312585` → `27.1.1`.
pub(crate) fn parse_docker_version(text: &str) -> Option<String> {
    let version = text.trim().strip_prefix("Docker version ")?.split_whitespace().next()?;
    let version = version.trim_end_matches(',');
    (!version.is_empty()
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '~')))
    .then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_versions() {
        assert_eq!(
            parse_docker_version("Docker version 27.1.1, build 6312585\n").as_deref(),
            Some("27.1.1")
        );
        assert_eq!(
            parse_docker_version("Docker version 25.0.8-ce, build x").as_deref(),
            Some("25.0.8-ce")
        );
        assert_eq!(parse_docker_version("docker: not found"), None);
        assert_eq!(parse_docker_version("Docker version $(id), x"), None);
    }

    #[tokio::test]
    async fn records_actions_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actions.jsonl");
        let recorder = RecordingSystem::open(&path).unwrap();
        recorder.perform(&SystemAction::chown("/etc/x", "root", "buildkite-agent")).await.unwrap();
        recorder.perform(&SystemAction::systemctl(&["daemon-reload"])).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        expect_test::expect![[r#"
            {"action":"chown","path":"/etc/x","user":"root","group":"buildkite-agent","recursive":false}
            {"action":"systemctl","args":["daemon-reload"]}
        "#]]
        .assert_eq(&text);
        assert_eq!(recorder.docker_version().await.unwrap(), "unknown");
        assert!(!recorder.agent_processes_running().await.unwrap());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_real_system_answers_from_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let env = HashMap::from([("PATH".to_owned(), "/usr/sbin:/usr/bin:/sbin:/bin".to_owned())]);
        let system = RealSystem::new(Root::new("/"), None, env);
        assert!(system.mounts().await.unwrap().iter().any(|mount| mount.target == "/proc"));
        assert_eq!(system.user_id("root").await.unwrap(), 0);
        assert_eq!(system.group_id("root").await.unwrap(), 0);
        assert!(system.user_id("no-such-user-here").await.is_err());

        // blkid reads a file like a device: nothing, then ext4 once mkfs made one.
        let missing = dir.path().join("missing").display().to_string();
        assert_eq!(system.block_device(&missing).await.unwrap(), BlockDevice::Absent);
        let image = dir.path().join("disk.img");
        std::fs::write(&image, vec![0u8; 4 << 20]).unwrap();
        let image = image.display().to_string();
        assert_eq!(system.block_device(&image).await.unwrap(), BlockDevice::Blank);
        let mkfs = ["mkfs.ext4", "-F", "-E", "nodiscard", &image].map(str::to_owned).to_vec();
        system.perform(&SystemAction::Run { command: mkfs }).await.unwrap();
        assert_eq!(
            system.block_device(&image).await.unwrap(),
            BlockDevice::Formatted("ext4".to_owned())
        );
    }

    #[test]
    fn system_state_files_keep_default_ids_and_refuse_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, r#"{"groups": {"docker": 5}, "block_devices": {"/dev/x": null}}"#)
            .unwrap();
        let state = SystemState::load(&path).unwrap();
        assert_eq!(state.groups["docker"], 5);
        assert_eq!(state.users[AGENT_USER], 2000);
        assert_eq!(state.docker_version, "unknown");
        std::fs::write(&path, r#"{"mounts": [{"source": "a", "target": "/b"}]}"#).unwrap();
        let error = format!("{:#}", SystemState::load(&path).unwrap_err());
        assert!(error.contains("missing field `fs_type`"), "{error}");
    }
}
