//! What the tests that deploy stacks on the local AWS emulator share: creating, reading,
//! updating and deleting a stack, a network made outside it, CloudWatch Logs and Lambda
//! reads, and the template's helper functions run with the emulator's Python.

#![allow(dead_code, reason = "each test binary uses its own part of these helpers")]
#![allow(clippy::print_stderr, reason = "a test that needs moto's Python says why it skipped")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use elastic_ci_testkit::moto::Moto;
use elastic_ci_testkit::names::unique_name;
use serde_json::{Value, json};

use elastic_ci_e2e::moto_api::MotoApi;
use elastic_ci_e2e::{deploy, helper_function};
use xtask::{project, template};

/// The release version the tests render the template with.
pub(crate) const VERSION: &str = "v9.8.7-test";

/// A deployed stack, as CloudFormation describes it.
pub(crate) struct Stack {
    pub(crate) name: String,
    pub(crate) id: String,
    /// Logical id → physical id, for the resources that exist.
    pub(crate) resources: BTreeMap<String, String>,
    pub(crate) outputs: BTreeMap<String, String>,
}

impl Stack {
    pub(crate) fn physical(&self, logical_id: &str) -> &str {
        self.resources
            .get(logical_id)
            .unwrap_or_else(|| panic!("{logical_id} is not in {:?}", self.resources.keys()))
    }
}

/// The template as `cargo xtask template` renders it, with moto's AMIs and a release
/// bucket prefix of this test's own.
pub(crate) fn rendered_template(lambda_bucket_prefix: &str) -> String {
    deploy::render_template(VERSION, lambda_bucket_prefix).expect("the template renders")
}

/// A stack name short enough that CloudFormation's generated role names stay within
/// IAM's 64 characters (moto does not truncate them as CloudFormation does).
pub(crate) fn stack_name() -> String {
    let unique = unique_name("s");
    let digest = unique.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("ecs{:010x}", digest & 0xff_ffff_ffff)
}

pub(crate) fn parameters(values: &[(&str, &str)]) -> Vec<Parameter> {
    values
        .iter()
        .map(|(key, value)| {
            Parameter::builder().parameter_key(*key).parameter_value(*value).build()
        })
        .collect()
}

pub(crate) async fn create_stack(
    moto: &Moto,
    name: &str,
    template: &str,
    values: &[(&str, &str)],
) -> Stack {
    let cloudformation = moto.cloudformation();
    cloudformation
        .create_stack()
        .stack_name(name)
        .template_body(template)
        .set_parameters(Some(parameters(values)))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap_or_else(|error| panic!("create_stack {name}: {error:?}"));
    assert_status(moto, name, &StackStatus::CreateComplete).await;
    read_stack(moto, name).await
}

/// The stack's status and reason only: its description holds parameter values.
pub(crate) async fn assert_status(moto: &Moto, name: &str, expected: &StackStatus) {
    let stack = describe(moto, name).await;
    assert_eq!(stack.stack_status(), Some(expected), "{name}: {:?}", stack.stack_status_reason());
}

pub(crate) async fn describe(moto: &Moto, name: &str) -> aws_sdk_cloudformation::types::Stack {
    let stacks =
        moto.cloudformation().describe_stacks().stack_name(name).send().await.expect("describe");
    stacks.stacks().first().cloned().expect("one stack")
}

pub(crate) async fn read_stack(moto: &Moto, name: &str) -> Stack {
    let described = describe(moto, name).await;
    let listed = moto
        .cloudformation()
        .list_stack_resources()
        .stack_name(name)
        .send()
        .await
        .expect("list_stack_resources");
    let resources = listed
        .stack_resource_summaries()
        .iter()
        .filter(|summary| !summary.logical_resource_id().unwrap_or_default().is_empty())
        .map(|summary| {
            (
                summary.logical_resource_id().unwrap_or_default().to_owned(),
                summary.physical_resource_id().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let outputs = described
        .outputs()
        .iter()
        .map(|output| {
            (
                output.output_key().unwrap_or_default().to_owned(),
                output.output_value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    Stack {
        name: name.to_owned(),
        id: described.stack_id().unwrap_or_default().to_owned(),
        resources,
        outputs,
    }
}

pub(crate) async fn update_stack(
    moto: &Moto,
    stack: &Stack,
    template: &str,
    values: &[(&str, &str)],
) {
    moto.cloudformation()
        .update_stack()
        .stack_name(&stack.name)
        .template_body(template)
        .set_parameters(Some(parameters(values)))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap_or_else(|error| panic!("update_stack {}: {error:?}", stack.name));
    assert_status(moto, &stack.name, &StackStatus::UpdateComplete).await;
}

pub(crate) async fn delete_stack(moto: &Moto, stack: &Stack) {
    let group = stack.outputs["AutoScalingGroupName"].clone();
    moto.cloudformation()
        .delete_stack()
        .stack_name(&stack.name)
        .send()
        .await
        .expect("delete_stack");
    assert_status(moto, &stack.id, &StackStatus::DeleteComplete).await;
    assert!(scaling_groups(moto, &group).await.is_empty(), "{group} survived the stack's deletion");
}

/// The Auto Scaling groups of that name (none, or one).
pub(crate) async fn scaling_groups(moto: &Moto, name: &str) -> Vec<AutoScalingGroup> {
    let described = moto
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .expect("describe_auto_scaling_groups");
    described.auto_scaling_groups().to_vec()
}

pub(crate) async fn scaling_group(moto: &Moto, name: &str) -> AutoScalingGroup {
    scaling_groups(moto, name).await.into_iter().next().unwrap_or_else(|| panic!("no group {name}"))
}

/// A VPC with two subnets, made outside the stack. moto cannot delete the route
/// tables, routes and gateway attachment of a stack-built VPC, so tests that delete
/// their stack bring their own network.
pub(crate) async fn existing_vpc(api: &MotoApi) -> (String, Vec<String>) {
    let network = deploy::create_network(api, 1).await.expect("a network outside the stack");
    (network.vpc_id, network.subnets)
}

pub(crate) async fn lambda_function(api: &MotoApi, name: &str) -> Value {
    api.get("lambda", &format!("/2015-03-31/functions/{name}")).await
}

pub(crate) async fn log_groups(api: &MotoApi, prefix: &str) -> BTreeMap<String, Option<i64>> {
    let answer = api
        .json("logs", "Logs_20140328.DescribeLogGroups", &json!({ "logGroupNamePrefix": prefix }))
        .await;
    answer["logGroups"]
        .as_array()
        .expect("logGroups")
        .iter()
        .map(|group| {
            (
                group["logGroupName"].as_str().expect("a name").to_owned(),
                group["retentionInDays"].as_i64(),
            )
        })
        .collect()
}

/// Python with boto3: the emulator's own virtual environment, which `cargo xtask ci`
/// and `cargo xtask moto start` create.
pub(crate) fn python_with_boto3() -> Option<PathBuf> {
    let python = project::target_dir().ok()?.join("moto/venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    #[allow(clippy::disallowed_methods, reason = "test harness configuration")]
    let in_ci = std::env::var_os("CI").is_some();
    assert!(!in_ci, "{} is missing: run the tests through `cargo xtask ci`", python.display());
    eprintln!("skipping: no moto virtual environment at {}", python.display());
    None
}

/// Runs the inline code of one of the template's helper functions against the
/// emulator with `event`, and returns the response it sent to CloudFormation and what
/// it printed.
pub(crate) fn run_helper(
    moto: &Moto,
    python: &Path,
    function: &str,
    mut event: Value,
) -> (Value, String) {
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(project::root().join(template::SOURCE)).expect("the template"),
    )
    .expect("YAML");
    event["StackId"] = json!("arn:aws:cloudformation:us-east-1:123456789012:stack/test/1");
    event["RequestId"] = json!(unique_name("request"));
    event["LogicalResourceId"] = json!("Helper");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = helper_function::run(moto, python, &template, function, event, dir.path())
        .unwrap_or_else(|error| panic!("{error:#}"));
    (run.response, run.output)
}
