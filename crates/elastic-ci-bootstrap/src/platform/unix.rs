//! The Linux side of [`crate::platform`].

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use elastic_ci_core::boot::action::SystemAction;
use elastic_ci_core::boot::plan::InstanceOs;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The operating system the boot plans for.
pub(crate) const INSTANCE_OS: InstanceOs = InstanceOs::Linux;

/// Makes a temporary file private (0600) from its creation on.
pub(crate) fn private_temp_file(builder: &mut tempfile::Builder<'_, '_>) {
    builder.permissions(std::fs::Permissions::from_mode(0o600));
}

/// Sets the permission bits of `path`.
pub(crate) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The permission bits of a file.
pub(crate) fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    metadata.permissions().mode() & 0o7777
}

/// Creates a symbolic link `link` → `target`.
pub(crate) fn symlink(target: &str, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Creates `path`, which must not exist yet (not even as a dangling link), with
/// `mode`, never through a link (`O_NOFOLLOW`).
pub(crate) fn create_new_file(path: &Path, mode: u32) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Starts `command` as the leader of a process group of its own; the id returned
/// is what [`kill_group`] takes.
pub(crate) fn spawn_grouped(
    command: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, Option<u32>)> {
    let child = command.process_group(0).kill_on_drop(true).spawn()?;
    let id = child.id();
    Ok((child, id))
}

/// Kills the process group started by [`spawn_grouped`]; it may be gone already.
pub(crate) fn kill_group(id: u32) {
    if let Ok(pgid) = i32::try_from(id) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// A duplicate of stderr, so a child's stdout joins the log instead of our stdout
/// (which is reserved for data).
pub(crate) fn stderr_for_child() -> std::io::Result<Stdio> {
    use std::os::fd::AsFd;
    Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
}

/// Free bytes for unprivileged users, and free inodes when the file system counts
/// them, of the file system holding `path`.
pub(crate) fn free_space(path: &Path) -> anyhow::Result<(u64, Option<u64>)> {
    let stats = nix::sys::statvfs::statvfs(path)
        .with_context(|| format!("could not read the free space of {}", path.display()))?;
    // The statvfs counts are u64 on the Linux targets the stack runs on.
    let available_bytes = stats.blocks_available().saturating_mul(stats.fragment_size());
    Ok((available_bytes, (stats.files() > 0).then(|| stats.files_available())))
}

/// The uid of `user`.
pub(crate) fn uid_of(user: &str) -> anyhow::Result<u32> {
    Ok(nix::unistd::User::from_name(user)
        .with_context(|| format!("could not look up user {user}"))?
        .with_context(|| format!("no user {user}"))?
        .uid
        .as_raw())
}

/// The gid of `group`.
pub(crate) fn gid_of(group: &str) -> anyhow::Result<u32> {
    Ok(nix::unistd::Group::from_name(group)
        .with_context(|| format!("could not look up group {group}"))?
        .with_context(|| format!("no group {group}"))?
        .gid
        .as_raw())
}

/// Changes owners without ever following a symlink: a link itself is changed, never
/// its target, and a recursive walk does not descend through links.
pub(crate) fn chown_no_follow(
    path: &Path,
    user: &str,
    group: &str,
    recursive: bool,
) -> anyhow::Result<()> {
    let (uid, gid) = (uid_of(user)?, gid_of(group)?);
    chown_ids(path, uid, gid, recursive)
}

fn chown_ids(path: &Path, uid: u32, gid: u32, recursive: bool) -> anyhow::Result<()> {
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
        chown_ids(&entry.path(), uid, gid, true)?;
    }
    Ok(())
}

/// How many processes of the agent service `user` runs (0 when there is no such
/// user).
/// `proc` is the process table, `/proc`.
pub(crate) fn agent_processes_of(user: &str, proc: &Path) -> anyhow::Result<usize> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(user)) => count_agent_processes(proc, user.uid.as_raw()),
        Ok(None) => Ok(0),
        Err(error) => Err(anyhow::anyhow!("could not look up user {user}: {error}")),
    }
}

/// Where the image installs the agent: `/usr/bin/buildkite-agent-<channel>`, one per
/// release channel, and the `/usr/bin/buildkite-agent` link the boot points at one.
const AGENT_BINARY_DIR: &str = "/usr/bin";
const AGENT_BINARY_NAME: &str = "buildkite-agent";

/// How many live processes under `proc` (a `/proc` tree) are the agent service's: they
/// run as `uid`, run the image's agent binary, and sit in an agent unit's control group.
/// The name alone proves nothing: a job can copy any program to a file called
/// `buildkite-agent` and leave it running after the job, which would keep the instance
/// (and its lifecycle hook) alive for ever.
fn count_agent_processes(proc: &Path, uid: u32) -> anyhow::Result<usize> {
    let mut n_processes = 0;
    let entries =
        std::fs::read_dir(proc).with_context(|| format!("could not list {}", proc.display()))?;
    for entry in entries {
        let Ok(entry) = entry else { continue };
        if !entry.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        // A process may exit between listing and reading: skip it.
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else { continue };
        if !is_agent_binary(&exe) {
            continue;
        }
        let Ok(cgroup) = std::fs::read_to_string(entry.path().join("cgroup")) else { continue };
        if !in_agent_unit(&cgroup) {
            continue;
        }
        // A zombie has exited already.
        let exited = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.starts_with(" Z"))
        });
        if !exited && std::fs::metadata(entry.path()).is_ok_and(|metadata| metadata.uid() == uid) {
            n_processes += 1;
        }
    }
    Ok(n_processes)
}

/// `/usr/bin/buildkite-agent` or `/usr/bin/buildkite-agent-<channel>`, also once an
/// upgrade replaced the file (the kernel then adds ` (deleted)`). Only root writes
/// there.
fn is_agent_binary(exe: &Path) -> bool {
    let text = exe.to_string_lossy();
    let path = Path::new(text.strip_suffix(" (deleted)").unwrap_or(&text));
    path.parent() == Some(Path::new(AGENT_BINARY_DIR))
        && path.file_name().and_then(|name| name.to_str()).is_some_and(|name| {
            name.strip_prefix(AGENT_BINARY_NAME)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
}

/// Whether a `/proc/<pid>/cgroup` text puts the process in the agent unit
/// (`buildkite-agent.service`, or an instance `buildkite-agent@….service`).
fn in_agent_unit(cgroup: &str) -> bool {
    cgroup.lines().filter_map(|line| line.rsplit_once(':').map(|(_, path)| path)).any(|path| {
        path.split('/').any(|unit| {
            unit == "buildkite-agent.service"
                || (unit.starts_with("buildkite-agent@") && unit.ends_with(".service"))
        })
    })
}

/// The system's trust store, which already honours `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`.
pub(crate) fn root_certificates(
    _env: &std::collections::HashMap<String, String>,
) -> anyhow::Result<Option<Vec<reqwest::Certificate>>> {
    Ok(None)
}

/// Services, access lists and local groups are Windows actions.
pub(crate) fn require_windows(action: &SystemAction) -> anyhow::Result<()> {
    Err(super::unsupported(&format!("`{action}`")))
}

/// `fix-permissions` (see [`crate::fixperms`]): the exit status and message of a
/// failure.
pub(crate) fn fix_permissions(args: &[String]) -> Result<(), (u8, String)> {
    crate::fixperms::run("fix-permissions", args).map_err(|failure| (failure.code, failure.message))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        chown_ids(dir.path(), target_uid, gid, true).unwrap();
        let owner = |path: &Path| std::fs::symlink_metadata(path).unwrap().uid();
        assert_eq!(owner(&dir.path().join("a/b/file")), target_uid);
        assert_eq!(owner(&dir.path().join("a/link")), target_uid);
        assert_eq!(owner(outside.path()), uid);
    }
    /// A fake `/proc` entry: its executable, control group and state.
    fn fake_process(proc: &Path, pid: u32, exe: &str, cgroup: &str, state: char) {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(exe, dir.join("exe")).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        std::fs::write(dir.join("comm"), "buildkite-agent\n").unwrap();
        std::fs::write(dir.join("stat"), format!("{pid} (buildkite-agent) {state} 1 2 3")).unwrap();
    }

    const AGENT_UNIT: &str = "0::/system.slice/buildkite-agent.service\n";

    #[test]
    fn only_the_agent_services_own_processes_count() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        let uid = nix::unistd::geteuid().as_raw();
        std::fs::create_dir_all(proc.join("self")).unwrap();
        // A job's program copied to a file named like the agent, daemonized: it stays
        // in the agent unit's control group, under the agent's name, for ever.
        fake_process(
            proc,
            4242,
            "/var/lib/buildkite-agent/builds/a/o/p/buildkite-agent",
            AGENT_UNIT,
            'S',
        );
        // The real binary outside the agent unit (a login session).
        fake_process(
            proc,
            4243,
            "/usr/bin/buildkite-agent-stable",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            'S',
        );
        // An agent that has exited.
        fake_process(proc, 4244, "/usr/bin/buildkite-agent-stable", AGENT_UNIT, 'Z');
        assert_eq!(count_agent_processes(proc, uid).unwrap(), 0);

        fake_process(proc, 100, "/usr/bin/buildkite-agent-stable", AGENT_UNIT, 'S');
        assert_eq!(count_agent_processes(proc, uid).unwrap(), 1);
        // Under the resource-limits slice, after an upgrade replaced the binary.
        fake_process(
            proc,
            101,
            "/usr/bin/buildkite-agent-beta (deleted)",
            "0::/buildkite-agent.slice/buildkite-agent.service\n",
            'R',
        );
        assert_eq!(count_agent_processes(proc, uid).unwrap(), 2);
        assert_eq!(count_agent_processes(proc, uid + 1).unwrap(), 0, "another user's");
    }

    #[test]
    fn recognises_the_agent_binaries_and_units() {
        assert!(is_agent_binary(Path::new("/usr/bin/buildkite-agent")));
        assert!(is_agent_binary(Path::new("/usr/bin/buildkite-agent-edge")));
        assert!(!is_agent_binary(Path::new("/usr/bin/buildkite-agentx")));
        assert!(!is_agent_binary(Path::new("/tmp/usr/bin/buildkite-agent")));
        assert!(!is_agent_binary(Path::new("/bin/sleep")));
        assert!(in_agent_unit("0::/system.slice/buildkite-agent@2.service\n"));
        assert!(in_agent_unit("12:pids:/system.slice/buildkite-agent.service\n"));
        assert!(!in_agent_unit("0::/system.slice/buildkite-agent-drain.service\n"));
        assert!(!in_agent_unit("0::/system.slice/evil-buildkite-agent.service.d/x\n"));
    }
}
