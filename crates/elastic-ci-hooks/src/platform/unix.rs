//! The Linux side of [`crate::platform`].

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Whether the hooks always change the job's environment through the agent's job API:
/// no, Linux has the shell shims.
pub(crate) const JOB_API_ONLY: bool = false;

/// Whether the bootstrapper has `fix-permissions` (run through sudo after containers
/// left root-owned files in the checkout).
pub(crate) const HAS_FIX_PERMISSIONS: bool = true;

/// Whether a file's metadata says it can be executed (any execute bit).
pub(crate) fn is_executable(metadata: &std::fs::Metadata) -> bool {
    metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
}

/// Starts `command` as the leader of a process group of its own.
pub(crate) fn spawn_grouped(command: &mut Command) -> std::io::Result<Child> {
    command.process_group(0).spawn()
}

/// Kills the process group started by [`spawn_grouped`]; it may be gone already.
pub(crate) fn kill_group(id: u32) {
    let _ = killpg(pid(id), Signal::SIGKILL);
}

/// Asks a process to end (SIGTERM); whether it could be signalled.
pub(crate) fn terminate(id: u32) -> bool {
    kill(pid(id), Signal::SIGTERM).is_ok()
}

/// Whether the process `id` runs the program `name`, from `/proc`.
pub(crate) fn process_is(id: u32, name: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{id}/comm")).is_ok_and(|comm| comm.trim() == name)
}

fn pid(id: u32) -> Pid {
    Pid::from_raw(i32::try_from(id).unwrap_or(i32::MAX))
}

/// Makes a temporary directory private to us (0700) from its creation on.
pub(crate) fn private_temp_dir(builder: &mut tempfile::Builder<'_, '_>) {
    builder.permissions(std::fs::Permissions::from_mode(0o700));
}

/// Whether we own the file.
pub(crate) fn owned_by_us(metadata: &std::fs::Metadata) -> bool {
    metadata.uid() == nix::unistd::geteuid().as_raw()
}
