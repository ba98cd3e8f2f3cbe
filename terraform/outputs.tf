# The template's outputs, plus what Terraform users reference.

output "vpc_id" {
  description = "The stack-built VPC, or vpc_id."
  value       = local.vpc_id
}

output "managed_secrets_bucket" {
  description = "The secrets bucket the module created, or null."
  value       = local.create_secrets_bucket ? aws_s3_bucket.managed_secrets[0].bucket : null
}

output "managed_secrets_logging_bucket" {
  description = "The access-log bucket of the created secrets bucket, or null."
  value       = local.create_secrets_bucket ? aws_s3_bucket.managed_secrets_logging[0].bucket : null
}

output "pipeline_signing_kms_key" {
  description = "The pipeline signing key the module created, or null."
  value       = local.create_signing_key ? aws_kms_key.pipeline_signing[0].key_id : null
}

output "auto_scaling_group_name" {
  description = "The agents' Auto Scaling group."
  value       = aws_autoscaling_group.agents.name
}

output "instance_role_name" {
  description = "The instances' role: the created one, or the last segment of instance_role_arn."
  value       = local.instance_role_name
}

output "auto_scaling_group_arn" {
  description = "The agents' Auto Scaling group's ARN."
  value       = aws_autoscaling_group.agents.arn
}

output "launch_template_id" {
  description = "The agents' launch template."
  value       = aws_launch_template.agents.id
}

output "agent_token_parameter" {
  description = "The SSM parameter holding the agent token."
  value       = local.token_parameter_name
}

output "scaler_function_name" {
  description = "The scaler Lambda function, or null when min_size equals max_size."
  value       = local.has_variable_size ? aws_lambda_function.scaler[0].function_name : null
}

output "scaler_log_group" {
  description = "The scaler's log group, or null when min_size equals max_size."
  value       = local.has_variable_size ? aws_cloudwatch_log_group.scaler[0].name : null
}
