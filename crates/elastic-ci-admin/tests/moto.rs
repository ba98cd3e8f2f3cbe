//! `elastic-ci` against a stack deployed from the template on moto, run as a user runs
//! it. Without `ELASTIC_CI_MOTO_ENDPOINT` the tests skip locally and fail in CI.

use std::time::{SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use elastic_ci_admin::commands::drain::DRAIN_COMMAND;
use elastic_ci_e2e::deploy::{
    DeployedStack, create_network, deploy_stack, render_template, upload_scaler_zips,
};
use elastic_ci_e2e::moto_api::MotoApi;
use elastic_ci_testkit::buildkite::{FakeBuildkite, QueueMetrics};
use elastic_ci_testkit::moto::Moto;
use serde_json::{Value, json};

const LAMBDAS: &str = "elastic-ci-cli-lambdas";

/// The agent token every stack is deployed with, unless a test gives its own: the
/// template stores it in the stack's SSM parameter and refuses an empty one.
const TOKEN: &str = "bkua_cli_test_token";

/// The emulator; `None` (skip) locally without one, a panic in CI.
fn moto() -> Option<Moto> {
    elastic_ci_testkit::moto::moto()
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{nanos:x}{}", std::process::id() % 1000)
}

fn elastic_ci(moto: &Moto) -> Command {
    let mut command = Command::cargo_bin("elastic-ci").unwrap();
    command.env_clear().envs(moto.env()).env("AWS_ENDPOINT_URL", &moto.endpoint).arg("-v");
    command
}

async fn stack(moto: &Moto, parameters: &[(&str, &str)]) -> DeployedStack {
    let name = unique("ecicli");
    let mut parameters: Vec<(String, String)> =
        parameters.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    if !parameters.iter().any(|(key, _)| key.starts_with("BuildkiteAgentToken")) {
        parameters.push(("BuildkiteAgentToken".to_owned(), TOKEN.to_owned()));
    }
    deploy_stack(moto, LAMBDAS, &name, &parameters).await.unwrap()
}

fn run_json(moto: &Moto, args: &[&str]) -> Value {
    let output = elastic_ci(moto).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn run_text(moto: &Moto, args: &[&str]) -> String {
    let output = elastic_ci(moto).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn rule_state(api: &MotoApi, rule: &str) -> String {
    api.json("events", "AWSEvents.DescribeRule", &json!({"Name": rule})).await["State"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn group(moto: &Moto, name: &str) -> aws_sdk_autoscaling::types::AutoScalingGroup {
    moto.autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .clone()
}

/// Puts `messages` into a log group's stream, creating the stream.
async fn put_logs(api: &MotoApi, group: &str, stream: &str, messages: &[String]) {
    let _ = api
        .json(
            "logs",
            "Logs_20140328.CreateLogStream",
            &json!({"logGroupName": group, "logStreamName": stream}),
        )
        .await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let events: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(index, message)| json!({"timestamp": now - 60_000 + index as u128, "message": message}))
        .collect();
    api.json(
        "logs",
        "Logs_20140328.PutLogEvents",
        &json!({"logGroupName": group, "logStreamName": stream, "logEvents": events}),
    )
    .await;
}

fn poll_line(scheduled: u32, reason: &str) -> String {
    json!({
        "timestamp": elastic_ci_core::lifecycle::format_rfc3339(SystemTime::now()),
        "level": "INFO", "message": "poll", "target": "elastic_ci_scaler::poll",
        "queue": "default", "scheduled_jobs": scheduled, "running_jobs": 0, "waiting_jobs": 0,
        "total_agents": 0, "desired_capacity": 1, "max_size": 3, "target_capacity": 2,
        "reason": format!("numbers: {reason}"),
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_equals_the_group_and_its_instances() {
    let Some(moto) = moto() else { return };
    let stack =
        stack(&moto, &[("MinSize", "1"), ("MaxSize", "3"), ("BuildkiteQueue", "cli-status")]).await;
    let status = run_json(&moto, &["status", "--stack", &stack.name, "--json"]);
    let group = group(&moto, stack.physical("AgentAutoScaleGroup").unwrap()).await;
    assert_eq!(status["queue"], "cli-status");
    assert_eq!(status["group"]["name"], group.auto_scaling_group_name().unwrap());
    assert_eq!(status["group"]["desired_capacity"], group.desired_capacity().unwrap());
    assert_eq!(status["group"]["min_size"], 1);
    assert_eq!(status["group"]["max_size"], 3);
    let mut expected: Vec<&str> =
        group.instances().iter().filter_map(|instance| instance.instance_id()).collect();
    let mut listed: Vec<&str> = status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|instance| instance["id"].as_str().unwrap())
        .collect();
    expected.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, expected);
    assert_eq!(listed.len(), 1);
    assert_eq!(status["instances"][0]["lifecycle_state"], "InService");
    assert_eq!(status["scaler"]["paused"], false);
    let text = run_text(&moto, &["status", "--stack", &stack.name]);
    assert!(text.contains(listed[0]), "{text}");
    assert!(text.contains("Scaler: running"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume_round_trip() {
    let Some(moto) = moto() else { return };
    let stack = stack(&moto, &[("MinSize", "1"), ("MaxSize", "3")]).await;
    let api = MotoApi::new(&moto.endpoint);
    let rule =
        stack.physical("AutoscalingSchedule").unwrap().rsplit('/').next().unwrap().to_owned();
    let group_name = stack.physical("AgentAutoScaleGroup").unwrap().to_owned();
    assert_eq!(rule_state(&api, &rule).await, "ENABLED");

    let dry = run_text(&moto, &["pause", "--stack", &stack.name, "--to", "0", "--dry-run"]);
    assert!(dry.contains("would disable the scaler's schedule"), "{dry}");
    assert_eq!(rule_state(&api, &rule).await, "ENABLED");

    let paused = run_text(&moto, &["pause", "--stack", &stack.name, "--to", "0", "--yes"]);
    assert!(paused.contains("lower MinSize from 1 to 0"), "{paused}");
    assert_eq!(rule_state(&api, &rule).await, "DISABLED");
    let group = group(&moto, &group_name).await;
    assert_eq!((group.min_size(), group.desired_capacity()), (Some(0), Some(0)));
    assert!(group.tags().iter().any(|tag| tag.key() == Some("elastic-ci:paused")));

    let again = run_text(&moto, &["pause", "--stack", &stack.name, "--to", "0", "--yes"]);
    assert!(again.contains("already paused"), "{again}");
    let status = run_json(&moto, &["status", "--stack", &stack.name, "--json"]);
    assert_eq!(status["scaler"]["paused"], true);
    let why = run_text(&moto, &["why", "--stack", &stack.name]);
    assert!(why.contains("the scaler is paused"), "{why}");

    let resumed = run_text(&moto, &["resume", "--stack", &stack.name, "--yes"]);
    assert!(resumed.contains("resumed"), "{resumed}");
    assert_eq!(rule_state(&api, &rule).await, "ENABLED");
    let restored = self::group(&moto, &group_name).await;
    assert_eq!((restored.min_size(), restored.desired_capacity()), (Some(1), Some(1)));
    assert!(!restored.tags().iter().any(|tag| tag.key() == Some("elastic-ci:paused")));
    let again = run_text(&moto, &["resume", "--stack", &stack.name, "--yes"]);
    assert!(again.contains("not paused"), "{again}");

    // A schedule disabled by something else is not ours to enable without --force.
    api.json("events", "AWSEvents.DisableRule", &json!({"Name": rule})).await;
    elastic_ci(&moto)
        .args(["resume", "--stack", &stack.name, "--yes"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("pass --force"));
    run_text(&moto, &["resume", "--stack", &stack.name, "--yes", "--force"]);
    assert_eq!(rule_state(&api, &rule).await, "ENABLED");
}

/// An upgrade to a new release, reviewed as a change set: the new template's launch
/// template differs (its UserData names the new version), which replaces the group.
/// moto's change sets list the resources whose template text changed, without their
/// properties or a replacement flag, and nothing for a change of parameters alone.
/// moto cannot execute this update (it fails on the resources of false conditions and
/// on list parameters kept with UsePreviousValue), so executing and following it is
/// tested with the in-memory fakes (`tests/fakes.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn upgrade_keeps_parameters_changes_the_set_one_and_reports_the_group_replacement() {
    let Some(moto) = moto() else { return };
    let stack = stack(&moto, &[("MaxSize", "3"), ("BuildkiteQueue", "kept-queue")]).await;
    let release = render_template("v99.0.0-cli-upgrade", LAMBDAS).unwrap();
    upload_scaler_zips(&moto, &release).await.unwrap();
    let bucket = moto.bucket("elastic-ci-cli-templates").await;
    moto.put_object(&bucket, "aws-stack.yml", release).await;
    let url = format!("https://s3.amazonaws.com/{bucket}/aws-stack.yml");
    let output = run_text(
        &moto,
        &[
            "upgrade",
            "--stack",
            &stack.name,
            "--template-url",
            &url,
            "--set",
            "MaxSize=5",
            "--dry-run",
        ],
    );
    assert!(output.contains("parameter MaxSize: \"3\" -> \"5\""), "{output}");
    assert!(!output.contains("parameter BuildkiteQueue"), "{output}");
    assert!(
        output.contains("  Modify AgentLaunchTemplate (AWS::EC2::LaunchTemplate)"),
        "the new release's launch template: {output}"
    );
    assert!(output.contains("the Auto Scaling group will be replaced"), "{output}");
    let change_set = output
        .lines()
        .find_map(|line| line.strip_prefix("dry run: change set "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no change set named: {output}"));

    // The change set sets MaxSize and keeps the queue; the stack is unchanged.
    let described = moto
        .cloudformation()
        .describe_change_set()
        .stack_name(&stack.name)
        .change_set_name(change_set)
        .send()
        .await
        .unwrap();
    let planned: std::collections::BTreeMap<&str, &str> = described
        .parameters()
        .iter()
        .filter_map(|parameter| Some((parameter.parameter_key()?, parameter.parameter_value()?)))
        .collect();
    assert_eq!(planned.get("MaxSize"), Some(&"5"), "{planned:?}");
    assert_eq!(planned.get("BuildkiteQueue"), Some(&"kept-queue"), "{planned:?}");
    let parameters = stack_parameters(&moto, &stack.name).await;
    assert_eq!(parameters["MaxSize"], "3");
    assert_eq!(parameters["BuildkiteQueue"], "kept-queue");
}

async fn stack_parameters(moto: &Moto, name: &str) -> std::collections::BTreeMap<String, String> {
    let described = moto.cloudformation().describe_stacks().stack_name(name).send().await.unwrap();
    described.stacks()[0]
        .parameters()
        .iter()
        .map(|parameter| {
            (
                parameter.parameter_key().unwrap().to_owned(),
                parameter.parameter_value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_and_decisions_read_the_stacks_log_groups() {
    let Some(moto) = moto() else { return };
    let stack = stack(&moto, &[("MaxSize", "3")]).await;
    let api = MotoApi::new(&moto.endpoint);
    put_logs(
        &api,
        stack.physical("ScalerLogGroup").unwrap(),
        "2024/01/01/[$LATEST]abc",
        &[poll_line(2, "scale out from 1 to 2"), "START RequestId: 1".to_owned()],
    )
    .await;
    put_logs(
        &api,
        stack.physical("AgentLogGroup").unwrap(),
        "i-0123456789abcdef0",
        &["agent started".to_owned()],
    )
    .await;
    put_logs(
        &api,
        stack.physical("AgentLogGroup").unwrap(),
        "i-0fedcba987654321f",
        &["other agent".to_owned()],
    )
    .await;

    let decisions = run_text(&moto, &["decisions", "--stack", &stack.name, "--since", "1h"]);
    let lines: Vec<&str> = decisions.lines().collect();
    assert_eq!(lines.len(), 2, "{decisions}");
    assert!(lines[0].starts_with("TIME"), "{decisions}");
    assert!(
        lines[1].contains("1 -> 2") && lines[1].contains("scale out from 1 to 2"),
        "{decisions}"
    );

    let logs = run_text(
        &moto,
        &["logs", "--stack", &stack.name, "--instance", "i-0123456789abcdef0", "--source", "agent"],
    );
    assert_eq!(logs.lines().count(), 1, "{logs}");
    assert!(
        logs.starts_with("i-0123456789abcdef0 ") && logs.contains("buildkite-agent: agent started"),
        "{logs}"
    );
    let all = run_text(&moto, &["logs", "--stack", &stack.name]);
    assert!(all.contains("other agent") && all.contains("scaler "), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_a_good_stack_and_names_each_broken_thing() {
    let Some(moto) = moto() else { return };
    let buildkite = FakeBuildkite::start("good-token");
    buildkite.set_queue("doctor", QueueMetrics::jobs(0, 0, 0));
    let endpoint = buildkite.endpoint();
    let api = MotoApi::new(&moto.endpoint);
    // A network of the test's own: moto's CloudFormation does not always associate the
    // route table of a stack-built VPC with its subnets.
    let network = create_network(&api, 31).await.unwrap();
    let subnets = network.subnets.join(",");
    let good = stack(
        &moto,
        &[
            ("MaxSize", "3"),
            ("BuildkiteQueue", "doctor"),
            ("AgentEndpoint", &endpoint),
            ("BuildkiteAgentToken", "good-token"),
            ("VpcId", &network.vpc_id),
            ("Subnets", &subnets),
        ],
    )
    .await;
    put_logs(&api, good.physical("ScalerLogGroup").unwrap(), "s", &[poll_line(0, "steady")]).await;
    let output = run_text(&moto, &["doctor", "--stack", &good.name]);
    for check in [
        "PASS ami",
        "PASS scaler zip",
        "PASS agent token",
        &format!(
            "PASS subnets: routes out: {} via {}",
            network.subnets[0], network.internet_gateway
        ),
        "PASS scaler polls",
        "PASS buildkite",
    ] {
        assert!(output.contains(check), "{check}: {output}");
    }

    // moto's Lambda refuses a function whose zip is missing, so the zip goes away after
    // the stack is made, as it does when someone empties the bucket.
    let zips = moto.bucket("elastic-ci-cli-doctor").await;
    let zip_key = "doctor/elastic-ci-scaler.zip";
    moto.put_object(&zips, zip_key, elastic_ci_e2e::deploy::EMPTY_ZIP).await;
    let bad = stack(
        &moto,
        &[
            ("MaxSize", "3"),
            ("ImageId", "ami-0000000000dead000"),
            ("ScalerLambdaS3Bucket", &zips),
            ("ScalerLambdaS3Key", zip_key),
        ],
    )
    .await;
    moto.s3().delete_object().bucket(&zips).key(zip_key).send().await.unwrap();
    moto.put_parameter(
        &format!("/{}/buildkite/agent-token", bad.name),
        "token-with-newline\n",
        true,
    )
    .await;
    let output = elastic_ci(&moto).args(["doctor", "--stack", &bad.name]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL ami: ami-0000000000dead000 does not exist"), "{stdout}");
    assert!(
        stdout.contains(&format!("FAIL scaler zip: s3://{zips}/{zip_key} does not exist")),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL agent token: parameter") && stdout.contains("whitespace"),
        "{stdout}"
    );
    assert!(!stdout.contains("token-with-newline"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_token_keeps_the_type_and_never_prints_the_token() {
    let Some(moto) = moto() else { return };
    let stack = stack(&moto, &[("MaxSize", "3")]).await;
    let name = format!("/{}/buildkite/agent-token", stack.name);
    moto.put_parameter(&name, "old-token", true).await;
    let output = elastic_ci(&moto)
        .args(["rotate-token", "--stack", &stack.name, "--token-stdin", "--yes"])
        .write_stdin("new-secret-token\n")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for stream in [&output.stdout, &output.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains("new-secret-token"));
    }
    let stored = moto.ssm().get_parameter().name(&name).with_decryption(true).send().await.unwrap();
    let parameter = stored.parameter().unwrap();
    assert_eq!(parameter.value(), Some("new-secret-token"));
    assert_eq!(parameter.r#type().map(|kind| kind.as_str()), Some("SecureString"));
}

/// Drain through moto's SSM, which records the command. moto adds every instance of
/// the account to a command's targets, so which instances a drain names is checked
/// with the in-memory fakes (`tests/fakes.rs`); here, that the command goes out as SSM
/// Run Command with the drain unit, and that `--all` pauses the scaler first.
#[tokio::test(flavor = "multi_thread")]
async fn drain_sends_the_drain_command_through_ssm() {
    let Some(moto) = moto() else { return };
    let stack = stack(&moto, &[("MinSize", "2"), ("MaxSize", "3")]).await;
    let api = MotoApi::new(&moto.endpoint);
    let rule =
        stack.physical("AutoscalingSchedule").unwrap().rsplit('/').next().unwrap().to_owned();
    let group = group(&moto, stack.physical("AgentAutoScaleGroup").unwrap()).await;
    // In the group's order, which drain --all keeps.
    let instances: Vec<&str> =
        group.instances().iter().filter_map(|instance| instance.instance_id()).collect();
    assert_eq!(instances.len(), 2);

    let one =
        run_text(&moto, &["drain", "--stack", &stack.name, "--instance", instances[0], "--yes"]);
    let command_id = one
        .strip_prefix(&format!("draining {} (SSM command ", instances[0]))
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{one}"));
    let listed = moto.ssm().list_commands().command_id(command_id).send().await.unwrap();
    let command = &listed.commands()[0];
    assert_eq!(command.document_name(), Some("AWS-RunShellScript"));
    assert_eq!(command.parameters().unwrap()["commands"], [DRAIN_COMMAND]);
    assert!(command.instance_ids().contains(&instances[0].to_owned()));
    assert_eq!(rule_state(&api, &rule).await, "ENABLED");

    let dry = run_text(&moto, &["drain", "--stack", &stack.name, "--all", "--dry-run"]);
    assert_eq!(
        dry,
        format!(
            "would pause the scaler\nwould drain {}: `{DRAIN_COMMAND}` through SSM\n",
            instances.join(", ")
        )
    );
    assert_eq!(rule_state(&api, &rule).await, "ENABLED");

    let all = run_text(&moto, &["drain", "--stack", &stack.name, "--all", "--yes"]);
    assert!(
        all.contains(&format!("paused\ndraining {} (SSM command ", instances.join(", "))),
        "{all}"
    );
    assert_eq!(rule_state(&api, &rule).await, "DISABLED");

    elastic_ci(&moto)
        .args(["drain", "--stack", &stack.name, "--instance", "i-00000000000000000", "--yes"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("\"i-00000000000000000\" is not in service"));
}

#[test]
fn an_unknown_stack_is_one_line_and_exit_2() {
    let Some(moto) = moto() else { return };
    let output =
        elastic_ci(&moto).args(["status", "--stack", "no-such-stack-anywhere"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error:")).collect();
    assert_eq!(
        errors,
        [
            "error: stack \"no-such-stack-anywhere\" not found: check --stack and the region (AWS_REGION, --region)"
        ],
        "{stderr}"
    );
}

#[test]
fn no_credentials_is_one_line_and_exit_2() {
    let Some(moto) = moto() else { return };
    let home = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("elastic-ci")
        .unwrap()
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["status", "--stack", "any"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: no usable AWS credentials"), "{stderr}");
}

/// A log group made afresh for the test: the original's group names are account-wide,
/// so a group left by an earlier run on the same emulator loses its subscription
/// filters (two at most per group) first.
async fn fresh_log_group(api: &MotoApi, group: &str) {
    let listed = api
        .json("logs", "Logs_20140328.DescribeLogGroups", &json!({"logGroupNamePrefix": group}))
        .await;
    let exists = listed["logGroups"]
        .as_array()
        .is_some_and(|groups| groups.iter().any(|found| found["logGroupName"] == group));
    if !exists {
        api.json("logs", "Logs_20140328.CreateLogGroup", &json!({"logGroupName": group})).await;
        return;
    }
    let filters = api
        .json("logs", "Logs_20140328.DescribeSubscriptionFilters", &json!({"logGroupName": group}))
        .await;
    for filter in filters["subscriptionFilters"].as_array().into_iter().flatten() {
        api.json(
            "logs",
            "Logs_20140328.DeleteSubscriptionFilter",
            &json!({"logGroupName": group, "filterName": filter["filterName"]}),
        )
        .await;
    }
}

/// A group's filters of one kind, by name.
async fn filters_of(
    api: &MotoApi,
    kind: &str,
    group: &str,
) -> std::collections::BTreeMap<String, Value> {
    let (target, key) = match kind {
        "metric" => ("Logs_20140328.DescribeMetricFilters", "metricFilters"),
        _ => ("Logs_20140328.DescribeSubscriptionFilters", "subscriptionFilters"),
    };
    let answer = api.json("logs", target, &json!({"logGroupName": group})).await;
    answer[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|filter| filter["logGroupName"] == group)
        .map(|filter| (filter["filterName"].as_str().unwrap().to_owned(), filter.clone()))
        .collect()
}

/// The settings of a filter that a copy must carry: everything but the group, the
/// creation time and moto's bookkeeping.
fn settings(filter: &Value) -> Value {
    let mut settings = filter.clone();
    if let Some(object) = settings.as_object_mut() {
        object.retain(|key, _| {
            matches!(
                key.as_str(),
                "filterName"
                    | "filterPattern"
                    | "metricTransformations"
                    | "destinationArn"
                    | "roleArn"
                    | "distribution"
            )
        });
    }
    settings
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_log_filters_puts_the_original_groups_filters_on_the_stacks_groups() {
    let Some(moto) = moto() else { return };
    let stack = stack(&moto, &[("MaxSize", "3")]).await;
    let api = MotoApi::new(&moto.endpoint);
    let tag = unique("f");
    let function = stack.physical("AutoscalingFunction").unwrap();
    let destination = format!("arn:aws:lambda:us-east-1:123456789012:function:{function}");
    let old_scaler = format!("/aws/lambda/{}-Autoscaling-{tag}", stack.name);
    for group in ["/buildkite/buildkite-agent", "/buildkite/system"] {
        fresh_log_group(&api, group).await;
    }
    api.json("logs", "Logs_20140328.CreateLogGroup", &json!({"logGroupName": old_scaler})).await;
    let metric = |group: &str, name: &str, pattern: &str| {
        json!({
            "logGroupName": group, "filterName": name, "filterPattern": pattern,
            "metricTransformations": [{
                "metricName": format!("{name}-count"), "metricNamespace": "Team/CI",
                "metricValue": "1", "defaultValue": 0.0, "unit": "Count",
            }],
        })
    };
    let agent_errors = format!("agent-errors-{tag}");
    let agent_lambda = format!("agent-to-lambda-{tag}");
    let system_oom = format!("system-oom-{tag}");
    let scaler_errors = format!("scaler-errors-{tag}");
    for body in [
        metric("/buildkite/buildkite-agent", &agent_errors, "\"ERROR\""),
        metric("/buildkite/system", &system_oom, "\"Out of memory\""),
        metric(&old_scaler, &scaler_errors, "{ $.level = \"ERROR\" }"),
    ] {
        api.json("logs", "Logs_20140328.PutMetricFilter", &body).await;
    }
    api.json(
        "logs",
        "Logs_20140328.PutSubscriptionFilter",
        &json!({"logGroupName": "/buildkite/buildkite-agent", "filterName": agent_lambda,
                "filterPattern": "", "destinationArn": destination}),
    )
    .await;
    let old = [
        filters_of(&api, "metric", "/buildkite/buildkite-agent").await,
        filters_of(&api, "subscription", "/buildkite/buildkite-agent").await,
        filters_of(&api, "metric", "/buildkite/system").await,
        filters_of(&api, "metric", &old_scaler).await,
    ];
    let new_agent = format!("/buildkite/{}/buildkite-agent", stack.name);
    let new_system = format!("/buildkite/{}/system", stack.name);
    let new_scaler = stack.physical("ScalerLogGroup").unwrap().to_owned();
    let args = ["copy-log-filters", "--stack", &stack.name, "--from-scaler-log-group", &old_scaler];

    let dry = run_text(&moto, &[&args[..], &["--dry-run"]].concat());
    for (name, from, to) in [
        (&agent_errors, "/buildkite/buildkite-agent", &new_agent),
        (&system_oom, "/buildkite/system", &new_system),
        (&scaler_errors, old_scaler.as_str(), &new_scaler),
    ] {
        let line = format!("would copy metric filter {name:?}: {from} -> {to}\n");
        assert!(dry.contains(&line), "{line}: {dry}");
    }
    assert!(
        dry.contains(&format!(
            "would copy subscription filter {agent_lambda:?}: /buildkite/buildkite-agent -> {new_agent}\n"
        )),
        "{dry}"
    );
    assert!(!filters_of(&api, "metric", &new_agent).await.contains_key(&agent_errors));
    assert!(filters_of(&api, "subscription", &new_agent).await.is_empty());

    let copied = run_text(&moto, &[&args[..], &["--yes"]].concat());
    for name in [&agent_errors, &agent_lambda, &system_oom, &scaler_errors] {
        assert!(copied.contains(&format!(" filter {name:?}: ")), "{name}: {copied}");
    }
    assert!(!copied.contains("would copy") && !copied.contains("failed"), "{copied}");
    for (group, kind, name, original) in [
        (&new_agent, "metric", &agent_errors, &old[0]),
        (&new_agent, "subscription", &agent_lambda, &old[1]),
        (&new_system, "metric", &system_oom, &old[2]),
        (&new_scaler, "metric", &scaler_errors, &old[3]),
    ] {
        let new = filters_of(&api, kind, group).await;
        let copy =
            new.get(name.as_str()).unwrap_or_else(|| panic!("{name} not on {group}: {new:?}"));
        assert_eq!(settings(copy), settings(&original[name.as_str()]), "{name}");
    }
    assert_eq!(
        filters_of(&api, "subscription", &new_agent).await[agent_lambda.as_str()]["destinationArn"],
        destination.as_str()
    );
    // The original groups are only read.
    assert_eq!(filters_of(&api, "metric", "/buildkite/buildkite-agent").await, old[0]);
    assert_eq!(filters_of(&api, "subscription", "/buildkite/buildkite-agent").await, old[1]);
    assert_eq!(filters_of(&api, "metric", "/buildkite/system").await, old[2]);
    assert_eq!(filters_of(&api, "metric", &old_scaler).await, old[3]);

    // A second run copies nothing.
    let again = run_text(&moto, &[&args[..], &["--yes", "--json"]].concat());
    let lines: Vec<Value> = again.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(lines.len() >= 4, "{again}");
    assert!(lines.iter().all(|line| line["outcome"] == "already-present"), "{again}");
    assert!(
        lines.iter().any(|line| line["name"] == agent_lambda.as_str()
            && line["kind"] == "subscription"
            && line["to"] == new_agent.as_str()),
        "{again}"
    );
}
