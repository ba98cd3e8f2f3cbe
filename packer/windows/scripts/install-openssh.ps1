# OpenSSH server from the Windows capability, started at boot, for operators who
# reach instances with a key pair (the security group opens port 22 only with
# KeyName or SSHIngressCidr).
$ErrorActionPreference = 'Stop'
Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0' | Out-Null
Set-Service -Name sshd -StartupType Automatic
