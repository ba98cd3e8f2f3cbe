//! `elastic-ci logs` and `elastic-ci decisions`: the stack's log groups, merged in
//! time order, and the scaler's per-poll lines as a table.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use elastic_ci_aws::logs::{LogEvent, LogFilter};
use elastic_ci_core::lifecycle::format_rfc3339;

use crate::polls::PollLine;
use crate::render::{cell, parse_since, table};
use crate::state::MAX_LOG_PAGES;
use crate::target::{LOG_SOURCES, LogSource};
use crate::{Context, StackArgs};

/// How often `--follow` asks for new events.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

/// Arguments of `elastic-ci logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Only this instance's events.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,

    /// Only this log [default: all of them].
    #[arg(long, value_enum)]
    pub source: Option<LogSource>,

    /// How far back to start.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_since)]
    pub since: Duration,

    /// Keep printing new events until interrupted.
    #[arg(long, short)]
    pub follow: bool,
}

/// Arguments of `elastic-ci decisions`.
#[derive(Debug, Args)]
pub struct DecisionsArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// How far back to start.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_since)]
    pub since: Duration,

    /// Keep printing new polls until interrupted.
    #[arg(long, short)]
    pub follow: bool,

    /// Print one JSON object per poll instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Reads the events of `groups` newer than `filter.start` that are not in `seen`,
/// oldest first, each with the source it came from.
async fn read(
    context: &Context,
    groups: &[(LogSource, String)],
    filter: &LogFilter,
    seen: &mut HashSet<String>,
) -> anyhow::Result<Vec<(LogSource, LogEvent)>> {
    let mut events = Vec::new();
    for (source, group) in groups {
        let filter = LogFilter { group: group.clone(), ..filter.clone() };
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_LOG_PAGES {
            let page = match context.clients.logs.filter_page(&filter, next_token.as_deref()).await
            {
                Ok(page) => page,
                // A group nothing has written to yet may not exist.
                Err(error) if error.is_not_found() => break,
                Err(error) => {
                    return Err(anyhow::Error::new(error)
                        .context(format!("failed to read log group {group}")));
                }
            };
            for event in page.events {
                if seen.insert(format!("{group}\n{}", event.event_id)) {
                    events.push((*source, event));
                }
            }
            next_token = page.next_token;
            if next_token.is_none() {
                break;
            }
        }
    }
    events.sort_by_key(|(_, event)| event.timestamp);
    Ok(events)
}

/// Reads the events of `groups` from `filter.start` and hands them to `print`; with
/// `follow`, keeps reading the new ones every [`FOLLOW_INTERVAL`] until interrupted.
async fn print_events(
    context: &Context,
    groups: &[(LogSource, String)],
    mut filter: LogFilter,
    follow: bool,
    out: &mut dyn Write,
    mut print: impl FnMut(&[(LogSource, LogEvent)], &mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    loop {
        let events = read(context, groups, &filter, &mut seen).await?;
        print(&events, out)?;
        if !follow {
            return Ok(());
        }
        out.flush()?;
        if let Some((_, last)) = events.last() {
            filter.start = Some(last.timestamp);
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
}

/// Runs `logs`.
pub async fn logs(context: &Context, args: &LogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let sources: Vec<LogSource> = match args.source {
        Some(source) => vec![source],
        None => LOG_SOURCES.to_vec(),
    };
    let mut groups = Vec::new();
    for source in sources {
        if args.instance.is_some() && source == LogSource::Scaler {
            continue;
        }
        match context.target.log_group(source) {
            Ok(group) => groups.push((source, group.to_owned())),
            Err(error) if args.source.is_some() => return Err(error.into()),
            Err(_) => {}
        }
    }
    let filter = LogFilter {
        group: String::new(),
        stream_prefix: args.instance.clone(),
        start: context.now.checked_sub(args.since),
        pattern: None,
    };
    print_events(context, &groups, filter, args.follow, out, |events, out| {
        for (source, event) in events {
            let who = if *source == LogSource::Scaler { "scaler" } else { event.stream.as_str() };
            let message = event.message.trim_end_matches(['\n', '\r']);
            writeln!(
                out,
                "{who} {} {}: {message}",
                format_rfc3339(event.timestamp),
                source.group_suffix()
            )?;
        }
        Ok(())
    })
    .await
}

/// Runs `decisions`.
pub async fn decisions(
    context: &Context,
    args: &DecisionsArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let group = context.target.log_group(LogSource::Scaler)?.to_owned();
    let filter = LogFilter {
        group: group.clone(),
        stream_prefix: None,
        start: context.now.checked_sub(args.since),
        pattern: None,
    };
    let mut header = !args.json;
    print_events(context, &[(LogSource::Scaler, group)], filter, args.follow, out, |events, out| {
        let polls: Vec<PollLine> = events
            .iter()
            .filter_map(|(_, event)| PollLine::parse(&event.message, event.timestamp))
            .collect();
        if args.json {
            for poll in &polls {
                writeln!(out, "{}", serde_json::to_string(poll)?)?;
            }
        } else if !polls.is_empty() || header {
            let text = decisions_table(&polls);
            let text = if header {
                text.as_str()
            } else {
                text.split_once('\n').map_or("", |(_, rows)| rows)
            };
            write!(out, "{text}")?;
            header = false;
        }
        Ok(())
    })
    .await
    .context("failed to read the scaler's decisions")
}

/// The table of `decisions`: one row per poll.
pub fn decisions_table(polls: &[PollLine]) -> String {
    let rows: Vec<Vec<String>> = polls
        .iter()
        .map(|poll| {
            let to = poll.target_capacity.map_or_else(|| "=".to_owned(), |to| to.to_string());
            vec![
                format_rfc3339(poll.time),
                cell(poll.scheduled_jobs),
                cell(poll.running_jobs),
                cell(poll.waiting_jobs),
                cell(poll.total_agents),
                format!("{} -> {to}", cell(poll.desired_capacity)),
                poll.conclusion().unwrap_or("-").to_owned(),
                poll.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["TIME", "SCHEDULED", "RUNNING", "WAITING", "AGENTS", "DESIRED", "REASON", "ERROR"],
        &rows,
    )
}
