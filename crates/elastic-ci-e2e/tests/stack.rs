//! The rendered stack template deployed on the local AWS emulator's CloudFormation:
//! created with a realistic parameter set, inspected service by service, updated and
//! deleted; then with the optional features on, with an existing role on a deep path,
//! and with hostile parameter values run through the UserData script. The stack-helper
//! functions embedded in the template run against the emulator too.
//!
//! moto deploys the template's resources but skips custom resources and bucket
//! policies (see TOOLING.md), so the helper functions are exercised directly.

#![allow(clippy::print_stderr, reason = "a test that needs moto's Python says why it skipped")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use aws_sdk_cloudformation::types::StackStatus;
use elastic_ci_testkit::moto::{Moto, REGION, moto};
use elastic_ci_testkit::names::unique_name;
use serde_json::{Value, json};

use elastic_ci_e2e::deploy::{self, AMD64_AMI, ARM64_AMI, BootInputs, EMPTY_ZIP};
use elastic_ci_e2e::moto_api::{MotoApi, percent_decode, xml_all, xml_first};
use xtask::{project, template};

use support::*;

const TOKEN: &str = "bkua_0123456789secret";

/// The launch template's latest version: its data as XML, and the decoded UserData.
async fn launch_template(api: &MotoApi, id: &str) -> (String, BootInputs) {
    deploy::launch_template(api, id).await.unwrap_or_else(|error| panic!("{error:#}"))
}

/// The role an instance profile holds.
async fn instance_profile_role(api: &MotoApi, profile: &str) -> Option<String> {
    let params = [("Action", "GetInstanceProfile"), ("InstanceProfileName", profile)];
    xml_first(&api.query("iam", "2010-05-08", &params).await, "RoleName")
}

async fn role_policies(api: &MotoApi, role: &str) -> BTreeMap<String, Value> {
    let listed =
        api.query("iam", "2010-05-08", &[("Action", "ListRolePolicies"), ("RoleName", role)]).await;
    let mut policies = BTreeMap::new();
    for policy in xml_all(&listed, "member") {
        let xml = api
            .query(
                "iam",
                "2010-05-08",
                &[("Action", "GetRolePolicy"), ("RoleName", role), ("PolicyName", &policy)],
            )
            .await;
        let mut document = percent_decode(&xml_first(&xml, "PolicyDocument").expect("a document"));
        // moto answers with Python's repr of the policies a role resource declares
        // inline; none of ours contains a quote, so swapping quotes makes it JSON.
        if document.starts_with("{'") {
            document = document.replace('\'', "\"");
        }
        policies.insert(policy, serde_json::from_str(&document).expect("a JSON policy"));
    }
    policies
}

/// Every statement of a policy document, with Action and Resource as lists.
fn statements(document: &Value) -> Vec<(Vec<String>, Vec<String>)> {
    let as_list = |value: &Value| -> Vec<String> {
        match value {
            Value::String(text) => vec![text.clone()],
            Value::Array(items) => {
                items.iter().filter_map(|item| item.as_str().map(str::to_owned)).collect()
            }
            _ => Vec::new(),
        }
    };
    document["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|statement| (as_list(&statement["Action"]), as_list(&statement["Resource"])))
        .collect()
}

/// The resources a policy grants `action` on.
fn granted(document: &Value, action: &str) -> Vec<String> {
    statements(document)
        .into_iter()
        .filter(|(actions, _)| actions.iter().any(|granted| granted == action))
        .flat_map(|(_, resources)| resources)
        .collect()
}

const INSTANCE_LOG_GROUPS: [&str; 7] = [
    "auth",
    "buildkite-agent",
    "cloud-init",
    "cloud-init/output",
    "docker-daemon",
    "elastic-stack",
    "system",
];

#[tokio::test]
async fn deploys_updates_and_deletes_the_stack_with_realistic_parameters() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let prefix = unique_name("lambdas");
    let template = rendered_template(&prefix);
    // No ScalerLambdaS3Bucket or Key: the zip comes from the release location the
    // template names for this version and architecture.
    deploy::upload_scaler_zips(&moto, &template).await.expect("the scaler zips uploaded");
    let name = stack_name();
    let (vpc_id, subnets) = existing_vpc(&api).await;
    let subnets = subnets.join(",");
    let values = [
        ("BuildkiteAgentToken", TOKEN),
        ("VpcId", vpc_id.as_str()),
        ("Subnets", subnets.as_str()),
        ("BuildkiteQueue", "deploy-test"),
        ("InstanceTypes", "t3.large,t3a.large,m5.large"),
        ("AgentsPerInstance", "2"),
        ("MinSize", "0"),
        ("MaxSize", "10"),
        ("ScaleInIdlePeriod", "900"),
        ("BuildkiteAgentTags", "team=ci,os=linux"),
    ];
    let stack = create_stack(&moto, &name, &template, &values).await;

    // The Auto Scaling group: sizes, mixed instances, protection, tags.
    let group_name = &stack.outputs["AutoScalingGroupName"];
    assert!(group_name.starts_with(&format!("{name}-AgentAutoScaleGroup-")), "{group_name}");
    let group = scaling_group(&moto, group_name).await;
    assert_eq!((group.min_size(), group.max_size()), (Some(0), Some(10)));
    assert_eq!(group.new_instances_protected_from_scale_in(), Some(true));
    assert_eq!(group.default_cooldown(), Some(60));
    assert_eq!(group.termination_policies(), ["OldestLaunchTemplate", "ClosestToNextInstanceHour"]);
    assert_eq!(group.vpc_zone_identifier(), Some(subnets.as_str()));
    assert_eq!(stack.outputs["VpcId"], vpc_id);
    let policy = group.mixed_instances_policy().expect("a mixed instances policy");
    let overrides: Vec<&str> = policy
        .launch_template()
        .expect("a launch template")
        .overrides()
        .iter()
        .filter_map(|item| item.instance_type())
        .collect();
    assert_eq!(overrides, ["t3.large", "t3a.large", "m5.large"]);
    let distribution = policy.instances_distribution().expect("a distribution");
    assert_eq!(distribution.on_demand_percentage_above_base_capacity(), Some(100));
    assert_eq!(distribution.spot_allocation_strategy(), Some("capacity-optimized"));
    let tags: BTreeMap<&str, &str> = group
        .tags()
        .iter()
        .map(|tag| (tag.key().unwrap_or_default(), tag.value().unwrap_or_default()))
        .collect();
    assert_eq!(tags.get("BuildkiteQueue"), Some(&"deploy-test"));
    assert_eq!(tags.get("AgentsPerInstance"), Some(&"2"));

    // The launch template: the mapped AMI, IMDSv2, the instance profile, the inputs.
    let (lt, inputs) = launch_template(&api, stack.physical("AgentLaunchTemplate")).await;
    assert_eq!(xml_first(&lt, "imageId").as_deref(), Some(AMD64_AMI));
    assert_eq!(xml_first(&lt, "instanceType").as_deref(), Some("t3.large"));
    assert_eq!(xml_first(&lt, "httpTokens").as_deref(), Some("required"));
    assert_eq!(xml_first(&lt, "httpPutResponseHopLimit").as_deref(), Some("2"));
    assert_eq!(xml_first(&lt, "instanceMetadataTags").as_deref(), Some("enabled"));
    assert_eq!(xml_first(&lt, "cpuCredits").as_deref(), Some("unlimited"));
    assert_eq!(xml_first(&lt, "encrypted").as_deref(), Some("true"), "encrypted by default");
    assert!(xml_all(&lt, "value").contains(&"buildkite-agent".to_owned()), "Role tag: {lt}");
    assert_eq!(inputs.lines.len(), inputs.expected_lines, "the UserData's line-count check");
    assert_eq!(inputs.value("BUILDKITE_STACK_NAME"), name);
    assert_eq!(inputs.value("BUILDKITE_STACK_VERSION"), VERSION);
    assert_eq!(inputs.value("BUILDKITE_STACK_DEPLOYED_BY"), "cloudformation");
    assert_eq!(inputs.value("BUILDKITE_QUEUE"), "deploy-test");
    assert_eq!(
        inputs.value("BUILDKITE_AGENT_TOKEN_PATH"),
        format!("/{name}/buildkite/agent-token")
    );
    assert_eq!(inputs.value("BUILDKITE_AGENTS_PER_INSTANCE"), "2");
    assert_eq!(inputs.value("BUILDKITE_SCALE_IN_IDLE_PERIOD"), "900");
    assert_eq!(inputs.value("BUILDKITE_AGENT_TAGS"), "team=ci,os=linux");
    assert_eq!(inputs.value("BUILDKITE_SECRETS_BUCKET"), stack.outputs["ManagedSecretsBucket"]);
    assert_eq!(inputs.value("BUILDKITE_SECRETS_BUCKET_REGION"), REGION);
    assert_eq!(inputs.value("BUILDKITE_S3_DEFAULT_REGION"), REGION);
    assert_eq!(inputs.value("AWS_REGION"), REGION);
    assert!(!inputs.shell_part.contains(TOKEN), "the token must not reach the UserData");

    // The instance role: trust, the core policy scoped to the stack, the secrets bucket.
    let role = &stack.outputs["InstanceRoleName"];
    assert_eq!(role, stack.physical("IAMRole"));
    let role_xml =
        api.query("iam", "2010-05-08", &[("Action", "GetRole"), ("RoleName", role)]).await;
    let trust = percent_decode(&xml_first(&role_xml, "AssumeRolePolicyDocument").expect("trust"));
    assert!(trust.contains("ec2.amazonaws.com") && trust.contains("autoscaling.amazonaws.com"));
    let policies = role_policies(&api, role).await;
    assert_eq!(policies.keys().collect::<Vec<_>>(), ["InstancePolicy", "SecretsBucket"]);
    let core = &policies["InstancePolicy"];
    assert_eq!(
        granted(core, "autoscaling:TerminateInstanceInAutoScalingGroup"),
        [format!(
            "arn:aws:autoscaling:{REGION}:123456789012:autoScalingGroup:*:autoScalingGroupName/{name}-AgentAutoScaleGroup-*"
        )]
    );
    assert_eq!(
        granted(core, "ssm:GetParameter"),
        [format!("arn:aws:ssm:{REGION}:123456789012:parameter/{name}/buildkite/agent-token")]
    );
    assert_eq!(granted(core, "cloudformation:SignalResource"), std::slice::from_ref(&stack.id));
    // Logs and retention: the instances' own log groups only.
    let instance_groups: Vec<String> = [
        "buildkite-agent",
        "cloud-init",
        "cloud-init/output",
        "docker-daemon",
        "elastic-stack",
        "system",
        "auth",
    ]
    .iter()
    .map(|file| format!("arn:aws:logs:{REGION}:123456789012:log-group:/buildkite/{name}/{file}:*"))
    .collect();
    assert_eq!(granted(core, "logs:PutRetentionPolicy"), instance_groups);
    assert_eq!(granted(core, "logs:CreateLogGroup"), instance_groups);
    let bucket = &stack.outputs["ManagedSecretsBucket"];
    assert_eq!(
        granted(&policies["SecretsBucket"], "s3:Get*"),
        [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]
    );
    let profile_role = instance_profile_role(&api, stack.physical("IAMInstanceProfile")).await;
    assert_eq!(profile_role.as_deref(), Some(role.as_str()));

    // The secrets buckets: encrypted (moto applies only encryption and tags of a
    // bucket's properties; the rest is checked in the template below).
    let s3 = moto.s3();
    let secrets_bucket = &stack.outputs["ManagedSecretsBucket"];
    for bucket in [secrets_bucket, &stack.outputs["ManagedSecretsLoggingBucket"]] {
        let encryption =
            s3.get_bucket_encryption().bucket(bucket).send().await.expect("encryption");
        let rule = encryption
            .server_side_encryption_configuration()
            .and_then(|configuration| configuration.rules().first())
            .and_then(|rule| rule.apply_server_side_encryption_by_default())
            .expect("a default encryption rule");
        assert_eq!(rule.sse_algorithm().as_str(), "AES256");
    }
    assert_secrets_buckets_are_private_versioned_and_tls_only();

    // The dashboard: the queue, the group and the stack's own metrics (moto stores
    // dashboards; it skips alarms and metric filters, which tests/monitoring.rs reads
    // from the template).
    let dashboard_name = &stack.outputs["DashboardName"];
    assert_eq!(dashboard_name, &format!("{name}-{REGION}"));
    assert!(stack.outputs["DashboardUrl"].ends_with(&format!("#dashboards:name={dashboard_name}")));
    let dashboard = api
        .query(
            "monitoring",
            "2010-08-01",
            &[("Action", "GetDashboard"), ("DashboardName", dashboard_name)],
        )
        .await;
    let body: serde_json::Value =
        serde_json::from_str(&xml_first(&dashboard, "DashboardBody").expect("a body"))
            .expect("the dashboard body is JSON");
    let body = body.to_string();
    for expected in [
        "Queue=\\\"deploy-test\\\"".to_owned(),
        format!("\"AutoScalingGroupName\",\"{group_name}\""),
        format!("ElasticCIStack/{name}"),
        format!("alarm:{name}-scaler-not-polling"),
    ] {
        assert!(body.contains(&expected), "{expected}: {body}");
    }

    // The scaler: our zip, the scaler's environment, its role, schedule and logs.
    let function = lambda_function(&api, stack.physical("AutoscalingFunction")).await;
    let configuration = &function["Configuration"];
    assert_eq!(configuration["Runtime"], "provided.al2023");
    assert_eq!(configuration["Handler"], "bootstrap");
    assert_eq!(configuration["Timeout"], 120);
    assert_eq!(configuration["MemorySize"], 128);
    let environment = &configuration["Environment"]["Variables"];
    let expected = [
        ("BUILDKITE_QUEUE", json!("deploy-test")),
        ("ASG_NAME", json!(group_name)),
        ("BUILDKITE_AGENT_TOKEN_SSM_KEY", json!(format!("/{name}/buildkite/agent-token"))),
        ("BUILDKITE_AGENT_ENDPOINT", json!("https://agent-edge.buildkite.com/v3")),
        ("LAMBDA_INTERVAL", json!("10s")),
        ("LAMBDA_TIMEOUT", json!("50s")),
        ("SCALE_OUT_COOLDOWN_PERIOD", json!("300s")),
        ("SCALE_IN_COOLDOWN_PERIOD", json!("3600s")),
        ("DISABLE_SCALE_IN", json!("true")),
        ("CLOUDWATCH_METRICS", json!("true")),
    ];
    for (variable, value) in expected {
        assert_eq!(environment[variable], value, "{variable}");
    }
    // moto passes numbers through as numbers; CloudFormation gives strings.
    assert_eq!(environment["AGENTS_PER_INSTANCE"].to_string().trim_matches('"'), "2");
    assert_eq!(function["Concurrency"]["ReservedConcurrentExecutions"], 1, "{function}");
    let scaler_role = stack.physical("AutoscalingLambdaExecutionRole");
    assert!(configuration["Role"].as_str().is_some_and(|arn| arn.ends_with(scaler_role)));
    let scaler_policy = &role_policies(&api, scaler_role).await["AutoScalingGroups"];
    assert!(granted(scaler_policy, "autoscaling:SetInstanceHealth").is_empty());
    assert_eq!(
        granted(scaler_policy, "autoscaling:SetDesiredCapacity"),
        [format!(
            "arn:aws:autoscaling:{REGION}:123456789012:autoScalingGroup:*:autoScalingGroupName/{name}-AgentAutoScaleGroup-*"
        )]
    );
    assert_eq!(
        granted(scaler_policy, "ssm:GetParameter"),
        [format!("arn:aws:ssm:{REGION}:123456789012:parameter/{name}/buildkite/agent-token")]
    );
    let rule = api
        .json(
            "events",
            "AWSEvents.DescribeRule",
            &json!({ "Name": stack.physical("AutoscalingSchedule") }),
        )
        .await;
    assert_eq!(rule["ScheduleExpression"], "rate(1 minute)");
    assert_eq!(rule["State"], "ENABLED");
    let targets = api
        .json(
            "events",
            "AWSEvents.ListTargetsByRule",
            &json!({ "Rule": stack.physical("AutoscalingSchedule") }),
        )
        .await;
    assert_eq!(targets["Targets"][0]["Arn"], configuration["FunctionArn"]);

    let groups = log_groups(&api, &format!("/buildkite/{name}/")).await;
    let mut expected: BTreeMap<String, Option<i64>> = INSTANCE_LOG_GROUPS
        .iter()
        .map(|group| (format!("/buildkite/{name}/{group}"), None))
        .collect();
    expected.insert(format!("/buildkite/{name}/scaler"), Some(1));
    expected.insert(format!("/buildkite/{name}/stack-helpers"), Some(1));
    assert_eq!(groups, expected);

    // The helpers: the token's SecureString function and the AZ-rebalancing suspender.
    for helper in ["AgentTokenParameterFunction", "AzRebalancingSuspenderFunction"] {
        let function = lambda_function(&api, stack.physical(helper)).await;
        assert_eq!(function["Configuration"]["Runtime"], "python3.13", "{helper}");
    }
    for absent in [
        "StopBuildkiteAgentsFunction",
        "PipelineSigningKMSKey",
        "ScheduledScaleUpAction",
        "EcrApiEndpoint",
        "SecurityGroupSshIngress",
    ] {
        assert!(!stack.resources.contains_key(absent), "{absent} should be off by default");
    }
    assert_eq!(stack.outputs["PipelineSigningKMSKey"], "none");
    assert_outputs_name_the_stacks_resources(&moto, &stack).await;

    let mut updated = values.to_vec();
    updated.retain(|(key, _)| *key != "MaxSize");
    updated.push(("MaxSize", "25"));
    update_stack(&moto, &stack, &template, &updated).await;
    let group_name = &read_stack(&moto, &name).await.outputs["AutoScalingGroupName"];
    assert_eq!(scaling_group(&moto, group_name).await.max_size(), Some(25));

    delete_stack(&moto, &read_stack(&moto, &name).await).await;
}

#[tokio::test]
async fn deploys_with_the_optional_features_on() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let prefix = unique_name("lambdas");
    let template = rendered_template(&prefix);
    let zips = moto.bucket("scaler-zips").await;
    moto.put_object(
        &zips,
        &format!("elastic-ci-scaler/{VERSION}/elastic-ci-scaler-arm64.zip"),
        EMPTY_ZIP,
    )
    .await;
    let name = stack_name();
    let token_path = format!("/{name}-ci/agent-token");
    moto.put_parameter(&token_path, TOKEN, true).await;
    let token_key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let (vpc_id, subnets) = existing_vpc(&api).await;
    let subnets = subnets.join(",");
    let values = [
        ("VpcId", vpc_id.as_str()),
        ("Subnets", subnets.as_str()),
        ("AssociatePublicIpAddress", "false"),
        ("BuildkiteAgentTokenParameterStorePath", token_path.as_str()),
        ("BuildkiteAgentTokenParameterStoreKMSKey", token_key),
        ("BuildkiteQueue", "arm"),
        ("InstanceTypes", "m7g.large,c7gn.xlarge,r8gd.2xlarge"),
        ("MinSize", "0"),
        ("MaxSize", "6"),
        ("OnDemandBaseCapacity", "1"),
        ("OnDemandPercentage", "25"),
        ("SpotAllocationStrategy", "price-capacity-optimized"),
        ("InstanceScaleInProtection", "false"),
        ("LambdaArchitecture", "arm64"),
        ("ScalerLambdaS3Bucket", zips.as_str()),
        ("PipelineSigningKMSKeySpec", "ECC_NIST_P256"),
        ("BuildkiteAgentSigningKeySSMParameter", "/ci/jwks/signing"),
        ("BuildkiteAgentVerificationKeySSMParameter", "/ci/jwks/verification"),
        ("ECRAccessPolicy", "poweruser-pullthrough"),
        ("ManagedPolicyARNs", "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"),
        ("ScalerManagedPolicyARNs", "arn:aws:iam::aws:policy/ReadOnlyAccess"),
        ("InstanceRoleTags", "team=ci,cost centre=platform"),
        ("BootstrapScriptUrl", "s3://my-config/boot/bootstrap.sh"),
        ("AgentEnvFileUrl", "ssm:/ci/agent-env"),
        ("AuthorizedUsersUrl", "s3://my-config/keys/authorized_keys"),
        ("SSHIngressCidr", "10.20.0.0/16"),
        ("ArtifactsBucket", "my-artifacts"),
        ("ArtifactsBucketRegion", "eu-west-1"),
        ("BuildkiteAgentEnableGitMirrors", "true"),
        ("GitMirrorSeedBucket", "my-mirrors"),
        ("EnableScheduledScaling", "true"),
        ("ScaleUpSchedule", "0 7 * * MON-FRI"),
        ("ScaleUpMinSize", "2"),
        ("BuildkiteAgentEnableGracefulShutdown", "true"),
        ("EnableCostAllocationTags", "true"),
        ("CostAllocationTagName", "CostCentre"),
        ("CostAllocationTagValue", "ci"),
        ("EnableSecretsPlugin", "false"),
        ("IMDSv2Tokens", "optional"),
        ("RootVolumeType", "io2"),
        ("RootVolumeIops", "4000"),
        ("EnableEC2LogRetentionPolicy", "true"),
        ("EC2LogRetentionDays", "30"),
        ("LogRetentionDays", "14"),
    ];
    let stack = create_stack(&moto, &name, &template, &values).await;

    // Graviton types anywhere in the list select the arm64 AMI; no credits for them.
    let (lt, inputs) = launch_template(&api, stack.physical("AgentLaunchTemplate")).await;
    assert_eq!(xml_first(&lt, "imageId").as_deref(), Some(ARM64_AMI));
    assert_eq!(xml_first(&lt, "cpuCredits"), None);
    assert_eq!(xml_first(&lt, "httpTokens").as_deref(), Some("optional"));
    assert_eq!(xml_first(&lt, "iops").as_deref(), Some("4000"));
    assert_eq!(xml_first(&lt, "throughput"), None);
    assert!(xml_all(&lt, "key").contains(&"CostCentre".to_owned()), "cost tag: {lt}");
    assert_eq!(inputs.lines.len(), inputs.expected_lines);
    assert_eq!(inputs.value("BUILDKITE_AGENT_TOKEN_PATH"), token_path);
    assert_eq!(inputs.value("BUILDKITE_SECRETS_BUCKET"), "");
    assert_eq!(inputs.value("BUILDKITE_S3_DEFAULT_REGION"), "eu-west-1");
    assert_eq!(inputs.value("BUILDKITE_GIT_MIRROR_SEED_BUCKET"), "my-mirrors");
    assert_eq!(inputs.value("BUILDKITE_ENV_FILE_URL"), "ssm:/ci/agent-env");
    assert_eq!(inputs.value("BUILDKITE_ECR_POLICY"), "poweruser-pullthrough");
    assert_eq!(inputs.value("ENABLE_EC2_LOG_RETENTION_POLICY"), "true");
    let signing_key = inputs.value("BUILDKITE_AGENT_SIGNING_KMS_KEY");
    assert!(signing_key.starts_with("arn:aws:kms:"), "{signing_key}");

    let group = scaling_group(&moto, &stack.outputs["AutoScalingGroupName"]).await;
    assert_eq!(group.new_instances_protected_from_scale_in(), Some(false));
    let distribution = group
        .mixed_instances_policy()
        .and_then(|policy| policy.instances_distribution())
        .expect("a distribution");
    assert_eq!(distribution.on_demand_base_capacity(), Some(1));
    assert_eq!(distribution.on_demand_percentage_above_base_capacity(), Some(25));
    assert_eq!(distribution.spot_allocation_strategy(), Some("price-capacity-optimized"));
    let actions = moto
        .autoscaling()
        .describe_scheduled_actions()
        .auto_scaling_group_name(&stack.outputs["AutoScalingGroupName"])
        .send()
        .await
        .expect("describe_scheduled_actions");
    let schedules: BTreeSet<(String, Option<i32>)> = actions
        .scheduled_update_group_actions()
        .iter()
        .map(|action| (action.recurrence().unwrap_or_default().to_owned(), action.min_size()))
        .collect();
    assert_eq!(
        schedules,
        BTreeSet::from([
            ("0 7 * * MON-FRI".to_owned(), Some(2)),
            ("0 18 * * MON-FRI".to_owned(), Some(0))
        ])
    );

    // The instance role: tags, and a grant for every source it reads. (moto ignores a
    // role's ManagedPolicyArns, so the ECR and user policies cannot be checked here.)
    let role = &stack.outputs["InstanceRoleName"];
    let role_xml =
        api.query("iam", "2010-05-08", &[("Action", "GetRole"), ("RoleName", role)]).await;
    let tag_keys = xml_all(&role_xml, "Key");
    assert_eq!(tag_keys, ["CreatedBy", "team", "cost centre"], "{role_xml}");
    let policies = role_policies(&api, role).await;
    assert_eq!(
        policies.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "AgentEnvFile",
            "ArtifactsBucket",
            "AuthorizedUsers",
            "BootstrapScript",
            "DecryptAgentToken",
            "ECRPullThrough",
            "GitMirrorSeedBucket",
            "InstancePolicy",
            "PipelineSigningKMSKeyAccess",
            "PipelineSigningKeyParameters",
        ])
    );
    let arn = |service: &str, resource: &str| {
        format!("arn:aws:{service}:{REGION}:123456789012:{resource}")
    };
    assert_eq!(
        granted(&policies["InstancePolicy"], "ssm:GetParameter"),
        [arn("ssm", &format!("parameter{token_path}"))]
    );
    assert_eq!(granted(&policies["DecryptAgentToken"], "kms:Decrypt"), [token_key]);
    assert_eq!(
        granted(&policies["BootstrapScript"], "s3:GetObject"),
        ["arn:aws:s3:::my-config/boot/bootstrap.sh"]
    );
    assert_eq!(
        granted(&policies["AuthorizedUsers"], "s3:GetObject"),
        ["arn:aws:s3:::my-config/keys/authorized_keys"]
    );
    assert_eq!(
        granted(&policies["AgentEnvFile"], "ssm:GetParametersByPath"),
        [arn("ssm", "parameter/ci/agent-env"), arn("ssm", "parameter/ci/agent-env/*")]
    );
    assert_eq!(
        granted(&policies["PipelineSigningKeyParameters"], "ssm:GetParameter"),
        [arn("ssm", "parameter/ci/jwks/signing"), arn("ssm", "parameter/ci/jwks/verification")]
    );
    assert_eq!(granted(&policies["PipelineSigningKMSKeyAccess"], "kms:Sign"), [signing_key]);
    assert_eq!(
        granted(&policies["ArtifactsBucket"], "s3:PutObject"),
        ["arn:aws:s3:::my-artifacts", "arn:aws:s3:::my-artifacts/*"]
    );

    // The scaler: the arm64 zip of the release bucket given, the custom token, and the
    // KMS grant on its role.
    let function = lambda_function(&api, stack.physical("AutoscalingFunction")).await;
    let environment = &function["Configuration"]["Environment"]["Variables"];
    assert_eq!(environment["BUILDKITE_AGENT_TOKEN_SSM_KEY"], token_path.as_str());
    assert_eq!(environment["ELASTIC_CI_MODE"], "false");
    let scaler_role = stack.physical("AutoscalingLambdaExecutionRole");
    let scaler_policies = role_policies(&api, scaler_role).await;
    assert_eq!(granted(&scaler_policies["DecryptAgentToken"], "kms:Decrypt"), [token_key]);
    assert_eq!(
        scaler_policies.keys().map(String::as_str).collect::<Vec<_>>(),
        ["AutoScalingGroups", "DecryptAgentToken"]
    );

    let groups = log_groups(&api, &format!("/buildkite/{name}/")).await;
    assert_eq!(groups[&format!("/buildkite/{name}/buildkite-agent")], Some(30));
    assert_eq!(groups[&format!("/buildkite/{name}/scaler")], Some(14));

    for present in [
        "StopBuildkiteAgentsFunction",
        "PipelineSigningKMSKey",
        "PipelineSigningKMSKeyAlias",
        "SecurityGroupSshIngress",
    ] {
        assert!(stack.resources.contains_key(present), "{present} is missing");
    }
    for absent in [
        "ManagedSecretsBucket",
        "AgentTokenParameterFunction",
        "InstanceSecretsBucketPolicy",
        "Vpc",
    ] {
        assert!(!stack.resources.contains_key(absent), "{absent} should not exist");
    }
    assert_eq!(stack.outputs["ManagedSecretsBucket"], "Undefined");
    assert_eq!(stack.outputs["PipelineSigningKMSKey"], stack.physical("PipelineSigningKMSKey"));
    // Port 22 is open to the network given, and to nothing else.
    let groups = api
        .query(
            "ec2",
            "2016-11-15",
            &[
                ("Action", "DescribeSecurityGroups"),
                ("GroupId.1", &stack.outputs["SecurityGroupId"]),
            ],
        )
        .await;
    let ingress = groups
        .split_once("<ipPermissions>")
        .and_then(|(_, rest)| rest.split_once("</ipPermissions>"))
        .map(|(ingress, _)| ingress)
        .unwrap_or_default();
    assert_eq!(xml_all(ingress, "cidrIp"), ["10.20.0.0/16"], "{groups}");
    assert_eq!(xml_all(ingress, "fromPort"), ["22"], "{groups}");

    let mut updated = values.to_vec();
    updated.retain(|(key, _)| *key != "ScaleUpMinSize");
    updated.push(("ScaleUpMinSize", "3"));
    update_stack(&moto, &stack, &template, &updated).await;
    delete_stack(&moto, &stack).await;
}

#[tokio::test]
async fn uses_an_existing_role_on_a_ten_level_path_and_skips_the_scaler_at_fixed_size() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let role_name = unique_name("agent-role");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let created = api
        .query(
            "iam",
            "2010-05-08",
            &[
                ("Action", "CreateRole"),
                ("RoleName", &role_name),
                ("Path", "/a/b/c/d/e/f/g/h/i/j/"),
                ("AssumeRolePolicyDocument", trust),
            ],
        )
        .await;
    let role_arn = xml_first(&created, "Arn").expect("the role's ARN");
    assert!(role_arn.ends_with(&format!(":role/a/b/c/d/e/f/g/h/i/j/{role_name}")), "{role_arn}");
    let name = stack_name();
    let (vpc_id, subnets) = existing_vpc(&api).await;
    let subnets = subnets.join(",");
    let stack = create_stack(
        &moto,
        &name,
        &rendered_template(template::DEFAULT_LAMBDA_BUCKET_PREFIX),
        &[
            ("BuildkiteAgentToken", TOKEN),
            ("VpcId", &vpc_id),
            ("Subnets", &subnets),
            ("InstanceRoleARN", &role_arn),
            ("MinSize", "2"),
            ("MaxSize", "2"),
            ("ImageId", AMD64_AMI),
            ("InstanceTypes", "t3.micro"),
        ],
    )
    .await;

    assert_eq!(stack.outputs["InstanceRoleName"], role_name);
    let profile_role = instance_profile_role(&api, stack.physical("IAMInstanceProfile")).await;
    assert_eq!(profile_role, Some(role_name.clone()));
    assert!(
        role_policies(&api, &role_name).await.is_empty(),
        "the stack must not change a given role"
    );
    for absent in [
        "IAMRole",
        "IAMPolicies",
        "AutoscalingFunction",
        "AutoscalingSchedule",
        "AutoscalingLambdaExecutionRole",
        "ScalerLogGroup",
    ] {
        assert!(!stack.resources.contains_key(absent), "{absent} should not exist");
    }
    for absent in ["ScalerFunctionName", "ScalerLogGroup"] {
        assert!(!stack.outputs.contains_key(absent), "{absent} without a scaler");
    }
    assert_eq!(stack.outputs["InstanceRoleArn"], role_arn);
    let group = scaling_group(&moto, &stack.outputs["AutoScalingGroupName"]).await;
    assert_eq!(group.instances().len(), 2, "MinSize instances are launched");
    delete_stack(&moto, &stack).await;
}

/// UserData values stay literal: command substitutions, quotes and backticks in a
/// parameter reach the bootstrapper's environment unchanged and run nothing, and a
/// value with a line break stops the boot before anything is exported. CloudFormation
/// refuses such a value at the parameter already (`AllowedPattern`, checked by the
/// parity tests); moto does not, which lets this test reach the UserData's own guard.
#[tokio::test]
async fn user_data_hands_hostile_values_over_literally() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let template = rendered_template(template::DEFAULT_LAMBDA_BUCKET_PREFIX);
    let hostile = r#"a=$(touch pwned),b=`touch pwned`,c="quoted" 'single';d=\x"#;
    let (vpc_id, subnets) = existing_vpc(&api).await;
    let subnets = subnets.join(",");
    for (tags, boots) in [(hostile, true), ("a=1\nLD_PRELOAD=/tmp/evil.so", false)] {
        let stack = create_stack(
            &moto,
            &stack_name(),
            &template,
            &[
                ("BuildkiteAgentToken", TOKEN),
                ("VpcId", &vpc_id),
                ("Subnets", &subnets),
                ("MinSize", "0"),
                ("MaxSize", "0"),
                ("ImageId", AMD64_AMI),
                ("BuildkiteAgentTags", tags),
            ],
        )
        .await;
        let (_, inputs) = launch_template(&api, stack.physical("AgentLaunchTemplate")).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = inputs
            .shell_part
            .replace("/var/lib/elastic-ci", &dir.path().join("state").display().to_string())
            .replace("exec /usr/local/bin/elastic-ci-bootstrap boot", "exec env -0");
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("run bash");
        assert!(!dir.path().join("pwned").exists(), "a parameter value ran a command");
        if boots {
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let environment: BTreeMap<String, String> = output
                .stdout
                .split(|byte| *byte == 0)
                .filter_map(|entry| {
                    std::str::from_utf8(entry)
                        .ok()?
                        .split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                })
                .collect();
            assert_eq!(environment["BUILDKITE_AGENT_TAGS"], tags);
            assert_eq!(environment["BUILDKITE_QUEUE"], "default");
        } else {
            assert!(!output.status.success());
            assert!(output.stdout.is_empty(), "nothing may be exported");
            assert!(String::from_utf8_lossy(&output.stderr).contains("line break"));
        }
        delete_stack(&moto, &stack).await;
    }
}

/// Without VpcId the stack builds two public subnets in two zones, an internet route
/// and, on request, the VPC endpoints. Not deleted: moto cannot delete route tables,
/// routes and gateway attachments (the other tests delete their stacks).
#[tokio::test]
async fn builds_its_own_vpc_with_endpoints_when_none_is_given() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let stack = create_stack(
        &moto,
        &stack_name(),
        &rendered_template(template::DEFAULT_LAMBDA_BUCKET_PREFIX),
        &[
            ("BuildkiteAgentToken", TOKEN),
            ("ImageId", AMD64_AMI),
            ("MinSize", "0"),
            ("MaxSize", "0"),
            ("EnableVpcEndpoints", "true"),
        ],
    )
    .await;
    let vpc_id = &stack.outputs["VpcId"];
    assert_eq!(vpc_id, stack.physical("Vpc"));
    let filter = [("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", vpc_id.as_str())];
    let subnets = api
        .query("ec2", "2016-11-15", &[[("Action", "DescribeSubnets")].as_slice(), &filter].concat())
        .await;
    let mut cidrs = xml_all(&subnets, "cidrBlock");
    cidrs.sort();
    assert_eq!(cidrs, ["10.0.1.0/24", "10.0.2.0/24"]);
    let zones: BTreeSet<String> = xml_all(&subnets, "availabilityZone").into_iter().collect();
    assert_eq!(zones.len(), 2, "two zones: {zones:?}");
    let routes = api
        .query(
            "ec2",
            "2016-11-15",
            &[("Action", "DescribeRouteTables"), ("RouteTableId.1", stack.physical("Routes"))],
        )
        .await;
    assert!(xml_all(&routes, "destinationCidrBlock").contains(&"0.0.0.0/0".to_owned()), "{routes}");
    assert!(
        xml_all(&routes, "gatewayId").contains(&stack.physical("Gateway").to_owned()),
        "{routes}"
    );
    let endpoints = api
        .query(
            "ec2",
            "2016-11-15",
            &[[("Action", "DescribeVpcEndpoints")].as_slice(), &filter].concat(),
        )
        .await;
    let services: BTreeSet<String> = xml_all(&endpoints, "serviceName")
        .into_iter()
        .map(|service| service.trim_start_matches(&format!("com.amazonaws.{REGION}.")).to_owned())
        .collect();
    assert_eq!(
        services,
        ["ec2messages", "ecr.api", "ecr.dkr", "kms", "s3", "secretsmanager", "ssm", "ssmmessages"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    let group = scaling_group(&moto, &stack.outputs["AutoScalingGroupName"]).await;
    let zone_identifier = group.vpc_zone_identifier().unwrap_or_default().to_owned();
    let mut group_subnets: Vec<&str> = zone_identifier.split(',').collect();
    group_subnets.sort_unstable();
    let mut stack_subnets = vec![stack.physical("Subnet0"), stack.physical("Subnet1")];
    stack_subnets.sort_unstable();
    assert_eq!(group_subnets, stack_subnets);
}

/// The agent token parameter's name, type and value, read with decryption.
async fn token_parameter(moto: &Moto, name: &str) -> Option<(String, String)> {
    let answer = moto.ssm().get_parameter().name(name).with_decryption(true).send().await.ok()?;
    let parameter = answer.parameter()?;
    Some((
        parameter.r#type().map(|kind| kind.as_str().to_owned()).unwrap_or_default(),
        parameter.value().unwrap_or_default().to_owned(),
    ))
}

#[tokio::test]
async fn agent_token_function_turns_the_parameter_into_a_secure_string_and_back() {
    let Some(moto) = moto() else { return };
    let Some(python) = python_with_boto3() else { return };
    let name = format!("/{}/buildkite/agent-token", unique_name("stack"));
    // What BuildkiteAgentTokenParameter (AWS::SSM::Parameter) leaves: a String.
    moto.ssm()
        .put_parameter()
        .name(&name)
        .value(TOKEN)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put the String parameter");
    let properties = json!({ "Name": name, "Value": TOKEN });

    let (response, printed) = run_helper(
        &moto,
        &python,
        "AgentTokenParameterFunction",
        json!({ "RequestType": "Create", "ResourceProperties": properties }),
    );
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    assert_eq!(response["PhysicalResourceId"], name.as_str());
    assert_eq!(response["NoEcho"], true);
    assert!(!printed.contains(TOKEN) && !response.to_string().contains(TOKEN));
    assert_eq!(
        token_parameter(&moto, &name).await,
        Some(("SecureString".to_owned(), TOKEN.to_owned()))
    );

    // Removing the custom resource (a rollback to the original template, or the stack's
    // deletion just before the parameter's) leaves the token where it was, as a String.
    let (response, printed) = run_helper(
        &moto,
        &python,
        "AgentTokenParameterFunction",
        json!({ "RequestType": "Delete", "PhysicalResourceId": name, "ResourceProperties": properties }),
    );
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    assert!(!printed.contains(TOKEN) && !response.to_string().contains(TOKEN));
    assert_eq!(token_parameter(&moto, &name).await, Some(("String".to_owned(), TOKEN.to_owned())));

    // Deleting it again, when the parameter is gone, succeeds and creates nothing.
    moto.ssm().delete_parameter().name(&name).send().await.expect("delete the parameter");
    let (response, _) = run_helper(
        &moto,
        &python,
        "AgentTokenParameterFunction",
        json!({ "RequestType": "Delete", "PhysicalResourceId": name, "ResourceProperties": properties }),
    );
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    assert_eq!(token_parameter(&moto, &name).await, None);

    // A name SSM refuses: the failure is reported without the token.
    let (response, printed) = run_helper(
        &moto,
        &python,
        "AgentTokenParameterFunction",
        json!({ "RequestType": "Create", "ResourceProperties": { "Name": "/aws/reserved", "Value": TOKEN } }),
    );
    assert_eq!(response["Status"], "FAILED", "{response}");
    assert!(!printed.contains(TOKEN) && !response.to_string().contains(TOKEN));
}

#[tokio::test]
async fn az_rebalancing_suspender_suspends_the_process() {
    let Some(moto) = moto() else { return };
    let Some(python) = python_with_boto3() else { return };
    let group = moto.scaling_group("suspender", 0, 2, 0).await;
    let (response, _) = run_helper(
        &moto,
        &python,
        "AzRebalancingSuspenderFunction",
        json!({ "RequestType": "Create", "ResourceProperties": { "AutoScalingGroupName": group } }),
    );
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    let suspended: Vec<String> = scaling_group(&moto, &group)
        .await
        .suspended_processes()
        .iter()
        .filter_map(|process| process.process_name().map(str::to_owned))
        .collect();
    assert_eq!(suspended, ["AZRebalance"]);
}

#[tokio::test]
async fn stop_agents_function_drains_only_a_replaced_group() {
    let Some(moto) = moto() else { return };
    let Some(python) = python_with_boto3() else { return };
    let old = moto.scaling_group("old-agents", 1, 4, 2).await;
    let new = moto.scaling_group("new-agents", 1, 4, 2).await;

    // Creation, and an update that keeps the group, leave the agents alone.
    for event in [
        json!({ "RequestType": "Create", "ResourceProperties": { "AutoScalingGroupName": new } }),
        json!({ "RequestType": "Update", "ResourceProperties": { "AutoScalingGroupName": new }, "OldResourceProperties": { "AutoScalingGroupName": new } }),
    ] {
        let (response, _) = run_helper(&moto, &python, "StopBuildkiteAgentsFunction", event);
        assert_eq!(response["Status"], "SUCCESS", "{response}");
    }
    let group = scaling_group(&moto, &new).await;
    assert_eq!((group.min_size(), group.desired_capacity()), (Some(1), Some(2)));

    // Replacing the group drains the old one.
    let (response, printed) = run_helper(
        &moto,
        &python,
        "StopBuildkiteAgentsFunction",
        json!({ "RequestType": "Update", "ResourceProperties": { "AutoScalingGroupName": new }, "OldResourceProperties": { "AutoScalingGroupName": old } }),
    );
    assert_eq!(response["Status"], "SUCCESS", "{response}: {printed}");
    let group = scaling_group(&moto, &old).await;
    assert_eq!((group.min_size(), group.desired_capacity()), (Some(0), Some(0)));
}

/// What moto does not apply of the secrets buckets' properties, and bucket policies
/// it skips, read from the template: versioning and access logging of the secrets
/// bucket, public access blocked on both, and both policies refusing plain HTTP.
fn assert_secrets_buckets_are_private_versioned_and_tls_only() {
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(project::root().join(template::SOURCE)).expect("the template"),
    )
    .expect("YAML");
    let resources = &template["Resources"];
    let secrets = &resources["ManagedSecretsBucket"]["Properties"];
    assert_eq!(secrets["VersioningConfiguration"]["Status"].as_str(), Some("Enabled"));
    let log_bucket = &secrets["LoggingConfiguration"]["DestinationBucketName"];
    assert!(matches!(log_bucket, serde_yaml_ng::Value::Tagged(_)), "{log_bucket:?}");
    for (bucket, policy) in [
        ("ManagedSecretsBucket", "ManagedSecretsBucketPolicy"),
        ("ManagedSecretsLoggingBucket", "ManagedSecretsLoggingBucketPolicy"),
    ] {
        let block = &resources[bucket]["Properties"]["PublicAccessBlockConfiguration"];
        for setting in
            ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"]
        {
            assert_eq!(block[setting].as_bool(), Some(true), "{bucket} {setting}");
        }
        assert_eq!(resources[policy]["Condition"].as_str(), Some("CreateSecretsBucket"));
        let statements = resources[policy]["Properties"]["PolicyDocument"]["Statement"]
            .as_sequence()
            .expect("statements");
        let denies_plain_http = statements.iter().any(|statement| {
            statement["Effect"].as_str() == Some("Deny")
                && statement["Action"].as_str() == Some("s3:*")
                && statement["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")
        });
        assert!(denies_plain_http, "{policy} must refuse requests without TLS");
    }
}

#[tokio::test]
async fn service_role_template_deploys_a_role_for_cloudformation() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let template = std::fs::read_to_string(project::root().join(template::SERVICE_ROLE_SOURCE))
        .expect("the service role template");
    let name = stack_name();
    let stack = create_stack(&moto, &name, &template, &[("StackNamePattern", "buildkite-*")]).await;
    let role = &stack.outputs["RoleName"];
    assert!(stack.outputs["RoleArn"].ends_with(&format!(":role/{role}")));
    let role_xml =
        api.query("iam", "2010-05-08", &[("Action", "GetRole"), ("RoleName", role)]).await;
    let trust = percent_decode(&xml_first(&role_xml, "AssumeRolePolicyDocument").expect("trust"));
    assert!(trust.contains("cloudformation.amazonaws.com"), "{trust}");
    let policies = role_policies(&api, role).await;
    // The boundary the role requires is the managed policy the stack created.
    let boundary = &stack.outputs["PermissionsBoundaryArn"];
    assert_eq!(boundary, &format!("arn:aws:iam::123456789012:policy/{name}-StackRolesBoundary"));
    let policy =
        api.query("iam", "2010-05-08", &[("Action", "GetPolicy"), ("PolicyArn", boundary)]).await;
    assert_eq!(xml_first(&policy, "PolicyName"), Some(format!("{name}-StackRolesBoundary")));
    let with_boundary = policies["Identity"]["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|statement| statement["Sid"] == "RolesWithTheBoundary")
        .expect("the statement of role writes");
    assert_eq!(
        with_boundary["Condition"]["StringEquals"]["iam:PermissionsBoundary"],
        boundary.as_str()
    );
    assert_eq!(
        granted(&policies["Fleet"], "autoscaling:CreateAutoScalingGroup"),
        [format!(
            "arn:aws:autoscaling:{REGION}:123456789012:autoScalingGroup:*:autoScalingGroupName/buildkite-*-AgentAutoScaleGroup-*"
        )]
    );
    assert_eq!(
        granted(&policies["Identity"], "iam:PassRole"),
        ["arn:aws:iam::123456789012:role/buildkite-*-*"]
    );
    moto.cloudformation().delete_stack().stack_name(&name).send().await.expect("delete_stack");
    assert_status(&moto, &stack.id, &StackStatus::DeleteComplete).await;
}

/// What the outputs name is what the stack created, and each is exported under the
/// stack's name.
async fn assert_outputs_name_the_stacks_resources(moto: &Moto, stack: &Stack) {
    let name = &stack.name;
    assert_eq!(stack.outputs["LaunchTemplateId"], stack.physical("AgentLaunchTemplate"));
    assert_eq!(stack.outputs["SecurityGroupId"], stack.physical("SecurityGroup"));
    assert!(
        stack.outputs["InstanceRoleArn"].ends_with(&format!(":role/{}", stack.physical("IAMRole"))),
        "{}",
        stack.outputs["InstanceRoleArn"]
    );
    assert_eq!(stack.outputs["AgentTokenParameter"], format!("/{name}/buildkite/agent-token"));
    assert_eq!(stack.outputs["ScalerFunctionName"], stack.physical("AutoscalingFunction"));
    assert_eq!(stack.outputs["ScalerLogGroup"], format!("/buildkite/{name}/scaler"));
    assert_eq!(stack.outputs["StackHelperLogGroup"], format!("/buildkite/{name}/stack-helpers"));
    let mut logged: Vec<&str> = stack.outputs["InstanceLogGroups"].split(',').collect();
    logged.sort_unstable();
    let mut expected: Vec<String> =
        INSTANCE_LOG_GROUPS.iter().map(|group| format!("/buildkite/{name}/{group}")).collect();
    expected.sort();
    assert_eq!(logged, expected);
    // Every page: the emulator holds the exports of every test's stacks.
    let mut exported: BTreeMap<String, String> = BTreeMap::new();
    let mut next_token = None;
    loop {
        let page = moto
            .cloudformation()
            .list_exports()
            .set_next_token(next_token)
            .send()
            .await
            .expect("list_exports");
        exported.extend(
            page.exports()
                .iter()
                .filter_map(|export| Some((export.name()?.to_owned(), export.value()?.to_owned()))),
        );
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    for (output, value) in &stack.outputs {
        assert_eq!(exported.get(&format!("{name}-{output}")), Some(value), "{output}");
    }
}

/// A stack deployed with the service role's boundary puts it on every role it creates,
/// which is what lets the service role create and change them at all.
#[tokio::test]
async fn every_role_of_a_stack_carries_the_service_roles_boundary() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let service_role = std::fs::read_to_string(project::root().join(template::SERVICE_ROLE_SOURCE))
        .expect("template");
    let service =
        create_stack(&moto, &stack_name(), &service_role, &[("StackNamePattern", "ecs*")]).await;
    let boundary = service.outputs["PermissionsBoundaryArn"].clone();
    let (vpc_id, subnets) = existing_vpc(&api).await;
    let subnets = subnets.join(",");
    let stack = create_stack(
        &moto,
        &stack_name(),
        &rendered_template(template::DEFAULT_LAMBDA_BUCKET_PREFIX),
        &[
            ("BuildkiteAgentToken", TOKEN),
            ("VpcId", &vpc_id),
            ("Subnets", &subnets),
            ("MinSize", "0"),
            ("MaxSize", "0"),
            ("InstanceRolePermissionsBoundaryARN", &boundary),
            ("BuildkiteAgentEnableGracefulShutdown", "true"),
        ],
    )
    .await;
    let roles = [
        "IAMRole",
        "AgentTokenParameterRole",
        "AsgProcessSuspenderRole",
        "StopBuildkiteAgentsRole",
    ];
    for role in roles {
        let xml = api
            .query(
                "iam",
                "2010-05-08",
                &[("Action", "GetRole"), ("RoleName", stack.physical(role))],
            )
            .await;
        assert_eq!(
            xml_first(&xml, "PermissionsBoundaryArn").as_deref(),
            Some(boundary.as_str()),
            "{role}: {xml}"
        );
    }
    delete_stack(&moto, &stack).await;
}

/// Without an AMI for the instances' architecture, the launch template gets a sentence
/// naming it, never an empty image id (Auto Scaling refuses the sentence when it
/// validates the launch template; moto does not validate it).
#[tokio::test]
async fn a_missing_image_reaches_the_launch_template_as_a_sentence_not_an_empty_id() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let source = std::fs::read_to_string(project::root().join(template::SOURCE)).expect("template");
    let (vpc_id, subnets) = existing_vpc(&api).await;
    let subnets = subnets.join(",");
    let stack = create_stack(
        &moto,
        &stack_name(),
        &source,
        &[
            ("BuildkiteAgentToken", TOKEN),
            ("VpcId", &vpc_id),
            ("Subnets", &subnets),
            ("MinSize", "0"),
            ("MaxSize", "0"),
            ("InstanceTypes", "m7g.large"),
        ],
    )
    .await;
    let (lt, _) = launch_template(&api, stack.physical("AgentLaunchTemplate")).await;
    assert_eq!(
        xml_first(&lt, "imageId").as_deref(),
        Some(
            "No arm64 Amazon Linux 2023 AMI for us-east-1 in this template: set ImageId or ImageIdParameter"
        )
    );
    delete_stack(&moto, &stack).await;
}

/// The draining and fast-start settings on the emulator. What it can check: the job
/// event rule on the partner event bus, with the queue's pattern and the scaler as its
/// target, and the scaler's second execution environment. The emulator's
/// CloudFormation ignores the group's inline lifecycle hooks and has no warm pool
/// resource; those are checked by the template evaluation tests instead.
#[tokio::test]
async fn deploys_the_job_event_rule_on_the_buildkite_partner_bus() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let template = rendered_template(&unique_name("lambdas"));
    deploy::upload_scaler_zips(&moto, &template).await.unwrap();
    let name = stack_name();
    let source = format!("aws.partner/buildkite.com/acme/{}", unique_name("src"));
    api.json(
        "events",
        "AWSEvents.CreatePartnerEventSource",
        &json!({ "Name": source, "Account": "123456789012" }),
    )
    .await;
    api.json(
        "events",
        "AWSEvents.CreateEventBus",
        &json!({ "Name": source, "EventSourceName": source }),
    )
    .await;
    // The emulator keeps only the last path segment of a bus name it is given for a
    // rule, so the rule lands on a bus of that name: create it too.
    let last_segment = source.rsplit('/').next().unwrap_or_default();
    api.json("events", "AWSEvents.CreateEventBus", &json!({ "Name": last_segment })).await;
    let values = [
        ("BuildkiteAgentToken", TOKEN),
        ("BuildkiteQueue", "fast"),
        ("ScalerEventBusName", source.as_str()),
        ("EnableTerminationHook", "true"),
        ("TerminationHookHeartbeatTimeout", "900"),
        ("DisableScaleIn", "false"),
        ("InstanceScaleInProtection", "false"),
    ];
    let stack = create_stack(&moto, &name, &template, &values).await;
    let rule_name = stack.physical("AutoscalingJobScheduledRule");
    let rule = api
        .json(
            "events",
            "AWSEvents.DescribeRule",
            &json!({ "Name": rule_name, "EventBusName": source }),
        )
        .await;
    assert_eq!(rule["State"], "ENABLED");
    let pattern: Value = serde_json::from_str(rule["EventPattern"].as_str().unwrap()).unwrap();
    assert_eq!(
        pattern,
        json!({
            "source": [{"prefix": "aws.partner/buildkite.com/"}],
            "detail-type": ["Job Scheduled"],
            "detail": {"job": {"agent_query_rules": ["queue=fast"]}}
        })
    );
    let targets = api
        .json(
            "events",
            "AWSEvents.ListTargetsByRule",
            &json!({ "Rule": rule_name, "EventBusName": source }),
        )
        .await;
    let function = lambda_function(&api, stack.physical("AutoscalingFunction")).await;
    assert_eq!(targets["Targets"][0]["Arn"], function["Configuration"]["FunctionArn"]);
}

/// A Windows stack on the emulator: the launch template carries the PowerShell
/// UserData with the Linux one's inputs (hostile values literal, in a single-quoted
/// here-string no value can end), the Windows administrator setting and the Windows
/// root device.
#[tokio::test]
async fn deploys_a_windows_stack_with_powershell_user_data() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let template = rendered_template(template::DEFAULT_LAMBDA_BUCKET_PREFIX);
    let (vpc_id, subnets) = existing_vpc(&api).await;
    let subnets = subnets.join(",");
    let hostile = r#"a=$(whoami),b=`whoami`,c="q" 'x',d=%PATH%,e=^&,f='@"#;
    let stack = create_stack(
        &moto,
        &stack_name(),
        &template,
        &[
            ("BuildkiteAgentToken", TOKEN),
            ("VpcId", &vpc_id),
            ("Subnets", &subnets),
            ("MinSize", "0"),
            ("MaxSize", "0"),
            ("ImageId", AMD64_AMI),
            ("InstanceTypes", "m5.large"),
            ("InstanceOperatingSystem", "windows"),
            ("BuildkiteWindowsAdministrator", "false"),
            ("BuildkiteAgentTags", hostile),
            ("BootstrapScriptUrl", "s3://setup-bucket/windows/setup.ps1"),
        ],
    )
    .await;
    let (xml, inputs) = launch_template(&api, stack.physical("AgentLaunchTemplate")).await;
    assert!(inputs.shell_part.starts_with("<powershell>"), "{}", inputs.shell_part);
    assert_eq!(inputs.lines.len(), inputs.expected_lines);
    let names: Vec<&str> = inputs.lines.iter().map(|(name, _)| name.as_str()).collect();
    let read: Vec<&str> = elastic_ci_core::boot::config::BootConfig::ENV_VARS.to_vec();
    assert_eq!(names.iter().collect::<BTreeSet<_>>(), read.iter().collect::<BTreeSet<_>>());
    assert_eq!(inputs.value("BUILDKITE_AGENT_TAGS"), hostile);
    assert_eq!(inputs.value("BUILDKITE_WINDOWS_ADMINISTRATOR"), "false");
    assert_eq!(
        inputs.value("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT"),
        "s3://setup-bucket/windows/setup.ps1"
    );
    assert_eq!(inputs.value("BUILDKITE_STACK_NAME"), stack.name.as_str());
    // The here-string ends once, on its own line: the hostile '@ stayed inside a line.
    let ends = inputs.shell_part.lines().filter(|line| line.starts_with("'@")).count();
    assert_eq!(ends, 1, "{}", inputs.shell_part);
    assert_eq!(xml_first(&xml, "deviceName").as_deref(), Some("/dev/sda1"));
    assert_eq!(xml_first(&xml, "imageId").as_deref(), Some(AMD64_AMI));
    delete_stack(&moto, &stack).await;
}
