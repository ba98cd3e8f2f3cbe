<powershell>
# The build instance's WinRM over HTTPS, for Packer only: a self-signed certificate
# and a listener on 5986. sysprep.ps1 removes both before the image is taken.
$ErrorActionPreference = 'Stop'
$certificate = New-SelfSignedCertificate -DnsName 'packer' -CertStoreLocation 'Cert:\LocalMachine\My'
New-Item -Path WSMan:\localhost\Listener -Transport HTTPS -Address * -CertificateThumbPrint $certificate.Thumbprint -Force | Out-Null
Set-Item -Path WSMan:\localhost\Service\Auth\Basic -Value $true
New-NetFirewallRule -DisplayName 'Packer WinRM HTTPS' -Direction Inbound -Protocol TCP -LocalPort 5986 -Action Allow | Out-Null
</powershell>
