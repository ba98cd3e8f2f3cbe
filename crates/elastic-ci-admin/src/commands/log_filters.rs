//! `elastic-ci copy-log-filters`: puts the metric filters and subscription filters of
//! the original Elastic CI Stack's log groups on this stack's log groups.
//!
//! The original's instances write to account-wide groups (`/buildkite/<file>`) and its
//! scaler to `/aws/lambda/<function name>`; this stack's write to
//! `/buildkite/<stack name>/<file>` and `/buildkite/<stack name>/scaler`. After a
//! switch the old groups receive nothing new, so a filter users rely on (an alarm's
//! metric, a subscription to a log store) must be on the new group too. The command
//! only reads the old groups; it creates each filter missing on the new group under
//! the same name and with the same settings, and leaves filters already there alone,
//! so a second run copies nothing.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Context as _;
use clap::Args;
use elastic_ci_aws::error::AwsError;
use elastic_ci_aws::logs::{LogGroupFilters, MetricFilter, SubscriptionFilter};
use serde::Serialize;

use crate::error::InputError;
use crate::target::{LogSource, StackTarget};
use crate::{Context, MutateArgs, StackArgs, confirm};

/// The original's instance log groups and the last part of this stack's group for the
/// same file, `/buildkite/<stack name>/<part>`.
pub const ORIGINAL_GROUPS: [(&str, &str); 7] = [
    ("/buildkite/buildkite-agent", "buildkite-agent"),
    ("/buildkite/cloud-init", "cloud-init"),
    ("/buildkite/cloud-init/output", "cloud-init/output"),
    ("/buildkite/docker-daemon", "docker-daemon"),
    ("/buildkite/elastic-stack", "elastic-stack"),
    ("/buildkite/system", "system"),
    ("/buildkite/auth", "auth"),
];

/// The original's groups for logs this stack does not write (it runs neither
/// cfn-init nor lifecycled): their filters have nowhere to go and are reported.
pub const ORIGINAL_GROUPS_WITHOUT_COUNTERPART: [&str; 2] =
    ["/buildkite/cfn-init", "/buildkite/lifecycled"];

/// Arguments of `elastic-ci copy-log-filters`.
#[derive(Debug, Args)]
pub struct CopyLogFiltersArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// The original scaler's log group, /aws/lambda/<function name>: its filters go to
    /// the stack's scaler log group.
    #[arg(long, value_name = "NAME", value_parser = parse_log_group_name)]
    pub from_scaler_log_group: Option<String>,

    /// Print one JSON object per filter instead of text lines.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub mutate: MutateArgs,
}

fn parse_log_group_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 512
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "_-/.#".contains(c));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid log group name {text:?}: expected up to 512 letters, digits and _-/.#, such as /aws/lambda/buildkite-Autoscaling-1ABC"
        ))
    }
}

/// Which kind of filter a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterKind {
    Metric,
    Subscription,
}

impl FilterKind {
    fn words(self) -> &'static str {
        match self {
            FilterKind::Metric => "metric filter",
            FilterKind::Subscription => "subscription filter",
        }
    }
}

/// What happened to one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Copied,
    WouldCopy,
    AlreadyPresent,
    /// The new group has a filter of that name with other settings: left as it is.
    Differs,
    /// The old group's logs have no counterpart in this stack.
    NoCounterpart,
    Failed,
}

impl Outcome {
    fn words(self) -> &'static str {
        match self {
            Outcome::Copied => "copied",
            Outcome::WouldCopy => "would copy",
            Outcome::AlreadyPresent => "already present",
            Outcome::Differs => "differs",
            Outcome::NoCounterpart => "no counterpart",
            Outcome::Failed => "failed",
        }
    }
}

/// One filter of an original group, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterLine {
    pub outcome: Outcome,
    pub kind: FilterKind,
    pub name: String,
    pub from: String,
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl FilterLine {
    fn text(&self) -> String {
        let to = self.to.as_deref().map_or_else(String::new, |to| format!(" -> {to}"));
        let detail =
            self.detail.as_deref().map_or_else(String::new, |detail| format!(": {detail}"));
        format!(
            "{} {} {:?}: {}{to}{detail}",
            self.outcome.words(),
            self.kind.words(),
            self.name,
            self.from
        )
    }
}

/// A filter to create on a new group.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterCopy {
    Metric(MetricFilter),
    Subscription(SubscriptionFilter),
}

/// One filter of the plan: its line, and the filter to create if it is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub line: FilterLine,
    pub copy: Option<FilterCopy>,
}

/// The pairs of groups to copy between: each original group and this stack's group
/// for the same log (`None`: no counterpart). The scaler's pair is there when
/// `from_scaler` is given; a stack without a scaler is then an error.
pub fn group_pairs(
    target: &StackTarget,
    from_scaler: Option<&str>,
) -> Result<Vec<(String, Option<String>)>, InputError> {
    let mut pairs: Vec<(String, Option<String>)> = ORIGINAL_GROUPS
        .iter()
        .map(|(old, part)| ((*old).to_owned(), Some(format!("/buildkite/{}/{part}", target.name))))
        .collect();
    pairs.extend(ORIGINAL_GROUPS_WITHOUT_COUNTERPART.iter().map(|old| ((*old).to_owned(), None)));
    if let Some(old) = from_scaler {
        pairs.push((old.to_owned(), Some(target.log_group(LogSource::Scaler)?.to_owned())));
    }
    Ok(pairs)
}

/// Reads the filters of every original group that exists and compares them with the
/// new groups' (a new group not there yet has none). The old groups are only read.
pub async fn plan(
    logs: &dyn LogGroupFilters,
    pairs: &[(String, Option<String>)],
) -> Result<Vec<Planned>, AwsError> {
    let mut existing: BTreeSet<String> =
        logs.log_group_names("/buildkite/").await?.into_iter().collect();
    for (old, _) in pairs.iter().filter(|(old, _)| !old.starts_with("/buildkite/")) {
        existing.extend(logs.log_group_names(old).await?);
    }
    let mut planned = Vec::new();
    for (old, new) in pairs.iter().filter(|(old, _)| existing.contains(old)) {
        let old_metrics = logs.metric_filters(old).await?;
        let old_subscriptions = logs.subscription_filters(old).await?;
        let (new_metrics, new_subscriptions) = match new {
            Some(new) => (
                or_none(logs.metric_filters(new).await)?,
                or_none(logs.subscription_filters(new).await)?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let line = |kind, name: &str| FilterLine {
            outcome: Outcome::NoCounterpart,
            kind,
            name: name.to_owned(),
            from: old.clone(),
            to: new.clone(),
            detail: None,
        };
        for filter in old_metrics {
            let there = new_metrics.iter().find(|present| present.name == filter.name);
            let line = line(FilterKind::Metric, &filter.name);
            planned.push(compare(line, new.is_some(), there.map(|there| *there == filter), || {
                FilterCopy::Metric(filter.clone())
            }));
        }
        for filter in old_subscriptions {
            let there = new_subscriptions.iter().find(|present| present.name == filter.name);
            let line = line(FilterKind::Subscription, &filter.name);
            planned.push(compare(line, new.is_some(), there.map(|there| *there == filter), || {
                FilterCopy::Subscription(filter.clone())
            }));
        }
    }
    Ok(planned)
}

/// A missing new group has no filters yet.
fn or_none<T>(result: Result<Vec<T>, AwsError>) -> Result<Vec<T>, AwsError> {
    match result {
        Err(error) if error.is_not_found() => Ok(Vec::new()),
        other => other,
    }
}

fn compare(
    mut line: FilterLine,
    has_counterpart: bool,
    same: Option<bool>,
    copy: impl FnOnce() -> FilterCopy,
) -> Planned {
    if !has_counterpart {
        line.detail = Some("this stack writes no such log".to_owned());
        return Planned { line, copy: None };
    }
    match same {
        Some(true) => {
            line.outcome = Outcome::AlreadyPresent;
            Planned { line, copy: None }
        }
        Some(false) => {
            line.outcome = Outcome::Differs;
            line.detail = Some(
                "the new group has a filter of that name with other settings; left as it is"
                    .to_owned(),
            );
            Planned { line, copy: None }
        }
        None => {
            line.outcome = Outcome::WouldCopy;
            Planned { line, copy: Some(copy()) }
        }
    }
}

/// Creates the planned copies, each on its own: a refused one is reported and the
/// others still go. Returns the lines in the plan's order.
pub async fn execute(logs: &dyn LogGroupFilters, planned: Vec<Planned>) -> Vec<FilterLine> {
    let mut lines = Vec::with_capacity(planned.len());
    for Planned { mut line, copy } in planned {
        if let (Some(copy), Some(to)) = (copy, line.to.as_deref()) {
            let result = match &copy {
                FilterCopy::Metric(filter) => logs.put_metric_filter(to, filter).await,
                FilterCopy::Subscription(filter) => logs.put_subscription_filter(to, filter).await,
            };
            match result {
                Ok(()) => line.outcome = Outcome::Copied,
                Err(error) => {
                    line.outcome = Outcome::Failed;
                    line.detail = Some(failure(&error));
                }
            }
        }
        lines.push(line);
    }
    lines
}

fn failure(error: &AwsError) -> String {
    match error.code.as_deref() {
        Some("LimitExceededException") => format!(
            "{error} (a log group takes two subscription filters at most: delete one from it, or combine two, and run again)"
        ),
        _ if error.is_not_found() => {
            format!("{error} (is the stack updated to this template yet?)")
        }
        _ => error.to_string(),
    }
}

/// Runs `copy-log-filters`.
pub async fn copy_log_filters(
    context: &Context,
    args: &CopyLogFiltersArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let logs = context.clients.log_filters.as_ref();
    let pairs = group_pairs(&context.target, args.from_scaler_log_group.as_deref())?;
    if let Some(scaler) = &args.from_scaler_log_group {
        let found = logs
            .log_group_names(scaler)
            .await
            .with_context(|| format!("failed to look up log group {scaler}"))?;
        if !found.contains(scaler) {
            return Err(InputError::new(format!(
                "log group {scaler:?} (--from-scaler-log-group) does not exist: the switch from the original stack deletes the original scaler with its log group"
            ))
            .into());
        }
    }
    let planned = plan(logs, &pairs).await.context("failed to read the log groups' filters")?;
    let n_copies = planned.iter().filter(|planned| planned.copy.is_some()).count();
    let lines = if args.mutate.dry_run || n_copies == 0 {
        planned.into_iter().map(|planned| planned.line).collect()
    } else {
        let question =
            format!("Copy {n_copies} filters to the log groups of stack {}?", context.target.name);
        if !confirm(&args.mutate, &question)? {
            return Ok(());
        }
        execute(logs, planned).await
    };
    let n_failed = lines.iter().filter(|line| line.outcome == Outcome::Failed).count();
    if args.json {
        for line in &lines {
            writeln!(out, "{}", serde_json::to_string(line)?)?;
        }
    } else {
        for line in &lines {
            writeln!(out, "{}", line.text())?;
        }
        writeln!(out, "{}", summary(&lines))?;
    }
    if n_failed > 0 {
        anyhow::bail!("{n_failed} of {} filters were not copied", lines.len());
    }
    Ok(())
}

fn summary(lines: &[FilterLine]) -> String {
    if lines.is_empty() {
        return "no filters on the original stack's log groups: nothing to copy".to_owned();
    }
    let count = |outcome| lines.iter().filter(|line| line.outcome == outcome).count();
    [
        Outcome::Copied,
        Outcome::WouldCopy,
        Outcome::AlreadyPresent,
        Outcome::Differs,
        Outcome::NoCounterpart,
        Outcome::Failed,
    ]
    .into_iter()
    .filter(|outcome| count(*outcome) > 0)
    .map(|outcome| format!("{} {}", count(outcome), outcome.words()))
    .collect::<Vec<_>>()
    .join(", ")
}

/// How many filters of the original's instance log groups this stack's groups lack,
/// for `upgrade`'s note; `None` when they cannot be read.
pub async fn n_missing(context: &Context) -> Option<usize> {
    let pairs = group_pairs(&context.target, None).ok()?;
    match plan(context.clients.log_filters.as_ref(), &pairs).await {
        Ok(planned) => Some(planned.iter().filter(|planned| planned.copy.is_some()).count()),
        Err(error) => {
            tracing::debug!(error = %error, "could not read the original log groups' filters");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_group_names_are_checked() {
        assert_eq!(parse_log_group_name("/aws/lambda/ci-Fn_1.x").unwrap(), "/aws/lambda/ci-Fn_1.x");
        for bad in ["", "/aws/lambda/a b", "/aws/lambda/*", &"x".repeat(513)] {
            let error = parse_log_group_name(bad).unwrap_err();
            assert!(error.starts_with("invalid log group name"), "{error}");
        }
    }

    #[test]
    fn a_line_names_the_filter_and_both_groups() {
        let line = FilterLine {
            outcome: Outcome::Copied,
            kind: FilterKind::Subscription,
            name: "to-es".to_owned(),
            from: "/buildkite/system".to_owned(),
            to: Some("/buildkite/ci/system".to_owned()),
            detail: None,
        };
        assert_eq!(
            line.text(),
            "copied subscription filter \"to-es\": /buildkite/system -> /buildkite/ci/system"
        );
        assert_eq!(summary(&[line.clone(), line]), "2 copied");
        assert_eq!(summary(&[]), "no filters on the original stack's log groups: nothing to copy");
    }
}
