# Third-party software baked into the agent image: each file's version, its URL and
# its SHA-256 digest per architecture. Packer passes the URL and digest of the
# image's architecture to scripts/install-downloads.sh, which refuses any other file.
# Written by `cargo xtask pin-downloads`: to bump one, change its version and run it.

buildkite_agent_version = "3.137.0"
buildkite_agent_url = {
  x86_64 = "https://github.com/buildkite/agent/releases/download/v3.137.0/buildkite-agent-linux-amd64-3.137.0.tar.gz"
  arm64  = "https://github.com/buildkite/agent/releases/download/v3.137.0/buildkite-agent-linux-arm64-3.137.0.tar.gz"
}
buildkite_agent_sha256 = {
  x86_64 = ""
  arm64  = ""
}

buildkite_agent_beta_version = "3.137.0"
buildkite_agent_beta_url = {
  x86_64 = "https://github.com/buildkite/agent/releases/download/v3.137.0/buildkite-agent-linux-amd64-3.137.0.tar.gz"
  arm64  = "https://github.com/buildkite/agent/releases/download/v3.137.0/buildkite-agent-linux-arm64-3.137.0.tar.gz"
}
buildkite_agent_beta_sha256 = {
  x86_64 = ""
  arm64  = ""
}

docker_compose_version = "2.29.7"
docker_compose_url = {
  x86_64 = "https://github.com/docker/compose/releases/download/v2.29.7/docker-compose-linux-x86_64"
  arm64  = "https://github.com/docker/compose/releases/download/v2.29.7/docker-compose-linux-aarch64"
}
docker_compose_sha256 = {
  x86_64 = ""
  arm64  = ""
}

docker_buildx_version = "0.17.1"
docker_buildx_url = {
  x86_64 = "https://github.com/docker/buildx/releases/download/v0.17.1/buildx-v0.17.1.linux-amd64"
  arm64  = "https://github.com/docker/buildx/releases/download/v0.17.1/buildx-v0.17.1.linux-arm64"
}
docker_buildx_sha256 = {
  x86_64 = ""
  arm64  = ""
}
