# The scaler: the release's Lambda zip, run on a schedule, only when the group can
# change size.

locals {
  scaler_s3_bucket = var.scaler_lambda_s3_bucket != "" ? var.scaler_lambda_s3_bucket : "${local.lambda_bucket_prefix}-${local.region}"
  scaler_s3_key    = var.scaler_lambda_s3_key != "" ? var.scaler_lambda_s3_key : "elastic-ci-scaler/${local.stack_version}/elastic-ci-scaler-${var.lambda_architecture}.zip"

  scaler_environment = {
    BUILDKITE_QUEUE                       = var.buildkite_queue
    ASG_NAME                              = aws_autoscaling_group.agents.name
    AGENTS_PER_INSTANCE                   = tostring(var.agents_per_instance)
    BUILDKITE_AGENT_TOKEN_SSM_KEY         = local.token_parameter_name
    BUILDKITE_AGENT_ENDPOINT              = var.agent_endpoint
    LAMBDA_INTERVAL                       = var.scaler_min_poll_interval
    LAMBDA_TIMEOUT                        = "50s"
    LAMBDA_STARTUP_JITTER_MAX             = var.scaler_event_schedule_jitter
    MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES = "-1"
    SCALE_OUT_FACTOR                      = tostring(var.scale_out_factor)
    SCALE_OUT_COOLDOWN_PERIOD             = "${var.scale_out_cooldown_period}s"
    SCALE_IN_COOLDOWN_PERIOD              = "${var.scale_in_cooldown_period}s"
    SCALER_MODE                           = var.scaler_mode
    INCLUDE_WAITING                       = tostring(var.scale_out_for_waiting_jobs)
    INSTANCE_BUFFER                       = tostring(var.instance_buffer)
    AVAILABILITY_THRESHOLD                = "0.5"
    DISABLE_SCALE_IN                      = tostring(var.disable_scale_in)
    CLOUDWATCH_METRICS                    = "true"
    ELASTIC_CI_MODE                       = tostring(var.scaler_enable_experimental_elastic_ci_mode)
    MAX_DANGLING_INSTANCES_TO_CHECK       = "5"
  }
}

resource "aws_cloudwatch_log_group" "scaler" {
  count = local.has_variable_size ? 1 : 0
  #checkov:skip=CKV_AWS_158:The scaler's logs hold no secrets, and CloudWatch Logs encrypts them at rest with its own keys.
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days, one day by default as in the original.

  name              = "/buildkite/${var.stack_name}/scaler"
  retention_in_days = var.log_retention_days
  tags              = local.common_tags
}

resource "aws_iam_role" "scaler" {
  count = local.has_variable_size ? 1 : 0

  name_prefix          = "${var.stack_name}-scaler-"
  permissions_boundary = var.instance_role_permissions_boundary_arn != "" ? var.instance_role_permissions_boundary_arn : null
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "lambda.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = local.common_tags
}

resource "aws_iam_role_policy_attachment" "scaler_managed" {
  for_each = local.has_variable_size ? toset(var.scaler_managed_policy_arns) : toset([])

  role       = aws_iam_role.scaler[0].name
  policy_arn = each.key
}

resource "aws_iam_role_policy" "scaler" {
  count = local.has_variable_size ? 1 : 0

  name = "AutoScalingGroups"
  role = aws_iam_role.scaler[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Effect   = "Allow"
          Action   = ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities"]
          Resource = "*"
        },
        {
          Effect   = "Allow"
          Action   = "autoscaling:SetDesiredCapacity"
          Resource = local.group_arn_pattern
        },
        {
          Sid      = "ReadAgentToken"
          Effect   = "Allow"
          Action   = "ssm:GetParameter"
          Resource = local.token_parameter_arn
        },
        {
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "${aws_cloudwatch_log_group.scaler[0].arn}:*"
        },
      ],
      var.buildkite_agent_token_parameter_store_kms_key == "" ? [] : [{
        Effect   = "Allow"
        Action   = "kms:Decrypt"
        Resource = local.token_key_arn
      }],
    )
  })
}

resource "aws_lambda_function" "scaler" {
  count = local.has_variable_size ? 1 : 0
  #checkov:skip=CKV_AWS_116:Scheduled every minute; a failed run is simply retried by the next one.
  #checkov:skip=CKV_AWS_117:Talks to the Buildkite API and AWS APIs; a VPC would need NAT for no gain.
  #checkov:skip=CKV_AWS_173:The environment holds names and numbers only; the token is read from SSM.
  #checkov:skip=CKV_AWS_50:X-Ray tracing is not needed for a one-minute poll loop; its logs say what it did.
  #checkov:skip=CKV_AWS_272:The code comes from the release bucket; code signing is the user's choice.

  function_name = "${var.stack_name}-scaler"
  description   = "Scales the Buildkite agents' Auto Scaling group to the queue's jobs"
  role          = aws_iam_role.scaler[0].arn
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.lambda_architecture]
  memory_size   = 128
  timeout       = 120
  # One scheduled run at a time: two overlapping runs would each decide from the same
  # counts. A scheduled run that arrives while another is still going is throttled, and
  # Lambda retries it after that one ends. Job events get a second execution
  # environment, so they are not queued behind the scheduled run's polling loop; both
  # write absolute capacities computed from fresh counts, so an overlap repeats a value
  # rather than adding to it.
  reserved_concurrent_executions = local.scale_on_job_events ? 2 : 1
  s3_bucket                      = local.scaler_s3_bucket
  s3_key                         = local.scaler_s3_key
  tags                           = local.common_tags

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.scaler[0].name
  }

  environment {
    variables = local.scaler_environment
  }
}

resource "aws_cloudwatch_event_rule" "scaler" {
  count = local.has_variable_size ? 1 : 0

  name                = "${var.stack_name}-scaler"
  description         = "Runs the Buildkite agent scaler"
  schedule_expression = "rate(${var.scaler_event_schedule_period})"
  tags                = local.common_tags
}

resource "aws_cloudwatch_event_target" "scaler" {
  count = local.has_variable_size ? 1 : 0

  rule = aws_cloudwatch_event_rule.scaler[0].name
  arn  = aws_lambda_function.scaler[0].arn
}

resource "aws_lambda_permission" "scaler" {
  count = local.has_variable_size ? 1 : 0

  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.scaler[0].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.scaler[0].arn
}

# Buildkite's EventBridge integration: a job of this queue scheduled runs the scaler at
# once, instead of at the next scheduled poll. The scaler polls the metrics as for the
# schedule, at most once per poll interval however many events arrive, and the decision
# and cooldowns are the same.
resource "aws_cloudwatch_event_rule" "job_scheduled" {
  count = local.scale_on_job_events ? 1 : 0

  name           = "${var.stack_name}-job-scheduled"
  description    = "Runs the Buildkite agent scaler when a job of its queue is scheduled"
  event_bus_name = var.scaler_event_bus_name
  event_pattern = jsonencode({
    source        = [{ prefix = "aws.partner/buildkite.com/" }]
    "detail-type" = ["Job Scheduled"]
    detail        = { job = { agent_query_rules = ["queue=${var.buildkite_queue}"] } }
  })
  tags = local.common_tags
}

resource "aws_cloudwatch_event_target" "job_scheduled" {
  count = local.scale_on_job_events ? 1 : 0

  rule           = aws_cloudwatch_event_rule.job_scheduled[0].name
  event_bus_name = var.scaler_event_bus_name
  arn            = aws_lambda_function.scaler[0].arn
}

resource "aws_lambda_permission" "job_scheduled" {
  count = local.scale_on_job_events ? 1 : 0

  statement_id  = "AllowBuildkiteJobEvents"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.scaler[0].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.job_scheduled[0].arn
}
