# The Elastic CI Stack for AWS as a Terraform module: the resources of
# cloudformation/aws-stack.yml, named after var.stack_name. versions.tf pins Terraform
# and the provider.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first two zones are used, and the subnets ignore later zone changes.
  state = "available"
}

locals {
  # The release this module belongs to: the version the instances report and the
  # directory of the scaler zips in the release buckets. The release process sets it.
  stack_version        = "0.0.0-dev"
  lambda_bucket_prefix = "elastic-ci-stack-lambdas"

  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  common_tags = merge(
    var.tags,
    var.enable_cost_allocation_tags ? { (var.cost_allocation_tag_name) = var.cost_allocation_tag_value } : {},
  )

  # The same conditions as the CloudFormation template.
  create_vpc_resources    = var.vpc_id == ""
  enable_vpc_endpoints    = var.enable_vpc_endpoints && local.create_vpc_resources
  create_security_group   = length(var.security_group_ids) == 0
  enable_ssh_ingress      = local.create_security_group && var.ssh_ingress_cidr != ""
  create_secrets_bucket   = var.enable_secrets_plugin && var.secrets_bucket == ""
  has_secrets_bucket      = local.create_secrets_bucket || var.secrets_bucket != ""
  has_git_mirror_seed     = var.buildkite_agent_enable_git_mirrors && var.git_mirror_seed_bucket != ""
  create_iam_role         = var.instance_role_arn == ""
  create_token_parameter  = var.buildkite_agent_token_parameter_store_path == ""
  create_signing_key      = var.pipeline_signing_kms_key_id == "" && var.pipeline_signing_kms_key_spec != "none"
  has_signing_key         = local.create_signing_key || var.pipeline_signing_kms_key_id != ""
  has_variable_size       = var.min_size != var.max_size
  scale_on_job_events     = local.has_variable_size && var.scaler_event_bus_name != ""
  use_ecr                 = var.ecr_access_policy != "none"
  add_ecr_pull_through    = contains(["readonly-pullthrough", "poweruser-pullthrough"], var.ecr_access_policy)
  bootstrap_script_on_s3  = startswith(var.bootstrap_script_url, "s3://")
  agent_env_file_on_s3    = startswith(var.agent_env_file_url, "s3://")
  agent_env_file_on_ssm   = startswith(var.agent_env_file_url, "ssm:")
  authorized_users_on_s3  = startswith(var.authorized_users_url, "s3://")
  use_windows             = var.instance_operating_system == "windows"
  use_ubuntu              = var.linux_distribution == "ubuntu2404" && !local.use_windows
  instance_types          = [for type in split(",", var.instance_types) : type if type != ""]
  first_instance_family   = split(".", local.instance_types[0])[0]
  using_burstable         = contains(["t2", "t3", "t3a", "t4g"], local.first_instance_family)
  using_arm               = can(regex("(^|,)a1\\.|[1-9]g", var.instance_types))
  group_name_prefix       = "${var.stack_name}-AgentAutoScaleGroup-"
  group_arn_pattern       = "arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.group_name_prefix}*"
  token_parameter_name    = local.create_token_parameter ? "/${var.stack_name}/buildkite/agent-token" : var.buildkite_agent_token_parameter_store_path
  token_parameter_arn     = startswith(local.token_parameter_name, "arn:") ? local.token_parameter_name : "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.token_parameter_name}"
  token_key_arn           = startswith(var.buildkite_agent_token_parameter_store_kms_key, "arn:") ? var.buildkite_agent_token_parameter_store_kms_key : "arn:${local.partition}:kms:${local.region}:${local.account_id}:key/${var.buildkite_agent_token_parameter_store_kms_key}"
  signing_key_arn         = local.create_signing_key ? aws_kms_key.pipeline_signing[0].arn : (startswith(var.pipeline_signing_kms_key_id, "arn:") ? var.pipeline_signing_kms_key_id : "arn:${local.partition}:kms:${local.region}:${local.account_id}:key/${var.pipeline_signing_kms_key_id}")
  secrets_bucket_name     = local.create_secrets_bucket ? aws_s3_bucket.managed_secrets[0].bucket : var.secrets_bucket
  instance_role_name      = local.create_iam_role ? aws_iam_role.instance[0].name : element(split("/", var.instance_role_arn), length(split("/", var.instance_role_arn)) - 1)
  instance_name           = var.instance_name == "" ? var.stack_name : var.instance_name
  vpc_id                  = local.create_vpc_resources ? aws_vpc.this[0].id : var.vpc_id
  subnet_ids              = local.create_vpc_resources ? aws_subnet.public[*].id : var.subnets
  availability_zones      = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)
  log_retention_days      = var.enable_ec2_log_retention_policy ? var.ec2_log_retention_days : null
  instance_creation_delay = var.instance_creation_timeout != "" ? var.instance_creation_timeout : (local.has_git_mirror_seed ? "PT15M" : "PT5M")
  # Terraform waits for capacity with a Go duration: PT1H30M becomes 1h30m.
  capacity_timeout = lower(replace(local.instance_creation_delay, "PT", ""))

  image_variant = "${local.use_windows ? "windows" : (local.use_ubuntu ? "ubuntu2404" : "linux")}${local.using_arm ? "arm64" : "amd64"}"
  image_id = (
    var.image_id != "" ? var.image_id :
    var.image_id_parameter != "" ? "resolve:ssm:${var.image_id_parameter}" :
    lookup(lookup(local.ami_mapping, local.region, {}), local.image_variant, "")
  )
  # AMI ids by region, as in the template's AWSRegion2AMI mapping.
  ami_mapping = {
    us-east-1 = { linuxamd64 = "", linuxarm64 = "", ubuntu2404amd64 = "", ubuntu2404arm64 = "", windowsamd64 = "" }
  }

  # The bootstrapper's inputs: the names of the CloudFormation template's UserData.
  boot_inputs = {
    BUILDKITE_STACK_NAME                                    = var.stack_name
    BUILDKITE_STACK_VERSION                                 = local.stack_version
    BUILDKITE_STACK_DEPLOYED_BY                             = "terraform"
    AWS_REGION                                              = local.region
    AWS_DEFAULT_REGION                                      = local.region
    BUILDKITE_QUEUE                                         = var.buildkite_queue
    BUILDKITE_AGENT_TOKEN_PATH                              = local.token_parameter_name
    BUILDKITE_AGENTS_PER_INSTANCE                           = tostring(var.agents_per_instance)
    BUILDKITE_AGENT_ENDPOINT                                = var.agent_endpoint
    BUILDKITE_AGENT_TAGS                                    = var.buildkite_agent_tags
    BUILDKITE_AGENT_TIMESTAMP_LINES                         = tostring(var.buildkite_agent_timestamp_lines)
    BUILDKITE_AGENT_EXPERIMENTS                             = var.buildkite_agent_experiments
    BUILDKITE_AGENT_TRACING_BACKEND                         = var.buildkite_agent_tracing_backend
    BUILDKITE_AGENT_SIGNING_KEY_PATH                        = var.buildkite_agent_signing_key_ssm_parameter
    BUILDKITE_AGENT_SIGNING_KEY_ID                          = var.buildkite_agent_signing_key_id
    BUILDKITE_AGENT_VERIFICATION_KEY_PATH                   = var.buildkite_agent_verification_key_ssm_parameter
    BUILDKITE_AGENT_RELEASE                                 = var.buildkite_agent_release
    BUILDKITE_AGENT_CANCEL_GRACE_PERIOD                     = tostring(var.buildkite_agent_cancel_grace_period)
    BUILDKITE_AGENT_SIGNAL_GRACE_PERIOD_SECONDS             = tostring(var.buildkite_agent_signal_grace_period)
    BUILDKITE_AGENT_SIGNING_KMS_KEY                         = local.has_signing_key ? local.signing_key_arn : ""
    BUILDKITE_AGENT_JOB_VERIFICATION_NO_SIGNATURE_BEHAVIOR  = var.pipeline_signing_verification_failure_behavior
    BUILDKITE_SCALE_IN_IDLE_PERIOD                          = tostring(var.scale_in_idle_period)
    BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB                  = tostring(var.buildkite_terminate_instance_after_job)
    BUILDKITE_AGENT_DISCONNECT_AFTER_UPTIME                 = tostring(var.buildkite_agent_disconnect_after_uptime)
    BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL               = tostring(var.buildkite_terminate_instance_on_disk_full)
    BUILDKITE_PURGE_BUILDS_ON_DISK_FULL                     = tostring(var.buildkite_purge_builds_on_disk_full)
    BUILDKITE_SECRETS_BUCKET                                = local.has_secrets_bucket ? local.secrets_bucket_name : ""
    BUILDKITE_SECRETS_BUCKET_REGION                         = local.create_secrets_bucket ? local.region : var.secrets_bucket_region
    BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING = tostring(var.secrets_plugin_skip_ssh_key_not_found_warning)
    BUILDKITE_ARTIFACTS_BUCKET                              = var.artifacts_bucket
    BUILDKITE_S3_DEFAULT_REGION                             = var.artifacts_bucket_region != "" ? var.artifacts_bucket_region : local.region
    BUILDKITE_S3_ACL                                        = var.artifacts_s3_acl
    BUILDKITE_AGENT_ENABLE_GIT_MIRRORS                      = tostring(var.buildkite_agent_enable_git_mirrors)
    BUILDKITE_GIT_MIRROR_SEED_BUCKET                        = local.has_git_mirror_seed ? var.git_mirror_seed_bucket : ""
    BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT                      = var.bootstrap_script_url
    BUILDKITE_ENV_FILE_URL                                  = var.agent_env_file_url
    BUILDKITE_AUTHORIZED_USERS_URL                          = var.authorized_users_url
    BUILDKITE_ENABLE_INSTANCE_STORAGE                       = tostring(var.enable_instance_storage)
    BUILDKITE_MOUNT_TMPFS_AT_TMP                            = tostring(var.mount_tmpfs_at_tmp)
    BUILDKITE_ECR_POLICY                                    = var.ecr_access_policy
    BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS                   = var.buildkite_additional_sudo_permissions
    SECRETS_PLUGIN_ENABLED                                  = tostring(var.enable_secrets_plugin)
    ECR_PLUGIN_ENABLED                                      = tostring(var.enable_ecr_plugin)
    DOCKER_LOGIN_PLUGIN_ENABLED                             = tostring(var.enable_docker_login_plugin)
    ECR_CREDENTIAL_HELPER_ENABLED                           = tostring(var.enable_ecr_credential_helper)
    DOCKER_EXPERIMENTAL                                     = tostring(var.enable_docker_experimental)
    DOCKER_USERNS_REMAP                                     = tostring(var.enable_docker_user_namespace_remap)
    DOCKER_PRUNE_UNTIL                                      = var.docker_prune_until
    ENABLE_PRE_EXIT_DISK_CLEANUP                            = tostring(var.enable_pre_exit_disk_cleanup)
    DOCKER_BUILDER_PRUNE_ENABLED                            = tostring(var.docker_builder_prune_enabled)
    DOCKER_NETWORKING_PROTOCOL                              = var.docker_networking_protocol
    DOCKER_IPV4_ADDRESS_POOL_1                              = var.docker_ipv4_address_pool_1
    DOCKER_IPV4_ADDRESS_POOL_2                              = var.docker_ipv4_address_pool_2
    DOCKER_IPV6_ADDRESS_POOL                                = var.docker_ipv6_address_pool
    DOCKER_FIXED_CIDR_V4                                    = var.docker_fixed_cidr_v4
    DOCKER_FIXED_CIDR_V6                                    = var.docker_fixed_cidr_v6
    ENABLE_RESOURCE_LIMITS                                  = tostring(var.experimental_enable_resource_limits)
    RESOURCE_LIMITS_MEMORY_HIGH                             = var.resource_limits_memory_high
    RESOURCE_LIMITS_MEMORY_MAX                              = var.resource_limits_memory_max
    RESOURCE_LIMITS_MEMORY_SWAP_MAX                         = var.resource_limits_memory_swap_max
    RESOURCE_LIMITS_CPU_WEIGHT                              = tostring(var.resource_limits_cpu_weight)
    RESOURCE_LIMITS_CPU_QUOTA                               = var.resource_limits_cpu_quota
    RESOURCE_LIMITS_IO_WEIGHT                               = tostring(var.resource_limits_io_weight)
    ENABLE_EC2_LOG_RETENTION_POLICY                         = tostring(var.enable_ec2_log_retention_policy)
    EC2_LOG_RETENTION_DAYS                                  = tostring(var.ec2_log_retention_days)
    BUILDKITE_WINDOWS_ADMINISTRATOR                         = tostring(var.buildkite_windows_administrator)
  }
}

# Checks across variables, as the template's Rules.
resource "terraform_data" "validate" {
  input = var.stack_name

  lifecycle {
    precondition {
      condition     = var.buildkite_agent_token != "" || var.buildkite_agent_token_parameter_store_path != ""
      error_message = "Set buildkite_agent_token or buildkite_agent_token_parameter_store_path."
    }
    precondition {
      condition     = var.pipeline_signing_kms_key_id == "" || var.pipeline_signing_kms_key_spec == "none"
      error_message = "Set either pipeline_signing_kms_key_id or pipeline_signing_kms_key_spec, not both."
    }
    precondition {
      condition     = var.max_size >= var.min_size
      error_message = "max_size must be at least min_size."
    }
    # When the scaler lowers the desired capacity, the group picks the instances to
    # terminate without regard to their jobs. Two paths are safe: protected instances
    # (each terminates itself once its agents are idle), or the termination hook (the
    # picked instance drains before it goes).
    precondition {
      condition     = var.disable_scale_in || var.instance_scale_in_protection || var.enable_termination_hook
      error_message = "With disable_scale_in false the scaler lowers the desired capacity and the group terminates instances whatever jobs they are running; set enable_termination_hook or instance_scale_in_protection to true, or disable_scale_in to true."
    }
    # Warm pools refuse Spot instances.
    precondition {
      condition     = var.warm_pool_size == 0 || var.on_demand_percentage == 100
      error_message = "A warm pool (warm_pool_size above 0) holds on-demand instances only; set on_demand_percentage to 100, or warm_pool_size to 0."
    }
    precondition {
      condition     = var.vpc_id == "" || length(var.subnets) > 0
      error_message = "With vpc_id, set subnets to the subnets of that VPC the instances may use."
    }
    precondition {
      condition     = var.vpc_id != "" || length(var.subnets) == 0
      error_message = "subnets are used only with vpc_id; set vpc_id to their VPC, or leave subnets empty for the VPC the module builds."
    }
    precondition {
      condition     = var.ssh_ingress_cidr == "" || length(var.security_group_ids) == 0
      error_message = "ssh_ingress_cidr opens port 22 on the security group the module creates; with security_group_ids, open it on those groups instead."
    }
    precondition {
      condition     = length(local.availability_zones) >= 2
      error_message = "availability_zones needs two zones for the two subnets the module builds."
    }
    precondition {
      condition     = !(local.use_windows && local.using_arm)
      error_message = "Windows instances run on x86_64 only: instance_types lists an arm64 (Graviton) type."
    }
    precondition {
      condition     = local.image_id != ""
      error_message = "No ${local.using_arm ? "arm64" : "x86_64"} ${local.use_windows ? "Windows Server 2022" : (local.use_ubuntu ? "Ubuntu 24.04" : "Amazon Linux 2023")} AMI for ${local.region} in this module: set image_id or image_id_parameter."
    }
    precondition {
      condition     = alltrue([for value in values(local.boot_inputs) : !strcontains(value, "\n")])
      error_message = "Variables passed to the instances must not contain line breaks."
    }
  }
}
