# The stack's binaries and hooks, the CloudWatch agent configuration and the agent's
# directories. The hooks are the hooks binary itself under each hook's name (the
# agent runs an executable hook directly, and it changes the job's environment
# through the agent's job API), with the bootstrapper beside them for check-disk.
$ErrorActionPreference = 'Stop'
$dist = Join-Path $env:UPLOAD_DIR 'dist'
$conf = Join-Path $env:UPLOAD_DIR 'conf'
$bin = 'C:\buildkite-agent\bin'
$hooks = 'C:\buildkite-agent\hooks'
New-Item -ItemType Directory -Force -Path $bin, $hooks | Out-Null
Copy-Item (Join-Path $dist 'elastic-ci-bootstrap.exe') $bin
Copy-Item (Join-Path $dist 'elastic-ci-hooks.exe') $bin
foreach ($hook in 'environment', 'pre-command', 'pre-exit') {
  Copy-Item (Join-Path $dist 'elastic-ci-hooks.exe') (Join-Path $hooks "$hook.exe")
}
Copy-Item (Join-Path $dist 'elastic-ci-bootstrap.exe') $hooks
$cloudwatchConfig = 'C:\ProgramData\Amazon\AmazonCloudWatchAgent\amazon-cloudwatch-agent.json'
New-Item -ItemType Directory -Force -Path (Split-Path $cloudwatchConfig) | Out-Null
Copy-Item (Join-Path $conf 'cloudwatch-agent\amazon-cloudwatch-agent.json') $cloudwatchConfig
# Only SYSTEM and Administrators may change what the services and the agent run.
& icacls.exe 'C:\buildkite-agent' /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)(F)' '*S-1-5-32-544:(OI)(CI)(F)'
if ($LASTEXITCODE -ne 0) { throw "icacls exited with $LASTEXITCODE" }
[Environment]::SetEnvironmentVariable('Path', "$bin;" + [Environment]::GetEnvironmentVariable('Path', 'Machine'), 'Machine')
