//! The Windows side of [`crate::platform`].
//!
//! Files carry no execute bit (any file counts), and the per-job directories are made
//! in the agent account's own temporary directory, which that account alone may read.

use std::os::windows::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// `CREATE_NEW_PROCESS_GROUP`: the child gets a console process group of its own.
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

/// Whether the hooks always change the job's environment through the agent's job API:
/// yes, the agent runs them as executables, with no shell to evaluate a script.
pub(crate) const JOB_API_ONLY: bool = true;

/// Whether the bootstrapper has `fix-permissions`: not on Windows, where jobs run as
/// the agent's account and leave nothing it cannot remove.
pub(crate) const HAS_FIX_PERMISSIONS: bool = false;

/// Any file can be started (by its extension).
pub(crate) fn is_executable(metadata: &std::fs::Metadata) -> bool {
    metadata.is_file()
}

/// Starts `command` in a process group of its own.
pub(crate) fn spawn_grouped(command: &mut Command) -> std::io::Result<Child> {
    command.creation_flags(CREATE_NEW_PROCESS_GROUP).spawn()
}

/// Kills the process started by [`spawn_grouped`] and its descendants; they may be
/// gone already.
pub(crate) fn kill_group(id: u32) {
    let _ = taskkill(&["/T", "/F", "/PID", &id.to_string()]);
}

/// Ends a process (Windows has no SIGTERM); whether it could be ended.
pub(crate) fn terminate(id: u32) -> bool {
    taskkill(&["/F", "/PID", &id.to_string()])
}

/// Whether the process `id` runs the program `name` (`tasklist`).
pub(crate) fn process_is(id: u32, name: &str) -> bool {
    let Ok(output) = Command::new("tasklist")
        .args(["/FO", "CSV", "/NH", "/FI", &format!("PID eq {id}")])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let image = format!("\"{name}.exe\"");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.to_ascii_lowercase().starts_with(&image.to_ascii_lowercase()))
}

fn taskkill(args: &[&str]) -> bool {
    Command::new("taskkill")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Nothing to add: the directory inherits the temporary directory's access list.
pub(crate) fn private_temp_dir(_builder: &mut tempfile::Builder<'_, '_>) {}

/// Files have no numeric owner here; a directory in our private temporary directory
/// is ours.
pub(crate) fn owned_by_us(_metadata: &std::fs::Metadata) -> bool {
    true
}
