//! `elastic-ci upgrade`: a change-set update that keeps every parameter not set, drops
//! (and reports) parameters the new template no longer has, shows what changes, and
//! follows the update to its end.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Args;
use elastic_ci_aws::cloudformation::{
    ChangeSet, ChangeSetParameter, ChangeSetRequest, ResourceChange, TemplateSource,
};
use elastic_ci_core::lifecycle::format_rfc3339;

use crate::error::InputError;
use crate::{Context, MutateArgs, StackArgs, confirm};

/// The group's logical id.
const GROUP: &str = "AgentAutoScaleGroup";

/// The launch template's logical id: the group launches its latest version.
const LAUNCH_TEMPLATE: &str = "AgentLaunchTemplate";

/// The group's properties whose change its update policy (AutoScalingReplacingUpdate
/// with WillReplace) answers with a new group rather than an update in place.
const REPLACING_PROPERTIES: [&str; 5] = [
    "LaunchTemplate",
    "MixedInstancesPolicy",
    "LaunchConfigurationName",
    "VPCZoneIdentifier",
    "PlacementGroup",
];

/// How long a change set may take to be computed.
const CHANGE_SET_TIMEOUT: Duration = Duration::from_secs(300);

/// Arguments of `elastic-ci upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// The new template's URL (an S3 https:// URL).
    #[arg(long, value_name = "URL", conflicts_with = "version")]
    pub template_url: Option<String>,

    /// A release: https://s3.amazonaws.com/<release bucket>/<version>/aws-stack.yml.
    #[arg(long, value_name = "vX.Y.Z", value_parser = parse_version, requires = "release_bucket")]
    pub version: Option<String>,

    /// The bucket releases are published to, for --version.
    #[arg(long, value_name = "BUCKET", env = "ELASTIC_CI_RELEASE_BUCKET")]
    pub release_bucket: Option<String>,

    /// Sets a parameter. Repeatable; every parameter not set keeps its value.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,

    /// How often to read the stack's events while it updates.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::render::parse_since, hide = true)]
    pub poll_interval: Duration,

    #[command(flatten)]
    pub mutate: MutateArgs,
}

/// A release tag: `vX.Y.Z`, optionally with a pre-release suffix of letters, digits
/// and dots (`v1.2.0-rc.1`), as the release process tags them.
fn parse_version(text: &str) -> Result<String, String> {
    let version = text.strip_prefix('v').unwrap_or(text);
    let (release, pre_release) = match version.split_once('-') {
        Some((release, pre)) => (release, Some(pre)),
        None => (version, None),
    };
    let parts: Vec<&str> = release.split('.').collect();
    let numbers = parts.len() == 3
        && parts.iter().all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
    let suffix = pre_release.is_none_or(|pre| {
        !pre.is_empty()
            && !pre.starts_with('.')
            && !pre.ends_with('.')
            && !pre.contains("..")
            && pre.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
    });
    if numbers && suffix {
        Ok(format!("v{version}"))
    } else {
        Err(format!(
            "invalid version {text:?}: expected vX.Y.Z or vX.Y.Z-PRE, such as v1.2.3 or v1.2.0-rc.1"
        ))
    }
}

fn parse_set(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("invalid --set {text:?}: expected KEY=VALUE, such as MaxSize=20")),
    }
}

/// Whether a parameter's value must not be printed.
fn is_secret(key: &str) -> bool {
    key.contains("Token")
        || key.contains("Password")
        || key.contains("Secret") && !key.contains("Bucket")
}

fn shown(key: &str, value: &str) -> String {
    if is_secret(key) { "(hidden)".to_owned() } else { format!("{value:?}") }
}

/// The parameters of the change set, and what the update does to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterPlan {
    pub parameters: Vec<ChangeSetParameter>,
    /// Key, old value, new value.
    pub changed: Vec<(String, Option<String>, String)>,
    /// Keys the new template no longer has.
    pub dropped: Vec<String>,
}

/// Plans the parameters: set ones get their value, the others their previous one;
/// keys the new template lacks are dropped. A `--set` key the template lacks is an
/// error.
pub fn plan_parameters(
    current: &BTreeMap<String, String>,
    template_keys: &[String],
    set: &[(String, String)],
) -> Result<ParameterPlan, InputError> {
    let keys: BTreeSet<&str> = template_keys.iter().map(String::as_str).collect();
    let sets: BTreeMap<&str, &str> =
        set.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    if let Some(unknown) = sets.keys().find(|key| !keys.contains(**key)) {
        return Err(InputError::new(format!(
            "--set {unknown}: the template has no parameter {unknown:?}"
        )));
    }
    let mut parameters = Vec::new();
    let mut changed = Vec::new();
    for key in &keys {
        match (sets.get(key), current.get(*key)) {
            (Some(value), old) => {
                if old.map(String::as_str) != Some(*value) {
                    changed.push(((*key).to_owned(), old.cloned(), (*value).to_owned()));
                }
                parameters.push(ChangeSetParameter {
                    key: (*key).to_owned(),
                    value: Some((*value).to_owned()),
                });
            }
            (None, Some(_)) => {
                parameters.push(ChangeSetParameter { key: (*key).to_owned(), value: None })
            }
            // A new parameter: its default applies.
            (None, None) => {}
        }
    }
    let dropped = current.keys().filter(|key| !keys.contains(key.as_str())).cloned().collect();
    Ok(ParameterPlan { parameters, changed, dropped })
}

/// Whether the change set replaces the Auto Scaling group. The template's update
/// policy (AutoScalingReplacingUpdate with WillReplace) replaces it when its launch
/// template, instance types or subnets change; the group follows the launch template's
/// latest version, so any change of the launch template is one. A modification of the
/// group whose properties the service does not list counts as a replacement: saying so
/// when it is not is the cheaper mistake.
pub fn replaces_group(changes: &[ResourceChange]) -> bool {
    changes.iter().any(|change| match (change.logical_id.as_str(), change.action.as_str()) {
        (LAUNCH_TEMPLATE, "Add" | "Modify" | "Dynamic") => true,
        (GROUP, "Remove") => true,
        (GROUP, "Modify" | "Dynamic") => {
            matches!(change.replacement.as_deref(), Some("True" | "Conditional"))
                || change.properties.is_empty()
                || change
                    .properties
                    .iter()
                    .any(|property| REPLACING_PROPERTIES.contains(&property.as_str()))
        }
        _ => false,
    })
}

/// Runs `upgrade`.
pub async fn upgrade(
    context: &Context,
    args: &UpgradeArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let stacks = context.clients.stacks.as_ref();
    let stack_name = context.target.name.clone();
    if !context.target.cloudformation {
        return Err(InputError::new("upgrade needs a CloudFormation stack (--stack); update a Terraform deployment with terraform apply").into());
    }
    let template = match (&args.template_url, &args.version, &args.release_bucket) {
        (Some(url), _, _) => TemplateSource::Url(url.clone()),
        (None, Some(version), Some(bucket)) => TemplateSource::Url(format!(
            "https://s3.amazonaws.com/{bucket}/{version}/aws-stack.yml"
        )),
        _ => {
            return Err(
                InputError::new("name the new template with --template-url or --version").into()
            );
        }
    };
    if let TemplateSource::Url(url) = &template {
        writeln!(out, "template: {url}")?;
    }
    let description = stacks
        .describe_stack(&stack_name)
        .await
        .with_context(|| format!("failed to describe stack {stack_name}"))?;
    let keys = stacks
        .template_parameters(&template)
        .await
        .context("failed to read the new template's parameters")?;
    let plan = plan_parameters(&description.parameters, &keys, &args.set)?;
    for key in &plan.dropped {
        writeln!(
            out,
            "parameter {key} is not in the new template: dropped (it was {})",
            shown(key, &description.parameters[key])
        )?;
    }
    if plan.changed.is_empty() {
        writeln!(out, "parameters: all keep their values")?;
    }
    for (key, old, new) in &plan.changed {
        let old = old.as_deref().map_or_else(|| "(default)".to_owned(), |old| shown(key, old));
        writeln!(out, "parameter {key}: {old} -> {}", shown(key, new))?;
    }

    if let Some(n_missing) = crate::commands::log_filters::n_missing(context).await
        && n_missing > 0
    {
        writeln!(
            out,
            "log filters: the original stack's log groups (/buildkite/buildkite-agent, …) have {n_missing} metric or subscription filters that this stack's groups lack; after the update, `elastic-ci copy-log-filters --stack {stack_name}` creates them there"
        )?;
    }

    let change_set_name = format!(
        "elastic-ci-upgrade-{}",
        context.now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()
    );
    let request = ChangeSetRequest {
        stack_name: stack_name.clone(),
        change_set_name: change_set_name.clone(),
        template,
        parameters: plan.parameters.clone(),
    };
    stacks
        .create_change_set(&request)
        .await
        .with_context(|| format!("failed to create change set {change_set_name}"))?;
    let change_set =
        wait_for_change_set(context, &stack_name, &change_set_name, args.poll_interval).await?;
    if change_set.status == "FAILED" {
        let reason = change_set.status_reason.unwrap_or_default();
        if reason.contains("didn't contain changes") || reason.contains("No updates") {
            writeln!(out, "no changes: the stack already matches")?;
            return Ok(());
        }
        anyhow::bail!("change set {change_set_name} failed: {reason}");
    }
    writeln!(out, "resource changes:")?;
    if change_set.changes.is_empty() {
        writeln!(out, "  none")?;
    }
    for change in &change_set.changes {
        let replacement = match change.replacement.as_deref() {
            Some("True") => ", replaced",
            Some("Conditional") => ", may be replaced",
            _ => "",
        };
        let properties = if change.properties.is_empty() {
            String::new()
        } else {
            format!(": {}", change.properties.join(", "))
        };
        writeln!(
            out,
            "  {} {} ({}{replacement}){properties}",
            change.action, change.logical_id, change.resource_type
        )?;
    }
    if replaces_group(&change_set.changes) {
        writeln!(
            out,
            "the Auto Scaling group will be replaced: CloudFormation creates a new group, waits for its instances, then deletes the old one; the old agents are stopped gracefully first, so running jobs finish before their instances terminate, and new jobs go to the new group"
        )?;
    }
    if args.mutate.dry_run {
        writeln!(
            out,
            "dry run: change set {change_set_name} was created for review and not executed"
        )?;
        return Ok(());
    }
    if !confirm(&args.mutate, &format!("Execute change set {change_set_name}?"))? {
        return Ok(());
    }
    let started = SystemTime::now();
    let known: HashSet<String> = stacks
        .stack_events(&stack_name)
        .await
        .context("failed to read the stack's events")?
        .into_iter()
        .map(|event| event.event_id)
        .collect();
    stacks
        .execute_change_set(&stack_name, &change_set_name)
        .await
        .with_context(|| format!("failed to execute change set {change_set_name}"))?;
    follow(context, &stack_name, known, started, args.poll_interval, out).await
}

async fn wait_for_change_set(
    context: &Context,
    stack_name: &str,
    change_set_name: &str,
    interval: Duration,
) -> anyhow::Result<ChangeSet> {
    let deadline = SystemTime::now() + CHANGE_SET_TIMEOUT;
    loop {
        let change_set = context
            .clients
            .stacks
            .describe_change_set(stack_name, change_set_name)
            .await
            .with_context(|| format!("failed to describe change set {change_set_name}"))?;
        if matches!(change_set.status.as_str(), "CREATE_COMPLETE" | "FAILED") {
            return Ok(change_set);
        }
        if SystemTime::now() > deadline {
            anyhow::bail!(
                "change set {change_set_name} is still {} after {} s",
                change_set.status,
                CHANGE_SET_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(interval.min(Duration::from_secs(2))).await;
    }
}

/// Prints the update's events until the stack settles; a rollback is an error naming
/// the first resource that failed.
async fn follow(
    context: &Context,
    stack_name: &str,
    mut known: HashSet<String>,
    started: SystemTime,
    interval: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut first_failure: Option<(String, String)> = None;
    loop {
        let mut events = context
            .clients
            .stacks
            .stack_events(stack_name)
            .await
            .context("failed to read the stack's events")?;
        events.reverse();
        for event in events {
            if !known.insert(event.event_id.clone()) {
                continue;
            }
            let reason =
                event.reason.as_deref().map_or_else(String::new, |reason| format!(": {reason}"));
            writeln!(
                out,
                "{} {} {} {}{reason}",
                format_rfc3339(event.timestamp),
                event.status,
                event.logical_id,
                event.resource_type
            )?;
            if event.status.ends_with("_FAILED")
                && first_failure.is_none()
                && event.logical_id != stack_name
            {
                first_failure =
                    Some((event.logical_id.clone(), event.reason.clone().unwrap_or_default()));
            }
        }
        out.flush()?;
        let status = context
            .clients
            .stacks
            .describe_stack(stack_name)
            .await
            .context("failed to describe the stack")?
            .status;
        let settled = !status.ends_with("_IN_PROGRESS");
        if settled {
            if status.contains("ROLLBACK") || status.ends_with("_FAILED") {
                let (resource, reason) =
                    first_failure.unwrap_or_else(|| ("(unknown)".to_owned(), String::new()));
                anyhow::bail!(
                    "the update of stack {stack_name} failed and rolled back ({status}): first failed resource {resource}: {reason}"
                );
            }
            writeln!(
                out,
                "stack {stack_name}: {status} in {} s",
                SystemTime::now().duration_since(started).unwrap_or_default().as_secs()
            )?;
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn keeps_previous_values_sets_new_ones_and_drops_removed_keys() {
        let current = map(&[("MaxSize", "10"), ("BuildkiteQueue", "ci"), ("Retired", "x")]);
        let keys = vec!["MaxSize".to_owned(), "BuildkiteQueue".to_owned(), "NewOne".to_owned()];
        let plan =
            plan_parameters(&current, &keys, &[("MaxSize".to_owned(), "20".to_owned())]).unwrap();
        assert_eq!(
            plan.parameters,
            [
                ChangeSetParameter { key: "BuildkiteQueue".to_owned(), value: None },
                ChangeSetParameter { key: "MaxSize".to_owned(), value: Some("20".to_owned()) },
            ]
        );
        assert_eq!(plan.changed, [("MaxSize".to_owned(), Some("10".to_owned()), "20".to_owned())]);
        assert_eq!(plan.dropped, ["Retired"]);
        let error =
            plan_parameters(&current, &keys, &[("Nope".to_owned(), "1".to_owned())]).unwrap_err();
        assert_eq!(error.to_string(), "--set Nope: the template has no parameter \"Nope\"");
    }

    #[test]
    fn a_new_launch_template_or_subnets_replace_the_group_and_sizes_do_not() {
        let change = |logical: &str, action: &str, properties: &[&str]| ResourceChange {
            action: action.to_owned(),
            logical_id: logical.to_owned(),
            resource_type: String::new(),
            replacement: Some("False".to_owned()),
            properties: properties.iter().map(|property| (*property).to_owned()).collect(),
        };
        assert!(replaces_group(&[change("AgentLaunchTemplate", "Modify", &[])]));
        assert!(replaces_group(&[change("AgentAutoScaleGroup", "Modify", &["VPCZoneIdentifier"])]));
        assert!(replaces_group(&[change(
            "AgentAutoScaleGroup",
            "Modify",
            &["MaxSize", "MixedInstancesPolicy"]
        )]));
        assert!(!replaces_group(&[change("AgentAutoScaleGroup", "Modify", &["MaxSize"])]));
        // Unknown properties: said to be replaced rather than not.
        assert!(replaces_group(&[change("AgentAutoScaleGroup", "Modify", &[])]));
        assert!(!replaces_group(&[change("AutoscalingFunction", "Modify", &[])]));
        assert_eq!(parse_version("1.2.3"), Ok("v1.2.3".to_owned()));
        assert!(parse_version("v1.2").is_err());
        assert_eq!(parse_version("v1.2.0-rc.1"), Ok("v1.2.0-rc.1".to_owned()));
        for bad in ["v1.2.0-", "v1.2.0-rc..1", "v1.2.0-rc/1", "v1.2.0-../x"] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
        assert!(shown("BuildkiteAgentToken", "secret").contains("hidden"));
    }
}
