//! Windows probes, through the OS's own APIs rather than command output:
//! IP Helper for adapters, routes, DNS servers, ICMP and Windows' own
//! connectivity verdict (NCSI); WinHTTP for the proxy; the Native Wifi API
//! for the Wi‑Fi link (with `netsh wlan show interfaces` as the fallback);
//! kernel32 for power and processor time.
//!
//! `map.rs` turns plain copies of the API records into snapshot types and
//! is pure (compiled and tested on every OS); the other files make the
//! calls, and hold all the `unsafe` of the agent's diagnostics, each block
//! with its SAFETY paragraph. What Wine cannot answer (its Native Wifi API
//! is a stub, it has no NCSI) is reported as unknown with that reason.

pub mod map;

#[cfg(windows)]
mod adapters;
#[cfg(windows)]
mod disk;
#[cfg(windows)]
mod dll;
#[cfg(windows)]
mod icmp;
#[cfg(windows)]
mod ncsi;
#[cfg(windows)]
mod power;
#[cfg(windows)]
mod proxy;
#[cfg(windows)]
mod wlan;

#[cfg(windows)]
pub use self::{
    adapters::network, disk::system_disks, icmp::echo as icmp_echo, ncsi::os_connectivity,
    power::battery, power::cpu_usage, wlan::wifi,
};

#[cfg(windows)]
use deskside_diag::{snapshot::Pressure, Probe};

/// How long processor usage is sampled. Windows has no pressure stall
/// figures (Linux PSI averages a whole minute), so one sample is the only
/// load measure: 2 s smooths out the bursts a 250 ms sample catches, and
/// the finding names the length.
#[cfg(windows)]
pub const CPU_SAMPLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The drive that holds the OS (`%SystemDrive%`, normally `C:`), without a
/// trailing backslash.
#[cfg(windows)]
fn system_drive() -> String {
    let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".to_owned());
    drive.trim_end_matches('\\').to_owned()
}

/// Whether a mount point holds the OS: the system drive.
#[cfg(windows)]
pub fn is_system_mount(mount_point: &str) -> bool {
    mount_point
        .trim_end_matches('\\')
        .eq_ignore_ascii_case(&system_drive())
}

/// Pressure stall information exists only on Linux.
#[cfg(windows)]
pub fn pressure() -> Probe<Pressure> {
    Probe::not_applicable("pressure stall information exists only on Linux")
}
