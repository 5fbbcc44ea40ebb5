//! Platforms whose probes are not written yet: every answer is "unknown"
//! with the reason, never a guess.

use std::net::IpAddr;

use deskside_diag::snapshot::{Battery, NetworkConfig, Pressure, Wifi};
use deskside_diag::Probe;

use super::Privacy;

const NOT_YET: &str = "not measured on this operating system yet";

/// Whether a mount point holds the OS.
pub fn is_system_mount(mount_point: &str) -> bool {
    mount_point == "/" || mount_point.eq_ignore_ascii_case("C:\\")
}

/// Pressure stall information exists only on Linux.
pub fn pressure() -> Probe<Pressure> {
    Probe::not_applicable("pressure stall information exists only on Linux")
}

/// Battery state.
pub fn battery() -> Probe<Battery> {
    Probe::unknown(NOT_YET)
}

/// Network configuration.
pub fn network(_relay: Option<IpAddr>) -> Probe<NetworkConfig> {
    Probe::unknown(NOT_YET)
}

/// Wi‑Fi link.
pub fn wifi(_network: &NetworkConfig, _privacy: &Privacy) -> Probe<Wifi> {
    Probe::unknown(NOT_YET)
}
