//! `cargo xtask`: the project's automation, in Rust.
//!
//! - `cargo xtask ci`: every check CI runs (formatting, lints, all tests including the
//!   suites against the local AWS emulator, which it starts and stops itself).
//! - `cargo xtask moto start|stop|status`: a local AWS emulator for tests and for trying
//!   the binaries by hand.
//! - `cargo xtask dist`: the scaler Lambda zips and the instance binaries.
//! - `cargo xtask pin-downloads`: the URLs and SHA-256 digests of the image's
//!   third-party downloads.
//! - `cargo xtask template`: the published CloudFormation template.
//! - `cargo xtask terraform-docs`: the inputs and outputs tables of the Terraform
//!   module's README.
//! - `cargo xtask ami`: the agent AMI (Packer), recorded in the template's AMI mappings;
//!   `cargo xtask ami prune` deregisters old images no release uses.
//! - `cargo xtask publish`: the release (template, Terraform module, mappings, scaler
//!   zips, both architectures' binaries, checksums) uploaded to the release buckets.
//! - `cargo xtask release --rehearse`: the whole release against the local emulator, a
//!   launcher for the `elastic-ci-rehearse` binary of the `elastic-ci-e2e` crate.
//! - `cargo xtask demo`: the whole stack on this machine (moto, a fake Buildkite queue,
//!   the real scaler, simulated instances running the real bootstrapper and hooks): a
//!   launcher for the `elastic-ci-demo` binary of the `elastic-ci-e2e` crate.
//! - `cargo xtask windows`: the Windows binaries, cross-built and tested under wine.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask talks to its user on the terminal"
)]

mod ami;
mod ci;
mod demo;
mod dist;
mod flags;
mod git;
mod image_checks;
mod infra_checks;
pub mod moto;

pub mod pin_downloads;
pub mod project;
mod prune;
mod publish;
mod release;
pub mod template;
mod terraform_docs;
pub mod terraform_module;
#[cfg(test)]
mod test_images;
mod version;
pub mod windows;

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;

/// `cargo xtask`: parses the command line and runs the task.
pub fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    // The one read of the environment; tasks get it passed down.
    #[allow(clippy::disallowed_methods, reason = "the one place xtask reads its environment")]
    let environment = elastic_ci_core::environment::from_os_vars(std::env::vars_os());
    for warning in environment.warnings() {
        eprintln!("warning: {warning}");
    }
    let env = environment.vars;
    match dispatch(flags.command, &env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one task as `cargo xtask ARGS…` would, with `env` as its environment (the AWS
/// clients still read the process's own, as everywhere): the release rehearsal drives
/// the release tasks through this.
pub fn run_task<I, S>(args: I, env: &HashMap<String, String>) -> anyhow::Result<()>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let flags = flags::Xtask::try_parse_from(
        std::iter::once(std::ffi::OsString::from("cargo xtask"))
            .chain(args.into_iter().map(Into::into)),
    )
    .map_err(|error| anyhow::anyhow!("invalid task arguments: {error}"))?;
    dispatch(flags.command, env)
}

fn dispatch(command: flags::Command, env: &HashMap<String, String>) -> anyhow::Result<()> {
    match command {
        flags::Command::Ci(args) => ci::run(&args),
        flags::Command::Moto(args) => moto::run(&args),
        flags::Command::Dist(args) => dist::run(&args),
        flags::Command::Template(args) => template::run(&args, env),
        flags::Command::TerraformDocs(args) => terraform_docs::run(&args),
        flags::Command::Ami(args) => match &args.action {
            Some(flags::AmiAction::Prune(prune)) => prune::run(prune, env),
            None => ami::run(&args, env),
        },
        flags::Command::Publish(args) => publish::run(&args, env),
        flags::Command::PinDownloads(args) => pin_downloads::run(&args),
        flags::Command::Release(args) => release::run(&args),
        flags::Command::Demo(args) => demo::run(&args.args),
        flags::Command::Windows(args) => windows::run(args.prepare, args.moto_endpoint.as_deref()),
    }
}
