//! Command-line flags of every task.

use clap::{Parser, Subcommand};

/// Project automation for the Elastic CI Stack.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run every check CI runs: fmt, clippy, and all tests against a fresh local AWS.
    Ci(CiArgs),
    /// Manage the local AWS emulator (moto) used by tests and local runs.
    Moto(MotoArgs),
    /// Build the scaler Lambda zips (x86_64 and, when the aarch64 standard library can
    /// be had, arm64) and the instance binaries with the `dist` profile into
    /// <target dir>/dist/, and print their sizes.
    Dist(DistArgs),
    /// Render the published CloudFormation template into <target dir>/dist/aws-stack.yml:
    /// release version, AMI mappings from the AMI build, scaler zip location.
    Template(TemplateArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct CiArgs {
    /// Skip `cargo fmt --check` and clippy (tests and infrastructure checks only).
    #[arg(long)]
    pub(crate) no_lint: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TemplateArgs {
    /// Release version written into the template and the scaler zip's S3 key
    /// [default: `git describe --tags --always --dirty`].
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// AMI ids by region, as written by `cargo xtask ami`
    /// [default: <target dir>/dist/mappings.yml; without it the placeholder mapping stays].
    #[arg(long, value_name = "FILE")]
    pub(crate) mappings: Option<std::path::PathBuf>,
    /// Prefix of the per-region buckets holding the scaler zips: the template reads
    /// s3://<PREFIX>-<region>/elastic-ci-scaler/<version>/elastic-ci-scaler-<arch>.zip.
    #[arg(long, value_name = "PREFIX", default_value = crate::template::DEFAULT_LAMBDA_BUCKET_PREFIX)]
    pub(crate) lambda_bucket_prefix: String,
    /// Where to write the template; service-role.yml is copied beside it
    /// [default: <target dir>/dist/aws-stack.yml].
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DistArgs {
    /// Build only the x86_64 artefacts.
    #[arg(long)]
    pub(crate) no_arm64: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct MotoArgs {
    #[command(subcommand)]
    pub(crate) action: MotoAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MotoAction {
    /// Install moto if needed, start it on 127.0.0.1 and print the variables that point
    /// our binaries at it. Does nothing but print them when it is already running.
    Start,
    /// Stop the emulator started by `start`.
    Stop,
    /// Say whether the emulator is running, and where.
    Status,
}
