<#
.SYNOPSIS
    Builds deskside-agent.exe for x86_64-pc-windows-msvc and packs it into
    deskside-agent-VERSION-x64.msi with WiX.

.DESCRIPTION
    UNTESTED: never run. Written for Windows PowerShell 5.1 or PowerShell 7
    on Windows, with:
      - Rust (rustup) and the MSVC build tools (Visual Studio Build Tools,
        "Desktop development with C++");
      - the WiX .NET tool, v4 or later:  dotnet tool install --global wix
        (match the Util extension's version to the tool's major version);
      - for -CertificateThumbprint: signtool.exe from the Windows SDK on PATH
        and the code-signing certificate in the CurrentUser\My or
        LocalMachine\My store.

    Run from anywhere:  .\installers\windows\build.ps1 [-Version 0.1.0]

.PARAMETER Version
    MSI version (MAJOR.MINOR.PATCH, numeric). Default: the workspace version
    from Cargo.toml, with any pre-release suffix dropped.

.PARAMETER CertificateThumbprint
    SHA-1 thumbprint of a code-signing certificate. When given, the .exe,
    enroll-token.ps1 and the .msi are signed and timestamped.

.PARAMETER TimestampUrl
    RFC 3161 timestamp server used when signing.

.PARAMETER WixUtilVersion
    Version of WixToolset.Util.wixext to fetch into the global WiX extension
    cache (must match the installed `wix` tool's major version).
#>
[CmdletBinding()]
param(
    [string] $Version,
    [string] $CertificateThumbprint,
    [string] $TimestampUrl = 'http://timestamp.digicert.com',
    [string] $WixUtilVersion = '4.0.5'
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

function Invoke-Checked {
    # Runs a native command and stops on a non-zero exit code
    # ($ErrorActionPreference does not apply to native commands in 5.1).
    # Arguments are passed as an explicit array so that native flags such
    # as -p or -d are never taken for this function's own parameters.
    param([string] $FilePath, [string[]] $Arguments)
    Write-Host ">> $FilePath $($Arguments -join ' ')"
    & $FilePath @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "$FilePath failed with exit code $LASTEXITCODE"
    }
}

$here = $PSScriptRoot
$repo = (Resolve-Path -LiteralPath (Join-Path -Path $here -ChildPath '..\..')).Path
$target = 'x86_64-pc-windows-msvc'
$outDir = Join-Path -Path $repo -ChildPath 'target\installers\windows'
New-Item -ItemType Directory -Force -Path $outDir | Out-Null

if (-not $Version) {
    # [workspace.package] version = "X.Y.Z[-pre]" in the root Cargo.toml.
    $cargoToml = Get-Content -LiteralPath (Join-Path -Path $repo -ChildPath 'Cargo.toml') -Raw
    $m = [regex]::Match($cargoToml, '(?m)^\s*version\s*=\s*"(\d+)\.(\d+)\.(\d+)')
    if (-not $m.Success) { throw 'Cannot read the workspace version from Cargo.toml; pass -Version.' }
    $Version = '{0}.{1}.{2}' -f $m.Groups[1].Value, $m.Groups[2].Value, $m.Groups[3].Value
}
if ($Version -notmatch '^\d{1,3}\.\d{1,3}\.\d{1,5}$') {
    throw "MSI versions are MAJOR.MINOR.PATCH with MAJOR,MINOR < 256 and PATCH < 65536; got '$Version'."
}

# 1. The agent, release build, MSVC target:
#   cargo build --release --locked --target x86_64-pc-windows-msvc -p deskside-agent --bin deskside-agent
Push-Location -LiteralPath $repo
try {
    Invoke-Checked 'rustup' @('target', 'add', $target)
    Invoke-Checked 'cargo' @('build', '--release', '--locked', '--target', $target, '-p', 'deskside-agent', '--bin', 'deskside-agent')
}
finally {
    Pop-Location
}
$exe = Join-Path -Path $repo -ChildPath "target\$target\release\deskside-agent.exe"
if (-not (Test-Path -LiteralPath $exe -PathType Leaf)) { throw "Build output missing: $exe" }

# Copy what goes into the MSI, so signing never touches the source tree.
$stage = Join-Path -Path $outDir -ChildPath 'stage'
New-Item -ItemType Directory -Force -Path $stage | Out-Null
$stagedExe = Join-Path -Path $stage -ChildPath 'deskside-agent.exe'
$stagedPs1 = Join-Path -Path $stage -ChildPath 'enroll-token.ps1'
Copy-Item -LiteralPath $exe -Destination $stagedExe -Force
Copy-Item -LiteralPath (Join-Path -Path $here -ChildPath 'enroll-token.ps1') -Destination $stagedPs1 -Force

# 2. Sign the binary and the script (before they are packed).
if ($CertificateThumbprint) {
    Invoke-Checked 'signtool.exe' @('sign', '/fd', 'SHA256', '/sha1', $CertificateThumbprint, '/tr', $TimestampUrl, '/td', 'SHA256', $stagedExe)
    $cert = Get-ChildItem -Path Cert:\CurrentUser\My, Cert:\LocalMachine\My |
        Where-Object { $_.Thumbprint -eq $CertificateThumbprint } | Select-Object -First 1
    if (-not $cert) { throw "Certificate $CertificateThumbprint not found in CurrentUser\My or LocalMachine\My." }
    # Needed where Group Policy enforces AllSigned: the MSI runs this script
    # with -ExecutionPolicy Bypass, but a policy set by GPO overrides that.
    $sig = Set-AuthenticodeSignature -FilePath $stagedPs1 -Certificate $cert -HashAlgorithm SHA256 -TimestampServer $TimestampUrl
    if ($sig.Status -ne 'Valid') { throw "Signing enroll-token.ps1 failed: $($sig.StatusMessage)" }
}

# 3. The MSI.
Invoke-Checked 'wix' @('extension', 'add', '-g', "WixToolset.Util.wixext/$WixUtilVersion")
$msi = Join-Path -Path $outDir -ChildPath "deskside-agent-$Version-x64.msi"
# Equivalent command line:
#   wix build -arch x64 -ext WixToolset.Util.wixext -d Version=X.Y.Z
#     -d AgentExe=...\deskside-agent.exe -d EnrollTokenScript=...\enroll-token.ps1
#     -o deskside-agent-X.Y.Z-x64.msi installers\windows\deskside-agent.wxs
Invoke-Checked 'wix' @(
    'build',
    '-arch', 'x64',
    '-ext', 'WixToolset.Util.wixext',
    '-d', "Version=$Version",
    '-d', "AgentExe=$stagedExe",
    '-d', "EnrollTokenScript=$stagedPs1",
    '-o', $msi,
    (Join-Path -Path $here -ChildPath 'deskside-agent.wxs'))

if ($CertificateThumbprint) {
    Invoke-Checked 'signtool.exe' @('sign', '/fd', 'SHA256', '/sha1', $CertificateThumbprint, '/tr', $TimestampUrl, '/td', 'SHA256', '/d', 'deskside agent', $msi)
}

Write-Host "Built $msi"
