# The agent image: Amazon Linux 2023 with the Buildkite agent, Docker, the CloudWatch
# agent and the stack's own binaries, units and hooks. Build it with `cargo xtask ami`.

source "amazon-ebs" "al2023" {
  region              = var.region
  custom_endpoint_ec2 = var.ec2_endpoint
  ami_name            = var.ami_name
  ami_description     = "Buildkite Elastic CI Stack ${var.version}, Amazon Linux 2023 ${var.arch}"
  ami_groups          = var.public ? ["all"] : []
  instance_type       = local.instance_type
  ena_support         = true
  # Instances launched from the image answer metadata requests with IMDSv2 tokens only.
  imds_support = "v2.0"
  encrypt_boot = var.encrypt_boot
  kms_key_id   = var.kms_key_id

  source_ami_filter {
    filters = {
      name                = "al2023-ami-2023.*-kernel-6.1-${var.arch}"
      architecture        = var.arch
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 10
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  ssh_username = "ec2-user"

  run_tags = {
    Name = "Packer Builder"
  }
  tags = {
    Name         = var.ami_name
    Version      = var.version
    OS           = "Amazon Linux 2023"
    Architecture = var.arch
  }

  # Copies and large snapshots can take a while to become available.
  aws_polling {
    delay_seconds = 15
    max_attempts  = 240
  }
}

build {
  sources = ["source.amazon-ebs.al2023"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.upload_dir}/dist"]
  }

  provisioner "file" {
    source      = "${path.root}/conf"
    destination = local.upload_dir
  }

  provisioner "file" {
    sources     = ["${var.dist_dir}/elastic-ci-bootstrap", "${var.dist_dir}/elastic-ci-hooks"]
    destination = "${local.upload_dir}/dist/"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "ARCH=${var.arch}",
      "BUILDKITE_AGENT_URL=${var.buildkite_agent_url[var.arch]}",
      "BUILDKITE_AGENT_SHA256=${var.buildkite_agent_sha256[var.arch]}",
      "BUILDKITE_AGENT_BETA_URL=${var.buildkite_agent_beta_url[var.arch]}",
      "BUILDKITE_AGENT_BETA_SHA256=${var.buildkite_agent_beta_sha256[var.arch]}",
      "DOCKER_COMPOSE_URL=${var.docker_compose_url[var.arch]}",
      "DOCKER_COMPOSE_SHA256=${var.docker_compose_sha256[var.arch]}",
      "DOCKER_BUILDX_URL=${var.docker_buildx_url[var.arch]}",
      "DOCKER_BUILDX_SHA256=${var.docker_buildx_sha256[var.arch]}",
    ]
    scripts = [
      "${path.root}/scripts/install-packages.sh",
      "${path.root}/scripts/install-downloads.sh",
      "${path.root}/scripts/install-buildkite-agent.sh",
      "${path.root}/scripts/install-elastic-ci.sh",
      "${path.root}/scripts/configure-docker.sh",
      "${path.root}/scripts/cleanup.sh",
    ]
  }

  # The AMI ids by region, for `cargo xtask ami` (which records them in the mappings
  # that `cargo xtask template` renders into the template).
  post-processor "manifest" {
    output     = var.manifest
    strip_path = true
    custom_data = {
      arch    = var.arch
      version = var.version
    }
  }
}
