//! Files under `--root`: every path the instance commands write is an absolute
//! instance path (`/etc/…`) resolved under a root directory, `/` in production and a
//! temporary directory in tests and the local demo.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::platform;

/// The directory instance paths are resolved under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root(dir.into())
    }

    /// Whether this is the real root, `/`.
    pub(crate) fn is_system_root(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// `/etc/x` → `<root>/etc/x`; a Windows path `C:\x` → `<root>\C\x` (the drive
    /// letter becomes a directory), and itself under the real root.
    pub(crate) fn path(&self, instance_path: &str) -> PathBuf {
        if self.is_system_root() && has_drive(instance_path) {
            return PathBuf::from(instance_path);
        }
        let relative = match instance_path.split_once(':') {
            Some((drive, rest)) if has_drive(instance_path) => {
                format!("{drive}/{}", rest.trim_start_matches(['/', '\\']))
            }
            _ => instance_path.to_owned(),
        };
        self.0.join(relative.trim_start_matches(['/', '\\']))
    }
}

/// Writes `content` to `path` with permission bits `mode`, atomically: a temporary
/// file beside it, created 0600 (so a secret is never readable by others, even for a
/// moment), gets the content, the final mode and an fsync, then replaces `path`. The
/// parent directories are created (0755) when missing.
pub(crate) fn write_atomic(path: &Path, mode: u32, content: &[u8]) -> anyhow::Result<()> {
    let dir = parent_of(path)?;
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".elastic-ci-write.");
    platform::private_temp_file(&mut builder);
    let mut temp = builder
        .tempfile_in(dir)
        .with_context(|| format!("could not create a temporary file in {}", dir.display()))?;
    temp.write_all(content).with_context(|| format!("could not write {}", path.display()))?;
    platform::set_mode(temp.path(), mode)
        .with_context(|| format!("could not set the mode of {}", path.display()))?;
    temp.as_file().sync_all().with_context(|| format!("could not sync {}", path.display()))?;
    temp.persist(path)
        .map_err(|error| error.error)
        .with_context(|| format!("could not move the new {} into place", path.display()))?;
    Ok(())
}

/// `mkdir -p`, then sets the last directory's mode.
pub(crate) fn create_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    platform::set_mode(path, mode)
        .with_context(|| format!("could not set the mode of {}", path.display()))
}

/// Points `link` at `target`, replacing whatever `link` was, atomically.
pub(crate) fn replace_symlink(link: &Path, target: &str) -> anyhow::Result<()> {
    let dir = parent_of(link)?;
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let temp = dir.join(format!(".elastic-ci-link.{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    platform::symlink(target, &temp)
        .with_context(|| format!("could not create a link to {target} in {}", dir.display()))?;
    std::fs::rename(&temp, link).with_context(|| format!("could not replace {}", link.display()))
}

/// The file's text, or `None` when it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("could not read {}", path.display())),
    }
}

/// Replaces a system file's content atomically ([`write_atomic`]), keeping the mode it
/// has, or giving it `new_mode` when it does not exist yet.
pub(crate) fn rewrite(path: &Path, new_mode: u32, content: &[u8]) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path).map_or(new_mode, |metadata| platform::mode_of(&metadata));
    write_atomic(path, mode, content)
}

/// Whether a path starts with a drive letter (`C:`).
fn has_drive(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

fn parent_of(path: &Path) -> anyhow::Result<&Path> {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .with_context(|| format!("{} has no parent directory", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn resolves_instance_paths_under_the_root() {
        let root = Root::new("/tmp/r");
        assert_eq!(root.path("/etc/x"), PathBuf::from("/tmp/r/etc/x"));
        assert!(!root.is_system_root());
        assert_eq!(Root::new("/").path("/etc/x"), PathBuf::from("/etc/x"));
        assert_eq!(
            root.path(r"C:\buildkite-agent\x"),
            PathBuf::from(r"/tmp/r/C/buildkite-agent\x")
        );
        assert_eq!(Root::new("/").path(r"C:\x"), PathBuf::from(r"C:\x"));
    }

    #[test]
    fn writes_atomically_with_the_mode_and_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secret");
        write_atomic(&path, 0o640, b"token").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"token");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o640);
        write_atomic(&path, 0o600, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path().join("a/b")).unwrap().count(), 1);
    }

    #[test]
    fn rewrites_keep_the_mode_and_links_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fstab = dir.path().join("fstab");
        assert_eq!(read_if_exists(&fstab).unwrap(), None);
        rewrite(&fstab, 0o644, b"a\n").unwrap();
        assert_eq!(std::fs::metadata(&fstab).unwrap().permissions().mode() & 0o7777, 0o644);
        std::fs::set_permissions(&fstab, std::fs::Permissions::from_mode(0o600)).unwrap();
        rewrite(&fstab, 0o644, b"b\n").unwrap();
        assert_eq!(read_if_exists(&fstab).unwrap().as_deref(), Some("b\n"));
        assert_eq!(std::fs::metadata(&fstab).unwrap().permissions().mode() & 0o7777, 0o600);
        let link = dir.path().join("bin/agent");
        replace_symlink(&link, "/usr/bin/agent-stable").unwrap();
        replace_symlink(&link, "/usr/bin/agent-beta").unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), PathBuf::from("/usr/bin/agent-beta"));
    }
}
