# The smallest useful stack: a queue, a token and an AMI, in a VPC the module builds.
# Scales between 0 and 10 instances of t3.large.

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
  # An AMI built by `cargo xtask ami` in this region.
  image_id = "ami-0123456789abcdef0"
}

output "auto_scaling_group_name" {
  value = module.buildkite_stack.auto_scaling_group_name
}
