//! `cargo xtask demo` and `cargo xtask release --rehearse`: build the workspace's
//! binaries and run `elastic-ci-demo` or `elastic-ci-rehearse` (crate `elastic-ci-e2e`)
//! with the given arguments. Both need the AWS SDK's CloudFormation client and the test
//! doubles (the demo the simulator too); keeping them out of xtask keeps xtask quick to
//! build.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::project;

/// The demo's binary, beside the scaler, bootstrapper and hooks binaries it runs.
pub(crate) const BINARY: &str = "elastic-ci-demo";

/// The flag the launcher takes for itself: run the binaries already built.
const NO_BUILD: &str = "--no-build";

pub(crate) fn run(args: &[OsString]) -> anyhow::Result<()> {
    launch(BINARY, args)
}

/// Builds the workspace's binaries unless told not to (or only asked for help), then
/// becomes the end-to-end binary `name` of the debug build with `args`.
pub(crate) fn launch(name: &str, args: &[OsString]) -> anyhow::Result<()> {
    let no_build = args.iter().any(|arg| arg == NO_BUILD);
    let help = args.iter().any(|arg| arg == "--help" || arg == "-h");
    let binary = project::target_dir()?.join("debug").join(name);
    // Help needs no fresh build when a binary is there to give it.
    let skip_build = no_build || (help && binary.is_file());
    if !skip_build {
        build_binaries()?;
    }
    ensure!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --workspace --tests`",
        binary.display()
    );
    let mut command = Command::new(&binary);
    command.args(args.iter().filter(|arg| *arg != NO_BUILD));
    exec(command, name)
}

/// Where the workspace's debug build puts the demo.
pub(crate) fn binary() -> anyhow::Result<PathBuf> {
    Ok(project::target_dir()?.join("debug").join(BINARY))
}

/// Where the workspace's debug build puts the release rehearsal.
pub(crate) fn rehearsal_binary() -> anyhow::Result<PathBuf> {
    Ok(project::target_dir()?.join("debug").join(REHEARSAL_BINARY))
}

/// The release rehearsal's binary (crate `elastic-ci-e2e`).
pub(crate) const REHEARSAL_BINARY: &str = "elastic-ci-rehearse";

/// Every binary of the workspace, debug profile, built as `cargo xtask ci`'s test build
/// builds them (with the tests, whose dev-dependencies change the features of shared
/// dependencies), so that the two share one copy of every dependency. Not `-p`: cargo
/// would resolve features for those packages alone.
fn build_binaries() -> anyhow::Result<()> {
    eprintln!(
        "building the end-to-end binaries and those they run (cargo build --workspace --tests) …"
    );
    let status = Command::new(project::cargo())
        .args(["build", "--workspace", "--tests"])
        .current_dir(project::root())
        .status()
        .context("failed to run cargo build")?;
    ensure!(status.success(), "cargo build of the end-to-end binaries failed ({status})");
    Ok(())
}

/// Becomes the demo, so that Ctrl-C and the exit status are the demo's own.
#[cfg(unix)]
fn exec(mut command: Command, name: &str) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let error = command.exec();
    bail!("failed to run {name}: {error}")
}

#[cfg(not(unix))]
fn exec(mut command: Command, name: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("failed to run {name}"))?;
    ensure!(status.success(), "{name} failed ({status})");
    Ok(())
}
