#!/bin/bash
# Docker: the daemon configuration of the image (the boot adjusts it per stack), the
# agent user's membership, and the hourly garbage-collection timers.
set -euo pipefail

conf=/tmp/elastic-ci/conf

install -o root -g root -m 0644 -D "$conf/docker/daemon.json" /etc/docker/daemon.json
systemctl enable docker.service containerd.service
# Enabled (and so started at every boot by timers.target), not merely installed.
systemctl enable docker-gc.timer docker-low-disk-gc.timer
docker --version
docker compose version
docker buildx version
