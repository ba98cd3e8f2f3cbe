//! Files under `--root`: every path the instance commands write is an absolute
//! instance path (`/etc/…`) resolved under a root directory, `/` in production and a
//! temporary directory in tests and the local demo.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The directory instance paths are resolved under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root(dir.into())
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// Whether this is the real root, `/`.
    pub fn is_system_root(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// `/etc/x` → `<root>/etc/x`.
    pub fn path(&self, instance_path: &str) -> PathBuf {
        self.0.join(instance_path.trim_start_matches('/'))
    }
}

/// Writes `content` to `path` with permission bits `mode`, atomically: a temporary
/// file beside it, created 0600 (so a secret is never readable by others, even for a
/// moment), gets the content, the final mode and an fsync, then replaces `path`. The
/// parent directories are created (0755) when missing.
pub fn write_atomic(path: &Path, mode: u32, content: &[u8]) -> anyhow::Result<()> {
    let dir = parent_of(path)?;
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".elastic-ci-write.")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("could not create a temporary file in {}", dir.display()))?;
    temp.write_all(content).with_context(|| format!("could not write {}", path.display()))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("could not set the mode of {}", path.display()))?;
    temp.as_file().sync_all().with_context(|| format!("could not sync {}", path.display()))?;
    temp.persist(path)
        .map_err(|error| error.error)
        .with_context(|| format!("could not move the new {} into place", path.display()))?;
    Ok(())
}

/// `mkdir -p`, then sets the last directory's mode.
pub fn create_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("could not set the mode of {}", path.display()))
}

/// Points `link` at `target`, replacing whatever `link` was, atomically.
pub fn replace_symlink(link: &Path, target: &str) -> anyhow::Result<()> {
    let dir = parent_of(link)?;
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let temp = dir.join(format!(".elastic-ci-link.{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)
        .with_context(|| format!("could not create a link to {target} in {}", dir.display()))?;
    std::fs::rename(&temp, link).with_context(|| format!("could not replace {}", link.display()))
}

/// Appends `line` to the file unless one of its lines already equals it (so a second
/// boot does not add a duplicate fstab entry).
pub fn append_line_once(path: &Path, line: &str) -> anyhow::Result<bool> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("could not read {}", path.display()));
        }
    };
    if existing.lines().any(|existing| existing.trim() == line.trim()) {
        return Ok(false);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    let mode =
        std::fs::metadata(path).map_or(0o644, |metadata| metadata.permissions().mode() & 0o7777);
    write_atomic(path, mode, text.as_bytes())?;
    Ok(true)
}

fn parent_of(path: &Path) -> anyhow::Result<&Path> {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .with_context(|| format!("{} has no parent directory", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_instance_paths_under_the_root() {
        let root = Root::new("/tmp/r");
        assert_eq!(root.path("/etc/x"), PathBuf::from("/tmp/r/etc/x"));
        assert!(!root.is_system_root());
        assert_eq!(Root::new("/").path("/etc/x"), PathBuf::from("/etc/x"));
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
    fn appends_a_line_once_and_replaces_links() {
        let dir = tempfile::tempdir().unwrap();
        let fstab = dir.path().join("fstab");
        std::fs::write(&fstab, "UUID=x / ext4 defaults 0 0").unwrap();
        assert!(append_line_once(&fstab, "/a /b none defaults,bind 0 0").unwrap());
        assert!(!append_line_once(&fstab, "/a /b none defaults,bind 0 0").unwrap());
        assert_eq!(
            std::fs::read_to_string(&fstab).unwrap(),
            "UUID=x / ext4 defaults 0 0\n/a /b none defaults,bind 0 0\n"
        );
        let link = dir.path().join("bin/agent");
        replace_symlink(&link, "/usr/bin/agent-stable").unwrap();
        replace_symlink(&link, "/usr/bin/agent-beta").unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), PathBuf::from("/usr/bin/agent-beta"));
    }
}
