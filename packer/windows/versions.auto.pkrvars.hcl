# Third-party software baked into the Windows agent image: each file's version, URL
# and SHA-256 digest. Packer passes them to scripts/install-downloads.ps1, which
# refuses a file with another digest, or any file without one. The digests are
# written by `cargo xtask pin-downloads` on a machine that can reach the URLs.

buildkite_agent_version = "3.137.0"
buildkite_agent_url     = "https://github.com/buildkite/agent/releases/download/v3.137.0/buildkite-agent-windows-amd64-3.137.0.zip"
buildkite_agent_sha256  = ""

git_version = "2.47.1"
git_url     = "https://github.com/git-for-windows/git/releases/download/v2.47.1.windows.1/Git-2.47.1-64-bit.exe"
git_sha256  = ""

nssm_version = "2.24"
nssm_url     = "https://nssm.cc/release/nssm-2.24.zip"
nssm_sha256  = ""

cloudwatch_agent_url    = "https://amazoncloudwatch-agent.s3.amazonaws.com/windows/amd64/1.300049.1b929/amazon-cloudwatch-agent.msi"
cloudwatch_agent_sha256 = ""
