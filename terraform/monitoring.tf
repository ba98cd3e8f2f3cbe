# Monitoring, as in the template: the scaler's per-poll log lines and the
# bootstrapper's failure line become metrics (metric filters), which the alarms and the
# dashboard read beside the queue metrics the scaler publishes (namespace Buildkite,
# dimensions Org and Queue) and the group's own metrics. dashboard.json.tftpl is the
# template's DashboardBody; a test renders both and compares them.

locals {
  monitoring_namespace = "ElasticCIStack/${var.stack_name}"
  alarm_actions        = var.alarm_topic_arn == "" ? [] : [var.alarm_topic_arn]
}

resource "aws_cloudwatch_log_metric_filter" "successful_polls" {
  count = local.has_variable_size ? 1 : 0

  name           = "${var.stack_name}-successful-polls"
  log_group_name = aws_cloudwatch_log_group.scaler[0].name
  pattern        = "{ $.target = \"elastic_ci_scaler::poll\" && $.message = \"poll\" }"

  metric_transformation {
    namespace = local.monitoring_namespace
    name      = "SuccessfulPolls"
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_cloudwatch_log_metric_filter" "poll_errors" {
  count = local.has_variable_size ? 1 : 0

  name           = "${var.stack_name}-poll-errors"
  log_group_name = aws_cloudwatch_log_group.scaler[0].name
  pattern        = "{ $.target = \"elastic_ci_scaler::poll\" && $.message = \"poll failed\" }"

  metric_transformation {
    namespace = local.monitoring_namespace
    name      = "PollErrors"
    value     = "1"
    unit      = "Count"
  }
}

# The bootstrapper's failure path (the instance marked Unhealthy, a FAILURE signal) logs
# one ERROR line "boot failed" to /var/log/elastic-stack.log, which the image's
# CloudWatch agent ships to this group.
resource "aws_cloudwatch_log_metric_filter" "boot_failures" {
  name           = "${var.stack_name}-boot-failures"
  log_group_name = aws_cloudwatch_log_group.instances["elastic-stack"].name
  pattern        = "\"ERROR boot failed\""

  metric_transformation {
    namespace = local.monitoring_namespace
    name      = "BootFailures"
    value     = "1"
    unit      = "Count"
  }
}

# No log line, no data: a scaler that does not run (paused, failing to start, timing
# out) breaches as surely as one whose polls fail.
resource "aws_cloudwatch_metric_alarm" "scaler_not_polling" {
  count = local.has_variable_size ? 1 : 0

  alarm_name          = "${var.stack_name}-scaler-not-polling"
  alarm_description   = "No successful scaler poll for 10 minutes (paused, failing or not running): jobs on queue ${var.buildkite_queue} get no new instances. Run elastic-ci why --terraform-output FILE."
  namespace           = local.monitoring_namespace
  metric_name         = "SuccessfulPolls"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 10
  datapoints_to_alarm = 10
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.common_tags

  depends_on = [aws_cloudwatch_log_metric_filter.successful_polls]
}

# The share of polls that failed, in percent, per 5 minutes; no polls at all is the
# other alarm's case.
resource "aws_cloudwatch_metric_alarm" "scaler_errors" {
  count = local.has_variable_size ? 1 : 0

  alarm_name          = "${var.stack_name}-scaler-errors"
  alarm_description   = "Half or more of the scaler's polls failed in 10 of the last 15 minutes (Buildkite refusing the agent token, throttling, AWS errors). Run elastic-ci decisions --terraform-output FILE."
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  threshold           = 50
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.common_tags

  metric_query {
    id          = "failed"
    return_data = false
    metric {
      namespace   = local.monitoring_namespace
      metric_name = "PollErrors"
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id          = "succeeded"
    return_data = false
    metric {
      namespace   = local.monitoring_namespace
      metric_name = "SuccessfulPolls"
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id          = "rate"
    label       = "failed polls (%)"
    return_data = true
    expression  = "100 * FILL(failed, 0) / (FILL(failed, 0) + FILL(succeeded, 0))"
  }

  depends_on = [aws_cloudwatch_log_metric_filter.successful_polls, aws_cloudwatch_log_metric_filter.poll_errors]
}

resource "aws_cloudwatch_metric_alarm" "boot_failures" {
  alarm_name          = "${var.stack_name}-boot-failures"
  alarm_description   = "An instance failed to boot in the last 5 minutes (marked Unhealthy and replaced). Run elastic-ci logs --terraform-output FILE --source elastic-stack."
  namespace           = local.monitoring_namespace
  metric_name         = "BootFailures"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.common_tags

  depends_on = [aws_cloudwatch_log_metric_filter.boot_failures]
}

# Named with the region: dashboard names are global to the account, stack names only to
# a region.
resource "aws_cloudwatch_dashboard" "stack" {
  dashboard_name = "${var.stack_name}-${local.region}"
  dashboard_body = templatefile("${path.module}/dashboard.json.tftpl", {
    stack_name = var.stack_name
    region     = local.region
    partition  = local.partition
    account_id = local.account_id
    queue      = var.buildkite_queue
    group_name = aws_autoscaling_group.agents.name
  })
}

# Saved CloudWatch Logs Insights queries over the scaler's per-poll lines, in the
# console's query library under the stack's name.
resource "aws_cloudwatch_query_definition" "decisions" {
  count = local.has_variable_size ? 1 : 0

  name            = "elastic-ci/${var.stack_name}/scaler decisions"
  log_group_names = [aws_cloudwatch_log_group.scaler[0].name]
  query_string    = <<-EOT
    fields @timestamp, scheduled_jobs, running_jobs, waiting_jobs, total_agents, desired_capacity, target_capacity, reason, error
    | filter target = "elastic_ci_scaler::poll"
    | sort @timestamp desc
    | limit 200
  EOT
}

resource "aws_cloudwatch_query_definition" "scale_changes" {
  count = local.has_variable_size ? 1 : 0

  name            = "elastic-ci/${var.stack_name}/scaler capacity changes"
  log_group_names = [aws_cloudwatch_log_group.scaler[0].name]
  query_string    = <<-EOT
    fields @timestamp, desired_capacity, target_capacity, direction, applied, reason
    | filter target = "elastic_ci_scaler::poll" and ispresent(target_capacity)
    | sort @timestamp desc
    | limit 200
  EOT
}

resource "aws_cloudwatch_query_definition" "poll_errors" {
  count = local.has_variable_size ? 1 : 0

  name            = "elastic-ci/${var.stack_name}/scaler errors"
  log_group_names = [aws_cloudwatch_log_group.scaler[0].name]
  query_string    = <<-EOT
    fields @timestamp, error_type, error
    | filter target = "elastic_ci_scaler::poll" and ispresent(error)
    | stats count(*) as polls by error_type, bin(1h)
  EOT
}
