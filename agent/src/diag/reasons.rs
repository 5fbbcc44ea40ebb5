//! The reasons the Linux probes give when something could not be measured
//! (`Probe::Unknown`), kept as a list so that a test can check that the
//! French report has a French version of each (`deskside_diag::reason`).
//!
//! Test-only: the probes write their reasons in English; nothing here runs
//! in the agent.

use deskside_diag::reason::CATALOGUE;

/// Every reason the Linux probes write, as a template: `{}` stands for a
/// value (an address, an error, a refusal). Add a reason here and to the
/// catalogue in `deskside_diag::reason` when a probe gains one.
const LINUX_REASONS: &[&str] = &[
    // collect.rs
    "network configuration unknown: {}",
    "the local probes failed: {}",
    "no default gateway",
    "not enrolled: no relay to measure",
    "not enrolled: no relay to compare with",
    // gateway.rs
    "the gateway {} answered no TCP probe on ports 53, 80 or 443 and ICMP is not available to unprivileged programs here; it may still be fine",
    "the gateway {} answered no ping and no TCP probe on ports 53, 80 or 443; it may still be fine",
    // path.rs
    "no round-trip probe was answered",
    "the relay address did not resolve",
    "no UDP socket could be opened",
    "no QUIC connection to the relay",
    "the relay refused the measurement: {}",
    "the measurement could not start: {}",
    "the speed test was not run: {}",
    "cannot open a transfer stream: {}",
    "the relay's hourly speed-test allowance for this device ran out during the download",
    "download interrupted: {}",
    "upload interrupted: {}",
    "the relay did not report what it received",
    "the relay refused the upload test: {}",
    "unexpected answer to the upload test: {}",
    "no data moved during the transfer",
    // system.rs
    "no temperature sensor is readable (common in virtual machines)",
    // platform/linux.rs
    "/proc/pressure is not available (kernel without PSI, or psi=0)",
    "the `iw` tool is not installed (Debian package iw)",
    "cannot run iw: {}",
    "iw {} failed: {}",
    "{}, and /proc/net/wireless is not readable",
    "{}, and /proc/net/wireless does not list {}",
];

/// Every reason the Windows probes write (agent/src/diag/platform/windows),
/// as templates like [`LINUX_REASONS`]; the portable ones above apply too.
const WINDOWS_REASONS: &[&str] = &[
    // adapters.rs
    "GetAdaptersAddresses failed (Windows error {})",
    // map.rs
    "Windows does not know the battery's state",
    "location permission off: Windows 11 (24H2 and later) shows Wi‑Fi details only to apps allowed to use the location; allow it in Settings > Privacy & security > Location (turn on Location services and Let desktop apps access your location), then run the check again",
    // power.rs
    "GetSystemPowerStatus failed",
    // ncsi.rs
    "running under Wine, which has no network connectivity status indicator (NCSI)",
    "this Windows has no GetNetworkConnectivityHint (Windows 10 version 2004 or later has it)",
    "GetNetworkConnectivityHint failed (status {})",
    // wlan.rs
    "running under Wine, whose Native Wifi API (wlanapi) is a stub that lists no interface: the Wi‑Fi radio cannot be read",
    "the WLAN AutoConfig service does not answer (WlanOpenHandle: Windows error {}); start it in services.msc",
    "wlanapi.dll is not available (Windows Server without the Wireless LAN Service)",
    "WlanEnumInterfaces failed (Windows error {})",
    "WlanQueryInterface (current connection) failed (Windows error {})",
    "{} failed (Windows error {})",
    "{}, and netsh could not run: {}",
    "{}, and netsh wlan show interfaces lists no connected interface",
];

/// The Windows sources whose reasons end up in `Probe::Unknown`.
const WINDOWS_SOURCES: &[(&str, &str)] = &[
    ("adapters.rs", include_str!("platform/windows/adapters.rs")),
    ("map.rs", include_str!("platform/windows/map.rs")),
    ("power.rs", include_str!("platform/windows/power.rs")),
    ("ncsi.rs", include_str!("platform/windows/ncsi.rs")),
    ("wlan.rs", include_str!("platform/windows/wlan.rs")),
];

/// The sources whose reasons end up in `Probe::Unknown` on Linux.
const SOURCES: &[(&str, &str)] = &[
    ("collect.rs", include_str!("collect.rs")),
    ("gateway.rs", include_str!("gateway.rs")),
    ("path.rs", include_str!("path.rs")),
    ("system.rs", include_str!("system.rs")),
    ("platform/linux.rs", include_str!("platform/linux.rs")),
];

/// Where a reason is written: the literal right after one of these.
const REASON_SITES: &[&str] = &[
    "Probe::unknown(",
    "unreachable_report(",
    "Err(",
    "map_err(|e| format!(",
    "let reason = format!(",
    "netsh_fallback(",
    "WlanFailure::Other(",
    "pub const LOCATION_PERMISSION_OFF: &str = ",
];

/// The string literals at reason sites in `source` (before its tests),
/// with every `{…}` placeholder written `{}`.
fn reasons_written_in(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut found = Vec::new();
    for site in REASON_SITES {
        for (at, _) in code.match_indices(site) {
            let mut rest = code[at + site.len()..].trim_start();
            for skip in ["path,", "&", "format!("] {
                rest = rest.strip_prefix(skip).unwrap_or(rest).trim_start();
            }
            let Some(literal) = rest.strip_prefix('"') else {
                continue;
            };
            let end = literal.find('"').expect("a closed string literal");
            found.push(placeholders_as_braces(&literal[..end]));
        }
    }
    found
}

fn placeholders_as_braces(literal: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in literal.chars() {
        match (c, inside) {
            ('{', false) => {
                inside = true;
                out.push_str("{}");
            }
            ('}', true) => inside = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

#[test]
fn every_reason_the_linux_probes_write_is_listed() {
    for (file, source) in SOURCES {
        let found = reasons_written_in(source);
        assert!(
            !found.is_empty(),
            "no reason found in {file}: the scan is broken"
        );
        for reason in found {
            assert!(
                LINUX_REASONS.contains(&reason.as_str()),
                "{file} writes {reason:?}: add it to LINUX_REASONS and to deskside_diag::reason::CATALOGUE"
            );
        }
    }
}

#[test]
fn every_listed_reason_has_a_french_version() {
    for reason in LINUX_REASONS {
        assert!(
            CATALOGUE.iter().any(|(english, _)| english == reason),
            "{reason:?} has no French version in deskside_diag::reason::CATALOGUE"
        );
        let example = reason.replace("{}", "wlan0");
        assert!(
            deskside_diag::reason::french(&example).is_some(),
            "{example:?}"
        );
    }
}

#[test]
fn every_reason_the_windows_probes_write_is_listed_and_translated() {
    for (file, source) in WINDOWS_SOURCES {
        let found = reasons_written_in(source);
        assert!(
            !found.is_empty(),
            "no reason found in windows/{file}: the scan is broken"
        );
        for reason in found {
            assert!(
                WINDOWS_REASONS.contains(&reason.as_str())
                    || LINUX_REASONS.contains(&reason.as_str()),
                "windows/{file} writes {reason:?}: add it to WINDOWS_REASONS and to deskside_diag::reason::CATALOGUE"
            );
        }
    }
    for reason in WINDOWS_REASONS {
        let example = reason.replace("{}", "87");
        assert!(
            deskside_diag::reason::french(&example).is_some(),
            "{example:?} has no French version in deskside_diag::reason::CATALOGUE"
        );
    }
}
