# Third-party software baked into the agent image, pinned by version and SHA-256 digest.
# To bump one: change the version, then record the digest of each architecture's file
# (`curl -fsSL URL | sha256sum`, URLs in scripts/install-downloads.sh). `cargo xtask ami`
# refuses to start a build while a digest for the requested architecture is missing.

buildkite_agent_version      = "3.137.0"
buildkite_agent_beta_version = "3.137.0"
docker_compose_version       = "2.29.7"
docker_buildx_version        = "0.17.1"

buildkite_agent_sha256 = {
  x86_64 = ""
  arm64  = ""
}

buildkite_agent_beta_sha256 = {
  x86_64 = ""
  arm64  = ""
}

docker_compose_sha256 = {
  x86_64 = ""
  arm64  = ""
}

docker_buildx_sha256 = {
  x86_64 = ""
  arm64  = ""
}
