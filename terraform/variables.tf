# One variable per parameter of cloudformation/aws-stack.yml, named in snake_case
# (BuildkiteAgentTokenParameterStoreKMSKey is buildkite_agent_token_parameter_store_kms_key),
# with the same defaults and validation. "true"/"false" parameters are bools here,
# comma-separated lists are lists of strings. A test in xtask keeps the two in step.

# Terraform only: CloudFormation takes these from the stack itself.
variable "stack_name" {
  description = "Name of the stack: prefixes every resource name, like a CloudFormation stack name."
  type        = string
  default     = "buildkite-stack"
  nullable    = false

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,29}$", var.stack_name))
    error_message = "stack_name must start with a letter and have at most 30 letters, digits or hyphens."
  }
}

variable "tags" {
  description = "Tags for every resource that takes tags."
  type        = map(string)
  default     = {}
  nullable    = false
}

# Base Configuration
variable "buildkite_agent_token" {
  description = "Buildkite agent registration token. The stack stores it as a SecureString SSM parameter. Required unless buildkite_agent_token_parameter_store_path is set."
  type        = string
  default     = ""
  sensitive   = true
  nullable    = false

  validation {
    condition     = can(regex("^\\S*$", var.buildkite_agent_token))
    error_message = "buildkite_agent_token must be an agent token, without spaces or line breaks."
  }
}

variable "buildkite_agent_token_parameter_store_path" {
  description = "Existing SSM parameter (a path starting with / or a full parameter ARN, for another account) holding the agent token. When set, the stack stores no token."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^/$|^/[a-zA-Z0-9_.\\-/]+$|^arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter/[a-zA-Z0-9_.\\-/]+$", var.buildkite_agent_token_parameter_store_path))
    error_message = "buildkite_agent_token_parameter_store_path must be empty, an SSM parameter path starting with / (letters, digits and _ . - /), or the ARN of an SSM parameter."
  }
}

variable "buildkite_agent_token_parameter_store_kms_key" {
  description = "KMS key id or ARN that encrypts that SSM parameter (empty for the AWS managed key)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-zA-Z0-9-]+$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[a-zA-Z0-9-]+$", var.buildkite_agent_token_parameter_store_kms_key))
    error_message = "buildkite_agent_token_parameter_store_kms_key must be empty, a KMS key id or a KMS key ARN."
  }
}

variable "buildkite_queue" {
  description = "Queue the agents register with (agent tag queue=)."
  type        = string
  default     = "default"
  nullable    = false

  validation {
    condition     = length(var.buildkite_queue) >= 1 && can(regex("^[^\\s,]+$", var.buildkite_queue))
    error_message = "buildkite_queue must be a queue name, without spaces, commas or line breaks."
  }
}

variable "agent_endpoint" {
  description = "Buildkite agent API endpoint (https://, or http:// on the loopback address only)."
  type        = string
  default     = "https://agent-edge.buildkite.com/v3"
  nullable    = false

  validation {
    condition     = can(regex("^https://\\S+$|^http://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:[0-9]+)?(/\\S*)?$", var.agent_endpoint))
    error_message = "agent_endpoint must be an https:// URL (or http:// on 127.0.0.1, localhost or [::1]) without spaces."
  }
}

# Signed Pipelines Configuration
variable "pipeline_signing_kms_key_id" {
  description = "Existing KMS key id or ARN for signing and verifying jobs. Do not combine with pipeline_signing_kms_key_spec."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-zA-Z0-9-]+$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[a-zA-Z0-9-]+$", var.pipeline_signing_kms_key_id))
    error_message = "pipeline_signing_kms_key_id must be empty, a KMS key id or a KMS key ARN."
  }
}

variable "pipeline_signing_kms_key_spec" {
  description = "ECC_NIST_P256 creates an asymmetric SIGN_VERIFY KMS key for job signing; none creates nothing."
  type        = string
  default     = "none"
  nullable    = false

  validation {
    condition     = contains(["ECC_NIST_P256", "none"], var.pipeline_signing_kms_key_spec)
    error_message = "pipeline_signing_kms_key_spec must be ECC_NIST_P256 or none."
  }
}

variable "pipeline_signing_kms_access" {
  description = "What the instances may do with the signing key."
  type        = string
  default     = "sign-and-verify"
  nullable    = false

  validation {
    condition     = contains(["sign-and-verify", "verify"], var.pipeline_signing_kms_access)
    error_message = "pipeline_signing_kms_access must be sign-and-verify or verify."
  }
}

variable "pipeline_signing_verification_failure_behavior" {
  description = "What agents do with a job whose signature is missing or invalid."
  type        = string
  default     = "block"
  nullable    = false

  validation {
    condition     = contains(["block", "warn"], var.pipeline_signing_verification_failure_behavior)
    error_message = "pipeline_signing_verification_failure_behavior must be block or warn."
  }
}

variable "buildkite_agent_signing_key_ssm_parameter" {
  description = "SSM parameter holding a JWKS to sign jobs with. The instance role is granted read access."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^/[a-zA-Z0-9_.\\-/]+$", var.buildkite_agent_signing_key_ssm_parameter))
    error_message = "buildkite_agent_signing_key_ssm_parameter must be empty or an SSM parameter path starting with / (letters, digits and _ . - /)."
  }
}

variable "buildkite_agent_signing_key_id" {
  description = "Key id inside the signing JWKS."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^\\S*$", var.buildkite_agent_signing_key_id))
    error_message = "buildkite_agent_signing_key_id must be a key id without spaces or line breaks."
  }
}

variable "buildkite_agent_verification_key_ssm_parameter" {
  description = "SSM parameter holding a JWKS to verify jobs with. The instance role is granted read access."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^/[a-zA-Z0-9_.\\-/]+$", var.buildkite_agent_verification_key_ssm_parameter))
    error_message = "buildkite_agent_verification_key_ssm_parameter must be empty or an SSM parameter path starting with / (letters, digits and _ . - /)."
  }
}

# Advanced Configuration
variable "buildkite_agent_release" {
  description = "Buildkite agent release channel."
  type        = string
  default     = "stable"
  nullable    = false

  validation {
    condition     = contains(["stable", "oldstable", "beta", "edge"], var.buildkite_agent_release)
    error_message = "buildkite_agent_release must be stable, oldstable, beta or edge."
  }
}

variable "buildkite_agent_tags" {
  description = "Extra comma-separated agent tags (key=value)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^[^\\r\\n]*$", var.buildkite_agent_tags))
    error_message = "buildkite_agent_tags must be a single line, without line breaks."
  }
}

variable "buildkite_agent_timestamp_lines" {
  description = "Prefix every job log line with a timestamp."
  type        = bool
  default     = false
  nullable    = false
}

variable "buildkite_agent_experiments" {
  description = "Comma-separated agent experiments."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^\\S*$", var.buildkite_agent_experiments))
    error_message = "buildkite_agent_experiments must be comma-separated experiment names, without spaces or line breaks."
  }
}

variable "buildkite_agent_enable_git_mirrors" {
  description = "Enable agent git mirrors."
  type        = bool
  default     = false
  nullable    = false
}

variable "git_mirror_seed_bucket" {
  description = "Bucket whose git-mirror-seeds/ archives seed the git mirrors at boot (with git mirrors on). Raises the default instance_creation_timeout to PT15M."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.git_mirror_seed_bucket))
    error_message = "git_mirror_seed_bucket must be empty or an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)."
  }
}

variable "buildkite_agent_tracing_backend" {
  description = "Agent tracing backend."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = contains(["", "datadog", "opentelemetry"], var.buildkite_agent_tracing_backend)
    error_message = "buildkite_agent_tracing_backend must be empty, datadog or opentelemetry."
  }
}

variable "buildkite_agent_cancel_grace_period" {
  description = "Seconds a cancelled or timed-out job gets to clean up."
  type        = number
  default     = 60
  nullable    = false

  validation {
    condition     = var.buildkite_agent_cancel_grace_period >= 1
    error_message = "buildkite_agent_cancel_grace_period must be a number of seconds, at least 1."
  }
}

variable "buildkite_agent_signal_grace_period" {
  description = "Seconds between the cancel signal and SIGKILL; -1 keeps the agent default."
  type        = number
  default     = -1
  nullable    = false

  validation {
    condition     = var.buildkite_agent_signal_grace_period >= -1
    error_message = "buildkite_agent_signal_grace_period must be a number of seconds, or -1 for the agent's default."
  }
}

variable "buildkite_terminate_instance_after_job" {
  description = "Run one job per instance, then terminate it."
  type        = bool
  default     = false
  nullable    = false
}

variable "buildkite_agent_disconnect_after_uptime" {
  description = "Seconds after which an agent stops taking jobs and exits (0 = never)."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.buildkite_agent_disconnect_after_uptime >= 0
    error_message = "buildkite_agent_disconnect_after_uptime must be a number of seconds, or 0 for never."
  }
}

variable "buildkite_terminate_instance_on_disk_full" {
  description = "Terminate the instance instead of failing the job when the disk is full."
  type        = bool
  default     = false
  nullable    = false
}

variable "buildkite_purge_builds_on_disk_full" {
  description = "Delete build directories as a last resort when the disk is full."
  type        = bool
  default     = false
  nullable    = false
}

variable "buildkite_additional_sudo_permissions" {
  description = "Comma-separated absolute command paths the buildkite-agent user may run with sudo."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^[^\\r\\n]*$", var.buildkite_additional_sudo_permissions))
    error_message = "buildkite_additional_sudo_permissions must be a single line, without line breaks."
  }
}

variable "enable_ec2_log_retention_policy" {
  description = "Expire instance logs after ec2_log_retention_days (otherwise kept forever)."
  type        = bool
  default     = false
  nullable    = false
}

variable "ec2_log_retention_days" {
  description = "Retention of the instance log groups when enable_ec2_log_retention_policy is true."
  type        = number
  default     = 7
  nullable    = false

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653], var.ec2_log_retention_days)
    error_message = "ec2_log_retention_days must be a retention CloudWatch Logs offers, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827 or 3653 days."
  }
}

variable "log_retention_days" {
  description = "Retention of the Lambda log groups, in days."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs offers, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827 or 3653 days."
  }
}

variable "alarm_topic_arn" {
  description = "SNS topic the stack's alarms (no successful scaler poll for 10 minutes, scaler errors, failed boots) notify when they fire and when they clear. Empty notifies nobody; the alarms still show on the stack's dashboard."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[a-zA-Z0-9_.-]{1,256}$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be empty or the ARN of an SNS topic."
  }
}

variable "buildkite_agent_enable_graceful_shutdown" {
  description = "When an update replaces the Auto Scaling group, let the old group's agents finish their jobs before it is removed."
  type        = bool
  default     = false
  nullable    = false
}

variable "lambda_architecture" {
  description = "CPU architecture of the stack's Lambda functions."
  type        = string
  default     = "x86_64"
  nullable    = false

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "scaler_lambda_s3_bucket" {
  description = "Bucket (in this region) holding the scaler Lambda zip. Empty uses the release bucket for this region."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.scaler_lambda_s3_bucket))
    error_message = "scaler_lambda_s3_bucket must be empty or an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)."
  }
}

variable "scaler_lambda_s3_key" {
  description = "Key of the scaler Lambda zip in scaler_lambda_s3_bucket. Empty uses this release's zip for lambda_architecture."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^[^\\r\\n]*$", var.scaler_lambda_s3_key))
    error_message = "scaler_lambda_s3_key must be a single line, without line breaks."
  }
}

# Network Configuration
variable "vpc_id" {
  description = "Existing VPC for the instances. Empty builds a VPC with two public subnets."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be empty or a VPC id such as vpc-0123456789abcdef0."
  }
}

variable "subnets" {
  description = "Subnet ids for the instances (with vpc_id)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for value in var.subnets : can(regex("^$|^subnet-[0-9a-f]+$", value))])
    error_message = "subnets must be subnet ids such as subnet-0123456789abcdef0."
  }
}

variable "availability_zones" {
  description = "Two availability zones for the subnets the stack builds (default the region's first two)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for value in var.availability_zones : can(regex("^$|^[a-z]{2}(-[a-z]+)+-[0-9]+[a-z]$", value))])
    error_message = "availability_zones must be availability zone names such as us-east-1a."
  }
}

variable "security_group_ids" {
  description = "Security group ids for the instances. Empty creates one."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = can(regex("^$|^sg-[0-9a-f]+(,sg-[0-9a-f]+)*$", join(",", var.security_group_ids)))
    error_message = "security_group_ids must be security group ids such as sg-0123456789abcdef0."
  }
}

variable "associate_public_ip_address" {
  description = "Give instances a public IPv4 address (the stack-built VPC has no NAT gateway)."
  type        = bool
  default     = true
  nullable    = false
}

variable "enable_vpc_endpoints" {
  description = "Add S3, ECR, SSM, Secrets Manager and KMS endpoints to the stack-built VPC."
  type        = bool
  default     = false
  nullable    = false
}

# Instance Configuration
variable "image_id" {
  description = "AMI id for the instances; overrides the stack's AMIs."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^ami-[0-9a-f]+$", var.image_id))
    error_message = "image_id must be empty or an AMI id such as ami-0123456789abcdef0."
  }
}

variable "image_id_parameter" {
  description = "SSM parameter holding the AMI id, resolved at each launch."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-zA-Z0-9_.\\-/:]+$", var.image_id_parameter))
    error_message = "image_id_parameter must be empty or an SSM parameter name (letters, digits and _ . - / :)."
  }
}

variable "instance_operating_system" {
  description = "The instances' operating system. windows runs Windows Server 2022 instances (x86_64 instance types only), with the agent as a Windows service; LinuxDistribution, the Docker settings, instance storage, resource limits and authorized users apply to linux only."
  type        = string
  default     = "linux"
  nullable    = false

  validation {
    condition     = contains(["linux", "windows"], var.instance_operating_system)
    error_message = "instance_operating_system must be linux or windows."
  }
}

variable "buildkite_windows_administrator" {
  description = "Windows instances only. Whether the agent's account (NT SERVICE\\buildkite-agent) is a member of the Administrators group, so jobs can install software and control the instance."
  type        = bool
  default     = true
  nullable    = false
}

variable "linux_distribution" {
  description = "Linux distribution of the stack's AMIs."
  type        = string
  default     = "amazonlinux2023"
  nullable    = false

  validation {
    condition     = contains(["amazonlinux2023", "ubuntu2404"], var.linux_distribution)
    error_message = "linux_distribution must be amazonlinux2023 or ubuntu2404."
  }
}

variable "instance_types" {
  description = "Up to 25 comma-separated instance types of one architecture, in order of preference. The architecture is detected from the type names."
  type        = string
  default     = "t3.large"
  nullable    = false

  validation {
    condition     = length(var.instance_types) >= 1 && can(regex("^[\\w\\-\\.]+(,[\\w\\-\\.]*){0,24}$", var.instance_types))
    error_message = "instance_types must be 1 to 25 comma-separated instance types such as t3.large, without spaces."
  }
}

variable "cpu_credits" {
  description = "Credit mode of burstable (t2, t3, t3a, t4g) instances."
  type        = string
  default     = "unlimited"
  nullable    = false

  validation {
    condition     = contains(["standard", "unlimited"], var.cpu_credits)
    error_message = "cpu_credits must be standard or unlimited."
  }
}

variable "nested_virtualization_enabled" {
  description = "Enable nested virtualization (some Intel instance families only)."
  type        = bool
  default     = false
  nullable    = false
}

variable "enable_instance_storage" {
  description = "Mount NVMe instance storage at /mnt/ephemeral for Docker, builds and git mirrors."
  type        = bool
  default     = false
  nullable    = false
}

variable "mount_tmpfs_at_tmp" {
  description = "Keep /tmp in memory (tmpfs)."
  type        = bool
  default     = true
  nullable    = false
}

variable "agents_per_instance" {
  description = "Agents started on each instance."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.agents_per_instance >= 1
    error_message = "agents_per_instance must be a whole number, at least 1."
  }
}

variable "key_name" {
  description = "EC2 key pair for SSH access. Port 22 opens only to ssh_ingress_cidr."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^[^\\r\\n]*$", var.key_name))
    error_message = "key_name must be a single line, without line breaks."
  }
}

variable "ssh_ingress_cidr" {
  description = "IPv4 network allowed to reach port 22 on the stack's security group, such as 203.0.113.0/24. Empty opens no SSH port."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^(([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.){3}([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])/([0-9]|[12][0-9]|3[0-2])$", var.ssh_ingress_cidr))
    error_message = "ssh_ingress_cidr must be empty or an IPv4 CIDR such as 203.0.113.0/24."
  }
}

variable "secrets_bucket" {
  description = "Existing S3 secrets bucket. Empty (with the secrets plugin on) creates one."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.secrets_bucket))
    error_message = "secrets_bucket must be empty or an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)."
  }
}

variable "secrets_bucket_region" {
  description = "Region of that secrets bucket."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.secrets_bucket_region))
    error_message = "secrets_bucket_region must be empty or a region name such as us-east-1."
  }
}

variable "secrets_plugin_skip_ssh_key_not_found_warning" {
  description = "Do not warn when the secrets bucket has no SSH key."
  type        = bool
  default     = false
  nullable    = false
}

variable "artifacts_bucket" {
  description = "Existing bucket the agents may read and write artifacts in."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifacts_bucket))
    error_message = "artifacts_bucket must be empty or an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)."
  }
}

variable "artifacts_bucket_region" {
  description = "Region of the artifacts bucket (default this region)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.artifacts_bucket_region))
    error_message = "artifacts_bucket_region must be empty or a region name such as us-east-1."
  }
}

variable "artifacts_s3_acl" {
  description = "Canned ACL of uploaded artifacts."
  type        = string
  default     = "private"
  nullable    = false

  validation {
    condition     = contains(["private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control"], var.artifacts_s3_acl)
    error_message = "artifacts_s3_acl must be a canned ACL, private, public-read, public-read-write, authenticated-read, aws-exec-read, bucket-owner-read or bucket-owner-full-control."
  }
}

variable "authorized_users_url" {
  description = "s3://, https:// or file:// URL of an authorized_keys file, refreshed hourly. Port 22 opens only to ssh_ingress_cidr."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^(s3|https?|file)://\\S+$", var.authorized_users_url))
    error_message = "authorized_users_url must be empty or an s3://, https://, http:// or file:// URL without spaces."
  }
}

variable "bootstrap_script_url" {
  description = "s3://, https:// or file:// URL of a script run as root at boot, before the agent starts."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^(s3|https?|file)://\\S+$", var.bootstrap_script_url))
    error_message = "bootstrap_script_url must be empty or an s3://, https://, http:// or file:// URL without spaces."
  }
}

variable "agent_env_file_url" {
  description = "s3://, ssm:, https:// or file:// URL of environment variables for the agent process."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^(s3|https?|file)://\\S+$|^ssm:/\\S+$", var.agent_env_file_url))
    error_message = "agent_env_file_url must be empty, an ssm:/path, or an s3://, https://, http:// or file:// URL, without spaces."
  }
}

variable "root_volume_size" {
  description = "Root volume size in GB."
  type        = number
  default     = 250
  nullable    = false

  validation {
    condition     = var.root_volume_size >= 10
    error_message = "root_volume_size must be a number of GB, at least 10."
  }
}

variable "root_volume_name" {
  description = "Root device name (default /dev/xvda, or /dev/sda1 on Ubuntu)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^/dev/[a-z0-9]+$", var.root_volume_name))
    error_message = "root_volume_name must be empty or a device name such as /dev/xvda."
  }
}

variable "root_volume_type" {
  description = "Root volume type."
  type        = string
  default     = "gp3"
  nullable    = false

  validation {
    condition     = contains(["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"], var.root_volume_type)
    error_message = "root_volume_type must be gp3, gp2, io1, io2, st1, sc1 or standard."
  }
}

variable "root_volume_encrypted" {
  description = "Encrypt the root volume (with the account's default EBS key)."
  type        = bool
  default     = true
  nullable    = false
}

variable "root_volume_delete_on_termination" {
  description = "Delete the root volume when the instance terminates."
  type        = bool
  default     = true
  nullable    = false
}

variable "root_volume_iops" {
  description = "Root volume IOPS (gp3, io1 and io2)."
  type        = number
  default     = 3000
  nullable    = false
}

variable "root_volume_throughput" {
  description = "Root volume throughput in MB/s (gp3)."
  type        = number
  default     = 125
  nullable    = false
}

variable "managed_policy_arns" {
  description = "Managed policies to attach to the instance role."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for value in var.managed_policy_arns : can(regex("^$|^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/[\\w+=,.@/-]+$", value))])
    error_message = "managed_policy_arns must be IAM policy ARNs."
  }
}

variable "scaler_event_bus_name" {
  description = "The event bus of Buildkite's Amazon EventBridge integration in this account and region (aws.partner/buildkite.com/ORG/ID, associated with its partner event source). When set, each Job Scheduled event of this queue runs the scaler at once (at most one poll per scaler poll interval); the schedule stays. Empty scales on the schedule alone."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^aws\\.partner/buildkite\\.com/[A-Za-z0-9._/-]{1,200}$", var.scaler_event_bus_name))
    error_message = "scaler_event_bus_name must be empty or a Buildkite partner event bus name such as aws.partner/buildkite.com/my-org/0106-187c-12cd4fe."
  }
}

variable "scaler_managed_policy_arns" {
  description = "Managed policies to attach to the scaler Lambda's role."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for value in var.scaler_managed_policy_arns : can(regex("^$|^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/[\\w+=,.@/-]+$", value))])
    error_message = "scaler_managed_policy_arns must be IAM policy ARNs."
  }
}

variable "instance_role_arn" {
  description = "Existing IAM role for the instances (paths up to 10 levels). The stack then creates no instance role or policies."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\\w+=,.@/-]+$", var.instance_role_arn))
    error_message = "instance_role_arn must be empty or an IAM role ARN such as arn:aws:iam::123456789012:role/path/name."
  }
}

variable "instance_role_name" {
  description = "Name of the instance role the stack creates (default generated)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^[\\w+=,.@-]{0,64}$", var.instance_role_name))
    error_message = "instance_role_name must be empty or an IAM role name of up to 64 letters, digits and + = , . @ _ -."
  }
}

variable "instance_role_permissions_boundary_arn" {
  description = "Permissions boundary for every role the stack creates (required when the stack is deployed with the service role of service-role.yml, which outputs it)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/[\\w+=,.@/-]+$", var.instance_role_permissions_boundary_arn))
    error_message = "instance_role_permissions_boundary_arn must be empty or an IAM policy ARN such as arn:aws:iam::123456789012:policy/name."
  }
}

variable "instance_role_tags" {
  description = "Up to five key=value tags, comma-separated, for the instance role."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^[\\w _.:/+\\-@]+=[\\w _.:/+\\-@]*(,[\\w _.:/+\\-@]+=[\\w _.:/+\\-@]*){0,4}$", var.instance_role_tags))
    error_message = "instance_role_tags must be empty or up to five comma-separated key=value tags of letters, digits, spaces and _ . : / + - @."
  }
}

variable "imdsv2_tokens" {
  description = "Whether instance metadata requires IMDSv2 session tokens."
  type        = string
  default     = "required"
  nullable    = false

  validation {
    condition     = contains(["optional", "required"], var.imdsv2_tokens)
    error_message = "imdsv2_tokens must be optional or required."
  }
}

variable "enable_detailed_monitoring" {
  description = "Enable 1-minute EC2 detailed monitoring."
  type        = bool
  default     = false
  nullable    = false
}

variable "instance_name" {
  description = "Name tag of the instances (default the stack name)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^[^\\r\\n]*$", var.instance_name))
    error_message = "instance_name must be a single line, without line breaks."
  }
}

variable "experimental_enable_resource_limits" {
  description = "Run the agent in a systemd slice with the limits below."
  type        = bool
  default     = false
  nullable    = false
}

variable "resource_limits_memory_high" {
  description = "Slice MemoryHigh."
  type        = string
  default     = "90%"
  nullable    = false

  validation {
    condition     = can(regex("^(\\d+([KkMmGgTt])?|(?:[1-9][0-9]?|100)%|infinity)$", var.resource_limits_memory_high))
    error_message = "resource_limits_memory_high must be bytes with an optional K, M, G or T suffix, a percentage from 1% to 100%, or infinity."
  }
}

variable "resource_limits_memory_max" {
  description = "Slice MemoryMax."
  type        = string
  default     = "90%"
  nullable    = false

  validation {
    condition     = can(regex("^(\\d+([KkMmGgTt])?|(?:[1-9][0-9]?|100)%|infinity)$", var.resource_limits_memory_max))
    error_message = "resource_limits_memory_max must be bytes with an optional K, M, G or T suffix, a percentage from 1% to 100%, or infinity."
  }
}

variable "resource_limits_memory_swap_max" {
  description = "Slice MemorySwapMax."
  type        = string
  default     = "90%"
  nullable    = false

  validation {
    condition     = can(regex("^(\\d+([KkMmGgTt])?|(?:[1-9][0-9]?|100)%|infinity)$", var.resource_limits_memory_swap_max))
    error_message = "resource_limits_memory_swap_max must be bytes with an optional K, M, G or T suffix, a percentage from 1% to 100%, or infinity."
  }
}

variable "resource_limits_cpu_weight" {
  description = "Slice CPUWeight."
  type        = number
  default     = 100
  nullable    = false

  validation {
    condition     = var.resource_limits_cpu_weight >= 1 && var.resource_limits_cpu_weight <= 10000
    error_message = "resource_limits_cpu_weight must be a number from 1 to 10000."
  }
}

variable "resource_limits_cpu_quota" {
  description = "Slice CPUQuota."
  type        = string
  default     = "90%"
  nullable    = false

  validation {
    condition     = can(regex("^\\d+%$", var.resource_limits_cpu_quota))
    error_message = "resource_limits_cpu_quota must be a percentage such as 90%."
  }
}

variable "resource_limits_io_weight" {
  description = "Slice IOWeight."
  type        = number
  default     = 80
  nullable    = false

  validation {
    condition     = var.resource_limits_io_weight >= 1 && var.resource_limits_io_weight <= 10000
    error_message = "resource_limits_io_weight must be a number from 1 to 10000."
  }
}

# Auto-scaling Configuration
variable "min_size" {
  description = "Minimum number of instances; the stack waits for this many to boot."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.min_size >= 0
    error_message = "min_size must be a whole number, at least 0."
  }
}

variable "max_size" {
  description = "Maximum number of instances, at least min_size. Equal to min_size means no scaler."
  type        = number
  default     = 10
  nullable    = false

  validation {
    condition     = var.max_size >= 0
    error_message = "max_size must be a whole number, at least 0."
  }
}

variable "instance_buffer" {
  description = "Spare idle instances to keep while there are jobs."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.instance_buffer >= 0
    error_message = "instance_buffer must be a whole number, at least 0."
  }
}

variable "disable_scale_in" {
  description = "The scaler never lowers capacity; idle instances terminate themselves. Setting it to false requires instance_scale_in_protection, so that lowering the capacity never terminates a busy instance."
  type        = bool
  default     = true
  nullable    = false
}

variable "instance_scale_in_protection" {
  description = "Protect new instances from scale-in by the Auto Scaling group. Required when disable_scale_in is false."
  type        = bool
  default     = true
  nullable    = false
}

variable "enable_termination_hook" {
  description = "A termination lifecycle hook on the group, so that every removal Auto Scaling makes (scale-in, instance refresh, health replacement, Capacity Rebalancing, the old group of a stack update) waits for the instance's running jobs to finish. A spot interruption still ends jobs after its 2-minute notice."
  type        = bool
  default     = true
  nullable    = false
}

variable "termination_hook_heartbeat_timeout" {
  description = "Seconds the termination hook waits without a heartbeat before it goes on (the instances send one every minute while jobs run; a drain lasts at most 100 timeouts or 48 hours)."
  type        = number
  default     = 600
  nullable    = false

  validation {
    condition     = var.termination_hook_heartbeat_timeout >= 120 && var.termination_hook_heartbeat_timeout <= 7200
    error_message = "termination_hook_heartbeat_timeout must be a number of seconds from 120 to 7200."
  }
}

variable "warm_pool_size" {
  description = "Stopped instances kept booted and ready in an Auto Scaling warm pool, so that a scale-out resumes one in seconds instead of booting a new one; they cost only their EBS volumes while stopped. 0 keeps no warm pool. Needs on_demand_percentage 100."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.warm_pool_size >= 0 && var.warm_pool_size <= 100 && floor(var.warm_pool_size) == var.warm_pool_size
    error_message = "warm_pool_size must be a whole number from 0 to 100."
  }
}

variable "on_demand_base_capacity" {
  description = "Instances always launched on demand."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.on_demand_base_capacity >= 0
    error_message = "on_demand_base_capacity must be a whole number, at least 0."
  }
}

variable "on_demand_percentage" {
  description = "Percentage of on-demand instances above the base (the rest are Spot)."
  type        = number
  default     = 100
  nullable    = false

  validation {
    condition     = var.on_demand_percentage >= 0 && var.on_demand_percentage <= 100
    error_message = "on_demand_percentage must be a percentage from 0 to 100."
  }
}

variable "spot_allocation_strategy" {
  description = "Spot allocation strategy."
  type        = string
  default     = "capacity-optimized"
  nullable    = false

  validation {
    condition     = contains(["price-capacity-optimized", "capacity-optimized", "lowest-price", "capacity-optimized-prioritized"], var.spot_allocation_strategy)
    error_message = "spot_allocation_strategy must be price-capacity-optimized, capacity-optimized, lowest-price or capacity-optimized-prioritized."
  }
}

variable "scale_out_factor" {
  description = "Multiplier on each scale-out step, from 0 to 100."
  type        = number
  default     = 1.0
  nullable    = false

  validation {
    condition     = var.scale_out_factor >= 0 && var.scale_out_factor <= 100
    error_message = "scale_out_factor must be a number from 0 to 100."
  }
}

variable "scale_out_cooldown_period" {
  description = "Seconds between scale-outs."
  type        = number
  default     = 300
  nullable    = false

  validation {
    condition     = var.scale_out_cooldown_period >= 0
    error_message = "scale_out_cooldown_period must be a number of seconds, at least 0."
  }
}

variable "scaler_mode" {
  description = "Scaling policy. original keeps the original scaler's decisions; responsive skips the scale-out cooldown once the previous scale-out's agents have connected and jobs are still waiting, for shorter waits at a few percent more instance time (see the README's capacity simulator section)."
  type        = string
  default     = "original"
  nullable    = false

  validation {
    condition     = contains(["original", "responsive"], var.scaler_mode)
    error_message = "scaler_mode must be original or responsive."
  }
}

variable "scale_in_idle_period" {
  description = "Seconds every agent on an instance must be idle before the instance terminates."
  type        = number
  default     = 600
  nullable    = false

  validation {
    condition     = var.scale_in_idle_period >= 0
    error_message = "scale_in_idle_period must be a number of seconds, at least 0."
  }
}

variable "scale_in_cooldown_period" {
  description = "Seconds between scale-ins."
  type        = number
  default     = 3600
  nullable    = false

  validation {
    condition     = var.scale_in_cooldown_period >= 0
    error_message = "scale_in_cooldown_period must be a number of seconds, at least 0."
  }
}

variable "scale_out_for_waiting_jobs" {
  description = "Also scale out for jobs waiting behind wait and block steps."
  type        = bool
  default     = false
  nullable    = false
}

variable "instance_creation_timeout" {
  description = "How long the stack waits for min_size instances to boot (ISO 8601, default PT5M, or PT15M with a git mirror seed bucket)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^PT([0-9]+H)?([0-9]+M)?([0-9]+S)?$", var.instance_creation_timeout))
    error_message = "instance_creation_timeout must be empty or an ISO 8601 duration such as PT10M or PT1H30M."
  }
}

variable "scaler_event_schedule_period" {
  description = "How often the scaler runs (an EventBridge rate such as 1 minute)."
  type        = string
  default     = "1 minute"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+ (minute|minutes|hour|hours|day|days)$", var.scaler_event_schedule_period))
    error_message = "scaler_event_schedule_period must be a rate such as 1 minute, 5 minutes or 1 hour."
  }
}

variable "scaler_event_schedule_jitter" {
  description = "Maximum start delay of each scaler run, to stagger many stacks (a duration such as 10s)."
  type        = string
  default     = "0s"
  nullable    = false

  validation {
    condition     = can(regex("^0$|^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.scaler_event_schedule_jitter))
    error_message = "scaler_event_schedule_jitter must be a duration such as 10s, 1m30s or 500ms."
  }
}

variable "scaler_min_poll_interval" {
  description = "Minimum interval between polls within one scaler run."
  type        = string
  default     = "10s"
  nullable    = false

  validation {
    condition     = can(regex("^0$|^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.scaler_min_poll_interval))
    error_message = "scaler_min_poll_interval must be a duration such as 10s, 1m30s or 500ms."
  }
}

variable "scaler_enable_experimental_elastic_ci_mode" {
  description = "The original scaler's experimental Elastic CI mode. Not supported by this scaler; must stay false."
  type        = bool
  default     = false
  nullable    = false

  validation {
    condition     = !var.scaler_enable_experimental_elastic_ci_mode
    error_message = "This stack's scaler does not implement the experimental Elastic CI mode; set scaler_enable_experimental_elastic_ci_mode to false."
  }
}

variable "enable_scheduled_scaling" {
  description = "Change min_size on a schedule."
  type        = bool
  default     = false
  nullable    = false
}

variable "schedule_timezone" {
  description = "Time zone of the schedules (IANA name)."
  type        = string
  default     = "UTC"
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9_+/-]+$", var.schedule_timezone))
    error_message = "schedule_timezone must be an IANA time zone name such as UTC or Europe/London."
  }
}

variable "scale_up_schedule" {
  description = "Cron expression of the scale-up action."
  type        = string
  default     = "0 8 * * MON-FRI"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9*,\\-/]+ [0-9*,\\-/]+ [0-9*,\\-/]+ [0-9*,\\-/]+ [0-9A-Za-z*,\\-/]+$", var.scale_up_schedule))
    error_message = "scale_up_schedule must be a five-field cron expression such as 0 8 * * MON-FRI."
  }
}

variable "scale_up_min_size" {
  description = "min_size set by the scale-up action."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.scale_up_min_size >= 0
    error_message = "scale_up_min_size must be a whole number, at least 0."
  }
}

variable "scale_down_schedule" {
  description = "Cron expression of the scale-down action."
  type        = string
  default     = "0 18 * * MON-FRI"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9*,\\-/]+ [0-9*,\\-/]+ [0-9*,\\-/]+ [0-9*,\\-/]+ [0-9A-Za-z*,\\-/]+$", var.scale_down_schedule))
    error_message = "scale_down_schedule must be a five-field cron expression such as 0 18 * * MON-FRI."
  }
}

variable "scale_down_min_size" {
  description = "min_size set by the scale-down action."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.scale_down_min_size >= 0
    error_message = "scale_down_min_size must be a whole number, at least 0."
  }
}

# Cost Allocation Configuration
variable "enable_cost_allocation_tags" {
  description = "Tag instances, volumes and buckets with the cost allocation tag."
  type        = bool
  default     = false
  nullable    = false
}

variable "cost_allocation_tag_name" {
  description = "Cost allocation tag key."
  type        = string
  default     = "CreatedBy"
  nullable    = false

  validation {
    condition     = can(regex("^[\\w .:/=+\\-@]{1,128}$", var.cost_allocation_tag_name))
    error_message = "cost_allocation_tag_name must be a tag key of 1 to 128 letters, digits, spaces and _ . : / = + - @."
  }
}

variable "cost_allocation_tag_value" {
  description = "Cost allocation tag value."
  type        = string
  default     = "buildkite-elastic-ci-stack-for-aws"
  nullable    = false

  validation {
    condition     = can(regex("^[\\w .:/=+\\-@]{0,256}$", var.cost_allocation_tag_value))
    error_message = "cost_allocation_tag_value must be a tag value of up to 256 letters, digits, spaces and _ . : / = + - @."
  }
}

# Docker Daemon Configuration
variable "enable_docker_user_namespace_remap" {
  description = "Remap container root to the buildkite-agent user."
  type        = bool
  default     = true
  nullable    = false
}

variable "enable_docker_experimental" {
  description = "Enable Docker experimental features."
  type        = bool
  default     = false
  nullable    = false
}

variable "docker_prune_until" {
  description = "Age of Docker images and build cache pruned when the disk runs low."
  type        = string
  default     = "4h"
  nullable    = false

  validation {
    condition     = can(regex("^(\\d+[smhd])+$", var.docker_prune_until))
    error_message = "docker_prune_until must be an age such as 4h, 1d or 1d12h (digits with s, m, h or d)."
  }
}

variable "enable_pre_exit_disk_cleanup" {
  description = "Also check and clean the disk after every job."
  type        = bool
  default     = false
  nullable    = false
}

variable "docker_builder_prune_enabled" {
  description = "Also prune the BuildKit build cache."
  type        = bool
  default     = false
  nullable    = false
}

# Docker Networking Configuration
variable "docker_networking_protocol" {
  description = "Docker networking, ipv4 or dualstack."
  type        = string
  default     = "ipv4"
  nullable    = false

  validation {
    condition     = contains(["ipv4", "dualstack"], var.docker_networking_protocol)
    error_message = "docker_networking_protocol must be ipv4 or dualstack."
  }
}

variable "docker_ipv4_address_pool_1" {
  description = "First Docker default address pool."
  type        = string
  default     = "172.17.0.0/12"
  nullable    = false

  validation {
    condition     = can(regex("^(([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.){3}([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])/([0-9]|[12][0-9]|3[0-2])$", var.docker_ipv4_address_pool_1))
    error_message = "docker_ipv4_address_pool_1 must be an IPv4 CIDR such as 172.17.0.0/12."
  }
}

variable "docker_ipv4_address_pool_2" {
  description = "Second Docker default address pool."
  type        = string
  default     = "192.168.0.0/16"
  nullable    = false

  validation {
    condition     = can(regex("^(([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.){3}([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])/([0-9]|[12][0-9]|3[0-2])$", var.docker_ipv4_address_pool_2))
    error_message = "docker_ipv4_address_pool_2 must be an IPv4 CIDR such as 192.168.0.0/16."
  }
}

variable "docker_ipv6_address_pool" {
  description = "Docker IPv6 default address pool (dualstack)."
  type        = string
  default     = "2001:db8:2::/104"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9a-fA-F:]+:[0-9a-fA-F:]*/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$", var.docker_ipv6_address_pool))
    error_message = "docker_ipv6_address_pool must be an IPv6 CIDR such as 2001:db8:2::/104."
  }
}

variable "docker_fixed_cidr_v4" {
  description = "Docker fixed-cidr of the default bridge (optional)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^$|^(([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.){3}([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])/([0-9]|[12][0-9]|3[0-2])$", var.docker_fixed_cidr_v4))
    error_message = "docker_fixed_cidr_v4 must be empty or an IPv4 CIDR such as 172.17.0.0/16."
  }
}

variable "docker_fixed_cidr_v6" {
  description = "Docker fixed-cidr-v6 (dualstack)."
  type        = string
  default     = "2001:db8:1::/64"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9a-fA-F:]+:[0-9a-fA-F:]*/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$", var.docker_fixed_cidr_v6))
    error_message = "docker_fixed_cidr_v6 must be an IPv6 CIDR such as 2001:db8:1::/64."
  }
}

# Docker Registry Configuration
variable "ecr_access_policy" {
  description = "ECR access for the instance role; -pullthrough also allows pull-through cache imports."
  type        = string
  default     = "none"
  nullable    = false

  validation {
    condition     = contains(["none", "readonly", "readonly-pullthrough", "poweruser", "poweruser-pullthrough", "full"], var.ecr_access_policy)
    error_message = "ecr_access_policy must be none, readonly, readonly-pullthrough, poweruser, poweruser-pullthrough or full."
  }
}

# Plugins Configuration
variable "enable_secrets_plugin" {
  description = "Load secrets from the S3 secrets bucket for every job (creates a bucket if none is given)."
  type        = bool
  default     = true
  nullable    = false
}

variable "enable_ecr_plugin" {
  description = "Log in to ECR for every job."
  type        = bool
  default     = true
  nullable    = false
}

variable "enable_ecr_credential_helper" {
  description = "Use the ECR credential helper instead of docker login."
  type        = bool
  default     = false
  nullable    = false
}

variable "enable_docker_login_plugin" {
  description = "Run docker login with DOCKER_LOGIN_* credentials for every job."
  type        = bool
  default     = true
  nullable    = false
}


# Deprecated: variables of Buildkite's module that this one does not use. They stay so
# that a configuration written for that module still plans.

variable "buildkite_agent_scaler_serverless_arn" {
  description = "Deprecated and ignored. The original stack no longer used it either; the scaler is a Lambda function from a zip in S3 (scaler_lambda_s3_bucket)."
  type        = string
  default     = "arn:aws:serverlessrepo:us-east-1:172840064832:applications/buildkite-agent-scaler"
  nullable    = false

  validation {
    condition     = can(regex("^[^\\r\\n]*$", var.buildkite_agent_scaler_serverless_arn))
    error_message = "buildkite_agent_scaler_serverless_arn must be a single line, without line breaks."
  }
}

variable "secrets_bucket_encryption" {
  description = "Deprecated and ignored. The managed secrets bucket and its log bucket are always encrypted and refuse requests without TLS."
  type        = bool
  default     = false
  nullable    = false
}
