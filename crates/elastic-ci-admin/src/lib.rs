//! `elastic-ci`: the operator's command-line tool for an Elastic CI Stack for AWS.
//!
//! - `simulate TRACE`: replay a job trace in virtual time against the real scaling
//!   decision ([`elastic_ci_core::scaling::decide`]) and a model of the stack; report
//!   job waits, instance cost and API use; write per-job and per-tick tables and an
//!   SVG timeline; sweep settings and print the cost/wait Pareto front
//!   ([`commands::simulate`], over the `elastic-ci-simulator` crate).
//!
//! ## Configuration
//!
//! - `ELASTIC_CI_LOG`: log filter for stderr (default `warn`, raised by `-v`).
//! - `simulate --env-file FILE`: the scaler Lambda's environment variables
//!   (`elastic_ci_core::scaling::config::ScalerConfig::ENV_VARS`), in env-file syntax.
//!
//! Exit status: 0 on success (a closed stdout pipe included), 1 when the command
//! failed, 2 when the arguments, settings or input files are invalid.

pub(crate) mod commands;
mod output;

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

use crate::commands::simulate::SimulateArgs;

/// Operate an Elastic CI Stack for AWS.
#[derive(Debug, Parser)]
#[command(
    name = "elastic-ci",
    version,
    after_help = "Exit status: 0 on success, 1 when the command failed, 2 for invalid arguments, settings or input files."
)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (ELASTIC_CI_LOG, when
    /// set, wins).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Replay a job trace against the scaler in virtual time: job waits, cost, API use.
    ///
    /// The model: the scaler Lambda runs every --schedule-period
    /// and polls within each invocation (LAMBDA_INTERVAL, LAMBDA_TIMEOUT); every poll
    /// calls the Lambda's own scaling decision with the queue's counts and the group's
    /// sizes. The group launches instances up to the desired capacity; they are in
    /// service after --boot and their agents connect after --agent-connect. Ready jobs
    /// go first come, first served to idle agents. An instance whose agents have all
    /// been idle for --idle-period disconnects, terminates itself --drain later with
    /// decrement of the desired capacity (replaced instead at MinSize), and is billed
    /// until --billing-tail after that. Instances are protected from scale-in.
    ///
    /// Scaler settings start from the stack's defaults (SCALE_OUT_COOLDOWN_PERIOD=300s,
    /// DISABLE_SCALE_IN=true, AVAILABILITY_THRESHOLD=0.5, LAMBDA_TIMEOUT=50s, …), then
    /// --env-file, then --set, then --sweep.
    #[command(verbatim_doc_comment)]
    Simulate(Box<SimulateArgs>),
}

/// Runs the command, writing its output to `stdout`.
pub fn run(cli: Cli, stdout: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate(args) => commands::simulate::simulate(&args, stdout),
    }
}

/// Logs to stderr, filtered by `ELASTIC_CI_LOG` or else by the `-v` count.
pub fn init_logging(env: &HashMap<String, String>, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = env.get("ELASTIC_CI_LOG").map_or(default, String::as_str);
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

/// Reports a failure on stderr and chooses the exit status: 2 for invalid input, 0
/// for a closed stdout pipe (a reader such as `head` that stopped early), else 1.
pub fn report_error(error: &anyhow::Error) -> ExitCode {
    if output::is_broken_pipe(error) {
        return ExitCode::SUCCESS;
    }
    output::error_line(&format!("error: {error:#}"));
    if commands::is_invalid_input(error) { ExitCode::from(2) } else { ExitCode::FAILURE }
}
