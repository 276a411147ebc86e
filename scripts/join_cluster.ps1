<#
.SYNOPSIS
  Join a soulsai_ray head node from a Windows game PC running Dark Souls III.

.EXAMPLE
  .\scripts\join_cluster.ps1 -HeadAddress 192.168.1.10 -TokenFile C:\Users\me\auth_token

.DESCRIPTION
  Sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 (Ray supports Windows worker nodes only at your own
  risk), token authentication, and offers one `soulsgym` resource so exactly one SoulsGym
  rollout actor runs on this PC. Checks that the head is reachable and the token exists first,
  and warns when the token file's permissions let other users of this PC read it. Ports are
  pinned to their values in scripts/ports.env, as on the head and on Linux nodes
  (docs/security.md).
#>
param(
  [Parameter(Mandatory = $true)][string]$HeadAddress,
  [string]$TokenFile = "$HOME\.ray\auth_token",
  [string]$Resources = '{"soulsgym": 1}',
  [int]$NumCpus = 0,
  [string]$Ray = "ray"
)
$ErrorActionPreference = "Stop"

# NAME=PORT lines of scripts/ports.env, the cluster's one list of ports.
$Pinned = @{}
foreach ($line in Get-Content (Join-Path $PSScriptRoot "ports.env")) {
  if ($line -match '^([A-Z_]+)=(\d+)\s') { $Pinned[$Matches[1]] = [int]$Matches[2] }
}
if ($HeadAddress -notmatch ":") { $HeadAddress = "${HeadAddress}:$($Pinned.GCS_PORT)" }
$hostName, $port = $HeadAddress.Split(":")

if (-not (Get-Command $Ray -ErrorAction SilentlyContinue)) {
  $venvRay = Join-Path $PSScriptRoot "..\.venv\Scripts\ray.exe"
  if (Test-Path $venvRay) { $Ray = $venvRay } else {
    Write-Error "ray not found: install soulsai_ray with 'pip install -e .[soulsgym]' in this Python first"
  }
}
if (-not (Test-Path $TokenFile) -or (Get-Item $TokenFile).Length -eq 0) {
  Write-Error "no cluster token at ${TokenFile}: copy the head's ~/.ray/auth_token here or pass -TokenFile"
}
try {
  # Well-known SIDs (names are localized): Everyone, Users, Authenticated Users.
  $shared = @("S-1-1-0", "S-1-5-32-545", "S-1-5-11")
  $readData = [System.Security.AccessControl.FileSystemRights]::ReadData
  $readers = (Get-Acl $TokenFile).Access | Where-Object {
    $_.AccessControlType -eq "Allow" -and ($_.FileSystemRights -band $readData) -and
    ($shared -contains $_.IdentityReference.Translate([System.Security.Principal.SecurityIdentifier]).Value)
  }
  if ($readers) {
    $names = ($readers | ForEach-Object { $_.IdentityReference.Value }) -join ", "
    Write-Warning ("other users can read the cluster token ${TokenFile} (${names}); run: " +
      "icacls `"${TokenFile}`" /inheritance:r /grant:r `"${env:USERNAME}:F`"")
  }
} catch {
  Write-Warning "could not check who can read ${TokenFile}: $_"
}
if (-not (Test-NetConnection -ComputerName $hostName -Port $port -InformationLevel Quiet)) {
  Write-Error "cannot reach the head at ${HeadAddress}; is scripts/start_head.sh running and the port open?"
}

$env:RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER = "1"
$env:RAY_AUTH_MODE = "token"
$env:RAY_AUTH_TOKEN_PATH = (Resolve-Path $TokenFile).Path

$Ports = [ordered]@{
  "object-manager-port" = $Pinned.OBJECT_MANAGER_PORT
  "node-manager-port" = $Pinned.NODE_MANAGER_PORT
  "dashboard-agent-grpc-port" = $Pinned.DASHBOARD_AGENT_GRPC_PORT
  "runtime-env-agent-port" = $Pinned.RUNTIME_ENV_AGENT_PORT
  "metrics-export-port" = $Pinned.METRICS_EXPORT_PORT
  "dashboard-agent-listen-port" = $Pinned.DASHBOARD_AGENT_LISTEN_PORT
  "min-worker-port" = $Pinned.MIN_WORKER_PORT
  "max-worker-port" = $Pinned.MAX_WORKER_PORT
}
$args = @("start", "--address=$HeadAddress", "--resources=$Resources", "--disable-usage-stats")
foreach ($flag in $Ports.Keys) { $args += "--${flag}=$($Ports[$flag])" }
if ($NumCpus -gt 0) { $args += "--num-cpus=$NumCpus" }
Write-Host "joining $HeadAddress (Python and Ray versions must match the head's)"
& $Ray @args
if ($LASTEXITCODE -ne 0) {
  Write-Error "ray start failed: check that the token matches the head's and that Python/Ray versions are the same"
}
Write-Host "Joined. Keep Dark Souls III open and focused; stop with: ray stop"
