//! `check-disk`: is there enough free space and are there enough free inodes for a
//! job? Exit 0 when there are, 1 when not; messages on stderr for the job log.

use std::path::{Path, PathBuf};

use anyhow::Context;
use elastic_ci_core::disk::{
    DiskCheckConfig, DiskUsage, DiskVerdict, agent_build_dir, docker_data_root, human_bytes,
    human_count, verdict,
};

use crate::output::say;

/// Where to measure when no directory is given: docker's data root.
pub(crate) fn directory_to_check(docker_config: &Path) -> PathBuf {
    let data_root = std::fs::read_to_string(docker_config)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json.get("data-root").and_then(|v| v.as_str()).map(str::to_owned));
    PathBuf::from(docker_data_root(data_root.as_deref()))
}

/// Free space and inodes of the file system holding `dir`. A missing directory is
/// measured at its nearest existing ancestor (the original failed with a confusing
/// "low disk" instead, elastic-ci-stack-for-aws#1176).
pub(crate) fn measure(dir: &Path) -> anyhow::Result<DiskUsage> {
    let mut measured = dir;
    while !measured.exists() {
        measured = measured
            .parent()
            .with_context(|| format!("no existing ancestor of {}", dir.display()))?;
    }
    if measured != dir {
        say(&format!("{} does not exist; checking {} instead", dir.display(), measured.display()));
    }
    let (available_bytes, free_inodes) = crate::platform::free_space(measured)?;
    Ok(DiskUsage { available_kib: available_bytes / 1024, free_inodes })
}

/// Runs the check; `Ok(true)` means enough space and inodes.
pub(crate) fn check_disk(config: &DiskCheckConfig, dir: &Path) -> anyhow::Result<bool> {
    let mut usage = measure(dir)?;
    say(&format!("Disk space free: {}", human_bytes(usage.available_kib.saturating_mul(1024))));
    if verdict(config, usage) == DiskVerdict::LowSpace {
        say(&format!(
            "Not enough disk space free: {} ({}KB) available, cutoff is {} ({}KB) 🚨",
            human_bytes(usage.available_kib.saturating_mul(1024)),
            usage.available_kib,
            human_bytes(config.min_available_kib.saturating_mul(1024)),
            config.min_available_kib
        ));
        if !config.purge_builds {
            say("Insufficient disk space. Build purge not enabled.");
            return Ok(false);
        }
        let agent = match agent_build_dir(config) {
            Ok(agent) => agent,
            Err(reason) => {
                say(&format!(
                    "Unable to determine agent-specific build directory ({reason}). Skipping purge to avoid deleting other agents' builds."
                ));
                return Ok(false);
            }
        };
        let agent_dir = Path::new(&config.build_path).join(&agent);
        // Only a real directory directly under the build path: never a link.
        if !std::fs::symlink_metadata(&agent_dir).is_ok_and(|metadata| metadata.is_dir()) {
            say(&format!(
                "Unable to determine agent-specific build directory ({} is not a directory). Skipping purge to avoid deleting other agents' builds.",
                agent_dir.display()
            ));
            return Ok(false);
        }
        say(&format!("Purging builds in {}", agent_dir.display()));
        purge(&agent_dir)?;
        usage = measure(dir)?;
        say(&format!(
            "Disk space free after build purge: {}",
            human_bytes(usage.available_kib.saturating_mul(1024))
        ));
        if verdict(config, usage) == DiskVerdict::LowSpace {
            say("Insufficient disk space remaining after build purge.");
            return Ok(false);
        }
    }
    match usage.free_inodes {
        Some(inodes) => {
            say(&format!("Inodes free: {}", human_count(inodes)));
            if verdict(config, usage) == DiskVerdict::LowInodes {
                say(&format!(
                    "Not enough inodes free: {inodes} available, cutoff is {} 🚨",
                    config.min_inodes
                ));
                return Ok(false);
            }
        }
        None => say("Inodes free: not reported by this file system"),
    }
    Ok(true)
}

/// Deletes the non-hidden entries of `dir`; links are removed, never followed.
fn purge(dir: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        let removed =
            if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.with_context(|| format!("could not delete {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_data_root_from_the_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("daemon.json");
        assert_eq!(directory_to_check(&config), PathBuf::from("/var/lib/docker"));
        std::fs::write(&config, r#"{"data-root": "/mnt/ephemeral/docker"}"#).unwrap();
        assert_eq!(directory_to_check(&config), PathBuf::from("/mnt/ephemeral/docker"));
        std::fs::write(&config, "not json").unwrap();
        assert_eq!(directory_to_check(&config), PathBuf::from("/var/lib/docker"));
    }

    #[test]
    fn measures_missing_directories_at_an_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let usage = measure(&dir.path().join("missing/docker")).unwrap();
        assert!(usage.available_kib > 0);
    }
}
