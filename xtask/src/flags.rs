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
}

#[derive(Debug, clap::Args)]
pub(crate) struct CiArgs {
    /// Skip `cargo fmt --check` and clippy (tests and infrastructure checks only).
    #[arg(long)]
    pub(crate) no_lint: bool,
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
