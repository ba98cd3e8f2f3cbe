//! `elastic-ci status` and `elastic-ci why`: the stack's state, printed or reasoned
//! over.

use std::io::Write;
use std::time::{Duration, SystemTime};

use clap::Args;
use elastic_ci_buildkite::{AgentMetrics, AgentMetricsClient, ClientSettings};
use elastic_ci_core::lifecycle::format_rfc3339;
use elastic_ci_core::scaling::QueueCounts;
use elastic_ci_core::secret::agent_token;
use serde_json::json;

use crate::render::{age, cell, table};
use crate::state::{StackState, gather};
use crate::why::{causes, paragraph};
use crate::{Context, StackArgs};

/// The agent API the template defaults `AgentEndpoint` to.
pub const DEFAULT_AGENT_ENDPOINT: &str = "https://agent.buildkite.com/v3";

/// Arguments of `elastic-ci status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Read the queue live from the Buildkite agent metrics API, with the stack's
    /// agent token, instead of from the scaler's last poll.
    #[arg(long)]
    pub live: bool,

    /// Redraw every --interval until interrupted.
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,

    /// How often --watch redraws.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::render::parse_since)]
    pub interval: Duration,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `elastic-ci why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Print the causes as JSON instead of a paragraph.
    #[arg(long)]
    pub json: bool,
}

/// Runs `status`.
pub async fn status(
    context: &Context,
    args: &StatusArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    loop {
        let now = if args.watch { SystemTime::now() } else { context.now };
        let state = gather(&context.clients, &context.target, now).await?;
        let live = if args.live { Some(live_counts(context, &state).await) } else { None };
        if args.json {
            let value = status_json(&state, live.as_ref());
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            return Ok(());
        }
        let text = status_text(&state, live.as_ref());
        if args.watch {
            // Clear the screen and home the cursor, then draw.
            write!(out, "\x1b[2J\x1b[H{text}")?;
            out.flush()?;
            tokio::time::sleep(args.interval).await;
        } else {
            write!(out, "{text}")?;
            return Ok(());
        }
    }
}

/// Runs `why`.
pub async fn why(context: &Context, args: &WhyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let state = gather(&context.clients, &context.target, context.now).await?;
    let snapshot = state.snapshot();
    if args.json {
        let value = json!({ "queue": snapshot.queue, "causes": causes(&snapshot), "answer": paragraph(&snapshot) });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        writeln!(out, "{}", paragraph(&snapshot))?;
    }
    Ok(())
}

/// The queue's counts from the Buildkite API, or why they could not be read.
async fn live_counts(context: &Context, state: &StackState) -> Result<QueueCounts, String> {
    let parameter =
        context.target.token_parameter.as_deref().ok_or("the stack names no token parameter")?;
    let stored = context
        .clients
        .parameters
        .get(parameter)
        .await
        .map_err(|error| format!("failed to read the agent token: {error}"))?;
    let token = agent_token(&stored.value, parameter).map_err(|error| error.to_string())?;
    let endpoint = context.target.parameter("AgentEndpoint").unwrap_or(DEFAULT_AGENT_ENDPOINT);
    let endpoint = elastic_ci_core::uri::parse_agent_endpoint(endpoint)
        .ok_or_else(|| format!("invalid AgentEndpoint {endpoint:?}: expected an https:// URL"))?;
    let client = AgentMetricsClient::new(&endpoint, &ClientSettings::standard())
        .map_err(|error| error.to_string())?;
    client
        .queue_metrics(&state.queue(), &token)
        .await
        .map(|report| report.counts)
        .map_err(|error| error.to_string())
}

fn ago(now: SystemTime, then: SystemTime) -> String {
    format!("{} ({} ago)", format_rfc3339(then), age(now.duration_since(then).unwrap_or_default()))
}

/// The text of `status`.
pub fn status_text(state: &StackState, live: Option<&Result<QueueCounts, String>>) -> String {
    let mut text = String::new();
    let target = &state.target;
    let kind = if target.cloudformation { "CloudFormation stack" } else { "Terraform stack" };
    text.push_str(&format!("{kind} {}, queue {:?}\n\n", target.name, state.queue()));

    let last = state.polls.last();
    text.push_str("Queue: ");
    match live {
        Some(Ok(counts)) => text.push_str(&format!(
            "{} scheduled, {} running, {} waiting jobs; {} agents ({} busy, {} idle) (live)\n",
            counts.scheduled_jobs,
            counts.running_jobs,
            counts.waiting_jobs,
            counts.total_agents,
            counts.busy_agents,
            counts.idle_agents
        )),
        Some(Err(error)) => text.push_str(&format!("could not be read live: {error}\n")),
        None => match state.polls.iter().rev().find(|poll| poll.succeeded()) {
            Some(poll) => text.push_str(&format!(
                "{} scheduled, {} running, {} waiting jobs; {} agents (the scaler's poll at {})\n",
                cell(poll.scheduled_jobs),
                cell(poll.running_jobs),
                cell(poll.waiting_jobs),
                cell(poll.total_agents),
                format_rfc3339(poll.time)
            )),
            None => text.push_str(
                "unknown: no successful scaler poll in the last 30 minutes (try --live)\n",
            ),
        },
    }

    text.push_str("Scaler: ");
    match state.schedule_enabled {
        None => text.push_str("none (MinSize equals MaxSize)\n"),
        Some(true) => text.push_str("running\n"),
        Some(false) => match &state.pause {
            Some(pause) => {
                text.push_str(&format!("paused by `elastic-ci pause` at {}\n", pause.at))
            }
            None => text.push_str("paused (its schedule is disabled)\n"),
        },
    }
    if let Some(poll) = last {
        text.push_str(&format!("  last poll: {}\n", ago(state.now, poll.time)));
        match (&poll.error, poll.conclusion()) {
            (Some(error), _) => text.push_str(&format!("  last poll failed: {error}\n")),
            (None, Some(conclusion)) => text.push_str(&format!("  last decision: {conclusion}\n")),
            (None, None) => {}
        }
    } else if state.schedule_enabled.is_some() {
        text.push_str("  no poll in the last 30 minutes\n");
    }

    let group = &state.group.snapshot;
    let in_service = state
        .group
        .instances
        .iter()
        .filter(|instance| instance.lifecycle_state == "InService")
        .count();
    let pending = state
        .group
        .instances
        .iter()
        .filter(|instance| instance.lifecycle_state.starts_with("Pending"))
        .count();
    text.push_str(&format!(
        "\nGroup {}: desired {}, min {}, max {}; {} in service, {} pending\n",
        group.name, group.desired_capacity, group.min_size, group.max_size, in_service, pending
    ));
    if !state.group.instances.is_empty() {
        let rows: Vec<Vec<String>> = state
            .group
            .instances
            .iter()
            .map(|instance| {
                vec![
                    instance.id.clone(),
                    instance.instance_type.clone(),
                    instance.zone.clone(),
                    instance.lifecycle_state.clone(),
                    instance.health.to_string(),
                    state
                        .launch_times
                        .get(&instance.id)
                        .and_then(|launched| state.now.duration_since(*launched).ok())
                        .map_or_else(|| "-".to_owned(), age),
                    instance.launch_template_version.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        text.push_str(&table(
            &["INSTANCE", "TYPE", "ZONE", "STATE", "HEALTH", "AGE", "TEMPLATE"],
            &rows,
        ));
    }

    text.push_str("\nActivities:\n");
    if state.activities.is_empty() {
        text.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = state
            .activities
            .iter()
            .map(|activity| {
                vec![
                    format_rfc3339(activity.start_time),
                    activity.status.clone(),
                    activity.description.clone(),
                ]
            })
            .collect();
        text.push_str(&table(&["START", "STATUS", "DESCRIPTION"], &rows));
    }
    text
}

/// The JSON of `status --json`.
pub fn status_json(
    state: &StackState,
    live: Option<&Result<QueueCounts, String>>,
) -> serde_json::Value {
    let group = &state.group.snapshot;
    json!({
        "stack": state.target.name,
        "queue": state.queue(),
        "live_queue": live.map(|result| match result {
            Ok(counts) => json!(counts),
            Err(error) => json!({ "error": error }),
        }),
        "scaler": {
            "present": state.schedule_enabled.is_some(),
            "paused": state.paused(),
            "pause": state.pause,
            "last_poll": state.polls.last(),
        },
        "group": {
            "name": group.name,
            "desired_capacity": group.desired_capacity,
            "min_size": group.min_size,
            "max_size": group.max_size,
            "in_service": state.group.instances.iter().filter(|instance| instance.lifecycle_state == "InService").count(),
            "pending": state.group.instances.iter().filter(|instance| instance.lifecycle_state.starts_with("Pending")).count(),
        },
        "instances": state.group.instances.iter().map(|instance| json!({
            "id": instance.id,
            "type": instance.instance_type,
            "zone": instance.zone,
            "lifecycle_state": instance.lifecycle_state,
            "health": instance.health.as_api(),
            "launch_time": state.launch_times.get(&instance.id).map(|time| format_rfc3339(*time)),
            "launch_template_version": instance.launch_template_version,
        })).collect::<Vec<_>>(),
        "activities": state.activities.iter().map(|activity| json!({
            "start_time": format_rfc3339(activity.start_time),
            "status": activity.status,
            "description": activity.description,
            "cause": activity.cause,
        })).collect::<Vec<_>>(),
    })
}
