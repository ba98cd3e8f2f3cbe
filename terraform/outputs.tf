# The template's outputs, in snake_case (a test in xtask keeps the two in step), plus
# auto_scaling_group_arn, which CloudFormation cannot give. The template's
# StackHelperLogGroup has no counterpart: the module needs no helper functions.

output "vpc_id" {
  description = "The instances' VPC, the one the module built or vpc_id."
  value       = local.vpc_id
}

output "managed_secrets_bucket" {
  description = "The secrets bucket the module created, or null."
  value       = local.create_secrets_bucket ? aws_s3_bucket.managed_secrets[0].bucket : null
}

output "managed_secrets_logging_bucket" {
  description = "The access-log bucket of the secrets bucket the module created, or null."
  value       = local.create_secrets_bucket ? aws_s3_bucket.managed_secrets_logging[0].bucket : null
}

output "pipeline_signing_kms_key" {
  description = "The pipeline signing KMS key the module created, or null."
  value       = local.create_signing_key ? aws_kms_key.pipeline_signing[0].key_id : null
}

output "auto_scaling_group_name" {
  description = "The agents' Auto Scaling group."
  value       = aws_autoscaling_group.agents.name
}

output "auto_scaling_group_arn" {
  description = "The ARN of the agents' Auto Scaling group."
  value       = aws_autoscaling_group.agents.arn
}

output "launch_template_id" {
  description = "The agents' launch template."
  value       = aws_launch_template.agents.id
}

output "security_group_id" {
  description = "The agents' security group, when the module created it (without security_group_ids), or null."
  value       = local.create_security_group ? aws_security_group.agents[0].id : null
}

output "instance_role_name" {
  description = "The instances' role, the one the module created or the role of instance_role_arn."
  value       = local.instance_role_name
}

output "instance_role_arn" {
  description = "The ARN of the instances' role."
  value       = local.create_iam_role ? aws_iam_role.instance[0].arn : var.instance_role_arn
}

output "agent_token_parameter" {
  description = "The SSM parameter holding the agent token, by name (or the ARN given)."
  value       = local.token_parameter_name
}

output "instance_log_groups" {
  description = "The log groups the instances stream to (one stream per instance id)."
  value       = [for group in aws_cloudwatch_log_group.instances : group.name]
}

output "scaler_function_name" {
  description = "The scaler Lambda function, or null when min_size equals max_size."
  value       = local.has_variable_size ? aws_lambda_function.scaler[0].function_name : null
}

output "scaler_log_group" {
  description = "The scaler's log group, or null when min_size equals max_size."
  value       = local.has_variable_size ? aws_cloudwatch_log_group.scaler[0].name : null
}

output "stack_name" {
  description = "The stack's name, which names its log groups (/buildkite/<stack name>/...) and its monitoring metrics' namespace (ElasticCIStack/<stack name>)."
  value       = var.stack_name
}

output "subnet_ids" {
  description = "The instances' subnets, the ones the module built or subnets."
  value       = local.subnet_ids
}

output "scaler_schedule_rule" {
  description = "The EventBridge rule that runs the scaler, or null when min_size equals max_size; elastic-ci pause disables it."
  value       = local.has_variable_size ? aws_cloudwatch_event_rule.scaler[0].name : null
}

output "scaler_job_event_rule" {
  description = "The rule on the Buildkite partner event bus that runs the scaler on Job Scheduled events, as BUS|NAME, or null without scaler_event_bus_name; elastic-ci pause disables it."
  value       = local.scale_on_job_events ? "${var.scaler_event_bus_name}|${aws_cloudwatch_event_rule.job_scheduled[0].name}" : null
}

output "dashboard_name" {
  description = "The stack's CloudWatch dashboard (queue, capacity, scaler polls and errors, failed boots, alarms, decisions)."
  value       = aws_cloudwatch_dashboard.stack.dashboard_name
}

output "dashboard_url" {
  description = "The stack's CloudWatch dashboard in the console."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards:name=${aws_cloudwatch_dashboard.stack.dashboard_name}"
}
