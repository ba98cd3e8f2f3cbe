# Addresses of Buildkite's Terraform module (v0.10) that this module names differently, so
# that a configuration switching its `source` to this module keeps the state of these
# resources instead of destroying and creating them. Terraform still replaces those
# whose names differ (see the module's README), but keeps the rest in place.

moved {
  from = aws_launch_template.agent_launch_template
  to   = aws_launch_template.agents
}

moved {
  from = aws_autoscaling_group.agent_auto_scale_group
  to   = aws_autoscaling_group.agents
}

moved {
  from = aws_autoscaling_schedule.scheduled_scale_up_action
  to   = aws_autoscaling_schedule.scale_up
}

moved {
  from = aws_autoscaling_schedule.scheduled_scale_down_action
  to   = aws_autoscaling_schedule.scale_down
}

moved {
  from = aws_iam_instance_profile.iam_instance_profile
  to   = aws_iam_instance_profile.agents
}

moved {
  from = aws_iam_role.iam_role
  to   = aws_iam_role.instance[0]
}

moved {
  from = aws_iam_role_policy.buildkite_agent_policy
  to   = aws_iam_role_policy.instance[0]
}

moved {
  from = aws_s3_bucket.managed_secrets_bucket
  to   = aws_s3_bucket.managed_secrets
}

moved {
  from = aws_s3_bucket.managed_secrets_logging_bucket
  to   = aws_s3_bucket.managed_secrets_logging
}

moved {
  from = aws_s3_bucket_versioning.managed_secrets_bucket_versioning
  to   = aws_s3_bucket_versioning.managed_secrets
}

moved {
  from = aws_s3_bucket_logging.managed_secrets_bucket_logging
  to   = aws_s3_bucket_logging.managed_secrets
}

moved {
  from = aws_s3_bucket_policy.managed_secrets_bucket_policy
  to   = aws_s3_bucket_policy.managed_secrets
}

moved {
  from = aws_s3_bucket_policy.managed_secrets_logging_bucket_policy
  to   = aws_s3_bucket_policy.managed_secrets_logging
}

moved {
  from = aws_ssm_parameter.buildkite_agent_token_parameter
  to   = aws_ssm_parameter.agent_token
}
