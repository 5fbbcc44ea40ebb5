//! Linux probes: sysfs and procfs for interfaces, routes, pressure and the
//! battery; `iw` (nl80211, no root needed) for the Wi‑Fi link, with
//! `/proc/net/wireless` as a fallback when `iw` is not installed.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deskside_diag::snapshot::{
    Band, Battery, DefaultRoute, Interface, InterfaceKind, NetworkConfig, Pressure, Proxy,
    VpnServer, Wifi,
};
use deskside_diag::Probe;

use super::Privacy;
use crate::diag::parse;

/// Time between the two station-dump samples whose difference gives the
/// retry rate of the link right now rather than since association.
const STATION_SAMPLE: Duration = Duration::from_millis(400);

/// Whether a mount point holds the OS.
pub fn is_system_mount(mount_point: &str) -> bool {
    mount_point == "/"
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_number<T: std::str::FromStr>(path: impl AsRef<Path>) -> Option<T> {
    read(path)?.trim().parse().ok()
}

/// Pressure stall information from `/proc/pressure`.
pub fn pressure() -> Probe<Pressure> {
    let cpu = read("/proc/pressure/cpu").map(|t| parse::proc::parse_psi(&t));
    let memory = read("/proc/pressure/memory").map(|t| parse::proc::parse_psi(&t));
    let io = read("/proc/pressure/io").map(|t| parse::proc::parse_psi(&t));
    if cpu.is_none() && memory.is_none() && io.is_none() {
        return Probe::unknown("/proc/pressure is not available (kernel without PSI, or psi=0)");
    }
    let some = |psi: &Option<parse::proc::Psi>| psi.as_ref().and_then(|p| p.some.clone());
    let full = |psi: &Option<parse::proc::Psi>| psi.as_ref().and_then(|p| p.full.clone());
    Probe::Measured(Pressure {
        cpu_some_avg10: some(&cpu).map(|l| l.avg10),
        cpu_some_avg60: some(&cpu).map(|l| l.avg60),
        memory_some_avg60: some(&memory).map(|l| l.avg60),
        memory_full_avg10: full(&memory).map(|l| l.avg10),
        io_some_avg60: some(&io).map(|l| l.avg60),
        io_full_avg60: full(&io).map(|l| l.avg60),
    })
}

/// The first battery in `/sys/class/power_supply`.
pub fn battery() -> Probe<Battery> {
    let Ok(entries) = std::fs::read_dir("/sys/class/power_supply") else {
        return Probe::not_applicable("no power supply information (no battery)");
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if read(dir.join("type")).as_deref().map(str::trim) != Some("Battery") {
            continue;
        }
        let full: Option<f64> =
            read_number(dir.join("energy_full")).or_else(|| read_number(dir.join("charge_full")));
        let design: Option<f64> = read_number(dir.join("energy_full_design"))
            .or_else(|| read_number(dir.join("charge_full_design")));
        let health = match (full, design) {
            (Some(full), Some(design)) if design > 0.0 => Some(100.0 * full / design),
            _ => None,
        };
        return Probe::Measured(Battery {
            charge_percent: read_number(dir.join("capacity")),
            health_percent: health,
            state: read(dir.join("status"))
                .map(|s| s.trim().to_lowercase())
                .unwrap_or_else(|| "unknown".to_owned()),
            cycle_count: read_number(dir.join("cycle_count")).filter(|c: &u32| *c > 0),
        });
    }
    Probe::not_applicable("this machine has no battery")
}

/// ARPHRD values from `/sys/class/net/*/type`.
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_LOOPBACK: u32 = 772;
const ARPHRD_NONE: u32 = 65534; // tun and WireGuard
const ARPHRD_PPP: u32 = 512;

fn interface_kind(name: &str, dir: &Path) -> InterfaceKind {
    let arphrd: Option<u32> = read_number(dir.join("type"));
    if dir.join("wireless").exists() || dir.join("phy80211").exists() {
        return InterfaceKind::Wifi;
    }
    if arphrd == Some(ARPHRD_LOOPBACK) {
        return InterfaceKind::Loopback;
    }
    let vpn_name = [
        "tun",
        "tap",
        "wg",
        "ppp",
        "ipsec",
        "vpn",
        "utun",
        "tailscale",
        "zt",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix));
    if vpn_name
        || dir.join("tun_flags").exists()
        || matches!(arphrd, Some(ARPHRD_NONE | ARPHRD_PPP))
    {
        return InterfaceKind::Vpn;
    }
    // A physical Ethernet port has a backing device; bridges, veths and
    // container interfaces do not.
    if arphrd == Some(ARPHRD_ETHER) && dir.join("device").exists() {
        return InterfaceKind::Ethernet;
    }
    InterfaceKind::Other
}

fn interfaces() -> Vec<Interface> {
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<Interface> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            let kind = interface_kind(&name, &dir);
            if kind == InterfaceKind::Loopback {
                return None;
            }
            let operstate = read(dir.join("operstate")).unwrap_or_default();
            let carrier: Option<u8> = read_number(dir.join("carrier"));
            let up =
                operstate.trim() == "up" || (operstate.trim() == "unknown" && carrier == Some(1));
            let addresses = networks
                .get(&name)
                .map(|data| {
                    data.ip_networks()
                        .iter()
                        .map(|n| format!("{}/{}", n.addr, n.prefix))
                        .collect()
                })
                .unwrap_or_default();
            Some(Interface {
                speed_mbps: read_number::<i64>(dir.join("speed"))
                    .filter(|s| *s > 0)
                    .and_then(|s| u32::try_from(s).ok()),
                mtu: read_number(dir.join("mtu")),
                rx_errors: read_number(dir.join("statistics/rx_errors")),
                tx_errors: read_number(dir.join("statistics/tx_errors")),
                name,
                kind,
                up,
                addresses,
                description: None,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn proxy_from_env() -> Proxy {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
    };
    let proxy = Proxy {
        http: var(&["http_proxy", "HTTP_PROXY"]),
        https: var(&["https_proxy", "HTTPS_PROXY"]),
        all: var(&["all_proxy", "ALL_PROXY"]),
        no_proxy: var(&["no_proxy", "NO_PROXY"]),
        credentials: None,
        source: None,
    };
    let any = proxy.http.is_some() || proxy.https.is_some() || proxy.all.is_some();
    crate::diag::proxy::without_credentials(Proxy {
        source: any.then(|| "environment".to_owned()),
        ..proxy
    })
}

/// Interfaces, default route, resolvers, proxies and VPNs.
pub fn network(relay: Option<IpAddr>) -> Probe<NetworkConfig> {
    let interfaces = interfaces();
    let routes = read("/proc/net/route")
        .map(|t| parse::proc::parse_routes(&t))
        .unwrap_or_default();
    let default_route =
        parse::proc::default_gateway(&routes).map(|(interface, gateway)| DefaultRoute {
            interface,
            gateway: gateway.to_string(),
        });
    let resolv = read("/etc/resolv.conf").map(|t| parse::proc::parse_resolv_conf(&t));
    let (mut dns_servers, dns_local_stub) = match &resolv {
        Some(conf) => (
            conf.nameservers
                .iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>(),
            conf.local_stub_only,
        ),
        None => (Vec::new(), false),
    };
    if dns_local_stub {
        // systemd-resolved: the real upstream servers are listed here.
        if let Some(upstream) =
            read("/run/systemd/resolve/resolv.conf").map(|t| parse::proc::parse_resolv_conf(&t))
        {
            dns_servers.extend(upstream.nameservers.iter().map(|ip| ip.to_string()));
        }
    }
    let vpn_interfaces = super::vpn_interface_names(&interfaces);
    let relay_via_vpn = match relay {
        Some(IpAddr::V4(ip)) if !ip.is_loopback() => {
            parse::proc::route_for(&routes, ip).map(|iface| {
                interfaces
                    .iter()
                    .any(|i| i.name == iface && i.kind == InterfaceKind::Vpn)
            })
        }
        Some(IpAddr::V4(_)) => Some(false),
        _ => None,
    };
    // A full-tunnel VPN: the home router is the one on the physical
    // interface, and the VPN server is measured on its own.
    let tunnel = parse::tunnel::full_tunnel(&routes, |name| {
        interfaces
            .iter()
            .any(|i| i.name == name && i.kind == InterfaceKind::Vpn)
    });
    let home_gateway =
        tunnel
            .as_ref()
            .and_then(|t| t.home_gateway.clone())
            .map(|(interface, gateway)| DefaultRoute {
                interface,
                gateway: gateway.to_string(),
            });
    let vpn_server = tunnel.and_then(|t| t.server).map(|address| VpnServer {
        address: address.to_string(),
        round_trip: None,
    });
    Probe::Measured(NetworkConfig {
        home_gateway,
        vpn_server,
        interfaces,
        default_route,
        dns_servers,
        dns_local_stub,
        proxy: proxy_from_env(),
        vpn_interfaces,
        relay_via_vpn,
    })
}

fn run_iw(args: &[&str]) -> Result<String, String> {
    let output = Command::new("iw")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "the `iw` tool is not installed (Debian package iw)".to_owned()
            } else {
                format!("cannot run iw: {e}")
            }
        })?;
    if !output.status.success() {
        return Err(format!(
            "iw {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// IEEE channel number of a centre frequency.
fn channel(freq_mhz: f64) -> Option<u32> {
    let f = freq_mhz.round() as i64;
    let channel = match f {
        2484 => 14,
        2412..=2472 => (f - 2407) / 5,
        5000..=5895 => (f - 5000) / 5,
        5955..=7115 => (f - 5950) / 5,
        _ => return None,
    };
    u32::try_from(channel).ok()
}

/// The Wi‑Fi link the default route uses (or the first connected one).
pub fn wifi(network: &NetworkConfig, privacy: &Privacy) -> Probe<Wifi> {
    let wifi_interfaces: Vec<&Interface> = network
        .interfaces
        .iter()
        .filter(|i| i.kind == InterfaceKind::Wifi)
        .collect();
    let route_interface = network.default_route.as_ref().map(|r| r.interface.as_str());
    let Some(interface) = wifi_interfaces
        .iter()
        .find(|i| Some(i.name.as_str()) == route_interface)
        .or_else(|| wifi_interfaces.iter().find(|i| i.up))
    else {
        return if wifi_interfaces.is_empty() {
            Probe::not_applicable("no Wi‑Fi interface")
        } else {
            Probe::not_applicable(
                "Wi‑Fi is not in use (not connected, or the default route is wired)",
            )
        };
    };
    let name = interface.name.as_str();
    match run_iw(&["dev", name, "link"]) {
        Ok(text) => {
            let link = parse::iw::parse_link(&text);
            if !link.connected {
                return Probe::not_applicable(format!(
                    "{name} is not connected to a Wi‑Fi network"
                ));
            }
            let first = run_iw(&["dev", name, "station", "dump"])
                .ok()
                .map(|t| parse::iw::parse_station_dump(&t));
            std::thread::sleep(STATION_SAMPLE);
            let second = run_iw(&["dev", name, "station", "dump"])
                .ok()
                .map(|t| parse::iw::parse_station_dump(&t));
            let station = second.as_ref().and_then(|s| s.first());
            let before = first.as_ref().and_then(|s| s.first());
            let retries = retry_percent(before, station);
            let survey = run_iw(&["dev", name, "survey", "dump"])
                .ok()
                .map(|t| parse::iw::parse_survey_dump(&t));
            let in_use = survey
                .as_ref()
                .and_then(|entries| entries.iter().find(|e| e.in_use));
            let noise = in_use.and_then(|e| e.noise_dbm);
            let signal = link
                .signal_dbm
                .or_else(|| station.and_then(|s| s.signal_dbm));
            Probe::Measured(Wifi {
                interface: name.to_owned(),
                ssid: privacy.identifier(link.ssid.clone()),
                bssid: privacy.identifier(link.bssid.clone()),
                band: link.freq_mhz.and_then(parse::band_of_freq).map(Band::from),
                channel: link.freq_mhz.and_then(channel),
                freq_mhz: link.freq_mhz,
                signal_dbm: signal,
                noise_dbm: noise,
                snr_db: signal.zip(noise).map(|(s, n)| s - n),
                tx_bitrate_mbps: link
                    .tx_bitrate_mbps
                    .or_else(|| station.and_then(|s| s.tx_bitrate_mbps)),
                rx_bitrate_mbps: link
                    .rx_bitrate_mbps
                    .or_else(|| station.and_then(|s| s.rx_bitrate_mbps)),
                tx_retries_percent: retries,
                tx_failed: match (before, station) {
                    (Some(b), Some(a)) => a
                        .tx_failed
                        .zip(b.tx_failed)
                        .map(|(a, b)| a.saturating_sub(b)),
                    _ => None,
                },
                channel_busy_percent: in_use.and_then(parse::iw::channel_busy_percent),
                source: "iw".to_owned(),
            })
        }
        Err(iw_error) => proc_wireless(name, &iw_error),
    }
}

/// Retries as a share of transmitted packets between two station samples;
/// since association when too few packets moved in between to mean much.
fn retry_percent(
    before: Option<&parse::iw::StationInfo>,
    after: Option<&parse::iw::StationInfo>,
) -> Option<f64> {
    let after = after?;
    let (retries, packets) = (after.tx_retries?, after.tx_packets?);
    if let Some(before) = before {
        if let (Some(r0), Some(p0)) = (before.tx_retries, before.tx_packets) {
            let (dr, dp) = (retries.saturating_sub(r0), packets.saturating_sub(p0));
            if dp >= 50 {
                return Some(100.0 * dr as f64 / dp as f64);
            }
        }
    }
    (packets > 0).then(|| 100.0 * retries as f64 / packets as f64)
}

/// The fallback when `iw` is missing: signal and noise only.
fn proc_wireless(name: &str, iw_error: &str) -> Probe<Wifi> {
    let Some(text) = read("/proc/net/wireless") else {
        return Probe::unknown(format!(
            "{iw_error}, and /proc/net/wireless is not readable"
        ));
    };
    let Some(entry) = parse::proc::parse_proc_net_wireless(&text)
        .into_iter()
        .find(|e| e.interface == name)
    else {
        return Probe::unknown(format!(
            "{iw_error}, and /proc/net/wireless does not list {name}"
        ));
    };
    let signal = entry.level_dbm;
    let noise = entry.noise_dbm;
    Probe::Measured(Wifi {
        interface: name.to_owned(),
        signal_dbm: signal,
        noise_dbm: noise,
        snr_db: signal.zip(noise).map(|(s, n)| s - n),
        source: "proc".to_owned(),
        ..Wifi::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn channels_of_common_frequencies() {
        assert_eq!(channel(2412.0), Some(1));
        assert_eq!(channel(2462.0), Some(11));
        assert_eq!(channel(2484.0), Some(14));
        assert_eq!(channel(5180.0), Some(36));
        assert_eq!(channel(5745.0), Some(149));
        assert_eq!(channel(5955.0), Some(1));
        assert_eq!(channel(1000.0), None);
    }

    #[test]
    fn this_machine_has_a_network_configuration() {
        let Probe::Measured(network) = network(Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))))
        else {
            panic!("Linux always has /sys/class/net");
        };
        assert!(network
            .interfaces
            .iter()
            .all(|i| i.kind != InterfaceKind::Loopback));
    }
}
