# The agents' instances: launch template, Auto Scaling group, schedules, log groups.

resource "aws_launch_template" "agents" {
  name_prefix = "${var.stack_name}-agents-"
  #checkov:skip=CKV_AWS_341:Hop limit 2 lets containers on the Docker bridge use IMDSv2; jobs need the instance role's credentials.
  #checkov:skip=CKV_AWS_88:Public addresses are the associate_public_ip_address variable: the stack-built VPC has no NAT gateway.

  image_id      = local.image_id
  instance_type = local.instance_types[0]
  key_name      = var.key_name != "" ? var.key_name : null

  iam_instance_profile {
    arn = aws_iam_instance_profile.agents.arn
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = var.associate_public_ip_address
    security_groups             = local.create_security_group ? [aws_security_group.agents[0].id] : var.security_group_ids
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = var.imdsv2_tokens
    http_put_response_hop_limit = 2
    instance_metadata_tags      = "enabled"
  }

  monitoring {
    enabled = var.enable_detailed_monitoring
  }

  block_device_mappings {
    device_name = var.root_volume_name != "" ? var.root_volume_name : (local.use_ubuntu || local.use_windows ? "/dev/sda1" : "/dev/xvda")
    ebs {
      volume_size           = var.root_volume_size
      volume_type           = var.root_volume_type
      encrypted             = var.root_volume_encrypted
      delete_on_termination = var.root_volume_delete_on_termination
      iops                  = contains(["gp3", "io1", "io2"], var.root_volume_type) ? var.root_volume_iops : null
      throughput            = var.root_volume_type == "gp3" ? var.root_volume_throughput : null
    }
  }

  dynamic "credit_specification" {
    for_each = local.using_burstable ? [var.cpu_credits] : []
    content {
      cpu_credits = credit_specification.value
    }
  }

  dynamic "cpu_options" {
    for_each = var.nested_virtualization_enabled ? ["enabled"] : []
    content {
      nested_virtualization = cpu_options.value
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags = merge(local.common_tags, {
      Role                  = "buildkite-agent"
      Name                  = local.instance_name
      BuildkiteAgentRelease = var.buildkite_agent_release
      BuildkiteQueue        = var.buildkite_queue
    })
  }

  tag_specifications {
    resource_type = "volume"
    tags = merge(local.common_tags, {
      Name           = local.instance_name
      BuildkiteQueue = var.buildkite_queue
    })
  }

  user_data = base64encode(templatefile("${path.module}/${local.use_windows ? "user-data-windows.tftpl" : "user-data.tftpl"}", { inputs = local.boot_inputs }))
  tags      = local.common_tags

  depends_on = [terraform_data.validate]
}

resource "aws_autoscaling_group" "agents" {
  # The same name prefix as CloudFormation's generated names, which the IAM policies
  # scope to.
  name_prefix         = local.group_name_prefix
  vpc_zone_identifier = local.subnet_ids
  min_size            = var.min_size
  max_size            = var.max_size
  default_cooldown    = 60
  # Availability-zone rebalancing would terminate busy instances.
  suspended_processes       = ["AZRebalance"]
  termination_policies      = ["OldestLaunchTemplate", "ClosestToNextInstanceHour"]
  protect_from_scale_in     = var.instance_scale_in_protection
  metrics_granularity       = "1Minute"
  enabled_metrics           = ["GroupMinSize", "GroupMaxSize", "GroupInServiceInstances", "GroupTerminatingInstances", "GroupPendingInstances", "GroupDesiredCapacity"]
  wait_for_capacity_timeout = local.capacity_timeout
  # Graceful shutdown: when the group is replaced or destroyed, Terraform drops its
  # capacity to zero and waits for the instances, which are protected from scale-in and
  # terminate themselves once their agents are idle, instead of terminating them at once.
  force_delete = !var.buildkite_agent_enable_graceful_shutdown

  # Stopped instances that have run the whole boot up to the agent start: a scale-out
  # takes one and starts it, and the boot's resume phase refreshes the token and starts
  # the agents. min_size and max_group_prepared_capacity equal keep the pool at exactly
  # warm_pool_size whatever the desired capacity.
  dynamic "warm_pool" {
    for_each = var.warm_pool_size > 0 ? [1] : []
    content {
      pool_state                  = "Stopped"
      min_size                    = var.warm_pool_size
      max_group_prepared_capacity = var.warm_pool_size
    }
  }

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.on_demand_base_capacity
      on_demand_percentage_above_base_capacity = var.on_demand_percentage
      spot_allocation_strategy                 = var.spot_allocation_strategy
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.agents.id
        version            = aws_launch_template.agents.latest_version
      }

      dynamic "override" {
        for_each = local.instance_types
        content {
          instance_type = override.value
        }
      }
    }
  }

  tag {
    key                 = "BuildkiteQueue"
    value               = var.buildkite_queue
    propagate_at_launch = false
  }

  tag {
    key                 = "AgentsPerInstance"
    value               = tostring(var.agents_per_instance)
    propagate_at_launch = false
  }

  dynamic "tag" {
    for_each = local.common_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }

  timeouts {
    delete = var.buildkite_agent_enable_graceful_shutdown ? "60m" : "10m"
  }

  lifecycle {
    # A replacement group (its name comes from name_prefix) is created, and its
    # instances started, before the old one is deleted.
    create_before_destroy = true
    # The scaler owns the desired capacity. The hooks are the separate
    # aws_autoscaling_lifecycle_hook resources below: since AWS provider 5.26 any
    # change to initial_lifecycle_hook replaces the whole group (and its instances),
    # so the hooks that earlier versions of this module declared inline are left in
    # the state, where the separate resources of the same names take them over.
    ignore_changes = [desired_capacity, initial_lifecycle_hook]
  }
}

# Each instance's `elastic-ci-bootstrap watch` completes this hook once its jobs
# end. Unlike the template's inline hook, a separate resource is deleted before a group
# that Terraform replaces, so the old group's instances leave without it: the graceful
# shutdown (protection from scale-in, agents stopped after their job) is what drains
# them then.
resource "aws_autoscaling_lifecycle_hook" "drain" {
  count = var.enable_termination_hook ? 1 : 0

  name                   = "buildkite-agent-drain"
  autoscaling_group_name = aws_autoscaling_group.agents.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.termination_hook_heartbeat_timeout
  default_result         = "CONTINUE"
}

# With a warm pool: holds each new instance until its boot is done (Auto Scaling
# would otherwise stop an instance launched into the pool part-way through its boot);
# the boot completes it, CONTINUE or, when it failed, ABANDON. Its timeout is the
# boot's deadline. The pool's first instances may launch before the hook exists: a
# warm phase cut short by the stop runs again at the instance's next start.
resource "aws_autoscaling_lifecycle_hook" "launch" {
  count = var.warm_pool_size > 0 ? 1 : 0

  name                   = "buildkite-agent-launch"
  autoscaling_group_name = aws_autoscaling_group.agents.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_LAUNCHING"
  heartbeat_timeout      = 900
  default_result         = "ABANDON"
}

resource "aws_autoscaling_schedule" "scale_up" {
  count = var.enable_scheduled_scaling ? 1 : 0

  scheduled_action_name  = "${var.stack_name}-ScaleUp"
  autoscaling_group_name = aws_autoscaling_group.agents.name
  min_size               = var.scale_up_min_size
  max_size               = -1
  desired_capacity       = -1
  recurrence             = var.scale_up_schedule
  time_zone              = var.schedule_timezone
}

resource "aws_autoscaling_schedule" "scale_down" {
  count = var.enable_scheduled_scaling ? 1 : 0

  scheduled_action_name  = "${var.stack_name}-ScaleDown"
  autoscaling_group_name = aws_autoscaling_group.agents.name
  min_size               = var.scale_down_min_size
  max_size               = -1
  desired_capacity       = -1
  recurrence             = var.scale_down_schedule
  time_zone              = var.schedule_timezone
}

# The log groups the instances stream to, one stream per instance id.
resource "aws_cloudwatch_log_group" "instances" {
  for_each = toset(["buildkite-agent", "cloud-init", "cloud-init/output", "docker-daemon", "elastic-stack", "system", "auth"])
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts these logs at rest with its own keys; a customer key would add a key policy to manage.
  #checkov:skip=CKV_AWS_338:Retention follows enable_ec2_log_retention_policy, as in the original.

  name              = "/buildkite/${var.stack_name}/${each.key}"
  retention_in_days = local.log_retention_days
  tags              = local.common_tags
}
