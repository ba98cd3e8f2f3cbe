#!/bin/bash
# Software that is not in the distribution's repositories. Every URL and SHA-256 digest
# comes from versions.auto.pkrvars.hcl (written by `cargo xtask pin-downloads`) through
# the variables Packer passes; each file is checked against its digest before it is
# installed.
set -euo pipefail

: "${ARCH:?}"
: "${BUILDKITE_AGENT_URL:?}" "${BUILDKITE_AGENT_BETA_URL:?}"
: "${DOCKER_COMPOSE_URL:?}" "${DOCKER_BUILDX_URL:?}"

case "$ARCH" in
  x86_64 | arm64) ;;
  *) echo "unsupported ARCH $ARCH: expected x86_64 or arm64" >&2; exit 1 ;;
esac
[[ "$(uname -m)" == "${ARCH/arm64/aarch64}" ]] || { echo "ARCH $ARCH does not match this machine ($(uname -m))" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fetch URL SHA256 DEST: downloads over HTTPS only and fails unless the digest matches.
fetch() {
  local url="$1" digest="$2" dest="$3"
  if [[ ! "$digest" =~ ^[0-9a-f]{64}$ ]]; then
    echo "no SHA-256 digest pinned for $url (run cargo xtask pin-downloads)" >&2
    exit 1
  fi
  curl --fail --silent --show-error --location --proto '=https' --retry 3 --output "$dest" "$url"
  echo "$digest  $dest" | sha256sum --check --strict --quiet -
}

# The agent, one binary per release channel; the boot links /usr/bin/buildkite-agent.
for channel in stable beta; do
  if [[ "$channel" == stable ]]; then
    url="$BUILDKITE_AGENT_URL" digest="${BUILDKITE_AGENT_SHA256:-}"
  else
    url="$BUILDKITE_AGENT_BETA_URL" digest="${BUILDKITE_AGENT_BETA_SHA256:-}"
  fi
  archive="$work/agent-$channel.tar.gz"
  fetch "$url" "$digest" "$archive"
  mkdir "$work/$channel"
  tar -xzf "$archive" -C "$work/$channel"
  install -o root -g root -m 0755 "$work/$channel/buildkite-agent" "/usr/bin/buildkite-agent-$channel"
done
ln -sf /usr/bin/buildkite-agent-stable /usr/bin/buildkite-agent

plugins=/usr/libexec/docker/cli-plugins
mkdir -p "$plugins"
fetch "$DOCKER_COMPOSE_URL" "${DOCKER_COMPOSE_SHA256:-}" "$work/docker-compose"
install -o root -g root -m 0755 "$work/docker-compose" "$plugins/docker-compose"
fetch "$DOCKER_BUILDX_URL" "${DOCKER_BUILDX_SHA256:-}" "$work/docker-buildx"
install -o root -g root -m 0755 "$work/docker-buildx" "$plugins/docker-buildx"
ln -sf "$plugins/docker-compose" /usr/bin/docker-compose
