//! Where things are: the project root and cargo's target directory.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root (the parent of this crate).
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}

/// Cargo's target directory, as `cargo metadata` reports it: it honours
/// `CARGO_TARGET_DIR` and `build.target-dir`, so it may live outside the work tree.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let output = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()
        .context("failed to run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed invalid JSON")?;
    let target =
        metadata["target_directory"].as_str().context("cargo metadata gave no target_directory")?;
    Ok(PathBuf::from(target))
}

/// Runs `future` to completion on a single-threaded runtime (the tasks make their AWS
/// and HTTP calls one after another).
pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?
        .block_on(future)
}

/// The cargo that runs this xtask.
pub fn cargo() -> String {
    #[allow(clippy::disallowed_methods, reason = "cargo tells its subprocesses which cargo to use")]
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
