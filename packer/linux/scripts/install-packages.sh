#!/bin/bash
# Packages from the Amazon Linux 2023 repositories (signed, checked by dnf).
set -euo pipefail

dnf upgrade -y --refresh
dnf install -y \
  amazon-cloudwatch-agent \
  amazon-ecr-credential-helper \
  docker \
  git \
  git-lfs \
  jq \
  mdadm \
  nvme-cli \
  pigz \
  rsyslog \
  unzip \
  zip
# The SSM agent ships with the image; Session Manager and the scaler's SSM commands need it.
systemctl enable amazon-ssm-agent rsyslog
