//! Not shipped: the stack running on this machine, end to end.
//!
//! - [`demo`]: `elastic-ci-demo` (run by `cargo xtask demo`): the rendered template
//!   deployed into moto, a fake Buildkite queue fed from a job trace, the real scaler,
//!   and simulated instances running the real bootstrapper and hooks.
//! - [`cfn_eval`]: a template evaluated for given parameters as CloudFormation would,
//!   for the tests of Rules and IAM policies, which moto does not evaluate.
//! - [`deploy`]: what every deployment on the emulator shares (the rendered template,
//!   the scaler zips, the UserData read back).
//! - [`helper_function`]: the template's helper functions' inline code run against
//!   the emulator, whose CloudFormation skips custom resources.
//! - [`moto_api`]: describe calls to the emulator for services whose SDK crates the
//!   workspace does not build.
//! - [`rehearsal`]: `elastic-ci-rehearse` (run by `cargo xtask release --rehearse` and
//!   `cargo xtask ci`): the release tasks against moto, then a stack from the published
//!   template URL and the published Terraform module checked.
//!
//! `tests/stack.rs` deploys the rendered template on moto's CloudFormation and inspects
//! what it made.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the demo and the rehearsal talk to their user on the terminal"
)]

pub mod cfn_eval;
pub mod demo;
pub mod deploy;
pub mod helper_function;
pub mod moto_api;
pub mod rehearsal;
