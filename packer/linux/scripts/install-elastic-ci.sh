#!/bin/bash
# The stack's own files: the instance binaries, the agent hooks, systemd units, sudo
# rule, CloudWatch agent and rsyslog configuration.
set -euo pipefail

upload=/tmp/elastic-ci
conf="$upload/conf"

for binary in elastic-ci-bootstrap elastic-ci-hooks; do
  install -o root -g root -m 0755 "$upload/dist/$binary" "/usr/local/bin/$binary"
done
/usr/local/bin/elastic-ci-bootstrap --help >/dev/null
/usr/local/bin/elastic-ci-hooks --help >/dev/null
install -o root -g root -m 0755 "$conf"/bin/* /usr/local/bin/

install -o root -g root -m 0755 "$conf"/buildkite-agent/hooks/* /etc/buildkite-agent/hooks/

# A broken sudoers file would break sudo altogether: check it before it is in place.
visudo -cf "$conf/sudoers/buildkite-agent"
install -o root -g root -m 0440 "$conf/sudoers/buildkite-agent" /etc/sudoers.d/buildkite-agent

(cd "$conf/systemd" && find . -type f) | while read -r unit; do
  install -o root -g root -m 0644 -D "$conf/systemd/$unit" "/etc/systemd/system/$unit"
done
install -o root -g root -m 0644 "$conf/rsyslog/30-elastic-ci.conf" /etc/rsyslog.d/30-elastic-ci.conf
install -o root -g root -m 0644 "$conf/cloudwatch-agent/amazon-cloudwatch-agent.json" \
  /opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json

systemctl daemon-reload
# The boot starts the agent once it is configured; the CloudWatch agent waits for the
# stack name (elastic-ci-cloudwatch-agent.path). The removal-notice listener runs from
# every boot on, warm-pool starts included.
systemctl disable amazon-cloudwatch-agent.service 2>/dev/null || true
systemctl enable elastic-ci-cloudwatch-agent.path
systemctl enable elastic-ci-watch.service
