//! `elastic-ci iam-policy`: the trust policy, inline policies and managed policies a
//! custom `InstanceRoleARN` needs: the grants the template gives the role it creates,
//! for the same inputs.
//!
//! The template is the source of truth: its `IAMRole` and the `AWS::IAM::Policy`
//! resources attached to it (`IAMPolicies` and the `Instance*Policy` ones) are what a
//! deployed stack grants. [`policies`] restates them statement by statement, one flag
//! per template parameter that changes them, and `tests/iam_policy.rs` evaluates the
//! template for each flag combination and requires the same documents; a policy the
//! template attaches that no flag produces fails that test. The one difference is the
//! stack signal: the template names the stack's id, which a role made before the stack
//! cannot know, so this names every stack of that name (`stack/<name>/*`).

use std::io::Write;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::error::InputError;

/// The instances' log groups, `/buildkite/<stack>/<file>`, in the template's order.
const INSTANCE_LOG_GROUPS: [&str; 7] = [
    "buildkite-agent",
    "cloud-init",
    "cloud-init/output",
    "docker-daemon",
    "elastic-stack",
    "system",
    "auth",
];

/// Arguments of `elastic-ci iam-policy`.
#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// The stack's name: the role may terminate instances of its group and signal it.
    #[arg(long, value_name = "NAME")]
    pub stack_name: String,

    /// The region [default: any].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// The account id [default: any].
    #[arg(long, value_name = "ID")]
    pub account_id: Option<String>,

    /// The partition: aws, aws-cn or aws-us-gov.
    #[arg(long, value_name = "NAME", default_value = "aws")]
    pub partition: String,

    /// SecretsBucket (or the bucket the stack creates: its ManagedSecretsBucket output).
    #[arg(long, value_name = "BUCKET", help_heading = "Stack parameters")]
    pub secrets_bucket: Option<String>,

    /// ArtifactsBucket.
    #[arg(long, value_name = "BUCKET", help_heading = "Stack parameters")]
    pub artifacts_bucket: Option<String>,

    /// BuildkiteAgentTokenParameterStoreKMSKey: a key id or ARN.
    #[arg(long, value_name = "KEY", help_heading = "Stack parameters")]
    pub kms_key: Option<String>,

    /// ECRAccessPolicy.
    #[arg(long, value_enum, default_value_t = EcrAccess::None, help_heading = "Stack parameters")]
    pub ecr: EcrAccess,

    /// BuildkiteAgentTokenParameterStorePath: a path or ARN [default: the stack's
    /// /<stack>/buildkite/agent-token].
    #[arg(long, value_name = "PATH", help_heading = "Stack parameters")]
    pub token_parameter: Option<String>,

    /// PipelineSigningKMSKeyId (or the key the stack creates: its PipelineSigningKMSKey
    /// output): a key id or ARN.
    #[arg(long, value_name = "KEY", help_heading = "Stack parameters")]
    pub pipeline_signing_kms_key: Option<String>,

    /// PipelineSigningKMSAccess: what the instances may do with that key.
    #[arg(long, value_enum, default_value_t = SigningAccess::SignAndVerify, help_heading = "Stack parameters")]
    pub pipeline_signing_access: SigningAccess,

    /// BuildkiteAgentSigningKeySSMParameter: the signing JWKS parameter's path.
    #[arg(long, value_name = "PATH", help_heading = "Stack parameters")]
    pub signing_key_parameter: Option<String>,

    /// BuildkiteAgentVerificationKeySSMParameter: the verification JWKS parameter's path.
    #[arg(long, value_name = "PATH", help_heading = "Stack parameters")]
    pub verification_key_parameter: Option<String>,

    /// GitMirrorSeedBucket (with BuildkiteAgentEnableGitMirrors).
    #[arg(long, value_name = "BUCKET", help_heading = "Stack parameters")]
    pub git_mirror_seed_bucket: Option<String>,

    /// BootstrapScriptUrl: an s3:// URL needs a grant (https:// and file:// do not).
    #[arg(long, value_name = "URL", help_heading = "Stack parameters")]
    pub bootstrap_script_url: Option<String>,

    /// AgentEnvFileUrl: an s3:// URL or an ssm: parameter path needs a grant.
    #[arg(long, value_name = "URL", help_heading = "Stack parameters")]
    pub agent_env_file_url: Option<String>,

    /// AuthorizedUsersUrl: an s3:// URL needs a grant.
    #[arg(long, value_name = "URL", help_heading = "Stack parameters")]
    pub authorized_users_url: Option<String>,

    /// ManagedPolicyARNs: a managed policy to attach. Repeatable.
    #[arg(long = "managed-policy", value_name = "ARN", help_heading = "Stack parameters")]
    pub managed_policies: Vec<String>,
}

/// ECRAccessPolicy's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EcrAccess {
    None,
    Readonly,
    ReadonlyPullthrough,
    Poweruser,
    PoweruserPullthrough,
    Full,
}

/// PipelineSigningKMSAccess's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SigningAccess {
    SignAndVerify,
    Verify,
}

/// The role's grants: trust policy, inline policies by name, managed policy ARNs.
#[derive(Debug, Clone, PartialEq)]
pub struct RolePolicies {
    pub trust: Value,
    pub inline: Vec<(String, Value)>,
    pub managed: Vec<String>,
}

fn document(statements: Vec<Value>) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Refuses a value that would widen or break an ARN.
fn plain(flag: &str, value: &str) -> Result<(), InputError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c == '*' || c == '"') {
        return Err(InputError::new(format!(
            "invalid {flag} {value:?}: expected a name without spaces, quotes or wildcards"
        )));
    }
    Ok(())
}

/// The part of `url` after `scheme` (`s3://`, `ssm:`), if it has that scheme.
fn after_scheme<'a>(
    flag: &str,
    url: Option<&'a str>,
    scheme: &str,
) -> Result<Option<&'a str>, InputError> {
    let Some(rest) = url.and_then(|url| url.strip_prefix(scheme)) else { return Ok(None) };
    plain(flag, rest)?;
    Ok(Some(rest))
}

/// The grants for `args`, in the template's order: `IAMRole`, `IAMPolicies`, then the
/// `Instance*Policy` resources.
pub fn policies(args: &IamPolicyArgs) -> Result<RolePolicies, InputError> {
    plain("--stack-name", &args.stack_name)?;
    for (flag, value) in [
        ("--secrets-bucket", &args.secrets_bucket),
        ("--artifacts-bucket", &args.artifacts_bucket),
        ("--git-mirror-seed-bucket", &args.git_mirror_seed_bucket),
        ("--kms-key", &args.kms_key),
        ("--pipeline-signing-kms-key", &args.pipeline_signing_kms_key),
        ("--token-parameter", &args.token_parameter),
        ("--signing-key-parameter", &args.signing_key_parameter),
        ("--verification-key-parameter", &args.verification_key_parameter),
    ] {
        if let Some(value) = value {
            plain(flag, value)?;
        }
    }
    for arn in &args.managed_policies {
        plain("--managed-policy", arn)?;
    }
    let partition = &args.partition;
    let region = args.region.as_deref().unwrap_or("*");
    let account = args.account_id.as_deref().unwrap_or("*");
    let stack = &args.stack_name;
    let parameter_arn =
        |path: &str| format!("arn:{partition}:ssm:{region}:{account}:parameter{path}");
    let key_arn = |key: &str| {
        if key.starts_with("arn:") {
            key.to_owned()
        } else {
            format!("arn:{partition}:kms:{region}:{account}:key/{key}")
        }
    };
    let token_parameter = match args.token_parameter.as_deref() {
        Some(arn) if arn.starts_with("arn:") => arn.to_owned(),
        Some(path) => parameter_arn(path),
        None => parameter_arn(&format!("/{stack}/buildkite/agent-token")),
    };
    let log_groups = format!("arn:{partition}:logs:{region}:{account}:log-group:");
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": ["autoscaling.amazonaws.com", "ec2.amazonaws.com"] },
            "Action": "sts:AssumeRole"
        }]
    });
    let mut inline = vec![(
        "InstancePolicy".to_owned(),
        document(vec![
            json!({"Effect": "Allow", "Action": ["autoscaling:DescribeAutoScalingInstances", "ec2:DescribeTags"], "Resource": "*"}),
            json!({"Sid": "Metrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*", "Condition": {"StringEquals": {"cloudwatch:namespace": "CWAgent"}}}),
            json!({"Sid": "TerminateInstance", "Effect": "Allow", "Action": ["autoscaling:SetInstanceHealth", "autoscaling:TerminateInstanceInAutoScalingGroup"], "Resource": format!("arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{stack}-AgentAutoScaleGroup-*")}),
            json!({"Sid": "DrainInstance", "Effect": "Allow", "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"], "Resource": format!("arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{stack}-AgentAutoScaleGroup-*")}),
            json!({"Sid": "SignalStack", "Effect": "Allow", "Action": ["cloudformation:DescribeStackResource", "cloudformation:SignalResource"], "Resource": format!("arn:{partition}:cloudformation:{region}:{account}:stack/{stack}/*")}),
            json!({"Sid": "Logging", "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams", "logs:PutRetentionPolicy"], "Resource": INSTANCE_LOG_GROUPS.iter().map(|file| format!("{log_groups}/buildkite/{stack}/{file}:*")).collect::<Vec<_>>()}),
            json!({"Sid": "ListLogGroups", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": format!("{log_groups}*")}),
            json!({"Sid": "Ssm", "Effect": "Allow", "Action": ["ssm:DescribeInstanceProperties", "ssm:ListAssociations", "ssm:PutInventory", "ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel", "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply"], "Resource": "*"}),
            json!({"Sid": "ReadAgentToken", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": token_parameter}),
        ]),
    )];
    let mut add = |name: &str, statements: Vec<Value>| {
        inline.push((name.to_owned(), document(statements)));
    };
    if let Some(key) = &args.kms_key {
        add(
            "DecryptAgentToken",
            vec![json!({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn(key)})],
        );
    }
    if let Some(key) = &args.pipeline_signing_kms_key {
        let actions = match args.pipeline_signing_access {
            SigningAccess::SignAndVerify => json!(["kms:Sign", "kms:Verify", "kms:GetPublicKey"]),
            SigningAccess::Verify => json!(["kms:Verify", "kms:GetPublicKey"]),
        };
        add(
            "PipelineSigningKMSKeyAccess",
            vec![json!({"Effect": "Allow", "Action": actions, "Resource": key_arn(key)})],
        );
    }
    let key_parameters: Vec<String> =
        [&args.signing_key_parameter, &args.verification_key_parameter]
            .into_iter()
            .flatten()
            .map(|path| parameter_arn(path))
            .collect();
    if !key_parameters.is_empty() {
        let resource = match key_parameters.as_slice() {
            [one] => json!(one),
            both => json!(both),
        };
        add(
            "PipelineSigningKeyParameters",
            vec![json!({"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": resource})],
        );
    }
    if let Some(bucket) = &args.secrets_bucket {
        add(
            "SecretsBucket",
            vec![
                json!({"Sid": "SecretsBucket", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": [format!("arn:{partition}:s3:::{bucket}"), format!("arn:{partition}:s3:::{bucket}/*")]}),
            ],
        );
    }
    if let Some(bucket) = &args.artifacts_bucket {
        add(
            "ArtifactsBucket",
            vec![
                json!({"Sid": "ArtifactsBucket", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectAcl", "s3:GetObjectVersion", "s3:GetObjectVersionAcl", "s3:ListBucket", "s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectVersionAcl"], "Resource": [format!("arn:{partition}:s3:::{bucket}"), format!("arn:{partition}:s3:::{bucket}/*")]}),
            ],
        );
    }
    if let Some(bucket) = &args.git_mirror_seed_bucket {
        add(
            "GitMirrorSeedBucket",
            vec![
                json!({"Sid": "GitMirrorSeedBucketRead", "Effect": "Allow", "Action": "s3:GetObject", "Resource": format!("arn:{partition}:s3:::{bucket}/git-mirror-seeds/*")}),
                json!({"Sid": "GitMirrorSeedBucketList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": format!("arn:{partition}:s3:::{bucket}"), "Condition": {"StringLike": {"s3:prefix": ["git-mirror-seeds/", "git-mirror-seeds/*"]}}}),
            ],
        );
    }
    if matches!(args.ecr, EcrAccess::ReadonlyPullthrough | EcrAccess::PoweruserPullthrough) {
        add(
            "ECRPullThrough",
            vec![
                json!({"Sid": "ECRPullThrough", "Effect": "Allow", "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage", "ecr:GetImageCopyStatus", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"], "Resource": format!("arn:{partition}:ecr:{region}:{account}:repository/*")}),
            ],
        );
    }
    let object = |object: &str| format!("arn:{partition}:s3:::{object}");
    if let Some(script) =
        after_scheme("--bootstrap-script-url", args.bootstrap_script_url.as_deref(), "s3://")?
    {
        add(
            "BootstrapScript",
            vec![json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": object(script)})],
        );
    }
    let env_file = args.agent_env_file_url.as_deref();
    if let Some(file) = after_scheme("--agent-env-file-url", env_file, "s3://")? {
        add(
            "AgentEnvFile",
            vec![json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": object(file)})],
        );
    } else if let Some(path) = after_scheme("--agent-env-file-url", env_file, "ssm:")? {
        add(
            "AgentEnvFile",
            vec![
                json!({"Effect": "Allow", "Action": ["ssm:GetParametersByPath", "ssm:GetParameter", "ssm:GetParameters"], "Resource": [parameter_arn(path), format!("{}/*", parameter_arn(path))]}),
            ],
        );
    }
    if let Some(keys) =
        after_scheme("--authorized-users-url", args.authorized_users_url.as_deref(), "s3://")?
    {
        add(
            "AuthorizedUsers",
            vec![json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": object(keys)})],
        );
    }
    let ecr_policy = match args.ecr {
        EcrAccess::None => None,
        EcrAccess::Readonly | EcrAccess::ReadonlyPullthrough => {
            Some("AmazonEC2ContainerRegistryReadOnly")
        }
        EcrAccess::Poweruser | EcrAccess::PoweruserPullthrough => {
            Some("AmazonEC2ContainerRegistryPowerUser")
        }
        EcrAccess::Full => Some("AmazonEC2ContainerRegistryFullAccess"),
    };
    let managed = ecr_policy
        .map(|name| format!("arn:{partition}:iam::aws:policy/{name}"))
        .into_iter()
        .chain(args.managed_policies.iter().cloned())
        .collect();
    Ok(RolePolicies { trust, inline, managed })
}

/// Runs `iam-policy`: one JSON object with the trust policy, the inline policies by
/// name and the managed policy ARNs.
pub fn run(args: &IamPolicyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let policies = policies(args)?;
    let inline: serde_json::Map<String, Value> = policies.inline.into_iter().collect();
    let value = json!({
        "AssumeRolePolicyDocument": policies.trust,
        "Policies": inline,
        "ManagedPolicyArns": policies.managed,
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(())
}
