//! Finding a deployed stack's resources: from CloudFormation by the template's logical
//! ids (`--stack`), or from the Terraform module's `terraform output -json`
//! (`--terraform-output`).

use std::collections::BTreeMap;
use std::path::Path;

use elastic_ci_aws::cloudformation::{StackResource, Stacks};
use elastic_ci_aws::error::{AwsError, AwsErrorKind};
use serde::Serialize;

use crate::error::InputError;

/// The instances' log groups and the scaler's, by the `--source` names of `logs`.
pub const LOG_SOURCES: [LogSource; 6] = [
    LogSource::Agent,
    LogSource::System,
    LogSource::CloudInit,
    LogSource::Docker,
    LogSource::ElasticStack,
    LogSource::Scaler,
];

/// A log of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogSource {
    /// The Buildkite agent's log.
    Agent,
    /// The system journal.
    System,
    /// cloud-init's log.
    CloudInit,
    /// The Docker daemon's log.
    Docker,
    /// The bootstrapper's log (boot, termination, disk checks).
    ElasticStack,
    /// The scaler Lambda's log.
    Scaler,
}

impl LogSource {
    /// The last part of the log group's name, `/buildkite/<stack>/<part>`.
    pub fn group_suffix(self) -> &'static str {
        match self {
            LogSource::Agent => "buildkite-agent",
            LogSource::System => "system",
            LogSource::CloudInit => "cloud-init",
            LogSource::Docker => "docker-daemon",
            LogSource::ElasticStack => "elastic-stack",
            LogSource::Scaler => "scaler",
        }
    }

    /// The template's logical id of the group.
    fn logical_id(self) -> &'static str {
        match self {
            LogSource::Agent => "AgentLogGroup",
            LogSource::System => "SystemLogGroup",
            LogSource::CloudInit => "CloudInitLogGroup",
            LogSource::Docker => "DockerLogGroup",
            LogSource::ElasticStack => "ElasticStackLogGroup",
            LogSource::Scaler => "ScalerLogGroup",
        }
    }
}

/// What the commands need to know about a deployed stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackTarget {
    /// The CloudFormation stack, or the module's `stack_name`.
    pub name: String,
    /// Whether it is a CloudFormation stack (`upgrade` needs one).
    pub cloudformation: bool,
    pub group: String,
    /// `None` when MinSize equals MaxSize: the stack has no scaler.
    pub scaler_function: Option<String>,
    pub schedule_rule: Option<String>,
    /// The rule that runs the scaler on Buildkite's Job Scheduled events, as
    /// `BUS|NAME`; `None` without a partner event bus.
    pub job_event_rule: Option<String>,
    pub token_parameter: Option<String>,
    pub launch_template: Option<String>,
    pub log_groups: BTreeMap<LogSource, String>,
    /// The instances' subnets.
    pub subnets: Vec<String>,
    /// The stack's parameters (CloudFormation only).
    pub parameters: BTreeMap<String, String>,
}

impl StackTarget {
    /// A log group of the stack; an error naming the source when the stack has none.
    pub fn log_group(&self, source: LogSource) -> Result<&str, InputError> {
        self.log_groups.get(&source).map(String::as_str).ok_or_else(|| {
            InputError::new(format!(
                "stack {} has no {} log group{}",
                self.name,
                source.group_suffix(),
                if source == LogSource::Scaler {
                    " (MinSize equals MaxSize: no scaler)"
                } else {
                    ""
                }
            ))
        })
    }

    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters.get(key).map(String::as_str).filter(|value| !value.is_empty())
    }
}

/// Maps a failed stack lookup to the user's error: a missing stack and missing
/// credentials are bad input (exit 2).
pub fn stack_lookup_error(stack_name: &str, error: AwsError) -> anyhow::Error {
    match error.kind {
        AwsErrorKind::NotFound => InputError::new(format!(
            "stack {stack_name:?} not found: check --stack and the region (AWS_REGION, --region)"
        ))
        .into(),
        AwsErrorKind::AccessDenied => InputError::new(format!(
            "no usable AWS credentials to read stack {stack_name:?}: {error}"
        ))
        .into(),
        _ => anyhow::Error::new(error).context(format!("failed to read stack {stack_name}")),
    }
}

/// Finds a CloudFormation stack's resources.
pub async fn from_cloudformation(
    stacks: &dyn Stacks,
    stack_name: &str,
) -> anyhow::Result<StackTarget> {
    let description =
        stacks.describe_stack(stack_name).await.map_err(|e| stack_lookup_error(stack_name, e))?;
    let resources =
        stacks.stack_resources(stack_name).await.map_err(|e| stack_lookup_error(stack_name, e))?;
    from_resources(&description.name, description.parameters, &resources)
}

/// The target from a stack's resources and parameters (pure, for tests).
pub fn from_resources(
    stack_name: &str,
    parameters: BTreeMap<String, String>,
    resources: &[StackResource],
) -> anyhow::Result<StackTarget> {
    let physical = |logical: &str| {
        resources
            .iter()
            .find(|resource| resource.logical_id == logical && !resource.physical_id.is_empty())
            .map(|resource| resource.physical_id.clone())
    };
    let group = physical("AgentAutoScaleGroup").ok_or_else(|| {
        InputError::new(format!(
            "stack {stack_name:?} has no AgentAutoScaleGroup: is it an Elastic CI Stack?"
        ))
    })?;
    let log_groups = LOG_SOURCES
        .iter()
        .filter_map(|source| Some((*source, physical(source.logical_id())?)))
        .collect();
    let token_parameter = match parameters.get("BuildkiteAgentTokenParameterStorePath") {
        Some(path) if !path.is_empty() => Some(path.clone()),
        _ => Some(format!("/{stack_name}/buildkite/agent-token")),
    };
    let subnets = match parameters.get("Subnets").map(|list| subnet_ids(list)) {
        Some(list) if !list.is_empty() => list,
        _ => ["Subnet0", "Subnet1"].iter().filter_map(|logical| physical(logical)).collect(),
    };
    Ok(StackTarget {
        name: stack_name.to_owned(),
        cloudformation: true,
        subnets,
        group,
        scaler_function: physical("AutoscalingFunction"),
        schedule_rule: physical("AutoscalingSchedule").map(|rule| rule_name(&rule)),
        job_event_rule: physical("AutoscalingJobScheduledRule"),
        token_parameter,
        launch_template: physical("AgentLaunchTemplate"),
        log_groups,
        parameters,
    })
}

/// The ids of the `Subnets` parameter: CloudFormation gives a list parameter as
/// `a,b`; the local emulator gives Python's `['a', 'b']`. Subnet ids never hold
/// brackets, quotes or spaces, so those are separators whatever the form.
fn subnet_ids(list: &str) -> Vec<String> {
    list.split([',', '[', ']', '\'', '"', ' '])
        .filter(|subnet| !subnet.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A rule's name from its physical id, which is the name, or an ARN ending in
/// `rule/<name>`.
fn rule_name(physical: &str) -> String {
    physical.rsplit_once("rule/").map_or(physical, |(_, name)| name).to_owned()
}

/// The module's outputs by name: the root module's own outputs when it re-exports
/// them one by one, or the one output holding the whole module
/// (`output "elastic_ci" { value = module.buildkite_stack }`).
fn module_outputs(
    outputs: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let values = || outputs.iter().filter_map(|(name, output)| Some((name, output.get("value")?)));
    if outputs.contains_key("stack_name") {
        return values().map(|(name, value)| (name.clone(), value.clone())).collect();
    }
    let mut modules = values()
        .filter_map(|(_, value)| value.as_object())
        .filter(|module| module.contains_key("stack_name"));
    match (modules.next(), modules.next()) {
        (Some(module), None) => module.clone(),
        _ => serde_json::Map::new(),
    }
}

/// Reads the module's `terraform output -json`: outputs named as the module's, or one
/// output holding the whole module.
pub fn from_terraform_output(path: &Path, text: &str) -> Result<StackTarget, InputError> {
    let invalid = |what: String| InputError::new(format!("{}: {what}", path.display()));
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| invalid(format!("not the JSON of `terraform output -json`: {error}")))?;
    let outputs = json.as_object().ok_or_else(|| invalid("expected a JSON object".to_owned()))?;
    let fields = module_outputs(outputs);
    let value = |name: &str| -> Option<String> {
        fields
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let required = |name: &str| {
        value(name).ok_or_else(|| {
            invalid(format!(
                "no {name} output (or one output holding the module, such as `output \"elastic_ci\" {{ value = module.buildkite_stack }}`): is this the Elastic CI Stack module's output?"
            ))
        })
    };
    let name = required("stack_name")?;
    let group = required("auto_scaling_group_name")?;
    let scaler_function = value("scaler_function_name");
    let mut log_groups: BTreeMap<LogSource, String> = LOG_SOURCES
        .iter()
        .filter(|source| **source != LogSource::Scaler)
        .map(|source| (*source, format!("/buildkite/{name}/{}", source.group_suffix())))
        .collect();
    if let Some(scaler_log_group) = value("scaler_log_group") {
        log_groups.insert(LogSource::Scaler, scaler_log_group);
    }
    let subnets = fields
        .get("subnet_ids")
        .and_then(serde_json::Value::as_array)
        .map(|list| list.iter().filter_map(|subnet| subnet.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok(StackTarget {
        name,
        cloudformation: false,
        subnets,
        group,
        scaler_function,
        schedule_rule: value("scaler_schedule_rule"),
        job_event_rule: value("scaler_job_event_rule"),
        token_parameter: value("agent_token_parameter"),
        launch_template: value("launch_template_id"),
        log_groups,
        parameters: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(logical: &str, physical: &str) -> StackResource {
        StackResource {
            logical_id: logical.to_owned(),
            physical_id: physical.to_owned(),
            resource_type: String::new(),
            status: "CREATE_COMPLETE".to_owned(),
        }
    }

    #[test]
    fn finds_the_resources_by_logical_id() {
        let target = from_resources(
            "ci",
            BTreeMap::new(),
            &[
                resource("AgentAutoScaleGroup", "ci-AgentAutoScaleGroup-1"),
                resource("AutoscalingSchedule", "arn:aws:events:us-east-1:1:rule/ci-Schedule-2"),
                resource("ScalerLogGroup", "/buildkite/ci/scaler"),
                resource("AgentLogGroup", "/buildkite/ci/buildkite-agent"),
            ],
        )
        .unwrap();
        assert_eq!(target.group, "ci-AgentAutoScaleGroup-1");
        assert_eq!(target.schedule_rule.as_deref(), Some("ci-Schedule-2"));
        assert_eq!(target.token_parameter.as_deref(), Some("/ci/buildkite/agent-token"));
        assert_eq!(target.log_group(LogSource::Agent).unwrap(), "/buildkite/ci/buildkite-agent");
        let error = target.log_group(LogSource::Docker).unwrap_err();
        assert_eq!(error.to_string(), "stack ci has no docker-daemon log group");
    }

    #[test]
    fn reads_the_subnets_parameter_in_either_form() {
        for list in ["subnet-1,subnet-2", "subnet-1, subnet-2", "['subnet-1', 'subnet-2']"] {
            assert_eq!(subnet_ids(list), ["subnet-1", "subnet-2"], "{list}");
        }
        assert!(subnet_ids("").is_empty());
        let parameters = BTreeMap::from([("Subnets".to_owned(), String::new())]);
        let target = from_resources(
            "ci",
            parameters,
            &[
                resource("AgentAutoScaleGroup", "g"),
                resource("Subnet0", "subnet-a"),
                resource("Subnet1", "subnet-b"),
            ],
        )
        .unwrap();
        assert_eq!(target.subnets, ["subnet-a", "subnet-b"]);
    }

    #[test]
    fn a_stack_without_the_group_is_not_ours() {
        let error = from_resources("other", BTreeMap::new(), &[]).unwrap_err();
        assert!(error.to_string().contains("has no AgentAutoScaleGroup"), "{error}");
    }

    #[test]
    fn reads_terraform_output() {
        let text = r#"{"stack_name":{"sensitive":false,"type":"string","value":"ci"},
            "auto_scaling_group_name":{"value":"ci-agents"},
            "scaler_function_name":{"value":null},
            "agent_token_parameter":{"value":"/ci/token"}}"#;
        let target = from_terraform_output(Path::new("out.json"), text).unwrap();
        assert_eq!(target.group, "ci-agents");
        assert_eq!(target.scaler_function, None);
        assert_eq!(target.token_parameter.as_deref(), Some("/ci/token"));
        assert_eq!(target.log_group(LogSource::System).unwrap(), "/buildkite/ci/system");
        assert!(target.log_group(LogSource::Scaler).is_err());

        let error = from_terraform_output(Path::new("out.json"), "{}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "out.json: no stack_name output (or one output holding the module, such as `output \"elastic_ci\" { value = module.buildkite_stack }`): is this the Elastic CI Stack module's output?"
        );
        let error = from_terraform_output(Path::new("out.json"), "[").unwrap_err();
        assert!(error.to_string().starts_with("out.json: not the JSON"), "{error}");
    }

    #[test]
    fn reads_one_output_holding_the_whole_module() {
        let text = r#"{"elastic_ci":{"sensitive":false,"type":["object",{}],"value":{
            "stack_name":"ci","auto_scaling_group_name":"ci-agents",
            "scaler_schedule_rule":"ci-scaler",
            "scaler_job_event_rule":"aws.partner/buildkite.com/acme/x|ci-job-scheduled",
            "subnet_ids":["subnet-1","subnet-2"]}},
            "other":{"value":"x"}}"#;
        let target = from_terraform_output(Path::new("out.json"), text).unwrap();
        assert_eq!((target.name.as_str(), target.group.as_str()), ("ci", "ci-agents"));
        assert_eq!(
            target.job_event_rule.as_deref(),
            Some("aws.partner/buildkite.com/acme/x|ci-job-scheduled")
        );
        assert_eq!(target.subnets, ["subnet-1", "subnet-2"]);
        // Two modules in one output file: which one is meant cannot be told.
        let two = r#"{"a":{"value":{"stack_name":"a","auto_scaling_group_name":"g"}},
            "b":{"value":{"stack_name":"b","auto_scaling_group_name":"h"}}}"#;
        assert!(from_terraform_output(Path::new("out.json"), two).is_err());
    }
}
