//! The one seam between the instance commands and the system they change.
//!
//! Every [`SystemAction`] (ownership, systemd, mounts, commands run as another user,
//! the stack signal) goes through [`System::perform`]. [`RealSystem`] performs it;
//! [`RecordingSystem`] (`--record-actions FILE`) appends it to FILE as one JSON object
//! per line instead, so tests, the local demo and operators trying a configuration run
//! the whole boot without root and without touching the host.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use elastic_ci_aws::cloudformation::{ResourceSignal, StackSignal};
use elastic_ci_core::boot::action::SystemAction;
use elastic_ci_core::boot::plan::AGENT_USER;
use elastic_ci_core::shell;
use tracing::{info, warn};

use crate::files::Root;

/// Performs (or records) system changes, and answers the few questions about the
/// system that the commands ask.
#[async_trait]
pub trait System: Send + Sync {
    async fn perform(&self, action: &SystemAction) -> anyhow::Result<()>;

    /// The docker version, such as `27.1.1`.
    async fn docker_version(&self) -> anyhow::Result<String>;

    /// Whether any `buildkite-agent` process of the agent user is still running (the
    /// agent itself and its job executors).
    async fn agent_processes_running(&self) -> anyhow::Result<bool>;
}

/// Changes the real system. Paths of actions are resolved under `root`.
pub struct RealSystem {
    root: Root,
    signals: Option<Arc<dyn StackSignal>>,
    /// The environment commands run with.
    env: HashMap<String, String>,
}

impl RealSystem {
    pub fn new(
        root: Root,
        signals: Option<Arc<dyn StackSignal>>,
        env: HashMap<String, String>,
    ) -> RealSystem {
        RealSystem { root, signals, env }
    }

    async fn run(&self, program: &str, args: &[String]) -> anyhow::Result<()> {
        let output = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("could not run {program}"))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            anyhow::bail!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                output.status,
                stderr.trim().replace('\n', " ")
            )
        }
    }
}

#[async_trait]
impl System for RealSystem {
    async fn perform(&self, action: &SystemAction) -> anyhow::Result<()> {
        info!(action = %action, "system action");
        match action {
            SystemAction::Chown { path, user, group, recursive } => {
                let path = self.root.path(path);
                let (uid, gid) = ids_of(user, group)?;
                let recursive = *recursive;
                tokio::task::spawn_blocking(move || chown_no_follow(&path, uid, gid, recursive))
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
        let output = tokio::process::Command::new("docker")
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .context("could not run docker --version (is docker installed?)")?;
        anyhow::ensure!(output.status.success(), "docker --version failed ({})", output.status);
        let text = String::from_utf8_lossy(&output.stdout);
        parse_docker_version(&text)
            .with_context(|| format!("unexpected docker --version output {:?}", text.trim()))
    }

    async fn agent_processes_running(&self) -> anyhow::Result<bool> {
        let (uid, _) = ids_of(AGENT_USER, AGENT_USER)?;
        tokio::task::spawn_blocking(move || processes_named("buildkite-agent", uid))
            .await
            .context("process scan failed")?
    }
}

/// Writes every action to a file, one JSON object per line, and changes nothing.
/// Questions get fixed answers: docker version `unknown`, no agent processes.
pub struct RecordingSystem {
    file: Mutex<std::fs::File>,
    path: PathBuf,
}

impl RecordingSystem {
    /// Appends to `path`, creating it if needed.
    pub fn open(path: &Path) -> anyhow::Result<RecordingSystem> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("could not open {} to record actions", path.display()))?;
        Ok(RecordingSystem { file: Mutex::new(file), path: path.to_owned() })
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
        Ok("unknown".to_owned())
    }

    async fn agent_processes_running(&self) -> anyhow::Result<bool> {
        Ok(false)
    }
}

/// `Docker version 27.1.1, build 6312585` → `27.1.1`.
pub fn parse_docker_version(text: &str) -> Option<String> {
    let version = text.trim().strip_prefix("Docker version ")?.split_whitespace().next()?;
    let version = version.trim_end_matches(',');
    (!version.is_empty()
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '~')))
    .then(|| version.to_owned())
}

/// The uid of `user` and gid of `group`.
pub fn ids_of(user: &str, group: &str) -> anyhow::Result<(u32, u32)> {
    let uid = nix::unistd::User::from_name(user)
        .with_context(|| format!("could not look up user {user}"))?
        .with_context(|| format!("no user {user}"))?
        .uid
        .as_raw();
    let gid = nix::unistd::Group::from_name(group)
        .with_context(|| format!("could not look up group {group}"))?
        .with_context(|| format!("no group {group}"))?
        .gid
        .as_raw();
    Ok((uid, gid))
}

/// Changes owners without ever following a symlink: a link itself is changed, never
/// its target, and a recursive walk does not descend through links.
fn chown_no_follow(path: &Path, uid: u32, gid: u32, recursive: bool) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    if !recursive {
        return Ok(());
    }
    let metadata =
        std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(path).with_context(|| format!("read {}", path.display()))? {
        let entry = entry.with_context(|| format!("read {}", path.display()))?;
        chown_no_follow(&entry.path(), uid, gid, true)?;
    }
    Ok(())
}

/// Whether a process whose name is `name` runs as `uid`, from `/proc`.
fn processes_named(name: &str, uid: u32) -> anyhow::Result<bool> {
    for entry in std::fs::read_dir("/proc").context("could not list /proc")? {
        let Ok(entry) = entry else { continue };
        if !entry.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        // A process may exit between listing and reading: skip it.
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
        if comm.trim_end() != name {
            continue;
        }
        if std::fs::metadata(entry.path()).is_ok_and(|metadata| metadata.uid() == uid) {
            return Ok(true);
        }
    }
    Ok(false)
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

    #[test]
    fn chown_never_follows_links() {
        // Changing to the current owner works without privileges and still exercises
        // the walk; the link's target outside the tree must keep its own owner.
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/file"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a/link")).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let target_uid = if uid == 0 { 4321 } else { uid };
        chown_no_follow(dir.path(), target_uid, gid, true).unwrap();
        let owner = |path: &Path| std::fs::symlink_metadata(path).unwrap().uid();
        assert_eq!(owner(&dir.path().join("a/b/file")), target_uid);
        assert_eq!(owner(&dir.path().join("a/link")), target_uid);
        assert_eq!(owner(outside.path()), uid);
    }
}
