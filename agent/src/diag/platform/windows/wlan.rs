//! The Wi‑Fi link through the Native Wifi API (`wlanapi.dll`, loaded at
//! run time: Windows Server lacks it without the Wireless LAN Service):
//! the current connection (`WlanQueryInterface`), the interface's RSSI and
//! channel, and the access point's entry in `WlanGetNetworkBssList` for its
//! frequency and signal. `netsh wlan show interfaces` is the fallback when
//! the API fails for another reason than the location permission.
//!
//! Windows 11 24H2 and later answer ERROR_ACCESS_DENIED to both without
//! the location permission: the probe then says "unknown: location
//! permission off" and how to allow it, never a fault. Wine's wlanapi is a
//! stub that lists no interface, so under Wine the probe says so.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::{addr_of, null, null_mut};

use deskside_diag::snapshot::{InterfaceKind, NetworkConfig, Wifi};
use deskside_diag::Probe;
use windows_sys::core::GUID;
use windows_sys::Win32::Foundation::{ERROR_SUCCESS, HANDLE};
use windows_sys::Win32::NetworkManagement::WiFi::{
    dot11_BSS_type_infrastructure, wlan_interface_state_connected, wlan_intf_opcode_channel_number,
    wlan_intf_opcode_current_connection, wlan_intf_opcode_rssi, DOT11_SSID, WLAN_BSS_ENTRY,
    WLAN_BSS_LIST, WLAN_CONNECTION_ATTRIBUTES, WLAN_INTERFACE_INFO, WLAN_INTERFACE_INFO_LIST,
};

use super::dll::{from_wide_array, under_wine, Farproc, SystemDll};
use super::map::{self, wlan_failure, WlanFailure, WlanLink, LOCATION_PERMISSION_OFF};
use crate::diag::parse::netsh;
use crate::diag::platform::Privacy;

type OpenHandle = unsafe extern "system" fn(u32, *const c_void, *mut u32, *mut HANDLE) -> u32;
type CloseHandle = unsafe extern "system" fn(HANDLE, *const c_void) -> u32;
type EnumInterfaces =
    unsafe extern "system" fn(HANDLE, *const c_void, *mut *mut WLAN_INTERFACE_INFO_LIST) -> u32;
type QueryInterface = unsafe extern "system" fn(
    HANDLE,
    *const GUID,
    i32,
    *const c_void,
    *mut u32,
    *mut *mut c_void,
    *mut i32,
) -> u32;
type GetNetworkBssList = unsafe extern "system" fn(
    HANDLE,
    *const GUID,
    *const DOT11_SSID,
    i32,
    i32,
    *const c_void,
    *mut *mut WLAN_BSS_LIST,
) -> u32;
type FreeMemory = unsafe extern "system" fn(*const c_void);

/// The Native Wifi functions this probe uses.
struct Api {
    open: OpenHandle,
    close: CloseHandle,
    enum_interfaces: EnumInterfaces,
    query_interface: QueryInterface,
    bss_list: GetNetworkBssList,
    free: FreeMemory,
}

impl Api {
    fn load() -> Option<Api> {
        let dll = SystemDll::load("wlanapi.dll")?;
        // SAFETY (each transmute): the symbol is the named wlanapi function,
        // whose documented stdcall signature is the type it is cast to; the
        // DLL stays loaded for the life of the process.
        unsafe {
            Some(Api {
                open: std::mem::transmute::<Farproc, OpenHandle>(dll.symbol(c"WlanOpenHandle")?),
                close: std::mem::transmute::<Farproc, CloseHandle>(dll.symbol(c"WlanCloseHandle")?),
                enum_interfaces: std::mem::transmute::<Farproc, EnumInterfaces>(
                    dll.symbol(c"WlanEnumInterfaces")?,
                ),
                query_interface: std::mem::transmute::<Farproc, QueryInterface>(
                    dll.symbol(c"WlanQueryInterface")?,
                ),
                bss_list: std::mem::transmute::<Farproc, GetNetworkBssList>(
                    dll.symbol(c"WlanGetNetworkBssList")?,
                ),
                free: std::mem::transmute::<Farproc, FreeMemory>(dll.symbol(c"WlanFreeMemory")?),
            })
        }
    }
}

/// An open Native Wifi client handle, closed on drop.
struct Client<'a> {
    api: &'a Api,
    handle: HANDLE,
}

impl Drop for Client<'_> {
    fn drop(&mut self) {
        // SAFETY: a handle WlanOpenHandle returned, closed once.
        unsafe { (self.api.close)(self.handle, null()) };
    }
}

/// Memory the Native Wifi API allocated, freed on drop.
struct WlanMemory<'a, T> {
    api: &'a Api,
    ptr: *mut T,
}

impl<T> Drop for WlanMemory<'_, T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: allocated by the API for the caller, freed once.
            unsafe { (self.api.free)(self.ptr as *const c_void) };
        }
    }
}

/// One interface the API lists.
struct WlanInterface {
    guid: GUID,
    description: String,
    connected: bool,
}

/// The Wi‑Fi link the default route uses (or the first connected one).
pub fn wifi(network: &NetworkConfig, privacy: &Privacy) -> Probe<Wifi> {
    if under_wine() {
        return Probe::unknown(
            "running under Wine, whose Native Wifi API (wlanapi) is a stub that lists no interface: the Wi‑Fi radio cannot be read",
        );
    }
    let wifi_adapters: Vec<&str> = network
        .interfaces
        .iter()
        .filter(|i| i.kind == InterfaceKind::Wifi)
        .map(|i| i.name.as_str())
        .collect();
    let route_interface = network.default_route.as_ref().map(|r| r.interface.as_str());
    let Some(api) = Api::load() else {
        if wifi_adapters.is_empty() {
            return Probe::not_applicable("no Wi‑Fi interface");
        }
        return netsh_fallback(
            "wlanapi.dll is not available (Windows Server without the Wireless LAN Service)",
            route_interface,
            privacy,
        );
    };
    let mut version = 0u32;
    let mut handle: HANDLE = null_mut();
    // SAFETY: client version 2 (Vista and later); both out-pointers are
    // live locals.
    let code = unsafe { (api.open)(2, null(), &mut version, &mut handle) };
    if code != ERROR_SUCCESS {
        if wifi_adapters.is_empty() {
            return Probe::not_applicable("no Wi‑Fi interface");
        }
        return Probe::unknown(format!(
            "the WLAN AutoConfig service does not answer (WlanOpenHandle: Windows error {code}); start it in services.msc"
        ));
    }
    let client = Client { api: &api, handle };
    let interfaces = match interfaces(&client) {
        Ok(interfaces) => interfaces,
        Err(code) => {
            return netsh_fallback(
                &format!("WlanEnumInterfaces failed (Windows error {code})"),
                route_interface,
                privacy,
            )
        }
    };
    if interfaces.is_empty() {
        return Probe::not_applicable("no Wi‑Fi interface");
    }
    let names = adapter_names();
    let name_of = |i: &WlanInterface| {
        names
            .iter()
            .find(|(guid, _)| guid.eq_ignore_ascii_case(&guid_text(&i.guid)))
            .map(|(_, name)| name.clone())
            .unwrap_or_else(|| i.description.clone())
    };
    let Some(chosen) = interfaces
        .iter()
        .filter(|i| i.connected)
        .find(|i| Some(name_of(i).as_str()) == route_interface)
        .or_else(|| interfaces.iter().find(|i| i.connected))
    else {
        return Probe::not_applicable(
            "Wi‑Fi is not in use (not connected, or the default route is wired)",
        );
    };
    let name = name_of(chosen);
    match link(&client, chosen, &name) {
        Ok(link) => Probe::Measured(map::wifi_from_wlan(&link, privacy)),
        Err(WlanFailure::LocationPermission) => Probe::unknown(LOCATION_PERMISSION_OFF),
        Err(WlanFailure::Other(why)) => netsh_fallback(&why, Some(name.as_str()), privacy),
    }
}

fn interfaces(client: &Client<'_>) -> Result<Vec<WlanInterface>, u32> {
    let mut list: *mut WLAN_INTERFACE_INFO_LIST = null_mut();
    // SAFETY: an open client handle; the API allocates the list.
    let code = unsafe { (client.api.enum_interfaces)(client.handle, null(), &mut list) };
    let list = WlanMemory {
        api: client.api,
        ptr: list,
    };
    if code != ERROR_SUCCESS || list.ptr.is_null() {
        return Err(code);
    }
    // SAFETY: on success the list holds dwNumberOfItems entries laid out
    // from InterfaceInfo, valid until WlanFreeMemory (the guard's drop).
    let entries = unsafe {
        let count = (*list.ptr).dwNumberOfItems as usize;
        let first = addr_of!((*list.ptr).InterfaceInfo).cast::<WLAN_INTERFACE_INFO>();
        std::slice::from_raw_parts(first, count)
    };
    Ok(entries
        .iter()
        .map(|e| WlanInterface {
            guid: e.InterfaceGuid,
            description: from_wide_array(&e.strInterfaceDescription),
            connected: e.isState == wlan_interface_state_connected,
        })
        .collect())
}

/// One `WlanQueryInterface` answer, copied out as `T`.
fn query<T: Copy>(client: &Client<'_>, guid: &GUID, opcode: i32) -> Result<T, u32> {
    let mut size = 0u32;
    let mut data: *mut c_void = null_mut();
    let mut value_type = 0i32;
    // SAFETY: an open client handle, a GUID the API listed, and live
    // out-pointers; the API allocates the answer.
    let code = unsafe {
        (client.api.query_interface)(
            client.handle,
            guid,
            opcode,
            null(),
            &mut size,
            &mut data,
            &mut value_type,
        )
    };
    let data = WlanMemory {
        api: client.api,
        ptr: data,
    };
    if code != ERROR_SUCCESS {
        return Err(code);
    }
    if data.ptr.is_null() || (size as usize) < std::mem::size_of::<T>() {
        return Err(ERROR_SUCCESS);
    }
    // SAFETY: the API returned at least size_of::<T>() bytes of the
    // opcode's documented type; read without assuming alignment.
    Ok(unsafe { std::ptr::read_unaligned(data.ptr.cast::<T>()) })
}

fn link(
    client: &Client<'_>,
    interface: &WlanInterface,
    name: &str,
) -> Result<WlanLink, WlanFailure> {
    let attributes: WLAN_CONNECTION_ATTRIBUTES =
        query(client, &interface.guid, wlan_intf_opcode_current_connection)
            .map_err(|code| wlan_failure("WlanQueryInterface (current connection)", code))?;
    let association = &attributes.wlanAssociationAttributes;
    let ssid_len = (association.dot11Ssid.uSSIDLength as usize).min(32);
    let mut link = WlanLink {
        interface: name.to_owned(),
        ssid: association.dot11Ssid.ucSSID[..ssid_len].to_vec(),
        bssid: association.dot11Bssid,
        phy_type: association.dot11PhyType,
        signal_quality: association.wlanSignalQuality,
        rx_rate_kbps: association.ulRxRate,
        tx_rate_kbps: association.ulTxRate,
        rssi_dbm: query::<i32>(client, &interface.guid, wlan_intf_opcode_rssi).ok(),
        channel: query::<u32>(client, &interface.guid, wlan_intf_opcode_channel_number).ok(),
        ..WlanLink::default()
    };
    let security = attributes.wlanSecurityAttributes.bSecurityEnabled;
    match access_point(
        client,
        &interface.guid,
        &association.dot11Ssid,
        security,
        &link.bssid,
    ) {
        Ok(Some((frequency_khz, rssi))) => {
            link.bss_frequency_khz = Some(frequency_khz).filter(|f| *f > 0);
            link.bss_rssi_dbm = Some(rssi);
        }
        Ok(None) => {}
        Err(code) => match wlan_failure("WlanGetNetworkBssList", code) {
            WlanFailure::LocationPermission => return Err(WlanFailure::LocationPermission),
            WlanFailure::Other(why) => tracing::debug!("{why}"),
        },
    }
    Ok(link)
}

/// The centre frequency (kHz) and signal of the access point `bssid` in
/// the interface's BSS list.
fn access_point(
    client: &Client<'_>,
    guid: &GUID,
    ssid: &DOT11_SSID,
    security_enabled: i32,
    bssid: &[u8; 6],
) -> Result<Option<(u32, i32)>, u32> {
    let mut list: *mut WLAN_BSS_LIST = null_mut();
    // SAFETY: an open client handle, a listed GUID, the SSID of the
    // current connection, and a live out-pointer; the API allocates.
    let code = unsafe {
        (client.api.bss_list)(
            client.handle,
            guid,
            ssid,
            dot11_BSS_type_infrastructure,
            security_enabled,
            null(),
            &mut list,
        )
    };
    let list = WlanMemory {
        api: client.api,
        ptr: list,
    };
    if code != ERROR_SUCCESS {
        return Err(code);
    }
    if list.ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: on success the list holds dwNumberOfItems entries laid out
    // from wlanBssEntries, valid until the guard frees it. Fields are read
    // through raw pointers, never as references to the whole entry (it
    // holds a BOOLEAN that Rust would see as `bool`).
    unsafe {
        let count = (*list.ptr).dwNumberOfItems as usize;
        let first = addr_of!((*list.ptr).wlanBssEntries).cast::<WLAN_BSS_ENTRY>();
        for index in 0..count {
            let entry = first.add(index);
            let entry_bssid: [u8; 6] = addr_of!((*entry).dot11Bssid).read_unaligned();
            if &entry_bssid == bssid {
                let frequency = addr_of!((*entry).ulChCenterFrequency).read_unaligned();
                let rssi = addr_of!((*entry).lRssi).read_unaligned();
                return Ok(Some((frequency, rssi)));
            }
        }
    }
    Ok(None)
}

/// `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`, as adapters name themselves.
fn guid_text(guid: &GUID) -> String {
    let d = guid.data4;
    format!(
        "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}}}",
        guid.data1, guid.data2, guid.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
    )
}

/// (GUID, friendly name) of every adapter, to name Wi‑Fi interfaces as the
/// network configuration does.
fn adapter_names() -> Vec<(String, String)> {
    super::adapters::adapters()
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.guid, a.friendly_name))
        .collect()
}

/// `netsh wlan show interfaces`, parsed: the fallback when the API failed
/// for `why`.
fn netsh_fallback(why: &str, interface: Option<&str>, privacy: &Privacy) -> Probe<Wifi> {
    let output = std::process::Command::new("netsh")
        .args(["wlan", "show", "interfaces"])
        .output();
    let text = match output {
        Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Err(e) => return Probe::unknown(format!("{why}, and netsh could not run: {e}")),
    };
    if netsh::netsh_needs_location_permission(&text) {
        return Probe::unknown(LOCATION_PERMISSION_OFF);
    }
    let parsed = netsh::parse_netsh_wlan_interfaces(&text);
    let connected = |i: &&netsh::NetshInterface| i.state_connected == Some(true);
    let Some(chosen) = parsed
        .iter()
        .filter(connected)
        .find(|i| i.name.as_deref() == interface)
        .or_else(|| parsed.iter().find(connected))
    else {
        return Probe::unknown(format!(
            "{why}, and netsh wlan show interfaces lists no connected interface"
        ));
    };
    Probe::Measured(map::wifi_from_netsh(chosen, privacy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_written_as_adapters_name_themselves() {
        let guid = GUID {
            data1: 0x1234_abcd,
            data2: 0x0102,
            data3: 0xa0b0,
            data4: [1, 2, 3, 4, 5, 6, 7, 0xff],
        };
        assert_eq!(guid_text(&guid), "{1234ABCD-0102-A0B0-0102-0304050607FF}");
    }

    #[test]
    fn under_wine_the_radio_is_unknown_with_the_reason() {
        let probe = wifi(&NetworkConfig::default(), &Privacy::default());
        if under_wine() {
            assert!(
                probe.reason().unwrap_or_default().contains("Wine"),
                "{probe:?}"
            );
        } else {
            // Real Windows: whatever the machine has, never a fault.
            assert!(probe.value().is_some() || probe.reason().is_some());
        }
    }
}
