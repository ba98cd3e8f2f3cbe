//! `cargo xtask`: the project's automation, in Rust.
//!
//! - `cargo xtask ci`: every check CI runs (formatting, lints, all tests including the
//!   suites against the local AWS emulator, which it starts and stops itself).
//! - `cargo xtask moto start|stop|status`: a local AWS emulator for tests and for trying
//!   the binaries by hand.
//! - `cargo xtask dist`: the scaler Lambda zips and the instance binaries.
//! - `cargo xtask template`: the published CloudFormation template.
//! - `cargo xtask terraform-docs`: the inputs and outputs tables of the Terraform
//!   module's README.
//! - `cargo xtask ami`: the agent AMI (Packer), recorded in the template's AMI mappings.
//! - `cargo xtask publish`: the rendered template, uploaded to the release bucket.
//! - `cargo xtask demo`: the whole stack on this machine (moto, a fake Buildkite queue,
//!   the real scaler, simulated instances running the real bootstrapper and hooks).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask talks to its user on the terminal"
)]

mod ami;
#[cfg(test)]
mod cfn_eval;
mod ci;
mod demo;
mod dist;
mod flags;
mod git;
mod image_checks;
mod infra_checks;
mod moto;
mod moto_api;
#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod policy_tests;
mod project;
mod publish;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod stack_tests;
mod template;
mod terraform_docs;

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    // The one read of the environment; tasks get it passed down.
    let env: HashMap<String, String> = std::env::vars().collect();
    let result = match flags.command {
        flags::Command::Ci(args) => ci::run(&args),
        flags::Command::Moto(args) => moto::run(&args),
        flags::Command::Dist(args) => dist::run(&args),
        flags::Command::Template(args) => template::run(&args),
        flags::Command::TerraformDocs(args) => terraform_docs::run(&args),
        flags::Command::Ami(args) => ami::run(&args, &env),
        flags::Command::Publish(args) => publish::run(&args, &env),
        flags::Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
