<#
.SYNOPSIS
    Writes (or removes) the one-shot enrollment token file of the deskside
    agent. Run by the MSI as LocalSystem; not meant to be run by hand.

.DESCRIPTION
    UNTESTED: never run on Windows. Written for Windows PowerShell 5.1.

    -Token TOKEN  validates TOKEN (dse1_ followed by base64url, at most 2048
                  characters in all, the agent's own limit), and writes it to
                  STATEDIR\enroll-token unless the device is already enrolled
                  (STATEDIR\identity.json exists). The file is written under a
                  temporary name and renamed, so the agent never reads half a
                  token. It inherits the state directory's ACL (SYSTEM,
                  Administrators, NT SERVICE\deskside-agent).
    -Remove       deletes STATEDIR\enroll-token (rollback).

    The token arrives as a -File argument, so PowerShell binds it as a string
    and never parses it as code. This script never prints the token.

    Exit codes: 0 done (or nothing to do); 2 malformed token; 3 the state
    directory does not exist; 1 anything else.
#>
[CmdletBinding(DefaultParameterSetName = 'Write')]
param(
    [Parameter(Mandatory = $true)]
    [string] $StateDir,

    [Parameter(Mandatory = $true, ParameterSetName = 'Write')]
    [string] $Token,

    [Parameter(Mandatory = $true, ParameterSetName = 'Remove')]
    [switch] $Remove
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

try {
    $tokenPath = Join-Path -Path $StateDir -ChildPath 'enroll-token'

    if ($Remove) {
        if (Test-Path -LiteralPath $tokenPath -PathType Leaf) {
            Remove-Item -LiteralPath $tokenPath -Force
        }
        exit 0
    }

    # Case-sensitive match: the prefix is lower case and base64url is
    # case-sensitive. 2048 characters in all, so 2043 after the prefix.
    if ($Token -cnotmatch '^dse1_[A-Za-z0-9_-]{1,2043}$') {
        [Console]::Error.WriteLine('ENROLL_TOKEN is not a deskside enrollment token (expected dse1_ followed by base64url characters).')
        exit 2
    }

    if (-not (Test-Path -LiteralPath $StateDir -PathType Container)) {
        [Console]::Error.WriteLine("The state directory $StateDir does not exist.")
        exit 3
    }

    if (Test-Path -LiteralPath (Join-Path -Path $StateDir -ChildPath 'identity.json') -PathType Leaf) {
        Write-Output 'This device is already enrolled; ENROLL_TOKEN was not written.'
        exit 0
    }

    $tmpPath = Join-Path -Path $StateDir -ChildPath ('enroll-token.' + [Guid]::NewGuid().ToString('N') + '.tmp')
    $utf8NoBom = New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $false
    try {
        [System.IO.File]::WriteAllText($tmpPath, $Token + "`n", $utf8NoBom)
        # .NET Framework's File.Move cannot overwrite; File.Replace needs an
        # existing destination. Either way the rename is atomic on NTFS.
        if (Test-Path -LiteralPath $tokenPath -PathType Leaf) {
            [System.IO.File]::Replace($tmpPath, $tokenPath, [NullString]::Value)
        }
        else {
            [System.IO.File]::Move($tmpPath, $tokenPath)
        }
    }
    finally {
        if (Test-Path -LiteralPath $tmpPath -PathType Leaf) {
            Remove-Item -LiteralPath $tmpPath -Force -ErrorAction SilentlyContinue
        }
    }
    Write-Output 'Enrollment token written.'
    exit 0
}
catch {
    # The message of an I/O error names paths, never the token.
    [Console]::Error.WriteLine("enroll-token.ps1: $($_.Exception.Message)")
    exit 1
}
