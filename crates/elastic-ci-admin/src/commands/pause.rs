//! `elastic-ci pause` and `elastic-ci resume`: stop the scaler's schedule and its
//! job-event rule (optionally setting the capacity), recording what changed in a tag on
//! the group, and restore exactly that.

use std::io::Write;

use anyhow::Context as _;
use clap::Args;
use elastic_ci_aws::autoscaling::{GroupDetails, SizeUpdate};
use elastic_ci_aws::eventbridge::Rule;
use elastic_ci_core::lifecycle::format_rfc3339;

use crate::error::InputError;
use crate::state::{PAUSE_TAG, PauseRecord};
use crate::{Context, MutateArgs, StackArgs, confirm};

/// Arguments of `elastic-ci pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Also set the desired capacity to N (and MinSize, when it is above N).
    #[arg(long, value_name = "N")]
    pub to: Option<u32>,

    #[command(flatten)]
    pub mutate: MutateArgs,
}

/// Arguments of `elastic-ci resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Enable the schedule even though `pause` did not disable it.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub mutate: MutateArgs,
}

fn schedule_rule(context: &Context) -> Result<&str, InputError> {
    context.target.schedule_rule.as_deref().ok_or_else(|| {
        InputError::new(format!(
            "stack {} has no scaler schedule (MinSize equals MaxSize): there is nothing to pause",
            context.target.name
        ))
    })
}

/// The scaler's job-event rule, as it is now; `None` without one.
async fn job_event_rule(context: &Context) -> anyhow::Result<Option<Rule>> {
    let Some(rule) = &context.target.job_event_rule else { return Ok(None) };
    let described = context
        .clients
        .rules
        .describe_rule(rule)
        .await
        .with_context(|| format!("failed to describe the scaler's job-event rule {rule}"))?;
    Ok(Some(described))
}

/// Enables or disables one of the scaler's rules.
async fn set_rule(context: &Context, rule: &str, enabled: bool) -> anyhow::Result<()> {
    let verb = if enabled { "enable" } else { "disable" };
    context
        .clients
        .rules
        .set_rule_enabled(rule, enabled)
        .await
        .with_context(|| format!("failed to {verb} {rule}"))
}

/// Changes the group's sizes, when there is anything to change.
async fn resize(context: &Context, update: SizeUpdate) -> anyhow::Result<()> {
    if update == SizeUpdate::default() {
        return Ok(());
    }
    let group_name = &context.target.group;
    context
        .clients
        .group_admin
        .update_sizes(group_name, update)
        .await
        .with_context(|| format!("failed to resize {group_name}"))
}

/// The group (with its tags) and the scaler's schedule, as they are now.
async fn current(context: &Context, rule: &str) -> anyhow::Result<(GroupDetails, Rule)> {
    let group_name = &context.target.group;
    let details = context
        .clients
        .group_admin
        .group_details(group_name)
        .await
        .with_context(|| format!("failed to describe group {group_name}"))?;
    let schedule = context
        .clients
        .rules
        .describe_rule(rule)
        .await
        .with_context(|| format!("failed to describe the scaler's schedule {rule}"))?;
    Ok((details, schedule))
}

/// Prints what will change (`would …` in a dry run); returns whether to go ahead.
fn announce(
    plan: &[String],
    mutate: &MutateArgs,
    question: &str,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    for step in plan {
        writeln!(out, "{}{step}", if mutate.dry_run { "would " } else { "" })?;
    }
    Ok(!mutate.dry_run && confirm(mutate, question)?)
}

/// Runs `pause`.
pub async fn pause(context: &Context, args: &PauseArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let clients = &context.clients;
    let group_name = &context.target.group;
    let rule = schedule_rule(context)?;
    let (details, schedule) = current(context, rule).await?;
    if let Some(existing) = details.tags.get(PAUSE_TAG) {
        let since = PauseRecord::from_tag(existing)
            .map_or_else(|| "an unknown time".to_owned(), |record| record.at);
        writeln!(out, "already paused by elastic-ci since {since}: nothing changed")?;
        return Ok(());
    }
    let group = &details.snapshot;
    let job_events = job_event_rule(context).await?;
    let mut record = PauseRecord {
        at: format_rfc3339(context.now),
        schedule_was_enabled: schedule.enabled,
        job_events_were_enabled: job_events.as_ref().map(|rule| rule.enabled),
        desired_capacity: None,
        min_size: None,
    };
    let mut update = SizeUpdate::default();
    let mut plan = Vec::new();
    if schedule.enabled {
        plan.push(format!("disable the scaler's schedule {rule}"));
    }
    let job_events = job_events.filter(|rule| rule.enabled);
    if let Some(job_events) = &job_events {
        plan.push(format!("disable the scaler's job-event rule {}", job_events.name));
    }
    if let Some(to) = args.to {
        if to > group.max_size {
            return Err(InputError::new(format!(
                "--to {to} is above the group's MaxSize of {}",
                group.max_size
            ))
            .into());
        }
        if to < group.min_size {
            plan.push(format!("lower MinSize from {} to {to}", group.min_size));
            record.min_size = Some(group.min_size);
            update.min_size = Some(to);
        }
        if to != group.desired_capacity {
            plan.push(format!("set the desired capacity from {} to {to}", group.desired_capacity));
            record.desired_capacity = Some(group.desired_capacity);
            update.desired_capacity = Some(to);
        }
    }
    plan.push(format!("record this in tag {PAUSE_TAG} on group {group_name}"));
    if !announce(&plan, &args.mutate, "Pause the scaler?", out)? {
        return Ok(());
    }
    // The record goes first, so that a failure half-way leaves what `resume` needs.
    clients
        .group_admin
        .put_tag(group_name, PAUSE_TAG, &record.to_tag())
        .await
        .context("failed to record the pause")?;
    if schedule.enabled {
        set_rule(context, rule, false).await?;
    }
    if let Some(job_events) = &job_events {
        set_rule(context, &job_events.name, false).await?;
    }
    resize(context, update).await?;
    writeln!(out, "paused")?;
    Ok(())
}

/// Runs `resume`.
pub async fn resume(
    context: &Context,
    args: &ResumeArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let clients = &context.clients;
    let group_name = &context.target.group;
    let rule = schedule_rule(context)?;
    let (details, schedule) = current(context, rule).await?;
    let record = match details.tags.get(PAUSE_TAG) {
        Some(value) => Some(PauseRecord::from_tag(value).ok_or_else(|| {
            InputError::new(format!(
                "tag {PAUSE_TAG} on group {group_name} is not a pause record: {value:?}"
            ))
        })?),
        None => None,
    };
    let mut plan = Vec::new();
    let mut update = SizeUpdate::default();
    let job_events = job_event_rule(context).await?;
    // The job-event rule goes back on when pause turned it off, or with --force.
    let job_events = job_events.filter(|rule| {
        !rule.enabled
            && match &record {
                Some(record) => record.job_events_were_enabled == Some(true),
                None => args.force,
            }
    });
    let enable = match &record {
        Some(record) => {
            if let Some(min) = record.min_size {
                plan.push(format!("restore MinSize to {min}"));
                update.min_size = Some(min);
            }
            if let Some(desired) = record.desired_capacity {
                plan.push(format!("restore the desired capacity to {desired}"));
                update.desired_capacity = Some(desired);
            }
            record.schedule_was_enabled && !schedule.enabled
        }
        None if schedule.enabled && job_events.is_none() => {
            writeln!(out, "not paused: nothing changed")?;
            return Ok(());
        }
        None if !args.force => {
            return Err(InputError::new(format!(
                "the scaler's schedule {rule} was disabled, but not by `elastic-ci pause`; pass --force to enable it"
            ))
            .into());
        }
        None => !schedule.enabled,
    };
    if enable {
        plan.push(format!("enable the scaler's schedule {rule}"));
    }
    if let Some(job_events) = &job_events {
        plan.push(format!("enable the scaler's job-event rule {}", job_events.name));
    }
    if record.is_some() {
        plan.push(format!("remove tag {PAUSE_TAG} from group {group_name}"));
    }
    if !announce(&plan, &args.mutate, "Resume the scaler?", out)? {
        return Ok(());
    }
    resize(context, update).await?;
    if enable {
        set_rule(context, rule, true).await?;
    }
    if let Some(job_events) = &job_events {
        set_rule(context, &job_events.name, true).await?;
    }
    if record.is_some() {
        clients
            .group_admin
            .delete_tag(group_name, PAUSE_TAG)
            .await
            .context("failed to remove the pause record")?;
    }
    writeln!(out, "resumed")?;
    Ok(())
}
