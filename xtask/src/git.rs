//! What the release tasks ask git: commits, branches, tags and versions.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// Runs `git ARGS` in `repository` and returns its trimmed standard output.
pub(crate) fn output(repository: &Path, args: &[&str]) -> anyhow::Result<String> {
    let result = Command::new("git")
        .args(args)
        .current_dir(repository)
        .output()
        .with_context(|| format!("failed to run git {}", args.join(" ")))?;
    if !result.status.success() {
        bail!(
            "git {} failed in {}: {}",
            args.join(" "),
            repository.display(),
            String::from_utf8_lossy(&result.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&result.stdout).trim().to_owned())
}

/// Whether `git ARGS` succeeds (for questions git answers with its exit status).
pub(crate) fn succeeds(repository: &Path, args: &[&str]) -> anyhow::Result<bool> {
    let status = Command::new("git")
        .args(args)
        .current_dir(repository)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("failed to run git {}", args.join(" ")))?;
    Ok(status.success())
}

/// The full id of the commit `revision` names, or an error naming the revision.
pub(crate) fn commit_of(repository: &Path, revision: &str) -> anyhow::Result<String> {
    output(repository, &["rev-parse", "--verify", "--quiet", &format!("{revision}^{{commit}}")])
        .with_context(|| format!("{revision:?} does not name a commit of {}", repository.display()))
}
