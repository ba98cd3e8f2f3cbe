#!/bin/bash
# The agent user and its directories; the boot writes the agent's configuration.
set -euo pipefail

groupadd --gid 2000 buildkite-agent
useradd --uid 2000 --gid 2000 --groups docker --home-dir /var/lib/buildkite-agent \
  --create-home --shell /bin/bash buildkite-agent

home=/var/lib/buildkite-agent
install -d -o buildkite-agent -g buildkite-agent -m 0755 \
  "$home/builds" "$home/git-mirrors" "$home/plugins" "$home/.aws"
printf '[default]\ncli_pager=\n' >"$home/.aws/config"
chown buildkite-agent:buildkite-agent "$home/.aws/config"

# Root owns the configuration and the hooks: a job must not be able to change what
# later jobs of other pipelines run.
install -d -o root -g root -m 0755 /etc/buildkite-agent /etc/buildkite-agent/hooks
