//! What the Windows probes make of the records Windows hands them: pure
//! functions from plain Rust copies of the API structures to the snapshot's
//! types. No `unsafe`, no system call: compiled on every OS so that its
//! tests run on Linux as well as under Wine.

use std::net::IpAddr;

use deskside_diag::snapshot::{
    Band, Battery, ConnectionCost, ConnectivityLevel, DefaultRoute, Interface, InterfaceKind,
    OsConnectivity, Proxy, Wifi,
};
use deskside_diag::Probe;

use crate::diag::parse::band_of_freq;
use crate::diag::parse::netsh::NetshInterface;
use crate::diag::platform::Privacy;

// Interface types (ipifcons.h) and tunnel types (ifdef.h).
const IF_TYPE_ETHERNET_CSMACD: u32 = 6;
const IF_TYPE_PPP: u32 = 23;
const IF_TYPE_SOFTWARE_LOOPBACK: u32 = 24;
const IF_TYPE_PROP_VIRTUAL: u32 = 53;
const IF_TYPE_IEEE80211: u32 = 71;
const IF_TYPE_TUNNEL: u32 = 131;
const TUNNEL_TYPE_6TO4: u32 = 11;
const TUNNEL_TYPE_ISATAP: u32 = 13;
const TUNNEL_TYPE_TEREDO: u32 = 14;
const TUNNEL_TYPE_IPHTTPS: u32 = 15;

/// One adapter as `GetAdaptersAddresses` describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdapterRecord {
    /// `IfIndex`.
    pub index: u32,
    /// `AdapterName`: the interface GUID, `{…}`.
    pub guid: String,
    /// `FriendlyName`, e.g. `Wi-Fi`, `Ethernet 2`.
    pub friendly_name: String,
    /// `Description`: the driver's name of the adapter.
    pub description: String,
    /// `IfType`.
    pub if_type: u32,
    /// `TunnelType`.
    pub tunnel_type: u32,
    /// `OperStatus == IfOperStatusUp`.
    pub up: bool,
    /// `Mtu`.
    pub mtu: u32,
    /// `TransmitLinkSpeed`, bits per second (`u64::MAX` = unknown).
    pub transmit_bps: u64,
    /// Unicast addresses with their on-link prefix length.
    pub addresses: Vec<(IpAddr, u8)>,
    /// `FirstDnsServerAddress` list.
    pub dns_servers: Vec<IpAddr>,
    /// `FirstGatewayAddress` list.
    pub gateways: Vec<IpAddr>,
    /// `Ipv4Metric`.
    pub ipv4_metric: u32,
    /// `InErrors` from `GetIfEntry2`, when it answered.
    pub rx_errors: Option<u64>,
    /// `OutErrors` from `GetIfEntry2`, when it answered.
    pub tx_errors: Option<u64>,
}

/// One row of `GetIpForwardTable2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RouteRow {
    /// `InterfaceIndex`.
    pub index: u32,
    /// `DestinationPrefix`.
    pub destination: IpAddr,
    /// Its length.
    pub prefix_len: u8,
    /// `NextHop` (unspecified for on-link routes).
    pub next_hop: IpAddr,
    /// `Metric` (the route's; Windows adds the interface's).
    pub metric: u32,
}

/// VPN clients recognised by their adapter's description or name. Each
/// installs a virtual adapter whose driver name says whose it is.
const VPN_CLIENTS: &[(&str, &str)] = &[
    ("anyconnect", "Cisco AnyConnect"),
    ("cisco secure client", "Cisco Secure Client"),
    ("pangp", "GlobalProtect"),
    ("globalprotect", "GlobalProtect"),
    ("fortinet", "FortiClient"),
    ("forticlient", "FortiClient"),
    ("wireguard", "WireGuard"),
    ("wintun", "Wintun (WireGuard, OpenVPN or another)"),
    ("tap-windows", "OpenVPN (TAP)"),
    ("openvpn", "OpenVPN"),
    ("zscaler", "Zscaler"),
    ("juniper", "Juniper / Pulse Secure"),
    ("pulse secure", "Pulse Secure"),
    ("ivanti", "Ivanti Secure Access"),
    ("check point", "Check Point"),
    ("sonicwall", "SonicWall"),
    ("f5 networks", "F5 BIG-IP Edge"),
    ("nordlynx", "NordVPN"),
    ("tailscale", "Tailscale"),
    ("zerotier", "ZeroTier"),
    ("mullvad", "Mullvad"),
    ("protonvpn", "Proton VPN"),
    ("expressvpn", "ExpressVPN"),
    ("netskope", "Netskope"),
    ("cloudflare warp", "Cloudflare WARP"),
];

/// The VPN client an adapter belongs to, by its description or name.
pub fn vpn_client(adapter: &AdapterRecord) -> Option<&'static str> {
    let text = format!("{} {}", adapter.description, adapter.friendly_name).to_lowercase();
    VPN_CLIENTS
        .iter()
        .find(|(pattern, _)| text.contains(pattern))
        .map(|(_, client)| *client)
}

/// Adapters of hypervisors and containers: wired in name only.
fn is_virtual_host_adapter(adapter: &AdapterRecord) -> bool {
    let text = format!("{} {}", adapter.description, adapter.friendly_name).to_lowercase();
    [
        "hyper-v",
        "vethernet",
        "virtualbox",
        "vmware",
        "loopback",
        "npcap",
    ]
    .iter()
    .any(|pattern| text.contains(pattern))
}

/// What kind of interface an adapter is.
pub fn interface_kind(adapter: &AdapterRecord) -> InterfaceKind {
    match adapter.if_type {
        IF_TYPE_SOFTWARE_LOOPBACK => return InterfaceKind::Loopback,
        IF_TYPE_IEEE80211 => return InterfaceKind::Wifi,
        IF_TYPE_PPP => return InterfaceKind::Vpn,
        _ => {}
    }
    if vpn_client(adapter).is_some() {
        return InterfaceKind::Vpn;
    }
    match adapter.if_type {
        // IPv6 transition tunnels are Windows' own plumbing, not VPNs.
        IF_TYPE_TUNNEL
            if matches!(
                adapter.tunnel_type,
                TUNNEL_TYPE_6TO4 | TUNNEL_TYPE_ISATAP | TUNNEL_TYPE_TEREDO | TUNNEL_TYPE_IPHTTPS
            ) =>
        {
            InterfaceKind::Other
        }
        IF_TYPE_TUNNEL | IF_TYPE_PROP_VIRTUAL => InterfaceKind::Vpn,
        IF_TYPE_ETHERNET_CSMACD if !is_virtual_host_adapter(adapter) => InterfaceKind::Ethernet,
        _ => InterfaceKind::Other,
    }
}

/// The snapshot's interface for an adapter.
pub fn interface(adapter: &AdapterRecord) -> Interface {
    let speed_mbps = (adapter.transmit_bps != u64::MAX && adapter.transmit_bps > 0)
        .then(|| u32::try_from(adapter.transmit_bps / 1_000_000).ok())
        .flatten()
        .filter(|mbps| *mbps > 0);
    Interface {
        name: adapter.friendly_name.clone(),
        kind: interface_kind(adapter),
        up: adapter.up,
        speed_mbps,
        mtu: (adapter.mtu > 0 && adapter.mtu != u32::MAX).then_some(adapter.mtu),
        addresses: adapter
            .addresses
            .iter()
            .map(|(ip, prefix)| format!("{ip}/{prefix}"))
            .collect(),
        rx_errors: adapter.rx_errors,
        tx_errors: adapter.tx_errors,
        description: non_empty(&adapter.description),
    }
}

/// The IPv4 default route Windows uses: among `0.0.0.0/0` routes through a
/// gateway on an interface that is up, the lowest route metric plus
/// interface metric (what Windows compares).
pub fn default_route(routes: &[RouteRow], adapters: &[AdapterRecord]) -> Option<DefaultRoute> {
    default_route_on(routes, adapters, |_| true)
}

/// With a full-tunnel VPN (the default route Windows uses is on a VPN
/// adapter): the default route on the other adapters, i.e. the home
/// router, which the gateway probe measures instead of the tunnel's far
/// end. `None` when the default route is not a VPN's.
pub fn home_gateway(routes: &[RouteRow], adapters: &[AdapterRecord]) -> Option<DefaultRoute> {
    let chosen = default_route(routes, adapters)?;
    let tunnelled = adapters
        .iter()
        .any(|a| a.friendly_name == chosen.interface && interface_kind(a) == InterfaceKind::Vpn);
    tunnelled
        .then(|| {
            default_route_on(routes, adapters, |a| {
                interface_kind(a) != InterfaceKind::Vpn
            })
        })
        .flatten()
}

fn default_route_on(
    routes: &[RouteRow],
    adapters: &[AdapterRecord],
    keep: impl Fn(&AdapterRecord) -> bool,
) -> Option<DefaultRoute> {
    routes
        .iter()
        .filter(|r| r.prefix_len == 0 && r.destination.is_ipv4() && !r.next_hop.is_unspecified())
        .filter_map(|r| {
            let adapter = adapters
                .iter()
                .find(|a| a.index == r.index && a.up && keep(a))?;
            Some((r.metric.saturating_add(adapter.ipv4_metric), r, adapter))
        })
        .min_by_key(|(metric, _, _)| *metric)
        .map(|(_, route, adapter)| DefaultRoute {
            interface: adapter.friendly_name.clone(),
            gateway: route.next_hop.to_string(),
        })
}

/// The interface index of the route to `target`: longest prefix, then
/// lowest route plus interface metric, on interfaces that are up. The
/// fallback when `GetBestRoute2` cannot answer.
pub fn route_index_for(
    routes: &[RouteRow],
    adapters: &[AdapterRecord],
    target: IpAddr,
) -> Option<u32> {
    routes
        .iter()
        .filter(|r| prefix_contains(r.destination, r.prefix_len, target))
        .filter_map(|r| {
            let adapter = adapters.iter().find(|a| a.index == r.index && a.up)?;
            Some((
                r.prefix_len,
                r.metric.saturating_add(adapter.ipv4_metric),
                r.index,
            ))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, _, index)| index)
}

fn prefix_contains(network: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (network, ip) {
        (IpAddr::V4(n), IpAddr::V4(ip)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(ip)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// The DNS servers in the order Windows asks them: those of the adapter
/// carrying the default route first, then the others that are up, without
/// repeats and without `fec0:0:0:ffff::1..3` (the site-local placeholders
/// Windows lists on adapters that have no DNS server configured).
pub fn dns_servers(adapters: &[AdapterRecord], route: Option<&DefaultRoute>) -> Vec<String> {
    let first = route.map(|r| r.interface.as_str());
    let mut ordered: Vec<&AdapterRecord> = adapters.iter().filter(|a| a.up).collect();
    ordered.sort_by_key(|a| Some(a.friendly_name.as_str()) != first);
    let mut out: Vec<String> = Vec::new();
    for ip in ordered.iter().flat_map(|a| a.dns_servers.iter()) {
        let placeholder = match ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                s[..7] == [0xfec0, 0, 0, 0xffff, 0, 0, 0] && (1..=3).contains(&s[7])
            }
            IpAddr::V4(_) => false,
        };
        let text = ip.to_string();
        if !placeholder && !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// `SYSTEM_POWER_STATUS`, as `GetSystemPowerStatus` fills it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerStatus {
    /// 0 on battery, 1 on mains, 255 unknown.
    pub ac_line: u8,
    /// Bit flags: 1 high, 2 low, 4 critical, 8 charging, 128 no battery;
    /// 255 unknown.
    pub battery_flag: u8,
    /// Charge 0–100, 255 unknown.
    pub life_percent: u8,
}

/// The battery probe from the power status. Health (full-charge against
/// design capacity) is not part of it: left unreported.
pub fn battery(status: PowerStatus) -> Probe<Battery> {
    const NO_BATTERY: u8 = 128;
    const CHARGING: u8 = 8;
    if status.battery_flag == 255 {
        return Probe::unknown("Windows does not know the battery's state");
    }
    if status.battery_flag & NO_BATTERY != 0 {
        return Probe::not_applicable("this machine has no battery");
    }
    let charge = (status.life_percent <= 100).then_some(f64::from(status.life_percent));
    let state = if status.battery_flag & CHARGING != 0 {
        "charging"
    } else if status.ac_line == 1 && status.life_percent == 100 {
        "full"
    } else if status.ac_line == 0 {
        "discharging"
    } else {
        "unknown"
    };
    Probe::Measured(Battery {
        charge_percent: charge,
        health_percent: None,
        state: state.to_owned(),
        cycle_count: None,
    })
}

/// `BATTERY_INFORMATION` from the battery driver
/// (`IOCTL_BATTERY_QUERY_INFORMATION`, level `BatteryInformation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatteryInformation {
    /// `Capabilities` flags.
    pub capabilities: u32,
    /// `DesignedCapacity`, mWh (or relative units).
    pub designed_capacity: u32,
    /// `FullChargedCapacity`, same units.
    pub full_charged_capacity: u32,
    /// `CycleCount`, 0 when the battery does not count.
    pub cycle_count: u32,
}

/// Adds the driver's capacity figures to the battery probe: health is the
/// full-charge capacity against the design capacity, unless the driver
/// reports relative units or an unknown capacity.
pub fn with_health(
    probe: Probe<Battery>,
    information: Option<BatteryInformation>,
) -> Probe<Battery> {
    const BATTERY_CAPACITY_RELATIVE: u32 = 0x4000_0000;
    const BATTERY_UNKNOWN_CAPACITY: u32 = u32::MAX;
    let (Probe::Measured(mut battery), Some(info)) = (probe.clone(), information) else {
        return probe;
    };
    let usable = |c: u32| c != 0 && c != BATTERY_UNKNOWN_CAPACITY;
    if info.capabilities & BATTERY_CAPACITY_RELATIVE == 0
        && usable(info.designed_capacity)
        && usable(info.full_charged_capacity)
    {
        battery.health_percent =
            Some(100.0 * f64::from(info.full_charged_capacity) / f64::from(info.designed_capacity));
    }
    battery.cycle_count = Some(info.cycle_count).filter(|c| *c > 0);
    Probe::Measured(battery)
}

/// Share of time the processors were busy between two `GetSystemTimes`
/// readings `(idle, kernel, user)` in 100 ns units (kernel time includes
/// idle time).
pub fn cpu_busy_percent(before: (u64, u64, u64), after: (u64, u64, u64)) -> Option<f64> {
    let idle = after.0.checked_sub(before.0)?;
    let kernel = after.1.checked_sub(before.1)?;
    let user = after.2.checked_sub(before.2)?;
    let total = kernel.checked_add(user)?;
    if total == 0 || idle > total {
        return None;
    }
    Some(100.0 * (total - idle) as f64 / total as f64)
}

/// `NL_NETWORK_CONNECTIVITY_HINT` from `GetNetworkConnectivityHint`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectivityHint {
    /// `NL_NETWORK_CONNECTIVITY_LEVEL_HINT`.
    pub level: i32,
    /// `NL_NETWORK_CONNECTIVITY_COST_HINT`.
    pub cost: i32,
    /// `ApproachingDataLimit`.
    pub approaching_data_limit: bool,
    /// `OverDataLimit`.
    pub over_data_limit: bool,
    /// `Roaming`.
    pub roaming: bool,
}

/// Windows' connectivity verdict in the snapshot's terms.
pub fn connectivity(hint: ConnectivityHint) -> OsConnectivity {
    let level = match hint.level {
        1 => ConnectivityLevel::None,
        2 => ConnectivityLevel::LocalAccess,
        3 => ConnectivityLevel::InternetAccess,
        4 => ConnectivityLevel::ConstrainedInternetAccess,
        5 => ConnectivityLevel::Hidden,
        _ => ConnectivityLevel::Unknown,
    };
    let cost = match hint.cost {
        1 => ConnectionCost::Unrestricted,
        2 => ConnectionCost::Fixed,
        3 => ConnectionCost::Variable,
        _ => ConnectionCost::Unknown,
    };
    OsConnectivity {
        source: "ncsi".to_owned(),
        level,
        cost,
        approaching_data_limit: hint.approaching_data_limit,
        over_data_limit: hint.over_data_limit,
        roaming: hint.roaming,
    }
}

/// The user's proxy settings (`WinHttpGetIEProxyConfigForCurrentUser`:
/// what Settings > Network & internet > Proxy shows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IeProxyConfig {
    /// "Automatically detect settings" (WPAD).
    pub auto_detect: bool,
    /// "Use setup script": the PAC file's address.
    pub auto_config_url: Option<String>,
    /// "Use a proxy server": `host:port`, or `http=host:port;https=…`.
    pub proxy: Option<String>,
    /// Addresses that bypass it, `;`-separated; `<local>` for local names.
    pub bypass: Option<String>,
}

/// What automatic configuration (PAC or WPAD) answered for a test URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoProxy {
    /// Not tried (no PAC URL and no auto-detection).
    NotTried,
    /// It named a proxy list (`host:port;…`).
    Proxy(String),
    /// It said "direct".
    Direct,
    /// It failed or timed out; why.
    Failed(String),
}

/// The snapshot's proxy settings from the Windows ones.
pub fn proxy(config: &IeProxyConfig, auto: &AutoProxy) -> Proxy {
    let mut out = Proxy::default();
    if let Some(manual) = config.proxy.as_deref().and_then(non_empty) {
        if manual.contains('=') {
            for part in manual.split(';') {
                let Some((scheme, server)) = part.split_once('=') else {
                    continue;
                };
                let server = non_empty(server);
                match scheme.trim().to_ascii_lowercase().as_str() {
                    "http" => out.http = server,
                    "https" => out.https = server,
                    "socks" => out.all = server.map(|s| format!("socks={s}")),
                    _ => {}
                }
            }
        } else {
            // One server for every protocol.
            out.http = Some(manual.clone());
            out.https = Some(manual);
        }
    }
    out.no_proxy = config
        .bypass
        .as_deref()
        .and_then(non_empty)
        .map(|b| b.replace(';', ","));
    let manual_set = out.http.is_some() || out.https.is_some() || out.all.is_some();
    let mut sources: Vec<String> = Vec::new();
    if manual_set {
        sources.push("Windows settings (manual)".to_owned());
    }
    if let Some(url) = config.auto_config_url.as_deref().and_then(non_empty) {
        sources.push(format!("Windows settings (setup script {url})"));
    }
    if config.auto_detect {
        sources.push("Windows settings (automatic detection, WPAD)".to_owned());
    }
    match auto {
        AutoProxy::Proxy(list) if !manual_set => {
            let first = list.split([';', ' ']).find(|s| !s.is_empty());
            out.http = first.map(str::to_owned);
            out.https = out.http.clone();
            sources.push(format!("automatic configuration chose {list}"));
        }
        AutoProxy::Proxy(list) => sources.push(format!("automatic configuration chose {list}")),
        AutoProxy::Direct => {
            sources.push("automatic configuration chose a direct connection".to_owned())
        }
        AutoProxy::Failed(why) => sources.push(format!("automatic configuration failed: {why}")),
        AutoProxy::NotTried => {}
    }
    out.source = (!sources.is_empty()).then(|| sources.join("; "));
    out
}

/// The Native Wifi API's view of the connected interface.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WlanLink {
    /// The adapter's friendly name (from `GetAdaptersAddresses`), or the
    /// interface description when no adapter matched.
    pub interface: String,
    /// `dot11Ssid`.
    pub ssid: Vec<u8>,
    /// `dot11Bssid`.
    pub bssid: [u8; 6],
    /// `dot11PhyType`.
    pub phy_type: i32,
    /// `wlanSignalQuality`, percent: never converted to dBm.
    pub signal_quality: u32,
    /// `ulRxRate`, kbit/s.
    pub rx_rate_kbps: u32,
    /// `ulTxRate`, kbit/s.
    pub tx_rate_kbps: u32,
    /// `wlan_intf_opcode_rssi`.
    pub rssi_dbm: Option<i32>,
    /// `wlan_intf_opcode_channel_number`.
    pub channel: Option<u32>,
    /// From the BSS list entry of the access point: `ulChCenterFrequency`.
    pub bss_frequency_khz: Option<u32>,
    /// From the BSS list entry: `lRssi`.
    pub bss_rssi_dbm: Option<i32>,
}

const DOT11_PHY_TYPE_HE: i32 = 10; // 802.11ax
const DOT11_PHY_TYPE_EHT: i32 = 11; // 802.11be

/// The band of a channel number alone, where it is unambiguous: 6 GHz
/// channels reuse the numbers, so with an 802.11ax/be radio (the only ones
/// on 6 GHz) and no frequency the band stays unknown.
fn band_of_channel(channel: u32, phy_type: i32) -> Option<Band> {
    if matches!(phy_type, DOT11_PHY_TYPE_HE | DOT11_PHY_TYPE_EHT) {
        return None;
    }
    match channel {
        1..=14 => Some(Band::Ghz2_4),
        32..=177 => Some(Band::Ghz5),
        _ => None,
    }
}

fn mac_text(bytes: &[u8; 6]) -> Option<String> {
    (bytes != &[0; 6]).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// The snapshot's Wi‑Fi link from the Native Wifi API's answers.
pub fn wifi_from_wlan(link: &WlanLink, privacy: &Privacy) -> Wifi {
    let freq_mhz = link.bss_frequency_khz.map(|khz| f64::from(khz) / 1000.0);
    let band = freq_mhz
        .and_then(band_of_freq)
        .map(Band::from)
        .or_else(|| band_of_channel(link.channel?, link.phy_type));
    let ssid = (!link.ssid.is_empty()).then(|| String::from_utf8_lossy(&link.ssid).into_owned());
    let rate = |kbps: u32| (kbps > 0).then(|| f64::from(kbps) / 1000.0);
    Wifi {
        interface: link.interface.clone(),
        ssid: privacy.identifier(ssid),
        bssid: privacy.identifier(mac_text(&link.bssid)),
        band,
        channel: link.channel.filter(|c| *c > 0),
        freq_mhz,
        signal_dbm: link
            .rssi_dbm
            .or(link.bss_rssi_dbm)
            .filter(|dbm| (-120..0).contains(dbm))
            .map(f64::from),
        tx_bitrate_mbps: rate(link.tx_rate_kbps),
        rx_bitrate_mbps: rate(link.rx_rate_kbps),
        source: "wlanapi".to_owned(),
        ..Wifi::default()
    }
}

/// The snapshot's Wi‑Fi link from `netsh wlan show interfaces` (the
/// fallback): signal only from `Rssi`, never from the `Signal` percentage.
pub fn wifi_from_netsh(interface: &NetshInterface, privacy: &Privacy) -> Wifi {
    let band = interface
        .band
        .map(Band::from)
        .or_else(|| interface.channel.and_then(|c| band_of_channel(c, 0)));
    Wifi {
        interface: interface.name.clone().unwrap_or_default(),
        ssid: privacy.identifier(interface.ssid.clone()),
        bssid: privacy.identifier(interface.bssid.clone()),
        band,
        channel: interface.channel,
        signal_dbm: interface.rssi_dbm,
        tx_bitrate_mbps: interface.transmit_rate_mbps,
        rx_bitrate_mbps: interface.receive_rate_mbps,
        source: "netsh".to_owned(),
        ..Wifi::default()
    }
}

/// Why the Native Wifi API gave no link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WlanFailure {
    /// Windows withholds Wi‑Fi details without the location permission.
    LocationPermission,
    /// Anything else, in words: worth trying netsh.
    Other(String),
}

/// What a failed Native Wifi call (`call`, returning `code`) means.
/// Windows 11 24H2 and later answer ERROR_ACCESS_DENIED (5) to
/// `WlanQueryInterface` and `WlanGetNetworkBssList` without the location
/// permission.
pub fn wlan_failure(call: &str, code: u32) -> WlanFailure {
    const ERROR_ACCESS_DENIED: u32 = 5;
    if code == ERROR_ACCESS_DENIED {
        WlanFailure::LocationPermission
    } else {
        WlanFailure::Other(format!("{call} failed (Windows error {code})"))
    }
}

/// The reason given when Windows withholds Wi‑Fi details for lack of the
/// location permission (Windows 11 24H2 and later): unknown, never a fault.
pub const LOCATION_PERMISSION_OFF: &str = "location permission off: Windows 11 (24H2 and later) shows Wi‑Fi details only to apps allowed to use the location; allow it in Settings > Privacy & security > Location (turn on Location services and Let desktop apps access your location), then run the check again";

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(index: u32, name: &str, description: &str, if_type: u32) -> AdapterRecord {
        AdapterRecord {
            index,
            guid: format!("{{0000000{index}-0000-0000-0000-000000000000}}"),
            friendly_name: name.to_owned(),
            description: description.to_owned(),
            if_type,
            up: true,
            mtu: 1500,
            transmit_bps: 866_700_000,
            ..AdapterRecord::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn adapters_are_sorted_into_kinds() {
        // (friendly name, description, IfType, tunnel type, expected kind)
        let cases = [
            (
                "Wi-Fi",
                "Intel(R) Wi-Fi 6 AX201 160MHz",
                71,
                0,
                InterfaceKind::Wifi,
            ),
            (
                "Ethernet",
                "Realtek PCIe GbE Family Controller",
                6,
                0,
                InterfaceKind::Ethernet,
            ),
            (
                "vEthernet (WSL)",
                "Hyper-V Virtual Ethernet Adapter",
                6,
                0,
                InterfaceKind::Other,
            ),
            (
                "Ethernet 3",
                "VirtualBox Host-Only Ethernet Adapter",
                6,
                0,
                InterfaceKind::Other,
            ),
            (
                "Ethernet 2",
                "Cisco AnyConnect Secure Mobility Client Virtual Miniport Adapter for Windows x64",
                6,
                0,
                InterfaceKind::Vpn,
            ),
            (
                "Ethernet 4",
                "PANGP Virtual Ethernet Adapter Secure",
                6,
                0,
                InterfaceKind::Vpn,
            ),
            (
                "Ethernet 5",
                "Fortinet SSL VPN Virtual Ethernet Adapter",
                6,
                0,
                InterfaceKind::Vpn,
            ),
            (
                "OpenVPN TAP-Windows6",
                "TAP-Windows Adapter V9",
                6,
                0,
                InterfaceKind::Vpn,
            ),
            ("wg0", "WireGuard Tunnel", 53, 0, InterfaceKind::Vpn),
            (
                "OpenVPN Wintun",
                "Wintun Userspace Tunnel",
                53,
                0,
                InterfaceKind::Vpn,
            ),
            (
                "Zscaler",
                "Zscaler Network Adapter 1.0.2.0",
                6,
                0,
                InterfaceKind::Vpn,
            ),
            (
                "Company VPN",
                "WAN Miniport (IKEv2)",
                23,
                0,
                InterfaceKind::Vpn,
            ),
            (
                "Teredo Tunneling Pseudo-Interface",
                "Teredo Tunneling Pseudo-Interface",
                131,
                14,
                InterfaceKind::Other,
            ),
            (
                "Some tunnel",
                "Microsoft IP-over-something",
                131,
                2,
                InterfaceKind::Vpn,
            ),
            (
                "Loopback Pseudo-Interface 1",
                "Software Loopback Interface 1",
                24,
                0,
                InterfaceKind::Loopback,
            ),
            (
                "Cellular",
                "Qualcomm Snapdragon X55 5G",
                243,
                0,
                InterfaceKind::Other,
            ),
        ];
        for (name, description, if_type, tunnel_type, kind) in cases {
            let mut a = adapter(1, name, description, if_type);
            a.tunnel_type = tunnel_type;
            assert_eq!(interface_kind(&a), kind, "{description}");
        }
        let anyconnect = adapter(
            2,
            "Ethernet 2",
            "Cisco AnyConnect Virtual Miniport Adapter",
            6,
        );
        assert_eq!(vpn_client(&anyconnect), Some("Cisco AnyConnect"));
        assert_eq!(vpn_client(&adapter(3, "Wi-Fi", "Intel Wi-Fi 6", 71)), None);
    }

    #[test]
    fn an_adapter_becomes_an_interface_with_its_addresses_and_speed() {
        let mut wifi = adapter(7, "Wi-Fi", "Intel(R) Wi-Fi 6 AX201 160MHz", 71);
        wifi.addresses = vec![(ip("192.168.1.23"), 24), (ip("fe80::1"), 64)];
        let interface = interface(&wifi);
        assert_eq!(interface.name, "Wi-Fi");
        assert_eq!(interface.kind, InterfaceKind::Wifi);
        assert_eq!(interface.speed_mbps, Some(866));
        assert_eq!(interface.mtu, Some(1500));
        assert_eq!(interface.addresses, vec!["192.168.1.23/24", "fe80::1/64"]);
        assert_eq!(
            interface.description.as_deref(),
            Some("Intel(R) Wi-Fi 6 AX201 160MHz")
        );
        // Unknown speed (u64::MAX) and MTU are left out, not zero.
        wifi.transmit_bps = u64::MAX;
        wifi.mtu = u32::MAX;
        let interface = super::interface(&wifi);
        assert_eq!((interface.speed_mbps, interface.mtu), (None, None));
    }

    #[test]
    fn with_a_full_tunnel_vpn_the_home_gateway_is_on_the_physical_adapter() {
        let mut wifi = adapter(7, "Wi-Fi", "Intel Wi-Fi", 71);
        wifi.ipv4_metric = 35;
        let mut vpn = adapter(
            12,
            "Ethernet 3",
            "Cisco AnyConnect Secure Mobility Client Virtual Miniport Adapter for Windows x64",
            6,
        );
        vpn.ipv4_metric = 1;
        let row = |index, next_hop: &str| RouteRow {
            index,
            destination: ip("0.0.0.0"),
            prefix_len: 0,
            next_hop: ip(next_hop),
            metric: 0,
        };
        let routes = vec![row(7, "192.168.1.1"), row(12, "10.8.0.1")];
        let adapters = vec![wifi.clone(), vpn];
        // The route Windows uses is the tunnel's ...
        assert_eq!(
            default_route(&routes, &adapters).map(|r| r.gateway),
            Some("10.8.0.1".to_owned())
        );
        // ... and the home router is still found on the Wi-Fi adapter.
        let home = home_gateway(&routes, &adapters).expect("home gateway");
        assert_eq!(
            (home.interface.as_str(), home.gateway.as_str()),
            ("Wi-Fi", "192.168.1.1")
        );
        // Without a VPN there is nothing to add.
        assert_eq!(home_gateway(&routes[..1], &[wifi]), None);
    }

    #[test]
    fn the_default_route_is_the_cheapest_through_a_gateway_on_an_interface_that_is_up() {
        let mut ethernet = adapter(3, "Ethernet", "Realtek", 6);
        ethernet.ipv4_metric = 25;
        let mut wifi = adapter(7, "Wi-Fi", "Intel Wi-Fi", 71);
        wifi.ipv4_metric = 35;
        let mut down = adapter(9, "Ethernet 2", "USB Ethernet", 6);
        down.up = false;
        let row = |index, destination: &str, prefix_len, next_hop: &str, metric| RouteRow {
            index,
            destination: ip(destination),
            prefix_len,
            next_hop: ip(next_hop),
            metric,
        };
        let routes = vec![
            row(7, "0.0.0.0", 0, "192.168.1.1", 0),
            row(3, "0.0.0.0", 0, "10.0.0.1", 0),
            row(9, "0.0.0.0", 0, "172.16.0.1", 0),
            row(3, "10.0.0.0", 8, "0.0.0.0", 256),
            row(7, "::", 0, "fe80::1", 0),
        ];
        let adapters = vec![ethernet.clone(), wifi.clone(), down.clone()];
        let route = default_route(&routes, &adapters).unwrap();
        assert_eq!(
            (route.interface.as_str(), route.gateway.as_str()),
            ("Ethernet", "10.0.0.1")
        );
        // The most specific route wins for a given address, then the
        // cheapest; interfaces that are down carry nothing.
        assert_eq!(route_index_for(&routes, &adapters, ip("10.1.2.3")), Some(3));
        assert_eq!(
            route_index_for(&routes, &adapters, ip("203.0.113.9")),
            Some(3)
        );
        assert_eq!(
            route_index_for(&routes[3..4], &adapters, ip("203.0.113.9")),
            None
        );
        // Unplug the Ethernet: the Wi‑Fi route is next.
        ethernet.up = false;
        let unplugged = [ethernet, wifi, down];
        let route = default_route(&routes, &unplugged).unwrap();
        assert_eq!(
            (route.interface.as_str(), route.gateway.as_str()),
            ("Wi-Fi", "192.168.1.1")
        );
        assert_eq!(
            route_index_for(&routes, &unplugged, ip("203.0.113.9")),
            Some(7)
        );
        assert_eq!(
            default_route(&routes[3..4], &adapters),
            None,
            "no default route"
        );
    }

    #[test]
    fn dns_servers_follow_the_default_interface_without_placeholders_or_repeats() {
        let mut ethernet = adapter(3, "Ethernet", "Realtek", 6);
        ethernet.dns_servers = vec![
            ip("fec0:0:0:ffff::1"),
            ip("fec0:0:0:ffff::2"),
            ip("1.1.1.1"),
        ];
        let mut wifi = adapter(7, "Wi-Fi", "Intel", 71);
        wifi.dns_servers = vec![ip("192.168.1.1"), ip("1.1.1.1")];
        let route = DefaultRoute {
            interface: "Wi-Fi".to_owned(),
            gateway: "192.168.1.1".to_owned(),
        };
        assert_eq!(
            dns_servers(&[ethernet, wifi], Some(&route)),
            vec!["192.168.1.1", "1.1.1.1"]
        );
    }

    #[test]
    fn the_power_status_becomes_the_battery_probe() {
        let status = |ac_line, battery_flag, life_percent| PowerStatus {
            ac_line,
            battery_flag,
            life_percent,
        };
        assert!(matches!(
            battery(status(1, 128, 255)),
            Probe::NotApplicable { .. }
        ));
        assert!(matches!(
            battery(status(255, 255, 255)),
            Probe::Unknown { .. }
        ));
        let on_battery = battery(status(0, 1, 72));
        let on_battery = on_battery.value().unwrap();
        assert_eq!(on_battery.charge_percent, Some(72.0));
        assert_eq!(on_battery.state, "discharging");
        assert_eq!(on_battery.health_percent, None, "not in the power status");
        assert_eq!(
            battery(status(1, 8 | 2, 30)).value().unwrap().state,
            "charging"
        );
        assert_eq!(battery(status(1, 1, 100)).value().unwrap().state, "full");
        assert_eq!(
            battery(status(1, 1, 255)).value().unwrap().charge_percent,
            None
        );
    }

    #[test]
    fn the_battery_drivers_capacities_give_its_health() {
        let on_battery = battery(PowerStatus {
            ac_line: 0,
            battery_flag: 1,
            life_percent: 80,
        });
        let info = BatteryInformation {
            capabilities: 0x8000_0000, // BATTERY_SYSTEM_BATTERY
            designed_capacity: 50_000,
            full_charged_capacity: 38_000,
            cycle_count: 412,
        };
        let worn = with_health(on_battery.clone(), Some(info));
        let worn = worn.value().unwrap();
        assert_eq!(worn.health_percent, Some(76.0));
        assert_eq!(worn.cycle_count, Some(412));
        assert_eq!(worn.charge_percent, Some(80.0), "the power status is kept");
        // Relative units, unknown capacities and a missing driver answer
        // leave health unreported rather than made up.
        for odd in [
            BatteryInformation {
                capabilities: 0x4000_0000,
                ..info
            },
            BatteryInformation {
                designed_capacity: 0,
                ..info
            },
            BatteryInformation {
                full_charged_capacity: u32::MAX,
                ..info
            },
        ] {
            let probe = with_health(on_battery.clone(), Some(odd));
            assert_eq!(probe.value().unwrap().health_percent, None, "{odd:?}");
        }
        assert_eq!(with_health(on_battery.clone(), None), on_battery);
        // No battery stays not applicable.
        let none = battery(PowerStatus {
            ac_line: 1,
            battery_flag: 128,
            life_percent: 255,
        });
        assert_eq!(with_health(none.clone(), Some(info)), none);
    }

    #[test]
    fn cpu_usage_comes_from_two_readings_of_system_times() {
        // 2 s on 4 cores = 80 M units of 100 ns; 20 M busy.
        let before = (1_000, 2_000, 3_000);
        let after = (1_000 + 60_000_000, 2_000 + 70_000_000, 3_000 + 10_000_000);
        assert_eq!(cpu_busy_percent(before, after), Some(25.0));
        assert_eq!(cpu_busy_percent(before, before), None, "no time passed");
        assert_eq!(cpu_busy_percent(after, before), None, "clock went back");
    }

    #[test]
    fn the_connectivity_hint_maps_to_the_snapshot() {
        let hint = ConnectivityHint {
            level: 2,
            cost: 2,
            approaching_data_limit: true,
            over_data_limit: false,
            roaming: false,
        };
        let os = connectivity(hint);
        assert_eq!(os.source, "ncsi");
        assert_eq!(os.level, ConnectivityLevel::LocalAccess);
        assert!(os.says_no_internet() && os.metered() && os.approaching_data_limit);
        let levels = [
            (0, ConnectivityLevel::Unknown),
            (1, ConnectivityLevel::None),
            (3, ConnectivityLevel::InternetAccess),
            (4, ConnectivityLevel::ConstrainedInternetAccess),
            (5, ConnectivityLevel::Hidden),
            (99, ConnectivityLevel::Unknown),
        ];
        for (raw, level) in levels {
            let os = connectivity(ConnectivityHint { level: raw, ..hint });
            assert_eq!(os.level, level, "{raw}");
        }
        assert_eq!(
            connectivity(ConnectivityHint { cost: 1, ..hint }).cost,
            ConnectionCost::Unrestricted
        );
    }

    #[test]
    fn windows_proxy_settings_become_the_snapshots() {
        let manual = IeProxyConfig {
            proxy: Some("proxy.corp:8080".to_owned()),
            bypass: Some("*.corp;<local>".to_owned()),
            ..IeProxyConfig::default()
        };
        let p = proxy(&manual, &AutoProxy::NotTried);
        assert_eq!(p.http.as_deref(), Some("proxy.corp:8080"));
        assert_eq!(p.https.as_deref(), Some("proxy.corp:8080"));
        assert_eq!(p.no_proxy.as_deref(), Some("*.corp,<local>"));
        assert_eq!(p.source.as_deref(), Some("Windows settings (manual)"));
        let per_scheme = IeProxyConfig {
            proxy: Some("http=web:80;https=secure:443;socks=sock:1080".to_owned()),
            ..IeProxyConfig::default()
        };
        let p = proxy(&per_scheme, &AutoProxy::NotTried);
        assert_eq!(p.http.as_deref(), Some("web:80"));
        assert_eq!(p.https.as_deref(), Some("secure:443"));
        assert_eq!(p.all.as_deref(), Some("socks=sock:1080"));
        let pac = IeProxyConfig {
            auto_config_url: Some("http://wpad.corp/proxy.pac".to_owned()),
            ..IeProxyConfig::default()
        };
        let p = proxy(
            &pac,
            &AutoProxy::Proxy("pac-proxy:3128; backup:3128".to_owned()),
        );
        assert_eq!(p.http.as_deref(), Some("pac-proxy:3128"));
        assert!(p
            .source
            .as_deref()
            .unwrap()
            .contains("setup script http://wpad.corp/proxy.pac"));
        let detect = IeProxyConfig {
            auto_detect: true,
            ..IeProxyConfig::default()
        };
        let p = proxy(&detect, &AutoProxy::Direct);
        assert_eq!((p.http.clone(), p.https.clone()), (None, None));
        assert!(p.source.as_deref().unwrap().contains("WPAD"));
        let p = proxy(
            &detect,
            &AutoProxy::Failed("no answer within 3 s".to_owned()),
        );
        assert!(p
            .source
            .as_deref()
            .unwrap()
            .contains("failed: no answer within 3 s"));
        assert_eq!(
            proxy(&IeProxyConfig::default(), &AutoProxy::NotTried),
            Proxy::default()
        );
    }

    #[test]
    fn the_native_wifi_answers_become_the_link() {
        let link = WlanLink {
            interface: "Wi-Fi".to_owned(),
            ssid: b"Home".to_vec(),
            bssid: [0xaa, 0xbb, 0xcc, 0, 0x11, 0x22],
            phy_type: 8, // 802.11ac
            signal_quality: 51,
            rx_rate_kbps: 866_700,
            tx_rate_kbps: 780_000,
            rssi_dbm: Some(-63),
            channel: Some(44),
            bss_frequency_khz: Some(5_220_000),
            bss_rssi_dbm: Some(-65),
        };
        let clear = Privacy {
            wifi_identifiers_in_clear: true,
            ..Privacy::default()
        };
        let wifi = wifi_from_wlan(&link, &clear);
        assert_eq!(wifi.ssid.as_deref(), Some("Home"));
        assert_eq!(wifi.bssid.as_deref(), Some("aa:bb:cc:00:11:22"));
        assert_eq!(wifi.band, Some(Band::Ghz5));
        assert_eq!(wifi.channel, Some(44));
        assert_eq!(wifi.freq_mhz, Some(5220.0));
        assert_eq!(
            wifi.signal_dbm,
            Some(-63.0),
            "the interface RSSI, never the quality %"
        );
        assert_eq!(wifi.rx_bitrate_mbps, Some(866.7));
        assert_eq!(wifi.tx_bitrate_mbps, Some(780.0));
        assert_eq!(wifi.source, "wlanapi");
        // Identifiers are left out without a policy that allows or hashes them.
        let hidden = wifi_from_wlan(&link, &Privacy::default());
        assert_eq!((hidden.ssid, hidden.bssid), (None, None));
        // Without the interface RSSI, the access point's entry gives it;
        // without a frequency, a 2.4 GHz channel still gives the band, but
        // an 802.11ax channel number alone does not (6 GHz reuses them).
        let fallback = WlanLink {
            rssi_dbm: None,
            bss_frequency_khz: None,
            channel: Some(6),
            ..link.clone()
        };
        let wifi = wifi_from_wlan(&fallback, &clear);
        assert_eq!(wifi.signal_dbm, Some(-65.0));
        assert_eq!(wifi.band, Some(Band::Ghz2_4));
        let ax = WlanLink {
            phy_type: DOT11_PHY_TYPE_HE,
            ..fallback
        };
        assert_eq!(wifi_from_wlan(&ax, &clear).band, None);
        let nothing = WlanLink {
            rssi_dbm: None,
            bss_rssi_dbm: None,
            ..link
        };
        assert_eq!(wifi_from_wlan(&nothing, &clear).signal_dbm, None);
    }

    #[test]
    fn access_denied_from_the_wifi_api_means_the_location_permission() {
        assert_eq!(
            wlan_failure("WlanQueryInterface (current connection)", 5),
            WlanFailure::LocationPermission
        );
        assert_eq!(
            wlan_failure("WlanQueryInterface (current connection)", 1168),
            WlanFailure::Other(
                "WlanQueryInterface (current connection) failed (Windows error 1168)".to_owned()
            )
        );
    }

    #[test]
    fn a_missing_location_permission_is_explained_with_the_way_to_allow_it() {
        assert!(LOCATION_PERMISSION_OFF.starts_with("location permission off"));
        assert!(LOCATION_PERMISSION_OFF.contains("Settings > Privacy & security > Location"));
        let french = deskside_diag::reason::french(LOCATION_PERMISSION_OFF).expect("translated");
        assert!(french.contains("Confidentialité et sécurité"), "{french}");
    }

    #[test]
    fn the_netsh_fallback_uses_rssi_only() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/windows/netsh-wlan-win11-rssi.txt"
        ));
        let parsed = crate::diag::parse::netsh::parse_netsh_wlan_interfaces(text);
        let clear = Privacy {
            wifi_identifiers_in_clear: true,
            ..Privacy::default()
        };
        let wifi = wifi_from_netsh(&parsed[0], &clear);
        assert_eq!(wifi.signal_dbm, Some(-63.0));
        assert_eq!(wifi.source, "netsh");
        assert!(wifi.band.is_some() && wifi.channel.is_some());
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/windows/netsh-wlan-win10.txt"
        ));
        let parsed = crate::diag::parse::netsh::parse_netsh_wlan_interfaces(text);
        let wifi = wifi_from_netsh(&parsed[0], &clear);
        assert_eq!(
            wifi.signal_dbm, None,
            "Windows 10 prints no Rssi: the % is not converted"
        );
        assert_eq!(band_of_freq(2437.0).map(Band::from), Some(Band::Ghz2_4));
        assert_eq!(band_of_freq(5975.0).map(Band::from), Some(Band::Ghz6));
    }
}
