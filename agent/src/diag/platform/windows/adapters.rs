//! Adapters, addresses, DNS servers and routes from IP Helper
//! (`GetAdaptersAddresses`, `GetIpForwardTable2`, `GetBestRoute2`).
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use deskside_diag::snapshot::{InterfaceKind, NetworkConfig};
use deskside_diag::Probe;
use windows_sys::Win32::Foundation::{ERROR_BUFFER_OVERFLOW, ERROR_SUCCESS};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    FreeMibTable, GetAdaptersAddresses, GetBestRoute2, GetIfEntry2, GetIpForwardTable2,
    GAA_FLAG_INCLUDE_GATEWAYS, GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_MULTICAST,
    IP_ADAPTER_ADDRESSES_LH, MIB_IF_ROW2, MIB_IPFORWARD_ROW2, MIB_IPFORWARD_TABLE2,
};
use windows_sys::Win32::NetworkManagement::Ndis::IfOperStatusUp;
use windows_sys::Win32::Networking::WinSock::{
    AF_INET, AF_INET6, AF_UNSPEC, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_INET,
    SOCKET_ADDRESS,
};

use super::dll::from_wide_ptr;
use super::map::{self, AdapterRecord, RouteRow};

/// Room for a typical machine's adapters; Windows says how much more it
/// needs when this is short.
const INITIAL_BUFFER: usize = 16 * 1024;

/// Interfaces, default route, DNS servers, proxy and VPNs.
pub fn network(relay: Option<IpAddr>) -> Probe<NetworkConfig> {
    let adapters = match adapters() {
        Ok(adapters) => adapters,
        Err(code) => {
            return Probe::unknown(format!(
                "GetAdaptersAddresses failed (Windows error {code})"
            ))
        }
    };
    let routes = routes().unwrap_or_else(|code| {
        tracing::debug!("GetIpForwardTable2 failed (Windows error {code})");
        Vec::new()
    });
    let default_route = map::default_route(&routes, &adapters).or_else(|| {
        // Without a route table, the adapters' own gateways.
        adapters.iter().filter(|a| a.up).find_map(|a| {
            let gateway = a.gateways.iter().find(|g| g.is_ipv4())?;
            Some(deskside_diag::snapshot::DefaultRoute {
                interface: a.friendly_name.clone(),
                gateway: gateway.to_string(),
            })
        })
    });
    let dns_servers = map::dns_servers(&adapters, default_route.as_ref());
    let interfaces: Vec<_> = adapters
        .iter()
        .map(map::interface)
        .filter(|i| i.kind != InterfaceKind::Loopback)
        .collect();
    let vpn_interfaces = crate::diag::platform::vpn_interface_names(&interfaces);
    let relay_via_vpn = match relay {
        Some(ip) if ip.is_loopback() => Some(false),
        Some(ip) => best_route_index(ip)
            .or_else(|| map::route_index_for(&routes, &adapters, ip))
            .and_then(|index| adapters.iter().find(|a| a.index == index))
            .map(|a| map::interface_kind(a) == InterfaceKind::Vpn),
        None => None,
    };
    Probe::Measured(NetworkConfig {
        interfaces,
        default_route,
        dns_servers,
        dns_local_stub: false,
        proxy: super::proxy::current_user(),
        vpn_interfaces,
        relay_via_vpn,
        // A full-tunnel VPN's default route hides the home router; the VPN
        // server's address is not derived on Windows yet.
        home_gateway: map::home_gateway(&routes, &adapters),
        vpn_server: None,
    })
}

/// Every adapter `GetAdaptersAddresses` lists, or its error code.
pub fn adapters() -> Result<Vec<AdapterRecord>, u32> {
    // u64 elements: the buffer holds 8-byte-aligned structures.
    let mut buffer: Vec<u64> = vec![0; INITIAL_BUFFER / 8];
    let flags = GAA_FLAG_INCLUDE_GATEWAYS | GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST;
    for _ in 0..4 {
        let mut size = u32::try_from(buffer.len() * 8).unwrap_or(u32::MAX);
        let first = buffer.as_mut_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>();
        // SAFETY: `first` points to `size` writable, aligned bytes; Windows
        // writes at most that many and updates `size`.
        let code = unsafe {
            GetAdaptersAddresses(
                u32::from(AF_UNSPEC),
                flags,
                std::ptr::null(),
                first,
                &mut size,
            )
        };
        match code {
            ERROR_SUCCESS => {
                // SAFETY: on success the buffer holds a linked list of
                // adapters whose pointers all point inside it; it lives
                // until the end of this function.
                return Ok(unsafe { read_adapters(first) });
            }
            ERROR_BUFFER_OVERFLOW => buffer = vec![0; (size as usize).div_ceil(8) + 64],
            // ERROR_NO_DATA: no adapter at all.
            232 => return Ok(Vec::new()),
            other => return Err(other),
        }
    }
    Err(ERROR_BUFFER_OVERFLOW)
}

/// Copies the adapter list out of Windows' structures.
///
/// # Safety
/// `first` must be null or the head of a list `GetAdaptersAddresses`
/// filled, still alive.
unsafe fn read_adapters(first: *const IP_ADAPTER_ADDRESSES_LH) -> Vec<AdapterRecord> {
    let mut out = Vec::new();
    let mut current = first;
    while !current.is_null() {
        // SAFETY: a node of the list the caller vouches for.
        let a = unsafe { &*current };
        let mut record = AdapterRecord {
            // SAFETY: both union fields are plain integers; `IfIndex` is
            // the one GetAdaptersAddresses fills.
            index: unsafe { a.Anonymous1.Anonymous.IfIndex },
            guid: if a.AdapterName.is_null() {
                String::new()
            } else {
                // SAFETY: AdapterName is a NUL-terminated ANSI string.
                unsafe { std::ffi::CStr::from_ptr(a.AdapterName.cast()) }
                    .to_string_lossy()
                    .into_owned()
            },
            // SAFETY: NUL-terminated UTF-16 strings of the list, or null.
            friendly_name: unsafe { from_wide_ptr(a.FriendlyName) }.unwrap_or_default(),
            // SAFETY: as above.
            description: unsafe { from_wide_ptr(a.Description) }.unwrap_or_default(),
            if_type: a.IfType,
            tunnel_type: a.TunnelType as u32,
            up: a.OperStatus == IfOperStatusUp,
            mtu: a.Mtu,
            transmit_bps: a.TransmitLinkSpeed,
            ipv4_metric: a.Ipv4Metric,
            ..AdapterRecord::default()
        };
        let mut unicast = a.FirstUnicastAddress;
        while !unicast.is_null() {
            // SAFETY: a node of the adapter's unicast list.
            let u = unsafe { &*unicast };
            // SAFETY: the address of a node of the list.
            if let Some(ip) = unsafe { socket_address(&u.Address) } {
                record.addresses.push((ip, u.OnLinkPrefixLength));
            }
            unicast = u.Next;
        }
        let mut dns = a.FirstDnsServerAddress;
        while !dns.is_null() {
            // SAFETY: a node of the adapter's DNS server list.
            let d = unsafe { &*dns };
            // SAFETY: the address of a node of the list.
            record
                .dns_servers
                .extend(unsafe { socket_address(&d.Address) });
            dns = d.Next;
        }
        let mut gateway = a.FirstGatewayAddress;
        while !gateway.is_null() {
            // SAFETY: a node of the adapter's gateway list.
            let g = unsafe { &*gateway };
            // SAFETY: the address of a node of the list.
            record
                .gateways
                .extend(unsafe { socket_address(&g.Address) });
            gateway = g.Next;
        }
        (record.rx_errors, record.tx_errors) = error_counters(record.index).unzip();
        out.push(record);
        current = a.Next;
    }
    out
}

/// The interface's receive and transmit error counters since boot
/// (`GetIfEntry2`), if Windows answers.
fn error_counters(index: u32) -> Option<(u64, u64)> {
    // SAFETY: MIB_IF_ROW2 is plain data; all zeroes is a valid value.
    let mut row: MIB_IF_ROW2 = unsafe { std::mem::zeroed() };
    row.InterfaceIndex = index;
    // SAFETY: a live row whose InterfaceIndex says which interface to read.
    let code = unsafe { GetIfEntry2(&mut row) };
    (code == ERROR_SUCCESS).then_some((row.InErrors, row.OutErrors))
}

/// The IP address in a `SOCKET_ADDRESS`.
///
/// # Safety
/// `address.lpSockaddr` must be null or point to `iSockaddrLength` readable
/// bytes.
unsafe fn socket_address(address: &SOCKET_ADDRESS) -> Option<IpAddr> {
    let sockaddr = address.lpSockaddr as *const SOCKADDR;
    if sockaddr.is_null() {
        return None;
    }
    let len = usize::try_from(address.iSockaddrLength).ok()?;
    // SAFETY: at least the family field is readable when len covers it.
    let family = (len >= 2).then(|| unsafe { (*sockaddr).sa_family })?;
    if family == AF_INET && len >= std::mem::size_of::<SOCKADDR_IN>() {
        // SAFETY: an AF_INET address of SOCKADDR_IN's size.
        let v4 = unsafe { std::ptr::read_unaligned(sockaddr.cast::<SOCKADDR_IN>()) };
        // SAFETY: every variant of the union is the same four bytes.
        let bytes = unsafe { v4.sin_addr.S_un.S_addr }.to_ne_bytes();
        Some(IpAddr::V4(Ipv4Addr::from(bytes)))
    } else if family == AF_INET6 && len >= std::mem::size_of::<SOCKADDR_IN6>() {
        // SAFETY: an AF_INET6 address of SOCKADDR_IN6's size.
        let v6 = unsafe { std::ptr::read_unaligned(sockaddr.cast::<SOCKADDR_IN6>()) };
        // SAFETY: every variant of the union is the same sixteen bytes.
        let bytes = unsafe { v6.sin6_addr.u.Byte };
        Some(IpAddr::V6(Ipv6Addr::from(bytes)))
    } else {
        None
    }
}

/// The IP address in a `SOCKADDR_INET`.
fn inet_address(address: &SOCKADDR_INET) -> Option<IpAddr> {
    // SAFETY: `si_family` overlays the family field of both variants.
    let family = unsafe { address.si_family };
    if family == AF_INET {
        // SAFETY: the family says the IPv4 variant is the one filled.
        let bytes = unsafe { address.Ipv4.sin_addr.S_un.S_addr }.to_ne_bytes();
        Some(IpAddr::V4(Ipv4Addr::from(bytes)))
    } else if family == AF_INET6 {
        // SAFETY: the family says the IPv6 variant is the one filled.
        let bytes = unsafe { address.Ipv6.sin6_addr.u.Byte };
        Some(IpAddr::V6(Ipv6Addr::from(bytes)))
    } else {
        None
    }
}

fn route_row(row: &MIB_IPFORWARD_ROW2) -> Option<RouteRow> {
    Some(RouteRow {
        index: row.InterfaceIndex,
        destination: inet_address(&row.DestinationPrefix.Prefix)?,
        prefix_len: row.DestinationPrefix.PrefixLength,
        next_hop: inet_address(&row.NextHop)?,
        metric: row.Metric,
    })
}

/// The IPv4 and IPv6 routing table, or the error code.
pub fn routes() -> Result<Vec<RouteRow>, u32> {
    let mut table: *mut MIB_IPFORWARD_TABLE2 = std::ptr::null_mut();
    // SAFETY: Windows allocates the table and stores its address in
    // `table`; it is freed below with FreeMibTable.
    let code = unsafe { GetIpForwardTable2(AF_UNSPEC, &mut table) };
    if code != ERROR_SUCCESS {
        return Err(code);
    }
    if table.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: on success `table` points to NumEntries rows laid out from
    // `Table`, valid until FreeMibTable.
    let rows = unsafe {
        let count = (*table).NumEntries as usize;
        let first = std::ptr::addr_of!((*table).Table).cast::<MIB_IPFORWARD_ROW2>();
        std::slice::from_raw_parts(first, count)
            .iter()
            .filter_map(route_row)
            .collect()
    };
    // SAFETY: allocated by GetIpForwardTable2, freed once.
    unsafe { FreeMibTable(table.cast()) };
    Ok(rows)
}

/// The interface Windows would send to `target` through
/// (`GetBestRoute2`: route and source-address selection as the stack does
/// them). `None` when it cannot say.
fn best_route_index(target: IpAddr) -> Option<u32> {
    // SAFETY: SOCKADDR_INET is plain data; all zeroes is a valid value.
    let mut destination: SOCKADDR_INET = unsafe { std::mem::zeroed() };
    match target {
        IpAddr::V4(v4) => {
            destination.Ipv4.sin_family = AF_INET;
            destination.Ipv4.sin_addr.S_un.S_addr = u32::from_ne_bytes(v4.octets());
        }
        IpAddr::V6(v6) => {
            destination.Ipv6.sin6_family = AF_INET6;
            destination.Ipv6.sin6_addr.u.Byte = v6.octets();
        }
    }
    // SAFETY: plain data, filled by the call.
    let mut route: MIB_IPFORWARD_ROW2 = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut source: SOCKADDR_INET = unsafe { std::mem::zeroed() };
    // SAFETY: every pointer is to a live local of the right type; a null
    // LUID and index 0 ask Windows to choose the interface.
    let code = unsafe {
        GetBestRoute2(
            std::ptr::null(),
            0,
            std::ptr::null(),
            &destination,
            0,
            &mut route,
            &mut source,
        )
    };
    (code == ERROR_SUCCESS).then_some(route.InterfaceIndex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapter_list_is_read_under_wine_and_windows() {
        // Wine lists the Linux interfaces through its own IP Helper; any
        // Windows lists at least the loopback pseudo-interface.
        let adapters = adapters().expect("GetAdaptersAddresses answers");
        assert!(!adapters.is_empty(), "no adapter at all");
        for adapter in &adapters {
            assert!(!adapter.friendly_name.is_empty(), "{adapter:?}");
        }
        let Probe::Measured(network) = network(Some(IpAddr::from([127, 0, 0, 1]))) else {
            panic!("the network configuration is measured");
        };
        assert!(network
            .interfaces
            .iter()
            .all(|i| i.kind != InterfaceKind::Loopback));
        assert_eq!(network.relay_via_vpn, Some(false), "loopback is not a VPN");
        // A default route through a gateway in the table is the snapshot's
        // default route (under Wine: the Linux one).
        let routes = routes().expect("GetIpForwardTable2 answers");
        let has_default = routes
            .iter()
            .any(|r| r.prefix_len == 0 && r.destination.is_ipv4() && !r.next_hop.is_unspecified());
        if has_default {
            let route = network.default_route.as_ref().expect("the default route");
            assert!(route.gateway.parse::<IpAddr>().is_ok(), "{route:?}");
            assert!(
                network.interfaces.iter().any(|i| i.name == route.interface),
                "{route:?} leaves by a listed interface"
            );
        }
        eprintln!(
            "adapters: {:?}; default route: {:?}; DNS: {:?}",
            network
                .interfaces
                .iter()
                .map(|i| (&i.name, i.kind, &i.addresses))
                .collect::<Vec<_>>(),
            network.default_route,
            network.dns_servers
        );
    }

    #[test]
    fn the_route_table_has_a_route_for_loopback() {
        let routes = routes().expect("GetIpForwardTable2 answers");
        assert!(
            map::route_index_for(
                &routes,
                &adapters().expect("adapters"),
                IpAddr::from([127, 0, 0, 1])
            )
            .is_some(),
            "{routes:?}"
        );
    }
}
