//! The Windows side of [`crate::platform`].
//!
//! Windows has no permission bits: the boot restricts who may read a file with an
//! explicit access control list (a recorded `restrict-access` action), so the mode
//! functions do nothing. Owners are not changed either (the agent's account is given
//! access instead), and `fix-permissions` does not exist: jobs run as the agent's
//! account and cannot leave files behind that it cannot remove.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use elastic_ci_core::boot::action::SystemAction;
use elastic_ci_core::boot::plan::InstanceOs;

/// `CREATE_NEW_PROCESS_GROUP`: the child gets a console process group of its own.
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

/// The operating system the boot plans for.
pub(crate) const INSTANCE_OS: InstanceOs = InstanceOs::Windows;

/// Nothing to do: the directory's access control list applies to the file.
pub(crate) fn private_temp_file(_builder: &mut tempfile::Builder<'_, '_>) {}

/// Nothing to do: see the module's documentation.
pub(crate) fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// A read-only file counts as 0444, any other as 0644.
pub(crate) fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    if metadata.permissions().readonly() { 0o444 } else { 0o644 }
}

/// Creates a file symbolic link `link` → `target` (which needs the privilege to
/// create links, as the boot has).
pub(crate) fn symlink(target: &str, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

/// Creates `path`, which must not exist yet: creating a new file fails on any
/// existing entry, a link included.
pub(crate) fn create_new_file(path: &Path, _mode: u32) -> std::io::Result<File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// Starts `command` in a process group of its own; the id returned is what
/// [`kill_group`] takes.
pub(crate) fn spawn_grouped(
    command: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, Option<u32>)> {
    let child = command.creation_flags(CREATE_NEW_PROCESS_GROUP).kill_on_drop(true).spawn()?;
    let id = child.id();
    Ok((child, id))
}

/// Kills the process started by [`spawn_grouped`] and its descendants (`taskkill /T
/// /F`); they may be gone already.
pub(crate) fn kill_group(id: u32) {
    let _ = std::process::Command::new("taskkill")
        .args(["/T", "/F", "/PID", &id.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A duplicate of stderr, so a child's stdout joins the log instead of our stdout
/// (which is reserved for data).
pub(crate) fn stderr_for_child() -> std::io::Result<Stdio> {
    use std::os::windows::io::AsHandle;
    Ok(Stdio::from(std::io::stderr().as_handle().try_clone_to_owned()?))
}

/// Free bytes for the calling user on the volume holding `path`; NTFS has no inode
/// limit to report.
pub(crate) fn free_space(path: &Path) -> anyhow::Result<(u64, Option<u64>)> {
    let available = fs4::available_space(path)
        .with_context(|| format!("could not read the free space of {}", path.display()))?;
    Ok((available, None))
}

/// Windows accounts have no numeric ids.
pub(crate) fn uid_of(user: &str) -> anyhow::Result<u32> {
    Err(super::unsupported(&format!("looking up the uid of {user}")))
}

/// Windows groups have no numeric ids.
pub(crate) fn gid_of(group: &str) -> anyhow::Result<u32> {
    Err(super::unsupported(&format!("looking up the gid of {group}")))
}

/// Owners are not changed on Windows: see the module's documentation.
pub(crate) fn chown_no_follow(
    path: &Path,
    _user: &str,
    _group: &str,
    _recursive: bool,
) -> anyhow::Result<()> {
    Err(super::unsupported(&format!("changing the owner of {}", path.display())))
}

/// How many `buildkite-agent.exe` processes run (the agent runs as a service of its
/// own account; `tasklist` lists every account's processes to the administrator).
pub(crate) fn agent_processes_of(_user: &str, _proc: &Path) -> anyhow::Result<usize> {
    let output = std::process::Command::new("tasklist")
        .args(["/FO", "CSV", "/NH", "/FI", "IMAGENAME eq buildkite-agent.exe"])
        .stdin(Stdio::null())
        .output()
        .context("could not run tasklist")?;
    anyhow::ensure!(output.status.success(), "tasklist failed ({})", output.status);
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("\"buildkite-agent.exe\""))
        .count())
}

/// The certificate authorities of the PEM file `SSL_CERT_FILE` names, when set: they
/// replace the Windows certificate store (which does not read that variable), as the
/// variable replaces the system's authorities on Linux. Unset: the store.
pub(crate) fn root_certificates(
    env: &std::collections::HashMap<String, String>,
) -> anyhow::Result<Option<Vec<reqwest::Certificate>>> {
    let Some(path) = env.get("SSL_CERT_FILE").filter(|path| !path.is_empty()) else {
        return Ok(None);
    };
    let pem =
        std::fs::read(path).with_context(|| format!("could not read SSL_CERT_FILE {path}"))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("SSL_CERT_FILE {path} holds no valid PEM certificates"))?;
    Ok(Some(roots))
}

/// Services, access lists and local groups are what Windows has.
pub(crate) fn require_windows(_action: &SystemAction) -> anyhow::Result<()> {
    Ok(())
}

/// `fix-permissions` does not exist on Windows: see the module's documentation.
pub(crate) fn fix_permissions(_args: &[String]) -> Result<(), (u8, String)> {
    Err((1, super::unsupported("fix-permissions").to_string()))
}
