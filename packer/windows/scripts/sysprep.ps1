# Removes the build's WinRM listener and firewall rule, then generalises the image
# with EC2Launch v2 (which runs the stack's UserData on every boot, as <persist> asks).
$ErrorActionPreference = 'Stop'
Remove-NetFirewallRule -DisplayName 'Packer WinRM HTTPS' -ErrorAction SilentlyContinue
Get-ChildItem WSMan:\localhost\Listener | Where-Object { $_.Keys -contains 'Transport=HTTPS' } | Remove-Item -Recurse -Force
& 'C:\Program Files\Amazon\EC2Launch\EC2Launch.exe' reset --clean
& 'C:\Program Files\Amazon\EC2Launch\EC2Launch.exe' sysprep --shutdown=false
