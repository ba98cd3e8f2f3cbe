# Downloads every pinned file, refuses any whose SHA-256 digest differs from the pin
# (or that has no pin), and installs the agent, Git for Windows, NSSM and the
# CloudWatch agent.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

function Get-Pinned([string] $Url, [string] $Sha256, [string] $Path) {
  if (-not $Sha256) { throw "no SHA-256 pin for $Url: run cargo xtask pin-downloads" }
  Invoke-WebRequest -UseBasicParsing -Uri $Url -OutFile $Path
  $actual = (Get-FileHash -Algorithm SHA256 -Path $Path).Hash.ToLowerInvariant()
  if ($actual -ne $Sha256.ToLowerInvariant()) {
    Remove-Item -Force $Path
    throw "$Url has SHA-256 $actual, not the pinned $Sha256"
  }
}

$work = Join-Path $env:UPLOAD_DIR 'downloads'
New-Item -ItemType Directory -Force -Path $work | Out-Null
$bin = 'C:\buildkite-agent\bin'
New-Item -ItemType Directory -Force -Path $bin | Out-Null

$agentZip = Join-Path $work 'buildkite-agent.zip'
Get-Pinned $env:BUILDKITE_AGENT_URL $env:BUILDKITE_AGENT_SHA256 $agentZip
Expand-Archive -Path $agentZip -DestinationPath (Join-Path $work 'agent') -Force
Copy-Item (Join-Path $work 'agent\buildkite-agent.exe') (Join-Path $bin 'buildkite-agent-stable.exe')
Copy-Item (Join-Path $work 'agent\buildkite-agent.exe') (Join-Path $bin 'buildkite-agent-beta.exe')

$git = Join-Path $work 'git-installer.exe'
Get-Pinned $env:GIT_URL $env:GIT_SHA256 $git
$process = Start-Process -FilePath $git -ArgumentList '/VERYSILENT', '/NORESTART', '/NOCANCEL', '/SP-', '/COMPONENTS=gitlfs' -Wait -PassThru
if ($process.ExitCode -ne 0) { throw "the Git for Windows installer exited with $($process.ExitCode)" }

$nssmZip = Join-Path $work 'nssm.zip'
Get-Pinned $env:NSSM_URL $env:NSSM_SHA256 $nssmZip
Expand-Archive -Path $nssmZip -DestinationPath (Join-Path $work 'nssm') -Force
New-Item -ItemType Directory -Force -Path 'C:\Program Files\nssm' | Out-Null
Copy-Item (Get-ChildItem -Recurse -Path (Join-Path $work 'nssm') -Filter nssm.exe | Where-Object { $_.DirectoryName -like '*win64' }).FullName 'C:\Program Files\nssm\nssm.exe'

$cloudwatch = Join-Path $work 'amazon-cloudwatch-agent.msi'
Get-Pinned $env:CLOUDWATCH_AGENT_URL $env:CLOUDWATCH_AGENT_SHA256 $cloudwatch
$process = Start-Process -FilePath msiexec.exe -ArgumentList '/i', $cloudwatch, '/qn', '/norestart' -Wait -PassThru
if ($process.ExitCode -ne 0) { throw "the CloudWatch agent installer exited with $($process.ExitCode)" }

Remove-Item -Recurse -Force $work
