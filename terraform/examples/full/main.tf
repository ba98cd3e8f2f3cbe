# A production-shaped stack: an existing VPC, a token already in SSM, Graviton
# instances with some Spot capacity, signed pipelines, ECR access, private artifacts,
# scheduled scaling, a bootstrap script and an agent environment file from S3 and SSM,
# and graceful termination.

terraform {
  required_version = ">= 1.5.0"
}

provider "aws" {
  region = "eu-west-1"
}

module "buildkite_stack" {
  source = "../.."

  stack_name = "buildkite-arm"
  tags       = { Team = "platform" }

  buildkite_queue                            = "arm64"
  buildkite_agent_token_parameter_store_path = "/ci/buildkite/agent-token"
  buildkite_agent_tags                       = "team=platform,os=linux"
  buildkite_agent_release                    = "stable"
  buildkite_agent_enable_git_mirrors         = true
  git_mirror_seed_bucket                     = "my-ci-git-mirrors"
  buildkite_agent_enable_graceful_shutdown   = true

  pipeline_signing_kms_key_spec  = "ECC_NIST_P256"
  pipeline_signing_kms_access    = "sign-and-verify"
  buildkite_agent_signing_key_id = ""

  vpc_id                      = "vpc-0123456789abcdef0"
  subnets                     = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  associate_public_ip_address = false

  image_id_parameter      = "/ci/buildkite/ami"
  instance_types          = "m7g.large,c7g.large,m6g.large"
  on_demand_base_capacity = 1
  on_demand_percentage    = 25
  agents_per_instance     = 2
  root_volume_size        = 100
  root_volume_encrypted   = true
  enable_instance_storage = false
  imdsv2_tokens           = "required"

  min_size                 = 0
  max_size                 = 40
  instance_buffer          = 1
  scale_in_idle_period     = 900
  enable_scheduled_scaling = true
  schedule_timezone        = "Europe/London"
  scale_up_schedule        = "0 8 * * MON-FRI"
  scale_up_min_size        = 2
  scale_down_schedule      = "0 19 * * MON-FRI"
  scale_down_min_size      = 0
  lambda_architecture      = "arm64"
  log_retention_days       = 14

  ecr_access_policy           = "readonly-pullthrough"
  artifacts_bucket            = "my-ci-artifacts"
  bootstrap_script_url        = "s3://my-ci-config/bootstrap.sh"
  agent_env_file_url          = "ssm:/ci/buildkite/agent-env"
  managed_policy_arns         = ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
  enable_cost_allocation_tags = true
  cost_allocation_tag_name    = "CostCentre"
  cost_allocation_tag_value   = "ci"

  enable_ec2_log_retention_policy = true
  ec2_log_retention_days          = 30
}

output "auto_scaling_group_name" {
  value = module.buildkite_stack.auto_scaling_group_name
}

output "instance_role_name" {
  value = module.buildkite_stack.instance_role_name
}

# Every output of the module, for `elastic-ci --terraform-output` (`terraform output
# -json > out.json`).
output "elastic_ci" {
  value = module.buildkite_stack
}
