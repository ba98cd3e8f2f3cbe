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
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, ensure};
use axum::Router;
use axum::body::Bytes;
use elastic_ci_core::secret::Secret;
use elastic_ci_testkit::http::TestServer;
use elastic_ci_testkit::moto::{Moto, REGION};
use serde_json::json;

use crate::deploy;
use crate::moto_api::MotoApi;
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
}

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
    let (_, boot_inputs) = deploy::launch_template(&api, &physical("AgentLaunchTemplate")?).await?;
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
    })
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
/// CloudFormation would for the `AgentTokenSecureString` custom resource. The event,
/// which holds the token, goes to Python on stdin, never in an argument.
fn store_agent_token(
    moto: &Moto,
    python: &Path,
    document: &serde_yaml_ng::Value,
    parameter: &str,
    token: &Secret,
    out: &Path,
) -> anyhow::Result<()> {
    let code =
        document["Resources"]["AgentTokenParameterFunction"]["Properties"]["Code"]["ZipFile"]
            .as_str()
            .context("the template's AgentTokenParameterFunction has no inline code")?;
    let dir = out.join("stack-helper");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    std::fs::write(dir.join("index.py"), code).context("failed to write the helper's code")?;

    let (sender, receiver) = mpsc::channel::<Bytes>();
    let sender = std::sync::Arc::new(std::sync::Mutex::new(sender));
    let server = TestServer::http(Router::new().fallback(move |body: Bytes| {
        let _ = sender.lock().map(|sender| sender.send(body));
        async { "" }
    }));
    let event = json!({
        "RequestType": "Create",
        "ResponseURL": server.url("/response"),
        "StackId": format!("arn:aws:cloudformation:{REGION}:123456789012:stack/elastic-ci-demo/1"),
        "RequestId": super::random_hex(8),
        "LogicalResourceId": "AgentTokenSecureString",
        "ResourceType": "AWS::CloudFormation::CustomResource",
        "ResourceProperties": { "Name": parameter, "Value": token.expose() },
    });
    let log_path = dir.join("AgentTokenParameterFunction.log");
    let log = std::fs::File::create(&log_path).context("failed to create the helper's log")?;
    let mut child = Command::new(python)
        .args([
            "-c",
            "import json, sys, types, index\n\
             index.handler(json.load(sys.stdin), types.SimpleNamespace(log_stream_name='elastic-ci-demo'))\n",
        ])
        .current_dir(&dir)
        .env_clear()
        .envs(moto.env())
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("failed to run {}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(event.to_string().as_bytes()).context("failed to pass the event")?;
    }
    let status = child.wait().context("the stack helper did not finish")?;
    ensure!(
        status.success(),
        "the AgentTokenParameterFunction code failed ({status}); see {}",
        log_path.display()
    );
    let response = receiver
        .recv_timeout(Duration::from_secs(10))
        .context("the AgentTokenParameterFunction code sent no response")?;
    let response: serde_json::Value =
        serde_json::from_slice(&response).context("the helper's response is not JSON")?;
    ensure!(
        response["Status"] == "SUCCESS",
        "AgentTokenParameterFunction answered {}: {}",
        response["Status"],
        response["Reason"]
    );
    Ok(())
}
