//! Not shipped: the stack running on this machine, end to end.
//!
//! - [`demo`]: `elastic-ci-demo` (run by `cargo xtask demo`): the rendered template
//!   deployed into moto, a fake Buildkite queue fed from a job trace, the real scaler,
//!   and simulated instances running the real bootstrapper and hooks.
//! - [`cfn_eval`]: a template evaluated for given parameters as CloudFormation would,
//!   for the tests of Rules and IAM policies, which moto does not evaluate.
//! - [`deploy`]: what every deployment on the emulator shares (the rendered template,
//!   the scaler zips, the UserData read back).
//! - [`moto_api`]: describe calls to the emulator for services whose SDK crates the
//!   workspace does not build.
//!
//! `tests/stack.rs` deploys the rendered template on moto's CloudFormation and inspects
//! what it made.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the demo talks to its user on the terminal"
)]

pub mod cfn_eval;
pub mod demo;
pub mod deploy;
pub mod moto_api;
