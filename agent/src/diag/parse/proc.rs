//! Parsers for Linux kernel and resolver text files: `/proc/net/wireless`,
//! `/proc/pressure/{cpu,memory,io}` (PSI), `/proc/net/route`,
//! `/proc/net/dev` and `/etc/resolv.conf`.
//!
//! Privileges: none; every file is world-readable. `/proc/pressure` exists
//! only on kernels built with PSI and booted without `psi=0`.
//!
//! Pitfalls handled:
//! - `/proc/net/wireless` marks a value updated since the last read with a
//!   `.` after it (`60.`), so the dot may be missing; drivers print fewer
//!   trailing columns; a level or noise of -256 is the kernel printing 0
//!   in dBm mode, i.e. "not reported"; a positive level is in the driver's
//!   own units, not dBm;
//! - PSI `full` is absent from `/proc/pressure/cpu` before Linux 5.13 and
//!   always zero there at system level; `total` is in microseconds;
//! - `/proc/net/route` prints addresses as the raw 32-bit word in hex,
//!   which on little-endian machines (every target deskside supports)
//!   reads backwards: `010200C0` is 192.0.2.1; lines are padded with
//!   trailing spaces; only the main IPv4 table is shown, so policy routing
//!   (WireGuard with fwmark, Tailscale's table 52) is invisible here;
//! - `/proc/net/dev` runs the first counter into the colon when it is wide
//!   (`eth0:1234567`) on older kernels;
//! - `resolv.conf` comments start with `#` or `;`; IPv6 servers may carry a
//!   `%zone`; a file naming only loopback servers points at a local stub
//!   (systemd-resolved's 127.0.0.53, dnsmasq's 127.0.1.1), whose real
//!   upstream servers are elsewhere.

use std::net::{IpAddr, Ipv4Addr};

use super::{leading_f64, leading_u64, text_lines};

/// One interface line of `/proc/net/wireless` (the legacy wireless
/// extensions view, kept by cfg80211 for compatibility).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcWireless {
    /// Interface name.
    pub interface: String,
    /// Driver status word (hex in the file).
    pub status: Option<u16>,
    /// Link quality in the driver's units (cfg80211 maps it to 0–70).
    pub link_quality: Option<f64>,
    /// Signal level, when the driver reports it in dBm.
    pub level_dbm: Option<f64>,
    /// Noise level, when reported in dBm; `None` for -256 (not reported).
    pub noise_dbm: Option<f64>,
    /// Packets discarded for a wrong network id (cumulative).
    pub discarded_nwid: Option<u64>,
    /// Packets that could not be decrypted (cumulative).
    pub discarded_crypt: Option<u64>,
    /// Packets that could not be reassembled (cumulative).
    pub discarded_frag: Option<u64>,
    /// Transmissions that exhausted their retries (cumulative).
    pub discarded_retry: Option<u64>,
    /// Packets lost for other reasons (cumulative).
    pub discarded_misc: Option<u64>,
    /// Beacons missed (cumulative).
    pub missed_beacon: Option<u64>,
}

/// One line of a PSI file: the share of wall time in which tasks stalled
/// on the resource.
#[derive(Clone, Debug, PartialEq)]
pub struct PsiLine {
    /// Percentage over the last 10 s.
    pub avg10: f64,
    /// Percentage over the last 60 s.
    pub avg60: f64,
    /// Percentage over the last 300 s.
    pub avg300: f64,
    /// Total stall time since boot, in microseconds.
    pub total_us: u64,
}

/// A `/proc/pressure/*` file. A line that is absent or damaged (any of its
/// four values missing) is `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Psi {
    /// Some tasks stalled.
    pub some: Option<PsiLine>,
    /// All non-idle tasks stalled at once (meaningless for CPU at system
    /// level, where the kernel reports zeros).
    pub full: Option<PsiLine>,
}

/// `RTF_UP`: the route is usable.
pub const RTF_UP: u32 = 0x0001;
/// `RTF_GATEWAY`: the destination is reached through a gateway.
pub const RTF_GATEWAY: u32 = 0x0002;
/// `RTF_HOST`: a host route (mask /32).
pub const RTF_HOST: u32 = 0x0004;
/// `RTF_REJECT`: packets to the destination are rejected (unreachable).
pub const RTF_REJECT: u32 = 0x0200;

/// One IPv4 route from `/proc/net/route`.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Outgoing interface.
    pub interface: String,
    /// Destination network.
    pub destination: Ipv4Addr,
    /// Next hop; 0.0.0.0 for directly connected networks.
    pub gateway: Ipv4Addr,
    /// `RTF_*` flags.
    pub flags: u32,
    /// Reference count (unused by current kernels, always 0).
    pub ref_count: Option<u32>,
    /// Use count (unused by current kernels, always 0).
    pub use_count: Option<u32>,
    /// Route metric: lower wins among equal prefixes.
    pub metric: Option<u32>,
    /// Destination mask.
    pub mask: Option<Ipv4Addr>,
    /// Route MTU, 0 when unset.
    pub mtu: Option<u32>,
    /// TCP window clamp, 0 when unset.
    pub window: Option<u32>,
    /// Initial round-trip time, 0 when unset.
    pub irtt: Option<u32>,
}

impl Route {
    /// The route is up and not a reject route.
    pub fn is_usable(&self) -> bool {
        self.flags & RTF_UP != 0 && self.flags & RTF_REJECT == 0
    }

    /// Traffic goes through a gateway.
    pub fn is_via_gateway(&self) -> bool {
        self.flags & RTF_GATEWAY != 0
    }

    /// Destination 0.0.0.0/0.
    pub fn is_default(&self) -> bool {
        self.destination.is_unspecified() && self.mask.is_none_or(|m| m.is_unspecified())
    }

    /// The mask's prefix length (`None` without a mask).
    pub fn prefix_len(&self) -> Option<u32> {
        self.mask.map(|m| u32::from(m).count_ones())
    }
}

/// Per-interface counters from `/proc/net/dev`, all cumulative since the
/// interface appeared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetDevCounters {
    /// Interface name.
    pub interface: String,
    /// Bytes received.
    pub rx_bytes: Option<u64>,
    /// Packets received.
    pub rx_packets: Option<u64>,
    /// Receive errors.
    pub rx_errs: Option<u64>,
    /// Received packets dropped.
    pub rx_drop: Option<u64>,
    /// Receive FIFO overruns.
    pub rx_fifo: Option<u64>,
    /// Receive framing errors.
    pub rx_frame: Option<u64>,
    /// Compressed packets received.
    pub rx_compressed: Option<u64>,
    /// Multicast packets received.
    pub rx_multicast: Option<u64>,
    /// Bytes sent.
    pub tx_bytes: Option<u64>,
    /// Packets sent.
    pub tx_packets: Option<u64>,
    /// Transmit errors.
    pub tx_errs: Option<u64>,
    /// Packets dropped on transmit.
    pub tx_drop: Option<u64>,
    /// Transmit FIFO errors.
    pub tx_fifo: Option<u64>,
    /// Collisions (half-duplex Ethernet).
    pub tx_colls: Option<u64>,
    /// Carrier losses.
    pub tx_carrier: Option<u64>,
    /// Compressed packets sent.
    pub tx_compressed: Option<u64>,
}

/// The name servers of a `resolv.conf`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvConf {
    /// `nameserver` lines in order (the C library uses at most three); an
    /// IPv6 `%zone` suffix is dropped.
    pub nameservers: Vec<IpAddr>,
    /// Every name server is a loopback address (127.0.0.0/8 or ::1): a
    /// local stub resolver such as systemd-resolved answers, and the real
    /// upstream servers are configured elsewhere. `false` when no server is
    /// listed (the C library then falls back to 127.0.0.1 itself).
    pub local_stub_only: bool,
}

/// Parses `/proc/net/wireless`: one entry per interface line; the two
/// header lines and anything without `name:` are skipped.
pub fn parse_proc_net_wireless(input: &str) -> Vec<ProcWireless> {
    let mut entries = Vec::new();
    for line in text_lines(input) {
        if line.contains('|') {
            continue;
        }
        let Some((name, values)) = line.split_once(':') else {
            continue;
        };
        let interface = name.trim();
        if interface.is_empty() || interface.contains(char::is_whitespace) {
            continue;
        }
        let mut columns = values.split_whitespace();
        let mut next = || columns.next();
        let status = next().and_then(|s| u16::from_str_radix(s, 16).ok());
        let link_quality = next().and_then(leading_f64);
        let level_dbm = next().and_then(leading_f64).filter(|v| is_reported_dbm(*v));
        let noise_dbm = next().and_then(leading_f64).filter(|v| is_reported_dbm(*v));
        let mut counter = || next().and_then(leading_u64);
        entries.push(ProcWireless {
            interface: interface.to_owned(),
            status,
            link_quality,
            level_dbm,
            noise_dbm,
            discarded_nwid: counter(),
            discarded_crypt: counter(),
            discarded_frag: counter(),
            discarded_retry: counter(),
            discarded_misc: counter(),
            missed_beacon: counter(),
        });
    }
    entries
}

/// In dBm mode the kernel prints `value - 256`: -256 is an unreported 0,
/// and a value of 0 or more is not in dBm at all.
fn is_reported_dbm(value: f64) -> bool {
    value < 0.0 && value > -256.0
}

/// Parses a `/proc/pressure/{cpu,memory,io}` file.
pub fn parse_psi(input: &str) -> Psi {
    let mut psi = Psi::default();
    for line in text_lines(input) {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        let (mut avg10, mut avg60, mut avg300, mut total_us) = (None, None, None, None);
        for word in words {
            let Some((name, value)) = word.split_once('=') else {
                continue;
            };
            match name {
                "avg10" => avg10 = plain_f64(value),
                "avg60" => avg60 = plain_f64(value),
                "avg300" => avg300 = plain_f64(value),
                "total" => total_us = value.parse().ok(),
                _ => {}
            }
        }
        *slot = match (avg10, avg60, avg300, total_us) {
            (Some(avg10), Some(avg60), Some(avg300), Some(total_us)) => Some(PsiLine {
                avg10,
                avg60,
                avg300,
                total_us,
            }),
            _ => None,
        };
    }
    psi
}

/// A whole word as a number: unlike [`leading_f64`], `7.2x` is rejected.
fn plain_f64(word: &str) -> Option<f64> {
    leading_f64(word).filter(|_| word.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// Parses `/proc/net/route`. Lines whose interface, destination, gateway
/// or flags do not parse are skipped; later columns that are missing are
/// `None`.
pub fn parse_routes(input: &str) -> Vec<Route> {
    let mut routes = Vec::new();
    for line in text_lines(input) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let column = |index: usize| columns.get(index).copied();
        let decimal = |index: usize| column(index).and_then(|c| c.parse::<u32>().ok());
        let (Some(interface), Some(destination), Some(gateway), Some(flags)) = (
            column(0),
            column(1).and_then(hex_ipv4),
            column(2).and_then(hex_ipv4),
            column(3).and_then(|c| u32::from_str_radix(c, 16).ok()),
        ) else {
            continue;
        };
        routes.push(Route {
            interface: interface.to_owned(),
            destination,
            gateway,
            flags,
            ref_count: decimal(4),
            use_count: decimal(5),
            metric: decimal(6),
            mask: column(7).and_then(hex_ipv4),
            mtu: decimal(8),
            window: decimal(9),
            irtt: decimal(10),
        });
    }
    routes
}

/// `010200C0` → 192.0.2.1: the kernel prints the address's 32-bit word as
/// a little-endian machine holds it. Exactly eight hex digits.
fn hex_ipv4(text: &str) -> Option<Ipv4Addr> {
    if text.len() != 8 {
        return None;
    }
    let word = u32::from_str_radix(text, 16).ok()?;
    Some(Ipv4Addr::from(word.to_le_bytes()))
}

/// The default gateway: among usable default routes through a gateway,
/// the one with the lowest metric (the first listed on a tie; a missing
/// metric counts as the highest). Returns the interface and the gateway.
pub fn default_gateway(routes: &[Route]) -> Option<(String, Ipv4Addr)> {
    routes
        .iter()
        .filter(|r| r.is_usable() && r.is_via_gateway() && r.is_default())
        .min_by_key(|r| r.metric.unwrap_or(u32::MAX))
        .map(|r| (r.interface.clone(), r.gateway))
}

/// The interface the main table sends `destination` through: longest
/// matching prefix, then lowest metric. `None` when no usable route
/// matches or the best match is a reject route.
pub fn route_for(routes: &[Route], destination: Ipv4Addr) -> Option<&str> {
    let target = u32::from(destination);
    let best = routes
        .iter()
        .filter_map(|r| {
            let mask = u32::from(r.mask?);
            let matches = r.flags & RTF_UP != 0 && target & mask == u32::from(r.destination) & mask;
            matches.then_some((r, mask.count_ones()))
        })
        .min_by_key(|(r, prefix)| (u32::MAX - prefix, r.metric.unwrap_or(u32::MAX)))?;
    let (route, _) = best;
    route.is_usable().then_some(route.interface.as_str())
}

/// Parses `/proc/net/dev`: one entry per interface line, counters in the
/// kernel's column order; missing trailing columns are `None`.
pub fn parse_proc_net_dev(input: &str) -> Vec<NetDevCounters> {
    let mut entries = Vec::new();
    for line in text_lines(input) {
        if line.contains('|') {
            continue;
        }
        // Interface names cannot contain a colon, so the first one ends
        // the name even when the first counter touches it.
        let Some((name, values)) = line.split_once(':') else {
            continue;
        };
        let interface = name.trim();
        if interface.is_empty() || interface.contains(char::is_whitespace) {
            continue;
        }
        let mut columns = values.split_whitespace();
        let mut next = || columns.next().and_then(|c| c.parse::<u64>().ok());
        entries.push(NetDevCounters {
            interface: interface.to_owned(),
            rx_bytes: next(),
            rx_packets: next(),
            rx_errs: next(),
            rx_drop: next(),
            rx_fifo: next(),
            rx_frame: next(),
            rx_compressed: next(),
            rx_multicast: next(),
            tx_bytes: next(),
            tx_packets: next(),
            tx_errs: next(),
            tx_drop: next(),
            tx_fifo: next(),
            tx_colls: next(),
            tx_carrier: next(),
            tx_compressed: next(),
        });
    }
    entries
}

/// Parses the `nameserver` lines of a `resolv.conf`; `search`, `domain`,
/// `options`, comments and unparsable addresses are ignored.
pub fn parse_resolv_conf(input: &str) -> ResolvConf {
    let mut nameservers = Vec::new();
    for line in text_lines(input) {
        let line = line.trim_start();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(address) = words.next() else {
            continue;
        };
        let address = address.split('%').next().unwrap_or(address);
        if let Ok(ip) = address.parse::<IpAddr>() {
            nameservers.push(ip);
        }
    }
    let local_stub_only = !nameservers.is_empty() && nameservers.iter().all(IpAddr::is_loopback);
    ResolvConf {
        nameservers,
        local_stub_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::parse::test_support::{garbage_inputs, survives_every_truncation, to_crlf};
    use std::net::Ipv6Addr;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/linux/",
                $name
            ))
        };
    }

    const WIRELESS: &str = fixture!("proc-net-wireless.txt");
    const WIRELESS_NOISE: &str = fixture!("proc-net-wireless-noise.txt");
    const PRESSURE_CPU: &str = fixture!("proc-pressure-cpu.txt");
    const ROUTE: &str = fixture!("proc-net-route.txt");

    /// Hand-made, in the layout of `/proc/net/dev` on Linux 6.1, with the
    /// wide first counter touching the colon as older kernels print it.
    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   91216     960    0    0    0     0          0         0    91216     960    0    0    0     0       0          0
wlp2s0:1248133728 1641021    3   17    0     0          0     12034 2901520415 3103813    0    2    0     0       0          0
  eth0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
";

    /// Hand-made, as systemd-resolved writes `/etc/resolv.conf`.
    const RESOLV_STUB: &str = "\
# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).
# Do not edit.
nameserver 127.0.0.53
options edns0 trust-ad
search example.org
";

    /// Hand-made, a `resolv.conf` with upstream servers of both families.
    const RESOLV_UPSTREAM: &str = "\
; written by NetworkManager
domain example.org
search example.org corp.example.org
nameserver 192.0.2.53
nameserver\t2001:db8::53
nameserver fe80::1%wlp2s0
# nameserver 198.51.100.1
nameserver not-an-address
options rotate timeout:1
";

    /// Hand-made, `/proc/pressure/memory` under load.
    const PRESSURE_MEMORY: &str = "\
some avg10=12.50 avg60=8.01 avg300=2.33 total=987654321
full avg10=6.10 avg60=3.20 avg300=0.90 total=123456789
";

    #[test]
    fn wireless_fixture_with_unreported_noise() {
        let expected = vec![ProcWireless {
            interface: "wlan0".into(),
            status: Some(0),
            link_quality: Some(60.0),
            level_dbm: Some(-50.0),
            noise_dbm: None,
            discarded_nwid: Some(0),
            discarded_crypt: Some(0),
            discarded_frag: Some(0),
            discarded_retry: Some(0),
            discarded_misc: Some(0),
            missed_beacon: Some(0),
        }];
        assert_eq!(parse_proc_net_wireless(WIRELESS), expected);
        assert_eq!(parse_proc_net_wireless(&to_crlf(WIRELESS)), expected);
    }

    #[test]
    fn wireless_fixture_with_noise() {
        let expected = vec![ProcWireless {
            interface: "wlan0".into(),
            status: Some(0),
            link_quality: Some(78.0),
            level_dbm: Some(-56.0),
            noise_dbm: Some(-127.0),
            discarded_nwid: Some(0),
            discarded_crypt: Some(0),
            discarded_frag: Some(0),
            discarded_retry: Some(0),
            discarded_misc: Some(0),
            missed_beacon: Some(0),
        }];
        assert_eq!(parse_proc_net_wireless(WIRELESS_NOISE), expected);
        assert_eq!(parse_proc_net_wireless(&to_crlf(WIRELESS_NOISE)), expected);
    }

    #[test]
    fn wireless_without_dots_and_with_missing_columns() {
        // Hand-made: no update dots at all, a second interface whose driver
        // stops after the noise column, a third cut after the quality, and
        // a fourth reporting its level in relative units (not dBm).
        let input = "\
Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
  wlan0: 0000   60  -50  -95        1      2      3      4      5        6
  wlan1: 0001   40  -70  -256
  wlan2: 0000   12
  wlan3: 0000   50.  45.  0.
";
        let entries = parse_proc_net_wireless(input);
        assert_eq!(
            entries,
            vec![
                ProcWireless {
                    interface: "wlan0".into(),
                    status: Some(0),
                    link_quality: Some(60.0),
                    level_dbm: Some(-50.0),
                    noise_dbm: Some(-95.0),
                    discarded_nwid: Some(1),
                    discarded_crypt: Some(2),
                    discarded_frag: Some(3),
                    discarded_retry: Some(4),
                    discarded_misc: Some(5),
                    missed_beacon: Some(6),
                },
                ProcWireless {
                    interface: "wlan1".into(),
                    status: Some(1),
                    link_quality: Some(40.0),
                    level_dbm: Some(-70.0),
                    ..ProcWireless::default()
                },
                ProcWireless {
                    interface: "wlan2".into(),
                    status: Some(0),
                    link_quality: Some(12.0),
                    ..ProcWireless::default()
                },
                ProcWireless {
                    interface: "wlan3".into(),
                    status: Some(0),
                    link_quality: Some(50.0),
                    ..ProcWireless::default()
                },
            ]
        );
    }

    #[test]
    fn wireless_with_only_headers_is_empty() {
        let headers: String = WIRELESS.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse_proc_net_wireless(&headers), vec![]);
        assert_eq!(parse_proc_net_wireless(""), vec![]);
    }

    #[test]
    fn pressure_cpu_fixture() {
        let expected = Psi {
            some: Some(PsiLine {
                avg10: 7.20,
                avg60: 13.84,
                avg300: 6.87,
                total_us: 34_209_448,
            }),
            full: Some(PsiLine {
                avg10: 0.0,
                avg60: 0.0,
                avg300: 0.0,
                total_us: 0,
            }),
        };
        assert_eq!(parse_psi(PRESSURE_CPU), expected);
        assert_eq!(parse_psi(&to_crlf(PRESSURE_CPU)), expected);
    }

    #[test]
    fn pressure_memory_and_old_cpu_without_full() {
        let memory = parse_psi(PRESSURE_MEMORY);
        assert_eq!(memory.full.map(|l| l.avg10), Some(6.10));
        assert_eq!(memory.some.map(|l| l.avg60), Some(8.01));
        // Before Linux 5.13 the CPU file has no `full` line.
        let old_cpu = parse_psi("some avg10=0.00 avg60=0.50 avg300=0.10 total=42\n");
        assert_eq!(old_cpu.full, None);
        assert_eq!(old_cpu.some.map(|l| l.total_us), Some(42));
    }

    #[test]
    fn pressure_lines_with_missing_or_bad_values_are_none() {
        for input in [
            "",
            "some avg10=7.20 avg60=13.84 avg300=6.87",
            "some avg10=7.20 avg60=13.84 total=5",
            "some avg10=7.2x avg60=13.84 avg300=6.87 total=5",
            "some avg10=-1 avg60=1 avg300=1 total=5",
            "some avg10=1 avg60=1 avg300=1 total=-5",
            "some\tavg10=\tavg60=1 avg300=1 total=5",
            "other avg10=1 avg60=1 avg300=1 total=5",
        ] {
            assert_eq!(parse_psi(input), Psi::default(), "{input:?}");
        }
    }

    fn expected_routes() -> Vec<Route> {
        vec![
            Route {
                interface: "eth0".into(),
                destination: Ipv4Addr::UNSPECIFIED,
                gateway: Ipv4Addr::new(192, 0, 2, 1),
                flags: RTF_UP | RTF_GATEWAY,
                ref_count: Some(0),
                use_count: Some(0),
                metric: Some(0),
                mask: Some(Ipv4Addr::UNSPECIFIED),
                mtu: Some(0),
                window: Some(0),
                irtt: Some(0),
            },
            Route {
                interface: "eth0".into(),
                destination: Ipv4Addr::new(192, 0, 2, 0),
                gateway: Ipv4Addr::UNSPECIFIED,
                flags: RTF_UP,
                ref_count: Some(0),
                use_count: Some(0),
                metric: Some(0),
                mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                mtu: Some(0),
                window: Some(0),
                irtt: Some(0),
            },
        ]
    }

    #[test]
    fn route_fixture() {
        assert_eq!(parse_routes(ROUTE), expected_routes());
        assert_eq!(parse_routes(&to_crlf(ROUTE)), expected_routes());
        let routes = parse_routes(ROUTE);
        assert_eq!(
            default_gateway(&routes),
            Some(("eth0".to_owned(), Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(routes[1].prefix_len(), Some(24));
        assert!(routes[0].is_default() && !routes[1].is_default());
    }

    #[test]
    fn default_gateway_prefers_the_lowest_metric() {
        // Hand-made: Wi‑Fi and Ethernet both up (NetworkManager gives wired
        // metric 100, Wi‑Fi 600), a down route, a reject route, and a
        // default route without a gateway (a point-to-point VPN).
        let input = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlp2s0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
enp3s0\t00000000\t010A000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth1\t00000000\t01010101\t0002\t0\t0\t1\t00000000\t0\t0\t0
eth2\t00000000\t02020202\t0203\t0\t0\t0\t00000000\t0\t0\t0
tun0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0
wlp2s0\t0000A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
";
        let routes = parse_routes(input);
        assert_eq!(routes.len(), 6);
        assert_eq!(
            default_gateway(&routes),
            Some(("enp3s0".to_owned(), Ipv4Addr::new(10, 0, 10, 1)))
        );
        assert_eq!(
            route_for(&routes, Ipv4Addr::new(192, 168, 0, 7)),
            Some("wlp2s0")
        );
        // The kernel would pick the reject route (metric 0): unreachable.
        assert_eq!(route_for(&routes, Ipv4Addr::new(203, 0, 113, 9)), None);
        let without_reject: Vec<Route> = routes
            .iter()
            .filter(|r| r.interface != "eth2")
            .cloned()
            .collect();
        assert_eq!(
            route_for(&without_reject, Ipv4Addr::new(203, 0, 113, 9)),
            Some("tun0")
        );
        assert_eq!(
            default_gateway(&routes[..1]).map(|(i, _)| i),
            Some("wlp2s0".into())
        );
        assert_eq!(
            default_gateway(&routes[2..4]),
            None,
            "down and reject routes"
        );
        assert_eq!(default_gateway(&[]), None);
    }

    #[test]
    fn route_for_honours_reject_routes_and_missing_masks() {
        let input = "\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000
eth0\t0000000A\t00000000\t0201\t0\t0\t0\t000000FF
eth0\t00006464
eth0\t000200C0\t00000000\t0001
";
        let routes = parse_routes(input);
        assert_eq!(
            routes.len(),
            3,
            "the line without gateway and flags is skipped"
        );
        assert_eq!(routes[0].mtu, None, "missing trailing columns");
        assert_eq!(routes[2].metric, None);
        assert_eq!(routes[2].mask, None);
        assert_eq!(
            route_for(&routes, Ipv4Addr::new(10, 1, 2, 3)),
            None,
            "reject"
        );
        assert_eq!(
            route_for(&routes, Ipv4Addr::new(192, 0, 2, 9)),
            Some("eth0")
        );
    }

    #[test]
    fn route_lines_with_bad_addresses_are_skipped() {
        let input = "eth0\tZZ000000\t010200C0\t0003\neth0\t0\t010200C0\t0003\neth0\t00000000\t010200C0\tXYZ\n";
        assert_eq!(parse_routes(input), vec![]);
        assert_eq!(parse_routes(""), vec![]);
    }

    #[test]
    fn net_dev_counters() {
        let entries = parse_proc_net_dev(NET_DEV);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[1],
            NetDevCounters {
                interface: "wlp2s0".into(),
                rx_bytes: Some(1_248_133_728),
                rx_packets: Some(1_641_021),
                rx_errs: Some(3),
                rx_drop: Some(17),
                rx_fifo: Some(0),
                rx_frame: Some(0),
                rx_compressed: Some(0),
                rx_multicast: Some(12_034),
                tx_bytes: Some(2_901_520_415),
                tx_packets: Some(3_103_813),
                tx_errs: Some(0),
                tx_drop: Some(2),
                tx_fifo: Some(0),
                tx_colls: Some(0),
                tx_carrier: Some(0),
                tx_compressed: Some(0),
            }
        );
        assert_eq!(entries[0].interface, "lo");
        assert_eq!(entries[0].rx_bytes, Some(91_216));
        assert_eq!(entries[2].interface, "eth0");
        assert_eq!(entries[2].tx_compressed, Some(0));
        assert_eq!(parse_proc_net_dev(&to_crlf(NET_DEV)), entries);
    }

    #[test]
    fn net_dev_with_missing_columns() {
        let entries = parse_proc_net_dev("  eth0: 100 2 0\n");
        assert_eq!(
            entries,
            vec![NetDevCounters {
                interface: "eth0".into(),
                rx_bytes: Some(100),
                rx_packets: Some(2),
                rx_errs: Some(0),
                ..NetDevCounters::default()
            }]
        );
        assert_eq!(parse_proc_net_dev(""), vec![]);
    }

    #[test]
    fn resolv_conf_stub() {
        let expected = ResolvConf {
            nameservers: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53))],
            local_stub_only: true,
        };
        assert_eq!(parse_resolv_conf(RESOLV_STUB), expected);
        assert_eq!(parse_resolv_conf(&to_crlf(RESOLV_STUB)), expected);
        for stub in [
            "nameserver ::1\n",
            "nameserver 127.0.0.1\nnameserver 127.0.1.1\n",
        ] {
            assert!(parse_resolv_conf(stub).local_stub_only, "{stub}");
        }
    }

    #[test]
    fn resolv_conf_upstream() {
        let expected = ResolvConf {
            nameservers: vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)),
                IpAddr::V6("2001:db8::53".parse::<Ipv6Addr>().unwrap()),
                IpAddr::V6("fe80::1".parse::<Ipv6Addr>().unwrap()),
            ],
            local_stub_only: false,
        };
        assert_eq!(parse_resolv_conf(RESOLV_UPSTREAM), expected);
        let mixed = parse_resolv_conf("nameserver 127.0.0.53\nnameserver 192.0.2.53\n");
        assert!(
            !mixed.local_stub_only,
            "a stub plus an upstream is not stub-only"
        );
        assert_eq!(parse_resolv_conf(""), ResolvConf::default());
    }

    #[test]
    fn garbage_never_panics() {
        for input in garbage_inputs() {
            let _ = parse_proc_net_wireless(&input);
            let _ = parse_psi(&input);
            let routes = parse_routes(&input);
            let _ = default_gateway(&routes);
            let _ = route_for(&routes, Ipv4Addr::new(192, 0, 2, 1));
            let _ = parse_proc_net_dev(&input);
            let _ = parse_resolv_conf(&input);
        }
    }

    #[test]
    fn no_truncation_panics() {
        survives_every_truncation(WIRELESS, parse_proc_net_wireless);
        survives_every_truncation(WIRELESS_NOISE, parse_proc_net_wireless);
        survives_every_truncation(PRESSURE_CPU, parse_psi);
        survives_every_truncation(PRESSURE_MEMORY, parse_psi);
        survives_every_truncation(ROUTE, |t| default_gateway(&parse_routes(t)));
        survives_every_truncation(NET_DEV, parse_proc_net_dev);
        survives_every_truncation(RESOLV_UPSTREAM, parse_resolv_conf);
        survives_every_truncation(RESOLV_STUB, parse_resolv_conf);
    }
}
