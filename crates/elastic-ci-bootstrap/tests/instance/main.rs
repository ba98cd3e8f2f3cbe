//! The instance commands end to end: `boot`, `terminate`, `stop-gracefully`, `watch`,
//! `check-disk` and `fix-permissions`, run as the binary (or, where a scenario needs
//! a scripted fake, as the library) against moto and the fake metadata service, in
//! temporary roots with system actions recorded.
//!
//! The moto scenarios need `ELASTIC_CI_MOTO_ENDPOINT`; they skip without it, except
//! in CI, where they fail.

mod boot;
mod check_disk;
mod every_boot;
mod fix_permissions;
mod seed;
mod stop;
mod terminate;
mod timeouts;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use elastic_ci_aws::autoscaling::{AutoScalingGroups, ScalingGroup};
use elastic_ci_testkit::moto::Moto;

/// The binary with a clean environment plus `env`.
pub fn command(env: &HashMap<String, String>) -> Command {
    let mut command = Command::cargo_bin("elastic-ci-bootstrap").unwrap();
    command.env_clear().env("PATH", "/usr/bin:/bin").env("ELASTIC_CI_LOG", "info");
    command.envs(env);
    command
}

/// Checks that `--help` of `args` mentions each of `needles` (whitespace-normalised,
/// since clap wraps lines).
pub fn assert_help_mentions(args: &[&str], needles: &[&str]) {
    let output = command(&HashMap::new()).args(args).arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = stdout(&output).split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from {args:?} --help:\n{text}");
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every regular file under `dir`, relative path → content.
pub fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let relative = entry.path().strip_prefix(dir).unwrap().to_owned();
                files.insert(relative, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// The actions a `--record-actions` file holds.
pub fn recorded(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A moto group with one instance; returns (group, instance id).
pub async fn group_with_instance(
    moto: &Moto,
    prefix: &str,
    min: i32,
    max: i32,
    desired: i32,
) -> (String, String) {
    let group = moto.scaling_group(prefix, min, max, desired).await;
    let snapshot = AutoScalingGroups::new(&moto.sdk_config()).describe_group(&group).await.unwrap();
    let instance_id =
        snapshot.instances.first().expect("moto starts the desired instances").id.clone();
    (group, instance_id)
}

/// The moto health of one instance of a group.
pub async fn health_of(
    moto: &Moto,
    group: &str,
    instance_id: &str,
) -> elastic_ci_core::fleet::Health {
    let snapshot = AutoScalingGroups::new(&moto.sdk_config()).describe_group(group).await.unwrap();
    snapshot.instances.iter().find(|instance| instance.id == instance_id).unwrap().health
}
