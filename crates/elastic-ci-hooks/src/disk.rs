//! The disk check around jobs: `elastic-ci-bootstrap check-disk`, then, if space is
//! low, a Docker prune and a second check; a disk still full fails the job, and with
//! `BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL` also stops this agent after the job
//! (`buildkite-agent stop`).
//!
//! The instance is not terminated from here: other agents of the instance may be in
//! the middle of their jobs. It terminates when its last agent has stopped, through
//! the agent unit's `ExecStopPost` (`elastic-ci-bootstrap terminate`, which leaves the
//! termination to the last agent while any other still runs).

use std::path::PathBuf;

use crate::job::{Job, JobFailure};
use crate::process;

/// What the disk check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskState {
    Enough,
    /// Still low after pruning; `report` is what the second check printed.
    Full {
        report: String,
    },
}

fn bootstrap(job: &Job<'_>) -> Option<PathBuf> {
    let path = &job.config.bootstrap;
    process::is_executable(path).then(|| path.clone())
}

/// Checks free space and inodes, prunes Docker when they are low, and checks again.
pub fn check(job: &Job<'_>) -> anyhow::Result<DiskState> {
    let Some(bootstrap) = bootstrap(job) else {
        job.log.warning(&format!(
            "{} is not installed: skipping the disk space check",
            job.config.bootstrap.display()
        ));
        return Ok(DiskState::Enough);
    };
    job.log.line("Checking disk space");
    let status = process::run(
        &mut process::command(&bootstrap, ["check-disk"], &job.env),
        job.config.limits.quick,
    )?;
    if status.success() {
        return Ok(DiskState::Enough);
    }
    job.log.section(":broom: Pruning docker resources to free disk space");
    crate::docker::prune(job);
    job.log.line("Checking disk space again");
    let output = process::run_captured(
        &mut process::command(&bootstrap, ["check-disk"], &job.env),
        job.config.limits.quick,
    )?;
    let mut report = String::from_utf8_lossy(&output.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        job.log.line(report.trim_end());
        Ok(DiskState::Enough)
    } else {
        Ok(DiskState::Full { report })
    }
}

/// Reports a full disk and fails the job; when `BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL`
/// is `true`, first asks this agent to stop once the job is over, so that the instance
/// terminates when its last agent has stopped.
pub fn fail(job: &Job<'_>, report: &str) -> JobFailure {
    job.log.open_section(":warning: Insufficient disk space after cleanup.");
    job.log.line(report.trim_end());
    if !job.config.terminate_on_disk_full {
        job.log.line(
            "Exiting job due to insufficient disk space (set BuildkiteTerminateInstanceOnDiskFull to true in CloudFormation Stack to terminate instance instead).",
        );
        return JobFailure { code: 1 };
    }
    job.log.line(
        "Stopping this agent after the job due to disk space issues: the instance terminates once all of its agents have stopped.",
    );
    let Some(agent) = process::find_program("buildkite-agent", &job.env) else {
        job.log.error("buildkite-agent not found: the agent keeps running");
        return JobFailure { code: 1 };
    };
    // Graceful: the agent finishes this (failing) job, then disconnects and exits.
    match process::run(&mut process::command(&agent, ["stop"], &job.env), job.config.limits.quick) {
        Ok(status) if status.success() => {}
        Ok(status) => {
            job.log.error(&format!("buildkite-agent stop failed ({})", process::describe(status)))
        }
        Err(error) => job.log.error(&format!("{error:#}")),
    }
    JobFailure { code: 1 }
}
