//! `elastic-ci iam-policy`: the trust policy, inline policies and managed policies a
//! custom `InstanceRoleARN` needs: the grants the template gives the role it creates
//! (`IAMRole` and its `AWS::IAM::Policy` resources), for the same inputs.
//! `tests/moto/iam_policy.rs` deploys the template and compares statement by statement.

use std::io::Write;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::error::InputError;

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

    /// SecretsBucket (or the bucket the stack creates, when ManagedSecretsBucket).
    #[arg(long, value_name = "BUCKET")]
    pub secrets_bucket: Option<String>,

    /// ArtifactsBucket.
    #[arg(long, value_name = "BUCKET")]
    pub artifacts_bucket: Option<String>,

    /// BuildkiteAgentTokenParameterStoreKMSKey: a key id or ARN.
    #[arg(long, value_name = "KEY")]
    pub kms_key: Option<String>,

    /// ECRAccessPolicy.
    #[arg(long, value_enum, default_value_t = EcrAccess::None)]
    pub ecr: EcrAccess,

    /// BuildkiteAgentTokenParameterStorePath: a path or ARN [default: the stack's
    /// /<stack>/buildkite/agent-token].
    #[arg(long, value_name = "PATH")]
    pub token_parameter: Option<String>,
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

/// The grants for `args` (the template's `IAMRole`, `IAMPolicies` and the `Instance*Policy`
/// resources, in that order).
pub fn policies(args: &IamPolicyArgs) -> Result<RolePolicies, InputError> {
    for (flag, value) in [
        ("--stack-name", Some(&args.stack_name)),
        ("--secrets-bucket", args.secrets_bucket.as_ref()),
        ("--artifacts-bucket", args.artifacts_bucket.as_ref()),
    ] {
        if let Some(value) = value
            && (value.is_empty()
                || value.chars().any(|c| c.is_whitespace() || c == '*' || c == '"'))
        {
            return Err(InputError::new(format!(
                "invalid {flag} {value:?}: expected a name without spaces, quotes or wildcards"
            )));
        }
    }
    let partition = &args.partition;
    let region = args.region.as_deref().unwrap_or("*");
    let account = args.account_id.as_deref().unwrap_or("*");
    let stack = &args.stack_name;
    let token_parameter = match args.token_parameter.as_deref() {
        Some(arn) if arn.starts_with("arn:") => arn.to_owned(),
        Some(path) => format!("arn:{partition}:ssm:{region}:{account}:parameter{path}"),
        None => format!(
            "arn:{partition}:ssm:{region}:{account}:parameter/{stack}/buildkite/agent-token"
        ),
    };
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
            json!({"Effect": "Allow", "Action": ["autoscaling:DescribeAutoScalingInstances", "cloudwatch:PutMetricData", "cloudformation:DescribeStackResource", "ec2:DescribeTags"], "Resource": "*"}),
            json!({"Sid": "TerminateInstance", "Effect": "Allow", "Action": ["autoscaling:SetInstanceHealth", "autoscaling:TerminateInstanceInAutoScalingGroup"], "Resource": format!("arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{stack}-AgentAutoScaleGroup-*")}),
            json!({"Sid": "SignalStack", "Effect": "Allow", "Action": "cloudformation:SignalResource", "Resource": format!("arn:{partition}:cloudformation:{region}:{account}:stack/{stack}/*")}),
            json!({"Sid": "Logging", "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams", "logs:PutRetentionPolicy"], "Resource": "*"}),
            json!({"Sid": "Ssm", "Effect": "Allow", "Action": ["ssm:DescribeInstanceProperties", "ssm:ListAssociations", "ssm:PutInventory", "ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel", "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply"], "Resource": "*"}),
            json!({"Sid": "ReadAgentToken", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": token_parameter}),
        ]),
    )];
    if let Some(key) = &args.kms_key {
        let key = if key.starts_with("arn:") {
            key.clone()
        } else {
            format!("arn:{partition}:kms:{region}:{account}:key/{key}")
        };
        inline.push((
            "DecryptAgentToken".to_owned(),
            document(vec![json!({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key})]),
        ));
    }
    if let Some(bucket) = &args.secrets_bucket {
        inline.push(("SecretsBucket".to_owned(), document(vec![json!({"Sid": "SecretsBucket", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": [format!("arn:{partition}:s3:::{bucket}"), format!("arn:{partition}:s3:::{bucket}/*")]})])));
    }
    if let Some(bucket) = &args.artifacts_bucket {
        inline.push(("ArtifactsBucket".to_owned(), document(vec![json!({"Sid": "ArtifactsBucket", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectAcl", "s3:GetObjectVersion", "s3:GetObjectVersionAcl", "s3:ListBucket", "s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectVersionAcl"], "Resource": [format!("arn:{partition}:s3:::{bucket}"), format!("arn:{partition}:s3:::{bucket}/*")]})])));
    }
    if matches!(args.ecr, EcrAccess::ReadonlyPullthrough | EcrAccess::PoweruserPullthrough) {
        inline.push(("ECRPullThrough".to_owned(), document(vec![json!({"Sid": "ECRPullThrough", "Effect": "Allow", "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage", "ecr:GetImageCopyStatus", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"], "Resource": format!("arn:{partition}:ecr:{region}:{account}:repository/*")})])));
    }
    let managed = match args.ecr {
        EcrAccess::None => Vec::new(),
        EcrAccess::Readonly | EcrAccess::ReadonlyPullthrough => {
            vec![format!("arn:{partition}:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")]
        }
        EcrAccess::Poweruser | EcrAccess::PoweruserPullthrough => {
            vec![format!("arn:{partition}:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser")]
        }
        EcrAccess::Full => {
            vec![format!("arn:{partition}:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess")]
        }
    };
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
        "NotCovered": "grants that follow other stack parameters (PipelineSigningKMSKeyId, BuildkiteAgentSigningKeySSMParameter, GitMirrorSeedBucket, BootstrapScriptUrl, AgentEnvFileUrl, AuthorizedUsersUrl, ManagedPolicyARNs) are in the template's Instance*Policy resources",
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(())
}
