# The smallest useful stack: a queue and a token, in a VPC the module builds. Scales
# between 0 and 10 instances of t3.large. The released module (terraform-module.tar.gz)
# carries its release's AMIs; a module used from a source checkout has none, so set
# image_id there.

terraform {
  required_version = ">= 1.5.0"
}

provider "aws" {
  region = "us-east-1"
}

variable "buildkite_agent_token" {
  description = "The Buildkite agent token."
  type        = string
  sensitive   = true
}

module "buildkite_stack" {
  source = "../.."

  stack_name            = "buildkite"
  buildkite_queue       = "default"
  buildkite_agent_token = var.buildkite_agent_token
}

output "auto_scaling_group_name" {
  value = module.buildkite_stack.auto_scaling_group_name
}

# Every output of the module, for `elastic-ci --terraform-output` (`terraform output
# -json > out.json`).
output "elastic_ci" {
  value = module.buildkite_stack
}
