#!/bin/bash
# Leaves nothing of the build behind in the image.
set -euo pipefail

rm -rf /tmp/elastic-ci
dnf clean all
rm -rf /var/cache/dnf
# Each instance gets its own host keys and cloud-init state on first boot.
rm -f /etc/ssh/ssh_host_*
cloud-init clean --logs
rm -f /root/.bash_history /home/ec2-user/.bash_history
