//! Windows' own connectivity verdict: the Network Connectivity Status
//! Indicator (NCSI) behind the taskbar's "No Internet" icon, read with
//! `GetNetworkConnectivityHint` (iphlpapi, Windows 10 version 2004 and
//! later: looked up at run time so that older systems still load the
//! agent and say why instead).
#![allow(unsafe_code)]

use deskside_diag::snapshot::OsConnectivity;
use deskside_diag::Probe;

use super::dll::{under_wine, Farproc, SystemDll};
use super::map::{self, ConnectivityHint};

/// `NL_NETWORK_CONNECTIVITY_HINT` with its BOOLEANs as bytes, so that no
/// value Windows writes can be an invalid Rust `bool`.
#[repr(C)]
#[derive(Default)]
struct RawHint {
    level: i32,
    cost: i32,
    approaching_data_limit: u8,
    over_data_limit: u8,
    roaming: u8,
}

type GetNetworkConnectivityHint = unsafe extern "system" fn(*mut RawHint) -> u32;

/// Windows' verdict, or why there is none. Always `Some` on Windows: the
/// snapshot carries the probe whether or not it could be read.
pub fn os_connectivity() -> Option<Probe<OsConnectivity>> {
    if under_wine() {
        return Some(Probe::unknown(
            "running under Wine, which has no network connectivity status indicator (NCSI)",
        ));
    }
    let Some(function) =
        SystemDll::load("iphlpapi.dll").and_then(|dll| dll.symbol(c"GetNetworkConnectivityHint"))
    else {
        return Some(Probe::unknown(
            "this Windows has no GetNetworkConnectivityHint (Windows 10 version 2004 or later has it)",
        ));
    };
    // SAFETY: the symbol is GetNetworkConnectivityHint, whose documented
    // signature is `NTSTATUS (NL_NETWORK_CONNECTIVITY_HINT*)`, stdcall
    // ("system"); RawHint has that structure's layout.
    let function = unsafe { std::mem::transmute::<Farproc, GetNetworkConnectivityHint>(function) };
    let mut raw = RawHint::default();
    // SAFETY: `raw` is a live, writable structure of the expected layout.
    let status = unsafe { function(&mut raw) };
    if status != 0 {
        return Some(Probe::unknown(format!(
            "GetNetworkConnectivityHint failed (status {status:#x})"
        )));
    }
    Some(Probe::Measured(map::connectivity(ConnectivityHint {
        level: raw.level,
        cost: raw.cost,
        approaching_data_limit: raw.approaching_data_limit != 0,
        over_data_limit: raw.over_data_limit != 0,
        roaming: raw.roaming != 0,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_verdict_is_read_or_unknown_with_a_reason() {
        let probe = os_connectivity().expect("always reported on Windows");
        if under_wine() {
            let reason = probe.reason().expect("unknown under Wine");
            assert!(reason.contains("Wine"), "{reason}");
        } else if let Some(reason) = probe.reason() {
            assert!(reason.contains("GetNetworkConnectivityHint"), "{reason}");
        }
    }
}
