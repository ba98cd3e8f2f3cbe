# The instance role and its policies, unless instance_role_arn is given: the core
# agent policy of the documentation, plus one policy per optional grant.

resource "aws_iam_role" "instance" {
  count = local.create_iam_role ? 1 : 0

  name                 = var.instance_role_name != "" ? var.instance_role_name : null
  name_prefix          = var.instance_role_name == "" ? "${var.stack_name}-Role-" : null
  path                 = "/"
  permissions_boundary = var.instance_role_permissions_boundary_arn != "" ? var.instance_role_permissions_boundary_arn : null
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = ["autoscaling.amazonaws.com", "ec2.amazonaws.com"] }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = merge(
    local.common_tags,
    { CreatedBy = "buildkite-elastic-ci-stack" },
    { for pair in compact(split(",", var.instance_role_tags)) : trimspace(split("=", pair)[0]) => trimspace(split("=", pair)[1]) },
  )
}

resource "aws_iam_role_policy_attachment" "instance_managed" {
  for_each = local.create_iam_role ? toset(concat(
    local.use_ecr ? ["arn:${local.partition}:iam::aws:policy/${local.ecr_managed_policy[var.ecr_access_policy]}"] : [],
    var.managed_policy_arns,
  )) : toset([])

  role       = aws_iam_role.instance[0].name
  policy_arn = each.key
}

locals {
  ecr_managed_policy = {
    readonly              = "AmazonEC2ContainerRegistryReadOnly"
    readonly-pullthrough  = "AmazonEC2ContainerRegistryReadOnly"
    poweruser             = "AmazonEC2ContainerRegistryPowerUser"
    poweruser-pullthrough = "AmazonEC2ContainerRegistryPowerUser"
    full                  = "AmazonEC2ContainerRegistryFullAccess"
  }

  # Optional grants: each becomes its own inline policy when it applies.
  instance_optional_statements = {
    DecryptAgentToken = var.buildkite_agent_token_parameter_store_kms_key == "" ? [] : [{
      Effect   = "Allow"
      Action   = "kms:Decrypt"
      Resource = local.token_key_arn
    }]
    PipelineSigningKMSKeyAccess = !local.has_signing_key ? [] : [{
      Effect   = "Allow"
      Action   = var.pipeline_signing_kms_access == "sign-and-verify" ? ["kms:Sign", "kms:Verify", "kms:GetPublicKey"] : ["kms:Verify", "kms:GetPublicKey"]
      Resource = local.signing_key_arn
    }]
    PipelineSigningKeyParameters = length(local.key_parameter_arns) == 0 ? [] : [{
      Effect   = "Allow"
      Action   = "ssm:GetParameter"
      Resource = local.key_parameter_arns
    }]
    SecretsBucket = !local.has_secrets_bucket ? [] : [{
      Sid      = "SecretsBucket"
      Effect   = "Allow"
      Action   = ["s3:Get*", "s3:List*"]
      Resource = ["arn:${local.partition}:s3:::${local.secrets_bucket_name}", "arn:${local.partition}:s3:::${local.secrets_bucket_name}/*"]
    }]
    ArtifactsBucket = var.artifacts_bucket == "" ? [] : [{
      Sid      = "ArtifactsBucket"
      Effect   = "Allow"
      Action   = ["s3:GetObject", "s3:GetObjectAcl", "s3:GetObjectVersion", "s3:GetObjectVersionAcl", "s3:ListBucket", "s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectVersionAcl"]
      Resource = ["arn:${local.partition}:s3:::${var.artifacts_bucket}", "arn:${local.partition}:s3:::${var.artifacts_bucket}/*"]
    }]
    GitMirrorSeedBucket = !local.has_git_mirror_seed ? [] : [
      {
        Sid      = "GitMirrorSeedBucketRead"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = "arn:${local.partition}:s3:::${var.git_mirror_seed_bucket}/git-mirror-seeds/*"
      },
      {
        Sid       = "GitMirrorSeedBucketList"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = "arn:${local.partition}:s3:::${var.git_mirror_seed_bucket}"
        Condition = { StringLike = { "s3:prefix" = ["git-mirror-seeds/", "git-mirror-seeds/*"] } }
      },
    ]
    ECRPullThrough = !local.add_ecr_pull_through ? [] : [{
      Sid      = "ECRPullThrough"
      Effect   = "Allow"
      Action   = ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage", "ecr:GetImageCopyStatus", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"]
      Resource = "arn:${local.partition}:ecr:${local.region}:${local.account_id}:repository/*"
    }]
    BootstrapScript = !local.bootstrap_script_on_s3 ? [] : [{
      Effect   = "Allow"
      Action   = "s3:GetObject"
      Resource = "arn:${local.partition}:s3:::${trimprefix(var.bootstrap_script_url, "s3://")}"
    }]
    AgentEnvFile = local.agent_env_file_on_s3 ? [{
      Effect   = "Allow"
      Action   = "s3:GetObject"
      Resource = "arn:${local.partition}:s3:::${trimprefix(var.agent_env_file_url, "s3://")}"
      }] : local.agent_env_file_on_ssm ? [{
      Effect = "Allow"
      Action = ["ssm:GetParametersByPath", "ssm:GetParameter", "ssm:GetParameters"]
      Resource = [
        "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${trimprefix(var.agent_env_file_url, "ssm:")}",
        "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${trimprefix(var.agent_env_file_url, "ssm:")}/*",
      ]
    }] : []
    AuthorizedUsers = !local.authorized_users_on_s3 ? [] : [{
      Effect   = "Allow"
      Action   = "s3:GetObject"
      Resource = "arn:${local.partition}:s3:::${trimprefix(var.authorized_users_url, "s3://")}"
    }]
  }
  key_parameter_arns = [
    for path in [var.buildkite_agent_signing_key_ssm_parameter, var.buildkite_agent_verification_key_ssm_parameter] :
    "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${path}" if path != ""
  ]
}

resource "aws_iam_role_policy" "instance" {
  count = local.create_iam_role ? 1 : 0

  name = "InstancePolicy"
  role = aws_iam_role.instance[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["autoscaling:DescribeAutoScalingInstances", "cloudformation:DescribeStackResource", "ec2:DescribeTags"]
        Resource = "*"
      },
      # The CloudWatch agent's own namespace, for metrics a user adds to its
      # configuration; nothing on the instances publishes elsewhere.
      {
        Sid       = "Metrics"
        Effect    = "Allow"
        Action    = "cloudwatch:PutMetricData"
        Resource  = "*"
        Condition = { StringEquals = { "cloudwatch:namespace" = "CWAgent" } }
      },
      {
        Sid      = "TerminateInstance"
        Effect   = "Allow"
        Action   = ["autoscaling:SetInstanceHealth", "autoscaling:TerminateInstanceInAutoScalingGroup"]
        Resource = local.group_arn_pattern
      },
      # The instance's `watch` keeps its own termination hook waiting while jobs run and
      # completes it after; the group name is the stack's own.
      {
        Sid      = "DrainInstance"
        Effect   = "Allow"
        Action   = ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
        Resource = local.group_arn_pattern
      },
      # The CloudWatch agent writes the instances' log groups (and sets their
      # retention). No other group can be created, written or have its retention
      # changed: not the scaler's or the helpers', whose lines feed the stack's alarms.
      {
        Sid      = "Logging"
        Effect   = "Allow"
        Action   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams", "logs:PutRetentionPolicy"]
        Resource = [for name in sort(keys(aws_cloudwatch_log_group.instances)) : "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/buildkite/${var.stack_name}/${name}:*"]
      },
      {
        Sid      = "ListLogGroups"
        Effect   = "Allow"
        Action   = "logs:DescribeLogGroups"
        Resource = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"
      },
      {
        Sid    = "Ssm"
        Effect = "Allow"
        Action = [
          "ssm:DescribeInstanceProperties", "ssm:ListAssociations", "ssm:PutInventory", "ssm:UpdateInstanceInformation",
          "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
          "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
        ]
        Resource = "*"
      },
      {
        Sid      = "ReadAgentToken"
        Effect   = "Allow"
        Action   = "ssm:GetParameter"
        Resource = local.token_parameter_arn
      },
    ]
  })
}

resource "aws_iam_role_policy" "instance_optional" {
  for_each = local.create_iam_role ? { for name, statements in local.instance_optional_statements : name => statements if length(statements) > 0 } : {}

  name   = each.key
  role   = aws_iam_role.instance[0].id
  policy = jsonencode({ Version = "2012-10-17", Statement = each.value })
}

resource "aws_iam_instance_profile" "agents" {
  name_prefix = "${var.stack_name}-InstanceProfile-"
  path        = "/"
  role        = local.instance_role_name
  tags        = local.common_tags
}
