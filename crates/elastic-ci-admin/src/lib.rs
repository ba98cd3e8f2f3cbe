//! `elastic-ci`: the operator's command-line tool for an Elastic CI Stack for AWS.
//!
//! Operating a deployed stack (found by `--stack NAME` in CloudFormation, or by
//! `--terraform-output FILE` for the Terraform module):
//!
//! - `status`: the queue, the group and its instances, the scaler, recent activities;
//! - `pause [--to N]` and `resume`: stop and restart the scaler's schedule;
//! - `upgrade`: a change-set update that keeps every parameter not set;
//! - `logs`, `decisions`: the stack's log groups and the scaler's per-poll lines;
//! - `why`: why jobs are waiting, in one paragraph ([`why`]);
//! - `drain`, `rotate-token`: stop agents after their jobs; replace the agent token;
//! - `doctor`: one pass/fail line per check of the stack's prerequisites;
//! - `iam-policy`: the policies a custom instance role needs ([`commands::iam_policy`]);
//! - `copy-log-filters`: the original stack's log groups' metric and subscription
//!   filters, created on this stack's log groups ([`commands::log_filters`]).
//!
//! And offline: `simulate TRACE` replays a job trace in virtual time against the real
//! scaling decision ([`commands::simulate`]); `export-trace` writes a trace from the
//! Buildkite REST API; `completions SHELL` prints a shell completion script.
//!
//! ## Configuration
//!
//! - `ELASTIC_CI_LOG`: log filter for stderr (default `warn`, raised by `-v`).
//! - `ELASTIC_CI_STACK`: the default of `--stack`.
//! - `AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL` and the other standard AWS
//!   variables, overridden by `--profile`, `--region` and `--endpoint-url`.
//! - `BUILDKITE_API_TOKEN`: the REST API token of `export-trace`.
//! - `simulate --env-file FILE`: the scaler Lambda's environment variables
//!   (`elastic_ci_core::scaling::config::ScalerConfig::ENV_VARS`), in env-file syntax.
//!
//! Exit status: 0 on success (a closed stdout pipe included), 1 when the command
//! failed, 2 when the arguments, settings, input files or the stack named are invalid.

pub mod clients;
pub mod commands;
pub mod error;
mod output;
pub mod polls;
pub mod render;
pub mod state;
pub mod target;
pub mod why;

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};

use crate::clients::Clients;
use crate::commands::simulate::SimulateArgs;
use crate::error::InputError;
use crate::target::StackTarget;

/// Operate an Elastic CI Stack for AWS.
#[derive(Debug, Parser)]
#[command(
    name = "elastic-ci",
    version,
    after_help = "Exit status: 0 on success, 1 when the command failed, 2 for invalid arguments, settings, input files or an unknown stack."
)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (ELASTIC_CI_LOG, when
    /// set, wins).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Which stack, and how to reach AWS.
#[derive(Debug, Clone, Args)]
#[group(id = "target", required = true, multiple = false, args = ["stack", "terraform_output"])]
pub struct StackArgs {
    /// The CloudFormation stack's name.
    #[arg(long, value_name = "NAME", env = "ELASTIC_CI_STACK", help_heading = "Stack")]
    pub stack: Option<String>,

    /// A stack deployed with the Terraform module: the JSON of `terraform output -json`.
    #[arg(long, value_name = "FILE", help_heading = "Stack")]
    pub terraform_output: Option<PathBuf>,

    /// The AWS profile [default: AWS_PROFILE, else the default profile].
    #[arg(long, value_name = "NAME", help_heading = "AWS")]
    pub profile: Option<String>,

    /// The AWS region [default: AWS_REGION, else the profile's].
    #[arg(long, value_name = "REGION", help_heading = "AWS")]
    pub region: Option<String>,

    /// Send every AWS call to this endpoint (an emulator) [default: AWS_ENDPOINT_URL].
    #[arg(long, value_name = "URL", help_heading = "AWS")]
    pub endpoint_url: Option<String>,
}

/// What every command that changes the stack takes.
#[derive(Debug, Clone, Copy, Args)]
pub struct MutateArgs {
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (asked only when stdin is a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The queue, the group and its instances, the scaler and the recent activities.
    Status(commands::status::StatusArgs),
    /// Pause the scaler: disable its schedule, optionally set the desired capacity.
    Pause(commands::pause::PauseArgs),
    /// Undo `pause` exactly: restore the capacities it changed, enable the schedule.
    Resume(commands::pause::ResumeArgs),
    /// Update the stack with a change set, keeping every parameter not set.
    Upgrade(commands::upgrade::UpgradeArgs),
    /// The stack's log events, one line each, prefixed with the instance id.
    Logs(commands::logs::LogsArgs),
    /// The scaler's decisions, one row per poll.
    Decisions(commands::logs::DecisionsArgs),
    /// Why jobs are waiting, in one paragraph.
    Why(commands::status::WhyArgs),
    /// Stop agents taking jobs; each exits after its job and its instance terminates.
    Drain(commands::drain::DrainArgs),
    /// Replace the agent token in the stack's parameter, never printing it.
    RotateToken(commands::drain::RotateTokenArgs),
    /// Check the stack's prerequisites: one pass/fail line each.
    Doctor(commands::doctor::DoctorArgs),
    /// Put the original stack's log filters on this stack's log groups.
    ///
    /// The original stack's instances wrote to /buildkite/<file> log groups
    /// (buildkite-agent, cloud-init, cloud-init/output, docker-daemon, elastic-stack,
    /// system, auth); this stack's write to /buildkite/<stack name>/<file>. Every
    /// metric filter and subscription filter of an old group that exists is created on
    /// the new group with the same name and settings; filters already there are left
    /// alone, and the old groups are only read. Exit status 1 when a filter could not
    /// be created (the others still are).
    #[command(verbatim_doc_comment)]
    CopyLogFilters(commands::log_filters::CopyLogFiltersArgs),
    /// The trust policy and policies a custom InstanceRoleARN needs, as JSON.
    IamPolicy(commands::iam_policy::IamPolicyArgs),
    /// Write a job trace for `simulate` from the Buildkite REST API.
    ///
    /// Reads the API token from BUILDKITE_API_TOKEN (a token with read_builds); it is
    /// sent only to --api-url's server.
    #[command(verbatim_doc_comment)]
    ExportTrace(commands::export_trace::ExportTraceArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
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

/// Arguments of `elastic-ci completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// What a stack command runs with.
pub struct Context {
    pub clients: Clients,
    pub target: StackTarget,
    pub env: HashMap<String, String>,
    pub now: SystemTime,
}

/// Runs the command, writing its output to `stdout`; `env` is the process environment.
pub fn run(cli: Cli, env: &HashMap<String, String>, stdout: &mut dyn Write) -> anyhow::Result<()> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the async runtime")
    };
    // A command on a deployed stack: find the stack, then run the command on it.
    macro_rules! on_stack {
        ($args:expr, $command:path) => {{
            let args = $args;
            runtime()?.block_on(async {
                let context = connect(&args.stack, env).await?;
                $command(&context, &args, stdout).await
            })
        }};
    }
    match cli.command {
        Command::Status(args) => on_stack!(args, commands::status::status),
        Command::Why(args) => on_stack!(args, commands::status::why),
        Command::Pause(args) => on_stack!(args, commands::pause::pause),
        Command::Resume(args) => on_stack!(args, commands::pause::resume),
        Command::Upgrade(args) => on_stack!(args, commands::upgrade::upgrade),
        Command::Logs(args) => on_stack!(args, commands::logs::logs),
        Command::Decisions(args) => on_stack!(args, commands::logs::decisions),
        Command::Drain(args) => on_stack!(args, commands::drain::drain),
        Command::RotateToken(args) => on_stack!(args, commands::drain::rotate_token),
        Command::Doctor(args) => on_stack!(args, commands::doctor::doctor),
        Command::CopyLogFilters(args) => {
            on_stack!(args, commands::log_filters::copy_log_filters)
        }
        Command::ExportTrace(args) => {
            runtime()?.block_on(commands::export_trace::run(&args, env, stdout))
        }
        Command::Simulate(args) => commands::simulate::simulate(&args, stdout),
        Command::IamPolicy(args) => commands::iam_policy::run(&args, stdout),
        Command::Completions(args) => {
            let shell = match args.shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "elastic-ci", stdout);
            Ok(())
        }
    }
}

/// Builds the clients and finds the stack.
pub async fn connect(stack: &StackArgs, env: &HashMap<String, String>) -> anyhow::Result<Context> {
    // A Terraform output file is read first: a bad one is reported before any AWS set-up.
    let terraform = match &stack.terraform_output {
        Some(path) => Some(read_terraform_output(path)?),
        None => None,
    };
    let settings = AwsSettings::from_env_map(env).with_overrides(
        stack.region.clone(),
        stack.profile.clone(),
        stack.endpoint_url.clone(),
    );
    let sdk_config = aws_sdk_config(&settings).await;
    if sdk_config.region().is_none() {
        return Err(InputError::new("no AWS region: set AWS_REGION or pass --region").into());
    }
    let clients = Clients::from_sdk(&sdk_config, &settings);
    let target = match terraform {
        Some(target) => target,
        None => find_target(&clients, stack).await?,
    };
    Ok(Context { clients, target, env: env.clone(), now: SystemTime::now() })
}

/// Finds the stack's resources from CloudFormation or the Terraform output file.
pub async fn find_target(clients: &Clients, stack: &StackArgs) -> anyhow::Result<StackTarget> {
    match (&stack.stack, &stack.terraform_output) {
        (_, Some(path)) => read_terraform_output(path),
        (Some(name), None) => target::from_cloudformation(clients.stacks.as_ref(), name).await,
        (None, None) => {
            Err(InputError::new("name the stack with --stack or --terraform-output").into())
        }
    }
}

fn read_terraform_output(path: &std::path::Path) -> anyhow::Result<StackTarget> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| InputError::new(format!("failed to read {}: {error}", path.display())))?;
    Ok(target::from_terraform_output(path, &text)?)
}

/// Asks before a change: on a terminal without `--yes`, the user must answer y.
/// Returns whether to go ahead.
pub fn confirm(mutate: &MutateArgs, question: &str) -> anyhow::Result<bool> {
    if mutate.yes || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    output::prompt(&format!("{question} [y/N] "));
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("failed to read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Logs to stderr, filtered by `ELASTIC_CI_LOG` or else by the `-v` count.
pub fn init_logging(env: &HashMap<String, String>, verbose: u8) {
    // The SDK warns while it looks for a region or credentials in places that are
    // usually absent (instance metadata on a laptop); our own error says what is missing.
    let default = match verbose {
        0 => "warn,aws_config=error",
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
    output::error_line(&format!("error: {}", format!("{error:#}").replace(['\n', '\r'], " ")));
    if commands::is_invalid_input(error) { ExitCode::from(2) } else { ExitCode::FAILURE }
}
