# The Windows agent image: Windows Server 2022 with the Buildkite agent, Git for
# Windows, NSSM, OpenSSH, the CloudWatch agent configuration and the stack's own
# binaries and hooks. Build it with `cargo xtask ami --os windows`.
#
# The builder talks WinRM over HTTPS (a self-signed certificate made by the
# UserData below, for the build only); the image is generalised with EC2Launch v2's
# sysprep at the end, which also removes the build's WinRM listener and firewall rule.

source "amazon-ebs" "windows2022" {
  region              = var.region
  custom_endpoint_ec2 = var.ec2_endpoint
  ami_name            = var.ami_name
  ami_description     = "Buildkite Elastic CI Stack ${var.version}, Windows Server 2022 x86_64"
  ami_groups          = var.public ? ["all"] : []
  instance_type       = local.instance_type
  ena_support         = true
  imds_support        = "v2.0"

  source_ami_filter {
    filters = {
      name                = "Windows_Server-2022-English-Full-Base-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 50
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  communicator   = "winrm"
  winrm_username = "Administrator"
  winrm_use_ssl  = true
  winrm_insecure = true
  winrm_timeout  = "20m"
  user_data_file = "${path.root}/scripts/winrm-bootstrap.ps1"

  run_tags = {
    Name = "Packer Builder"
  }
  tags = {
    Name         = var.ami_name
    Version      = var.version
    OS           = "Windows Server 2022"
    Architecture = "x86_64"
  }

  aws_polling {
    delay_seconds = 15
    max_attempts  = 240
  }
}

build {
  sources = ["source.amazon-ebs.windows2022"]

  provisioner "powershell" {
    inline = ["New-Item -ItemType Directory -Force -Path ${local.upload_dir}/dist | Out-Null"]
  }

  provisioner "file" {
    source      = "${path.root}/conf"
    destination = local.upload_dir
  }

  provisioner "file" {
    sources     = ["${var.dist_dir}/elastic-ci-bootstrap.exe", "${var.dist_dir}/elastic-ci-hooks.exe"]
    destination = "${local.upload_dir}/dist/"
  }

  provisioner "powershell" {
    environment_vars = [
      "BUILDKITE_AGENT_URL=${var.buildkite_agent_url}",
      "BUILDKITE_AGENT_SHA256=${var.buildkite_agent_sha256}",
      "GIT_URL=${var.git_url}",
      "GIT_SHA256=${var.git_sha256}",
      "NSSM_URL=${var.nssm_url}",
      "NSSM_SHA256=${var.nssm_sha256}",
      "CLOUDWATCH_AGENT_URL=${var.cloudwatch_agent_url}",
      "CLOUDWATCH_AGENT_SHA256=${var.cloudwatch_agent_sha256}",
      "UPLOAD_DIR=${local.upload_dir}",
    ]
    scripts = [
      "${path.root}/scripts/install-downloads.ps1",
      "${path.root}/scripts/install-elastic-ci.ps1",
      "${path.root}/scripts/install-openssh.ps1",
    ]
  }

  provisioner "powershell" {
    scripts = ["${path.root}/scripts/sysprep.ps1"]
  }

  post-processor "manifest" {
    output     = var.manifest
    strip_path = true
    custom_data = {
      arch    = var.arch
      version = var.version
    }
  }
}
