//! `check-disk`: exit statuses and messages as the hooks rely on them, and the build
//! purge's limits.

use std::collections::HashMap;
use std::path::Path;

use crate::{assert_help_mentions, command, stderr};

fn check(dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let env: HashMap<String, String> =
        env.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    command(&env).arg("check-disk").arg("--path").arg(dir).output().unwrap()
}

/// More KiB than any disk has.
const HUGE: &str = "1125899906842624";

#[test]
fn enough_space_and_inodes_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let output = check(dir.path(), &[("DISK_MIN_AVAILABLE", "1"), ("DISK_MIN_INODES", "1")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.starts_with("Disk space free: "), "{text}");
    assert!(text.contains("\nInodes free: "), "{text}");
    assert!(output.stdout.is_empty());
}

#[test]
fn low_space_without_purge_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let output = check(dir.path(), &[("DISK_MIN_AVAILABLE", HUGE)]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("Not enough disk space free: "), "{text}");
    assert!(text.contains(&format!("available, cutoff is 1.0E ({HUGE}KB) 🚨")), "{text}");
    assert!(text.ends_with("Insufficient disk space. Build purge not enabled.\n"), "{text}");
}

#[test]
fn low_inodes_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let output = check(dir.path(), &[("DISK_MIN_AVAILABLE", "1"), ("DISK_MIN_INODES", HUGE)]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("Not enough inodes free: "), "{text}");
    assert!(text.contains(&format!("available, cutoff is {HUGE} 🚨")), "{text}");
}

#[test]
fn purges_only_this_agents_builds() {
    let builds = tempfile::tempdir().unwrap();
    for path in
        ["agent-1/org/pipe/file", "agent-1/other/x", "agent-1/.keep", "agent-2/org/pipe/file"]
    {
        let path = builds.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    let checkout = builds.path().join("agent-1/org/pipe");
    let output = check(
        builds.path(),
        &[
            ("DISK_MIN_AVAILABLE", HUGE),
            ("BUILDKITE_PURGE_BUILDS_ON_DISK_FULL", "true"),
            ("BUILDKITE_BUILD_PATH", builds.path().to_str().unwrap()),
            ("BUILDKITE_BUILD_CHECKOUT_PATH", checkout.to_str().unwrap()),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains(&format!("Purging builds in {}", builds.path().join("agent-1").display())),
        "{text}"
    );
    assert!(text.contains("Disk space free after build purge: "), "{text}");
    assert!(text.ends_with("Insufficient disk space remaining after build purge.\n"), "{text}");
    assert!(
        !builds.path().join("agent-1/org").exists()
            && !builds.path().join("agent-1/other").exists()
    );
    assert!(builds.path().join("agent-1/.keep").exists());
    assert!(builds.path().join("agent-2/org/pipe/file").exists());
}

#[test]
fn refuses_to_purge_outside_the_agents_directory() {
    let home = tempfile::tempdir().unwrap();
    let builds = home.path().join("builds");
    std::fs::create_dir_all(builds.join("agent-1")).unwrap();
    std::fs::write(home.path().join("precious"), "x").unwrap();
    std::os::unix::fs::symlink(home.path(), builds.join("link")).unwrap();
    for checkout in [
        format!("{}/../x/y", builds.display()),
        format!("{}/link/x/y", builds.display()),
        "/elsewhere/a/b".to_owned(),
    ] {
        let output = check(
            &builds,
            &[
                ("DISK_MIN_AVAILABLE", HUGE),
                ("BUILDKITE_PURGE_BUILDS_ON_DISK_FULL", "true"),
                ("BUILDKITE_BUILD_PATH", builds.to_str().unwrap()),
                ("BUILDKITE_BUILD_CHECKOUT_PATH", &checkout),
            ],
        );
        assert_eq!(output.status.code(), Some(1));
        let text = stderr(&output);
        assert!(
            text.contains("Skipping purge to avoid deleting other agents' builds."),
            "{checkout}: {text}"
        );
        assert!(!text.contains("Purging"), "{text}");
        assert!(home.path().join("precious").exists());
    }
}

#[test]
fn a_missing_directory_is_measured_at_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("mnt/ephemeral/docker");
    let output = check(&missing, &[("DISK_MIN_AVAILABLE", "1"), ("DISK_MIN_INODES", "1")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).starts_with(&format!(
        "{} does not exist; checking {} instead",
        missing.display(),
        dir.path().display()
    )));
}

#[test]
fn an_invalid_threshold_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = check(dir.path(), &[("DISK_MIN_AVAILABLE", "5G")]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "error: invalid DISK_MIN_AVAILABLE \"5G\": expected a whole number\n"
    );
}

#[test]
fn help_documents_thresholds_and_purge() {
    assert_help_mentions(
        &["check-disk"],
        &[
            "DISK_MIN_AVAILABLE",
            "DISK_MIN_INODES",
            "BUILDKITE_PURGE_BUILDS_ON_DISK_FULL",
            "--path",
            "--docker-config",
            "exit 0",
        ],
    );
}
