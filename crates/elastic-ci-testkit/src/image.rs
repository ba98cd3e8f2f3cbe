//! The agent image's hook shims installed under a directory standing for `/`.
//!
//! The shims name their files by absolute, constant paths (`/usr/local/bin/...`,
//! `/var/lib/buildkite-agent/cfn-env`) below one line, `elastic_ci_root=''`, which is
//! the only thing a copy under another root changes. The hook tests and the local demo
//! install them this way, so they run the image's shims with only that line different.

use std::path::{Path, PathBuf};

/// The shims' directory in the repository.
pub fn hook_shims_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packer/linux/conf/buildkite-agent/hooks")
}

/// Where the image puts the shims, relative to its root.
pub const HOOKS_DIR: &str = "etc/buildkite-agent/hooks";

/// The line of each shim that says where the image's root is.
pub const ROOT_LINE: &str = "elastic_ci_root=''";

/// Copies the shim `hook` into `<root>/etc/buildkite-agent/hooks/` with its root line
/// pointing at `root`, and returns the installed path. Fails when the shim has no root
/// line, or the root path is not plain text a single-quoted bash string can hold.
pub fn install_hook_shim(root: &Path, hook: &str) -> std::io::Result<PathBuf> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    let source = hook_shims_source().join(hook);
    let text = std::fs::read_to_string(&source)?;
    let root_text = root
        .to_str()
        .filter(|text| !text.contains('\''))
        .ok_or_else(|| invalid(format!("root {} is not usable in a shim", root.display())))?;
    if text.lines().filter(|line| *line == ROOT_LINE).count() != 1 {
        return Err(invalid(format!("{} has no single {ROOT_LINE:?} line", source.display())));
    }
    let installed = text.replace(ROOT_LINE, &format!("elastic_ci_root='{root_text}'"));
    let dir = root.join(HOOKS_DIR);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(hook);
    std::fs::write(&path, installed)?;
    // Windows has no execute bit (the testkit builds there for the hooks' unit tests
    // under wine, which do not run the shims).
    #[cfg(unix)]
    std::fs::set_permissions(
        &path,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )?;
    Ok(path)
}
