//! `elastic-ci drain` and `elastic-ci rotate-token`.
//!
//! Draining uses the path every instance already has: SSM runs `systemctl start
//! buildkite-agent-drain.service` on the instance, whose `elastic-ci-bootstrap
//! stop-gracefully` stops the agent after its running job; the agent unit's
//! `ExecStopPost` (`elastic-ci-bootstrap terminate`) then terminates the instance with
//! a decrement of the desired capacity. No job is killed.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Args;
use elastic_ci_core::fleet::{InstanceSnapshot, LifecycleState};
use elastic_ci_core::secret::{Secret, agent_token};

use crate::commands::pause::{PauseArgs, pause};
use crate::error::InputError;
use crate::{Context, MutateArgs, StackArgs, confirm};

/// The most instances one SSM SendCommand call names.
const SEND_COMMAND_MAX_INSTANCES: usize = 50;

/// The command SSM runs on each drained instance.
pub const DRAIN_COMMAND: &str = "systemctl start --no-block buildkite-agent-drain.service";

/// The systemd unit [`DRAIN_COMMAND`] starts, which the image installs from
/// `packer/linux/conf/systemd/`.
pub const DRAIN_UNIT: &str = "buildkite-agent-drain.service";

/// Arguments of `elastic-ci drain`.
#[derive(Debug, Args)]
#[group(id = "which", required = true, multiple = false, args = ["instance", "all"])]
pub struct DrainArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// The instance to drain. Repeatable.
    #[arg(long, value_name = "ID")]
    pub instance: Vec<String>,

    /// Every instance of the group; also pauses the scaler, so that none replaces them.
    #[arg(long)]
    pub all: bool,

    /// Wait until the drained instances have left the group.
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits at most.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::render::parse_since)]
    pub timeout: Duration,

    /// How often --wait looks at the group.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::render::parse_since, hide = true)]
    pub poll_interval: Duration,

    #[command(flatten)]
    pub mutate: MutateArgs,
}

/// Arguments of `elastic-ci rotate-token`.
#[derive(Debug, Args)]
#[group(id = "token", required = true, multiple = false, args = ["token_file", "token_stdin"])]
pub struct RotateTokenArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Read the new agent token from FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Read the new agent token from stdin.
    #[arg(long)]
    pub token_stdin: bool,

    /// Then drain every instance, so that new ones boot with the new token (the scaler
    /// keeps running and replaces them as jobs need).
    #[arg(long)]
    pub replace_instances: bool,

    #[command(flatten)]
    pub mutate: MutateArgs,
}

/// Asks each instance's agent to stop after its job.
async fn send_drain(
    context: &Context,
    instances: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if instances.is_empty() {
        writeln!(out, "no instances to drain")?;
        return Ok(());
    }
    // SendCommand takes at most 50 instances; each batch is its own command.
    for batch in instances.chunks(SEND_COMMAND_MAX_INSTANCES) {
        let command_id = context
            .clients
            .commands
            .run_shell(
                batch,
                &[DRAIN_COMMAND.to_owned()],
                "elastic-ci drain: stop the agent after its job",
            )
            .await
            .with_context(|| format!("failed to send the drain command to {}", batch.join(", ")))?;
        writeln!(out, "draining {} (SSM command {command_id})", batch.join(", "))?;
    }
    Ok(())
}

/// The group's instances, with their lifecycle states.
async fn members(context: &Context) -> anyhow::Result<Vec<InstanceSnapshot>> {
    let group = context
        .clients
        .groups
        .describe_group(&context.target.group)
        .await
        .with_context(|| format!("failed to describe group {}", context.target.group))?;
    Ok(group.instances)
}

async fn wait_until_gone(
    context: &Context,
    instances: &[String],
    args: &DrainArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let deadline = SystemTime::now() + args.timeout;
    loop {
        let remaining: Vec<String> = members(context)
            .await?
            .into_iter()
            .filter(|instance| instances.contains(&instance.id))
            .filter(|instance| instance.lifecycle_state != LifecycleState::Terminated)
            .map(|instance| instance.id)
            .collect();
        if remaining.is_empty() {
            writeln!(out, "drained: every instance has left the group")?;
            return Ok(());
        }
        if SystemTime::now() > deadline {
            anyhow::bail!(
                "still in the group after {} s: {} (their jobs may still be running)",
                args.timeout.as_secs(),
                remaining.join(", ")
            );
        }
        writeln!(out, "waiting for {} to finish their jobs and leave", remaining.join(", "))?;
        out.flush()?;
        tokio::time::sleep(args.poll_interval).await;
    }
}

/// The group's instances that are in service or starting (the ones with agents to
/// drain).
async fn in_service(context: &Context) -> anyhow::Result<Vec<String>> {
    Ok(members(context)
        .await?
        .into_iter()
        .filter(|instance| {
            matches!(instance.lifecycle_state, LifecycleState::InService | LifecycleState::Pending)
        })
        .map(|instance| instance.id)
        .collect())
}

/// Runs `drain`.
pub async fn drain(context: &Context, args: &DrainArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let members = in_service(context).await?;
    let instances = if args.all {
        members
    } else {
        for id in &args.instance {
            if !members.contains(id) {
                return Err(InputError::new(format!(
                    "instance {id:?} is not in service in group {}",
                    context.target.group
                ))
                .into());
            }
        }
        args.instance.clone()
    };
    if args.mutate.dry_run {
        if args.all {
            writeln!(out, "would pause the scaler")?;
        }
        writeln!(
            out,
            "would drain {}: `{DRAIN_COMMAND}` through SSM",
            if instances.is_empty() { "no instances".to_owned() } else { instances.join(", ") }
        )?;
        return Ok(());
    }
    if !confirm(&args.mutate, &format!("Drain {} instances?", instances.len()))? {
        return Ok(());
    }
    if args.all && context.target.schedule_rule.is_some() {
        let pause_args = PauseArgs {
            stack: args.stack.clone(),
            to: None,
            mutate: MutateArgs { dry_run: false, yes: true },
        };
        pause(context, &pause_args, out).await?;
    }
    send_drain(context, &instances, out).await?;
    if args.wait && !instances.is_empty() {
        wait_until_gone(context, &instances, args, out).await?;
    }
    Ok(())
}

/// Reads the new token from its file or stdin; the message on failure names the source,
/// never the content.
fn read_token(args: &RotateTokenArgs) -> anyhow::Result<(Secret, String)> {
    let (raw, place) = match &args.token_file {
        Some(path) => {
            let raw = std::fs::read_to_string(path).map_err(|error| {
                InputError::new(format!(
                    "failed to read the token file {}: {error}",
                    path.display()
                ))
            })?;
            (raw, format!("token file {}", path.display()))
        }
        None => {
            let mut raw = String::new();
            std::io::stdin().read_to_string(&mut raw).map_err(|error| {
                InputError::new(format!("failed to read the token from stdin: {error}"))
            })?;
            (raw, "stdin".to_owned())
        }
    };
    let token = agent_token(&Secret::new(raw), &place)
        .map_err(|error| InputError::new(error.to_string()))?;
    Ok((token, place))
}

/// Runs `rotate-token`.
pub async fn rotate_token(
    context: &Context,
    args: &RotateTokenArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (token, place) = read_token(args)?;
    let name = context.target.token_parameter.as_deref().ok_or_else(|| {
        InputError::new(format!("stack {} names no agent token parameter", context.target.name))
    })?;
    let info = context
        .clients
        .parameter_admin
        .describe_parameter(name)
        .await
        .with_context(|| format!("failed to describe parameter {name}"))?;
    let key = info.key_id.as_deref().unwrap_or("the default key");
    let verb = if args.mutate.dry_run { "would write" } else { "writing" };
    writeln!(out, "{verb} the token from {place} to {name} ({}, {key})", info.kind)?;
    if args.mutate.dry_run {
        if args.replace_instances {
            writeln!(out, "would then drain every instance")?;
        }
        return Ok(());
    }
    if !confirm(&args.mutate, &format!("Replace the agent token in {name}?"))? {
        return Ok(());
    }
    context
        .clients
        .parameter_admin
        .overwrite(&info, &token)
        .await
        .with_context(|| format!("failed to write parameter {name}"))?;
    writeln!(out, "token rotated: instances that boot from now on use it")?;
    if args.replace_instances {
        let instances = in_service(context).await?;
        send_drain(context, &instances, out).await?;
    }
    Ok(())
}
