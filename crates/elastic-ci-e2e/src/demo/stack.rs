//! The stack: the template as `cargo xtask template` renders it, deployed into the
//! local AWS emulator with `create_stack`, and the inputs a user provides around it (a
//! bootstrap script in S3, agent environment in SSM, secrets in the stack's bucket).
//!
//! moto deploys the template's resources but does not run custom resources or Lambda
//! functions. So the agent token parameter, which moto creates as a String, is turned
//! into a SecureString by the template's own `AgentTokenParameterFunction` code, run
//! here with moto's Python as CloudFormation would invoke it; and the scaler runs as `elastic-ci-scaler run` with the
//! environment moto recorded for the scaler function.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, ensure};
use elastic_ci_core::secret::Secret;
use elastic_ci_testkit::moto::{Moto, REGION};
use serde_json::json;

use crate::moto_api::{MotoApi, xml_first};
use crate::{deploy, helper_function};
use xtask::{project, template};

/// The prefix of the bucket the template reads the scaler zip from.
const LAMBDA_BUCKET_PREFIX: &str = "elastic-ci-demo-lambdas";
/// The pipeline the demo's jobs belong to: its prefix in the secrets bucket.
pub(crate) const PIPELINE: &str = "demo-pipeline";
/// Extra agent tags, to see them reach the agents.
const AGENT_TAGS: &str = "demo=true";

/// What the stack is deployed with (besides the template's defaults).
#[derive(Debug)]
pub(crate) struct StackSettings<'a> {
    pub(crate) queue: &'a str,
    pub(crate) agent_endpoint: &'a str,
    pub(crate) agent_token: &'a Secret,
    pub(crate) max_size: u32,
    pub(crate) agents_per_instance: u32,
    pub(crate) idle_period_secs: u64,
    pub(crate) scale_out_cooldown_secs: u64,
    /// `ScalerMinPollInterval`, a Go duration.
    pub(crate) poll_interval: &'a str,
    /// Scale-in by the group: `DisableScaleIn=false` without scale-in protection,
    /// relying on the termination hook (on by default) to drain.
    pub(crate) scale_in: bool,
    /// A group a stack update may replace: `BuildkiteAgentEnableGracefulShutdown=true`
    /// (the function that stops the old group's agents) and no scale-in protection, so
    /// that the old group's removal goes through the termination hook.
    pub(crate) replaceable: bool,
}

/// Values the demo puts where a user would, and looks for in the jobs.
#[derive(Debug, Clone)]
pub(crate) struct DemoSecrets {
    pub(crate) docker_user: String,
    pub(crate) docker_password: String,
    /// `DEMO_BUCKET_SECRET` in the bucket's `env` file.
    pub(crate) bucket_secret: String,
    /// `DEMO_PIPELINE_SETTING` in the pipeline's `env` file.
    pub(crate) pipeline_setting: String,
    /// `DEMO_AGENT_ENV`, an SSM parameter under the stack's `AgentEnvFileUrl`.
    pub(crate) agent_env: String,
}

/// The deployed stack, as CloudFormation and moto describe it.
#[derive(Debug)]
pub(crate) struct Stack {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) group: String,
    pub(crate) secrets_bucket: String,
    pub(crate) config_bucket: String,
    pub(crate) token_parameter: String,
    pub(crate) log_groups: Vec<String>,
    /// The scaler function's environment, as the template sets it.
    pub(crate) scaler_env: BTreeMap<String, String>,
    /// The variables the launch template's UserData hands `elastic-ci-bootstrap boot`.
    pub(crate) boot_inputs: Vec<(String, String)>,
    /// The stack parameters the demo set, the token left out.
    pub(crate) parameters: Vec<(String, String)>,
    pub(crate) secrets: DemoSecrets,
    /// The rendered template, for a stack update.
    pub(crate) template: String,
    pub(crate) launch_template: String,
}

/// The group a stack update put in place of the stack's first one.
#[derive(Debug)]
pub(crate) struct Replacement {
    pub(crate) group: String,
    /// The variables the launch template's new version hands the boot.
    pub(crate) boot_inputs: Vec<(String, String)>,
    /// The scaler function's environment once the update points it at the new group.
    pub(crate) scaler_env: BTreeMap<String, String>,
}

/// The agent tags the stack update sets: a launch template input, so that the update
/// makes a new launch template version and replaces the group, and a mark the new
/// group's agents carry.
pub(crate) const UPDATED_AGENT_TAGS: &str = "demo=true,release=2";

/// Renders the template, deploys it and provides the inputs; `out` receives the
/// rendered template and the stack helper's log.
pub(crate) async fn deploy(
    moto: &Moto,
    python: &Path,
    out: &Path,
    settings: &StackSettings<'_>,
) -> anyhow::Result<Stack> {
    let name = format!("ecidemo{}", super::random_hex(4));
    let version = template::default_version(&project::root());
    let rendered = deploy::render_template(&version, LAMBDA_BUCKET_PREFIX)?;
    std::fs::write(out.join("aws-stack.yml"), &rendered).context("failed to save the template")?;
    let document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&rendered).context("the rendered template is not YAML")?;
    deploy::upload_scaler_zips(moto, &rendered).await?;

    // What a user prepares before deploying: a bootstrap script and agent environment.
    let config_bucket = moto.bucket("elastic-ci-demo-config").await;
    moto.put_object(&config_bucket, "bootstrap.sh", BOOTSTRAP_SCRIPT).await;
    let secrets = DemoSecrets {
        docker_user: "demo-bot".to_owned(),
        docker_password: format!("pw-{}", super::random_hex(8)),
        bucket_secret: format!("s3cret-{}", super::random_hex(8)),
        pipeline_setting: "from-the-pipeline-prefix".to_owned(),
        agent_env: "from-ssm".to_owned(),
    };
    let env_path = format!("/elastic-ci-demo/{name}/agent-env");
    moto.put_parameter(&format!("{env_path}/demo_agent_env"), &secrets.agent_env, true).await;

    let parameters: Vec<(String, String)> = [
        ("BuildkiteQueue", settings.queue.to_owned()),
        ("AgentEndpoint", settings.agent_endpoint.to_owned()),
        ("AgentsPerInstance", settings.agents_per_instance.to_string()),
        ("MinSize", "0".to_owned()),
        ("MaxSize", settings.max_size.to_string()),
        ("ScaleInIdlePeriod", settings.idle_period_secs.to_string()),
        ("ScaleOutCooldownPeriod", settings.scale_out_cooldown_secs.to_string()),
        ("ScalerMinPollInterval", settings.poll_interval.to_owned()),
        ("BuildkiteAgentTags", AGENT_TAGS.to_owned()),
        ("BootstrapScriptUrl", format!("s3://{config_bucket}/bootstrap.sh")),
        ("AgentEnvFileUrl", format!("ssm:{env_path}")),
    ]
    .into_iter()
    .chain(
        settings
            .replaceable
            .then_some([
                ("BuildkiteAgentEnableGracefulShutdown", "true".to_owned()),
                ("InstanceScaleInProtection", "false".to_owned()),
            ])
            .into_iter()
            .flatten(),
    )
    .chain(
        settings
            .scale_in
            .then_some([
                ("DisableScaleIn", "false".to_owned()),
                ("InstanceScaleInProtection", "false".to_owned()),
                ("EnableTerminationHook", "true".to_owned()),
            ])
            .into_iter()
            .flatten(),
    )
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    let mut all_parameters = parameters.clone();
    all_parameters
        .push(("BuildkiteAgentToken".to_owned(), settings.agent_token.expose().to_owned()));
    let deployed = deploy::create_stack(moto, &rendered, &name, &all_parameters).await?;
    let outputs = &deployed.outputs;
    let resources = &deployed.resources;
    let physical = |logical: &str| deployed.physical(logical).map(str::to_owned);
    let group = outputs.get("AutoScalingGroupName").context("no AutoScalingGroupName output")?;
    let secrets_bucket =
        outputs.get("ManagedSecretsBucket").context("no ManagedSecretsBucket output")?;
    let log_groups = resources
        .values()
        .filter(|(kind, _)| kind == "AWS::Logs::LogGroup")
        .map(|(_, physical)| physical.clone())
        .collect();

    let api = MotoApi::new(&moto.endpoint);
    let scaler_env = function_environment(&api, &physical("AutoscalingFunction")?).await?;
    let launch_template = physical("AgentLaunchTemplate")?;
    let (_, boot_inputs) = deploy::launch_template(&api, &launch_template).await?;
    let boot_inputs = boot_inputs.lines;
    let token_parameter = scaler_env
        .get("BUILDKITE_AGENT_TOKEN_SSM_KEY")
        .cloned()
        .context("the scaler function has no BUILDKITE_AGENT_TOKEN_SSM_KEY")?;
    store_agent_token(moto, python, &document, &token_parameter, settings.agent_token, out)?;

    // What a user keeps in the stack's secrets bucket.
    let env_file = format!(
        "DOCKER_LOGIN_USER={}\nDOCKER_LOGIN_PASSWORD={}\nDEMO_BUCKET_SECRET={}\n",
        secrets.docker_user, secrets.docker_password, secrets.bucket_secret
    );
    moto.put_object(secrets_bucket, "env", env_file).await;
    moto.put_object(
        secrets_bucket,
        &format!("{PIPELINE}/env"),
        format!("export DEMO_PIPELINE_SETTING={}\n", secrets.pipeline_setting),
    )
    .await;

    Ok(Stack {
        name,
        version,
        group: (*group).to_owned(),
        secrets_bucket: (*secrets_bucket).to_owned(),
        config_bucket,
        token_parameter,
        log_groups,
        scaler_env,
        boot_inputs,
        parameters,
        secrets,
        template: rendered,
        launch_template,
    })
}

/// A stack update that replaces the Auto Scaling group, as CloudFormation runs it:
///
/// 1. `update_stack` with a changed launch template input ([`UPDATED_AGENT_TAGS`] and
///    a larger root volume): moto makes the launch template's new version;
/// 2. the replacement group, created as `AutoScalingReplacingUpdate` does, from that
///    version. moto's own replacement deletes the old group at once, under its running
///    jobs, and its shallow update leaves this group alone, so the demo creates it;
/// 3. the `StopBuildkiteAgents` custom resource's update, which moto skips: the
///    template's `StopBuildkiteAgentsFunction` code, run here, takes the old group to
///    zero and sends its agents SIGTERM through SSM Run Command.
///
/// The old group's deletion in the update's cleanup, which waits for its instances to
/// go through the termination hook, is the fleet loop's part.
pub(crate) async fn replace_group(
    moto: &Moto,
    python: &Path,
    out: &Path,
    stack: &Stack,
    token: &Secret,
) -> anyhow::Result<Replacement> {
    update_stack(moto, stack, token).await?;
    let api = MotoApi::new(&moto.endpoint);
    let (xml, inputs) = deploy::launch_template(&api, &stack.launch_template).await?;
    let version = xml_first(&xml, "versionNumber").context("the launch template has no version")?;
    ensure!(version != "1", "the stack update made no new launch template version");
    let group = create_replacement_group(&api, stack, &version).await?;
    let document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&stack.template).context("the rendered template is not YAML")?;
    let event = json!({
        "RequestType": "Update",
        "LogicalResourceId": "StopBuildkiteAgents",
        "PhysicalResourceId": stack.group,
        "ResourceProperties": { "AutoScalingGroupName": group },
        "OldResourceProperties": { "AutoScalingGroupName": stack.group },
    });
    run_stack_helper(moto, python, &document, "StopBuildkiteAgentsFunction", event, out)?;
    let mut scaler_env = stack.scaler_env.clone();
    scaler_env.insert("ASG_NAME".to_owned(), group.clone());
    Ok(Replacement { group, boot_inputs: inputs.lines, scaler_env })
}

/// `update_stack` with the stack's parameters, the agent tags and root volume changed.
async fn update_stack(moto: &Moto, stack: &Stack, token: &Secret) -> anyhow::Result<()> {
    use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
    let changed = [("BuildkiteAgentTags", UPDATED_AGENT_TAGS), ("RootVolumeSize", "300")];
    let mut parameters: Vec<Parameter> = stack
        .parameters
        .iter()
        .filter(|(key, _)| !changed.iter().any(|(name, _)| name == key))
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .chain(changed)
        .map(|(key, value)| Parameter::builder().parameter_key(key).parameter_value(value).build())
        .collect();
    parameters.push(
        Parameter::builder()
            .parameter_key("BuildkiteAgentToken")
            .parameter_value(token.expose())
            .build(),
    );
    let cloudformation = moto.cloudformation();
    cloudformation
        .update_stack()
        .stack_name(&stack.name)
        .template_body(&stack.template)
        .set_parameters(Some(parameters))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "update_stack {} failed: {}",
                stack.name,
                aws_smithy_types::error::display::DisplayErrorContext(error.into_service_error())
            )
        })?;
    let described = cloudformation
        .describe_stacks()
        .stack_name(&stack.name)
        .send()
        .await
        .with_context(|| format!("failed to describe stack {}", stack.name))?;
    let status = described.stacks().first().and_then(|stack| stack.stack_status());
    ensure!(
        status == Some(&StackStatus::UpdateComplete),
        "stack {} is {status:?} after its update",
        stack.name
    );
    Ok(())
}

/// The new group: the old one's subnets, sizes, protection and tags, at zero, on the
/// launch template's `version`, under a name of CloudFormation's form.
async fn create_replacement_group(
    api: &MotoApi,
    stack: &Stack,
    version: &str,
) -> anyhow::Result<String> {
    let old = api
        .try_query(
            "autoscaling",
            "2011-01-01",
            &[
                ("Action", "DescribeAutoScalingGroups"),
                ("AutoScalingGroupNames.member.1", &stack.group),
            ],
        )
        .await?;
    let field = |tag: &str| {
        xml_first(&old, tag).with_context(|| format!("group {} has no {tag}", stack.group))
    };
    let (subnets, max_size) = (field("VPCZoneIdentifier")?, field("MaxSize")?);
    let protected = field("NewInstancesProtectedFromScaleIn")?;
    let parameter = |name: &str| {
        stack.parameters.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value)
    };
    let name =
        format!("{}-AgentAutoScaleGroup-{}", stack.name, super::random_hex(6).to_uppercase());
    let mut params: Vec<(String, String)> = [
        ("Action", "CreateAutoScalingGroup".to_owned()),
        ("AutoScalingGroupName", name.clone()),
        ("LaunchTemplate.LaunchTemplateId", stack.launch_template.clone()),
        ("LaunchTemplate.Version", version.to_owned()),
        ("MinSize", "0".to_owned()),
        ("MaxSize", max_size),
        ("DesiredCapacity", "0".to_owned()),
        ("VPCZoneIdentifier", subnets),
        ("NewInstancesProtectedFromScaleIn", protected),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    for (n, key) in ["BuildkiteQueue", "AgentsPerInstance"].into_iter().enumerate() {
        let prefix = format!("Tags.member.{}", n + 1);
        for (field, value) in [
            ("Key", key.to_owned()),
            ("Value", parameter(key).to_owned()),
            ("PropagateAtLaunch", "false".to_owned()),
            ("ResourceId", name.clone()),
            ("ResourceType", "auto-scaling-group".to_owned()),
        ] {
            params.push((format!("{prefix}.{field}"), value));
        }
    }
    let params: Vec<(&str, &str)> =
        params.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    api.try_query("autoscaling", "2011-01-01", &params)
        .await
        .with_context(|| format!("failed to create the replacement group {name}"))?;
    Ok(name)
}

/// The bootstrap script the stack's `BootstrapScriptUrl` names. It runs as root at
/// boot; here it leaves a marker in the simulated instance's root
/// (`ELASTIC_CI_DEMO_ROOT`, which stands for `/`).
const BOOTSTRAP_SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
marker="${ELASTIC_CI_DEMO_ROOT:-}/var/lib/elastic-ci-demo/bootstrap-script-ran"
mkdir -p "$(dirname "$marker")"
echo "bootstrap script ran for stack $BUILDKITE_STACK_NAME, queue $BUILDKITE_QUEUE" > "$marker"
echo "demo bootstrap script: done"
"#;

/// A Lambda function's environment variables (numbers as the template wrote them).
async fn function_environment(
    api: &MotoApi,
    function: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let configuration =
        api.try_get("lambda", &format!("/2015-03-31/functions/{function}/configuration")).await?;
    let variables = configuration["Environment"]["Variables"]
        .as_object()
        .with_context(|| format!("function {function} has no environment"))?;
    Ok(variables
        .iter()
        .map(|(name, value)| {
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            (name.clone(), value)
        })
        .collect())
}

/// Runs the template's `AgentTokenParameterFunction` code against moto, as
/// CloudFormation would for the `AgentTokenSecureString` custom resource.
fn store_agent_token(
    moto: &Moto,
    python: &Path,
    document: &serde_yaml_ng::Value,
    parameter: &str,
    token: &Secret,
    out: &Path,
) -> anyhow::Result<()> {
    let event = json!({
        "RequestType": "Create",
        "LogicalResourceId": "AgentTokenSecureString",
        "ResourceProperties": { "Name": parameter, "Value": token.expose() },
    });
    run_stack_helper(moto, python, document, "AgentTokenParameterFunction", event, out)
}

/// Runs the inline code of the template's function `function` against moto with a
/// custom resource `event`, as CloudFormation would invoke it, and fails unless it
/// answers SUCCESS. The event, which may hold the token, goes to Python on stdin, never
/// in an argument.
fn run_stack_helper(
    moto: &Moto,
    python: &Path,
    document: &serde_yaml_ng::Value,
    function: &str,
    mut event: serde_json::Value,
    out: &Path,
) -> anyhow::Result<()> {
    event["StackId"] =
        json!(format!("arn:aws:cloudformation:{REGION}:123456789012:stack/elastic-ci-demo/1"));
    event["RequestId"] = json!(super::random_hex(8));
    event["ResourceType"] = json!("AWS::CloudFormation::CustomResource");
    let dir = out.join("stack-helper").join(function);
    let run = helper_function::run(moto, python, document, function, event, &dir)?;
    let log_path = dir.join(format!("{function}.log"));
    std::fs::write(&log_path, &run.output)
        .with_context(|| format!("failed to write {}", log_path.display()))?;
    ensure!(
        run.response["Status"] == "SUCCESS",
        "{function} answered {}: {}",
        run.response["Status"],
        run.response["Reason"]
    );
    Ok(())
}
