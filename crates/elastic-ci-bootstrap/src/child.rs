//! Child processes with a time limit.
//!
//! A hung `dockerd` makes `docker ps` wait forever, and so would the boot, while the
//! instance counts as capacity. Every command the instance binary runs therefore has a
//! limit ([`CommandTimeouts`]); on expiry its whole process group is killed (a command
//! that is a script would otherwise leave its own children behind, holding the output
//! pipes open) and the command fails, naming itself and the limit.
//!
//! Each child runs in a process group of its own, and a [`GroupGuard`] kills that group
//! when the wait is abandoned for any reason: the limit, or the boot's deadline
//! dropping the whole boot.

use std::process::{ExitStatus, Output};
use std::time::Duration;

use anyhow::Context;

use crate::platform;

/// How long commands may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandTimeouts {
    /// Any command not listed as slow (docker, systemctl, mount, visudo, su, nvme,
    /// blkid, …).
    pub(crate) default: Duration,
    /// `mkfs.*` and `mdadm`, whose time grows with the size of the disks.
    pub(crate) slow: Duration,
}

impl CommandTimeouts {
    /// Five minutes covers a `systemctl restart docker` on a loaded instance; formatting
    /// or assembling large instance storage gets half an hour.
    pub(crate) const DEFAULT: CommandTimeouts =
        CommandTimeouts { default: Duration::from_secs(300), slow: Duration::from_secs(1800) };

    /// The same limit for every command.
    pub fn uniform(limit: Duration) -> CommandTimeouts {
        CommandTimeouts { default: limit, slow: limit }
    }

    /// The limit for `program`.
    pub(crate) fn limit_for(&self, program: &str) -> Duration {
        let name = program.rsplit('/').next().unwrap_or(program);
        if name.starts_with("mkfs") || name == "mdadm" { self.slow } else { self.default }
    }
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard {
    pgid: Option<u32>,
}

impl GroupGuard {
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // The group may be gone already; there is nothing else to do either way.
            platform::kill_group(pgid);
        }
    }
}

/// Spawns `command` in a process group of its own, guarded.
fn spawn(
    command: &mut tokio::process::Command,
    program: &str,
) -> anyhow::Result<(tokio::process::Child, GroupGuard)> {
    let (child, pgid) =
        platform::spawn_grouped(command).with_context(|| format!("could not run {program}"))?;
    Ok((child, GroupGuard { pgid }))
}

fn timed_out(program: &str, limit: Duration) -> anyhow::Error {
    anyhow::anyhow!("{program} did not finish within {limit:?} and was killed")
}

/// Runs `command` to completion with its output captured, for at most `limit`.
pub(crate) async fn output(
    command: &mut tokio::process::Command,
    limit: Duration,
) -> anyhow::Result<Output> {
    let program = command.as_std().get_program().to_string_lossy().into_owned();
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let (child, mut guard) = spawn(command, &program)?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(output) => {
            guard.disarm();
            output.with_context(|| format!("could not wait for {program}"))
        }
        Err(_) => Err(timed_out(&program, limit)),
    }
}

/// Runs `command` to completion, its output going where the command says, for at most
/// `limit` when given (without one it still ends with the boot: dropping the wait
/// kills the group).
pub(crate) async fn status(
    command: &mut tokio::process::Command,
    limit: Option<Duration>,
) -> anyhow::Result<ExitStatus> {
    let program = command.as_std().get_program().to_string_lossy().into_owned();
    let (mut child, mut guard) = spawn(command, &program)?;
    let status = match limit {
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status,
            Err(_) => return Err(timed_out(&program, limit)),
        },
        None => child.wait().await,
    };
    guard.disarm();
    status.with_context(|| format!("could not wait for {program}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_commands_get_the_long_limit() {
        let timeouts = CommandTimeouts::DEFAULT;
        assert_eq!(timeouts.limit_for("mkfs.ext4"), timeouts.slow);
        assert_eq!(timeouts.limit_for("/usr/sbin/mdadm"), timeouts.slow);
        assert_eq!(timeouts.limit_for("docker"), timeouts.default);
        assert_eq!(timeouts.limit_for("systemctl"), timeouts.default);
    }

    /// A script that never ends, and a child of it that holds its output open, are
    /// both killed when the limit passes.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_command_that_never_ends_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let mut command = tokio::process::Command::new("bash");
        command.args(["-c", "sleep 1000 & echo $! > \"$0\"; wait", pid_file.to_str().unwrap()]);
        let error = output(&mut command, Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(error.to_string(), "bash did not finish within 300ms and was killed");
        let sleeper: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // Killed processes are reaped by their parent (init for the orphaned sleep);
        // wait until it is gone rather than for a fixed time.
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat"));
            if stat.is_err() || stat.is_ok_and(|stat| stat.contains(") Z ")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the script's child {sleeper} was not killed");
    }
}
