//! The disk-space check run by the agent hooks before and after jobs: thresholds,
//! the verdict, the build purge's target, and the numbers as people read them.

use std::collections::HashMap;

/// Default minimum free space: 5 GiB, in KiB.
pub const DEFAULT_MIN_AVAILABLE_KIB: u64 = 5_242_880;
/// Default minimum free inodes.
pub const DEFAULT_MIN_INODES: u64 = 250_000;
/// The build directory when the job environment does not name one.
pub const DEFAULT_BUILD_PATH: &str = "/var/lib/buildkite-agent/builds";

/// What `check-disk` reads from the job environment (pipelines may override it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCheckConfig {
    pub min_available_kib: u64,
    pub min_inodes: u64,
    /// Delete this agent's builds when space is low (`BUILDKITE_PURGE_BUILDS_ON_DISK_FULL`).
    pub purge_builds: bool,
    pub build_path: String,
    pub checkout_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {name} {value:?}: expected a whole number")]
pub struct DiskConfigError {
    pub name: &'static str,
    pub value: String,
}

impl DiskCheckConfig {
    /// Every variable [`DiskCheckConfig::from_env_map`] reads.
    pub const ENV_VARS: &[&str] = &[
        "DISK_MIN_AVAILABLE",
        "DISK_MIN_INODES",
        "BUILDKITE_PURGE_BUILDS_ON_DISK_FULL",
        "BUILDKITE_BUILD_PATH",
        "BUILDKITE_BUILD_CHECKOUT_PATH",
    ];

    pub fn from_env_map(
        vars: &HashMap<String, String>,
    ) -> Result<DiskCheckConfig, DiskConfigError> {
        let non_empty = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let number = |name: &'static str, default: u64| match non_empty(name) {
            None => Ok(default),
            Some(text) => {
                text.parse::<u64>().map_err(|_| DiskConfigError { name, value: text.to_owned() })
            }
        };
        Ok(DiskCheckConfig {
            min_available_kib: number("DISK_MIN_AVAILABLE", DEFAULT_MIN_AVAILABLE_KIB)?,
            min_inodes: number("DISK_MIN_INODES", DEFAULT_MIN_INODES)?,
            purge_builds: non_empty("BUILDKITE_PURGE_BUILDS_ON_DISK_FULL") == Some("true"),
            build_path: non_empty("BUILDKITE_BUILD_PATH")
                .unwrap_or(DEFAULT_BUILD_PATH)
                .trim_end_matches('/')
                .to_owned(),
            checkout_path: non_empty("BUILDKITE_BUILD_CHECKOUT_PATH").map(str::to_owned),
        })
    }
}

/// The directory whose file system is checked: docker's `data-root` from
/// `/etc/docker/daemon.json` (already parsed), or `/var/lib/docker`.
pub fn docker_data_root(data_root: Option<&str>) -> &str {
    match data_root {
        Some(root) if !root.trim().is_empty() => root,
        _ => "/var/lib/docker",
    }
}

/// Why the build purge does not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurgeRefusal {
    #[error("no checkout path (BUILDKITE_BUILD_CHECKOUT_PATH) to find this agent's builds from")]
    NoCheckoutPath,
    #[error("checkout path {checkout:?} is not inside the build path {build_path:?}")]
    OutsideBuildPath { checkout: String, build_path: String },
    #[error("agent directory {0:?} is not a single directory name")]
    BadAgentDirectory(String),
}

/// The agent's own directory under the build path, which the purge empties: the first
/// component of the checkout path below the build path. It must be one normal name
/// (`.`, `..` and empty names are refused), so a job cannot aim the purge at the build
/// path's parent or at another agent's builds.
pub fn agent_build_dir(config: &DiskCheckConfig) -> Result<String, PurgeRefusal> {
    let checkout = config.checkout_path.as_deref().ok_or(PurgeRefusal::NoCheckoutPath)?;
    let rest = checkout
        .strip_prefix(&config.build_path)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| PurgeRefusal::OutsideBuildPath {
            checkout: checkout.to_owned(),
            build_path: config.build_path.clone(),
        })?;
    let agent = rest.split('/').next().unwrap_or_default();
    if agent.is_empty() || agent == "." || agent == ".." {
        return Err(PurgeRefusal::BadAgentDirectory(agent.to_owned()));
    }
    Ok(agent.to_owned())
}

/// Space and inodes of one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub available_kib: u64,
    /// `None` when the file system does not count inodes (btrfs, some overlays).
    pub free_inodes: Option<u64>,
}

/// The outcome of one measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskVerdict {
    Enough,
    LowSpace,
    LowInodes,
}

pub fn verdict(config: &DiskCheckConfig, usage: DiskUsage) -> DiskVerdict {
    if usage.available_kib < config.min_available_kib {
        DiskVerdict::LowSpace
    } else if usage.free_inodes.is_some_and(|inodes| inodes < config.min_inodes) {
        DiskVerdict::LowInodes
    } else {
        DiskVerdict::Enough
    }
}

/// A byte count in IEC units as `numfmt --to=iec` prints it: `512`, `1.5K`, `5.0G`,
/// `12G` (one decimal below 10, rounded up).
pub fn human_bytes(bytes: u64) -> String {
    human(bytes, 1024, &["K", "M", "G", "T", "P", "E"])
}

/// A count in SI units (`250K`, `1.2M`), for inodes.
pub fn human_count(count: u64) -> String {
    human(count, 1000, &["K", "M", "G", "T", "P", "E"])
}

fn human(value: u64, base: u64, units: &[&str]) -> String {
    if value < base {
        return value.to_string();
    }
    let mut divisor = base;
    let mut unit = 0;
    while unit + 1 < units.len() && value / divisor >= base {
        divisor *= base;
        unit += 1;
    }
    // Tenths, rounded up, in integer arithmetic.
    let tenths = (u128::from(value) * 10).div_ceil(u128::from(divisor));
    if tenths < 100 {
        format!("{}.{}{}", tenths / 10, tenths % 10, units[unit])
    } else {
        let whole = u128::from(value).div_ceil(u128::from(divisor));
        if whole >= u128::from(base) && unit + 1 < units.len() {
            format!("1.0{}", units[unit + 1])
        } else {
            format!("{whole}{}", units[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<DiskCheckConfig, DiskConfigError> {
        DiskCheckConfig::from_env_map(
            &pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        )
    }

    #[test]
    fn defaults_and_overrides() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.min_available_kib, DEFAULT_MIN_AVAILABLE_KIB);
        assert_eq!(defaults.min_inodes, DEFAULT_MIN_INODES);
        assert!(!defaults.purge_builds);
        let set = config(&[
            ("DISK_MIN_AVAILABLE", "1024"),
            ("DISK_MIN_INODES", " 10 "),
            ("BUILDKITE_PURGE_BUILDS_ON_DISK_FULL", "true"),
            ("BUILDKITE_BUILD_PATH", "/b/"),
        ])
        .unwrap();
        assert_eq!((set.min_available_kib, set.min_inodes, set.purge_builds), (1024, 10, true));
        assert_eq!(set.build_path, "/b");
        assert_eq!(
            config(&[("DISK_MIN_INODES", "lots")]).unwrap_err().to_string(),
            "invalid DISK_MIN_INODES \"lots\": expected a whole number"
        );
    }

    #[test_case("/b/agent-1/org/pipe", Ok("agent-1"))]
    #[test_case("/b/agent-1", Ok("agent-1"))]
    #[test_case("/b/../home", Err(PurgeRefusal::BadAgentDirectory("..".into())))]
    #[test_case("/b/./x", Err(PurgeRefusal::BadAgentDirectory(".".into())))]
    #[test_case("/b//x", Err(PurgeRefusal::BadAgentDirectory(String::new())))]
    #[test_case("/b", Err(PurgeRefusal::OutsideBuildPath { checkout: "/b".into(), build_path: "/b".into() }))]
    #[test_case("/bx/agent", Err(PurgeRefusal::OutsideBuildPath { checkout: "/bx/agent".into(), build_path: "/b".into() }))]
    fn finds_the_agent_directory(checkout: &str, expected: Result<&str, PurgeRefusal>) {
        let config =
            config(&[("BUILDKITE_BUILD_PATH", "/b"), ("BUILDKITE_BUILD_CHECKOUT_PATH", checkout)])
                .unwrap();
        assert_eq!(agent_build_dir(&config), expected.map(str::to_owned));
    }

    #[test]
    fn verdicts() {
        let config = config(&[("DISK_MIN_AVAILABLE", "100"), ("DISK_MIN_INODES", "10")]).unwrap();
        let usage = |kib, inodes| DiskUsage { available_kib: kib, free_inodes: inodes };
        assert_eq!(verdict(&config, usage(100, Some(10))), DiskVerdict::Enough);
        assert_eq!(verdict(&config, usage(99, Some(0))), DiskVerdict::LowSpace);
        assert_eq!(verdict(&config, usage(100, Some(9))), DiskVerdict::LowInodes);
        assert_eq!(verdict(&config, usage(100, None)), DiskVerdict::Enough);
    }

    #[test_case(0, "0")]
    #[test_case(1023, "1023")]
    #[test_case(1024, "1.0K")]
    #[test_case(1536, "1.5K")]
    #[test_case(10 * 1024, "10K")]
    #[test_case(10 * 1024 + 1, "11K")]
    #[test_case(5 * 1024 * 1024 * 1024, "5.0G")]
    #[test_case(1024 * 1024 - 1, "1.0M")]
    fn human_iec(bytes: u64, expected: &str) {
        assert_eq!(human_bytes(bytes), expected);
    }

    #[test]
    fn human_si() {
        assert_eq!(human_count(250_000), "250K");
        assert_eq!(human_count(1_200_000), "1.2M");
    }
}
