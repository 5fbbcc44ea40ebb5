//! Parsers for macOS Wi‑Fi tools: `system_profiler SPAirPortDataType` and
//! `sudo wdutil info`.
//!
//! Privileges: `system_profiler` runs as any user, but without Location
//! permission for the calling process macOS prints the network name as
//! `<redacted>`; it takes a few seconds. `wdutil` needs root and, on recent
//! releases, redacts SSID, BSSID and MAC addresses all the same. (`airport`
//! is gone from recent releases.)
//!
//! Pitfalls handled:
//! - `system_profiler` is an indented tree: the current network's name is a
//!   key of its own (`G-HOME:`), may be `<redacted>:`, and may be missing
//!   (`awdl0` lists `Network Type` straight under `Current Network
//!   Information`); `Other Local Wi-Fi Networks` has the same shape and
//!   must not be mistaken for the current network;
//! - the Wi‑Fi interface is the one whose `Card Type` is `Wi-Fi`, not
//!   `awdl0` or `llw0`;
//! - `Channel: 64 (5GHz, 80MHz)` holds channel, band and width; the
//!   2.4 GHz band is written `2GHz`;
//! - `Signal / Noise: -53 dBm / -90 dBm` holds two values; `Transmit Rate`
//!   has no unit (Mbit/s);
//! - `wdutil info` prints many sections (NETWORK, WIFI, BLUETOOTH, …) with
//!   overlapping keys (`Power`, `MAC Address`): only the WIFI section is
//!   read; its channel reads `5g44/80` (band, channel, width).

use std::net::{IpAddr, Ipv4Addr};

use super::{
    band_of_ghz_label, is_mac_address, leading_f64, leading_u64, non_empty, split_key_value,
    text_lines, Band,
};

/// A Wi‑Fi network as `system_profiler` describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AirportNetwork {
    /// Network name; `None` when redacted or not printed.
    pub ssid: Option<String>,
    /// macOS printed `<redacted>` (no Location permission).
    pub ssid_redacted: bool,
    /// `PHY Mode`, e.g. `802.11ax`.
    pub phy_mode: Option<String>,
    /// Channel number.
    pub channel: Option<u32>,
    /// Band, from the channel's parenthesis.
    pub band: Option<Band>,
    /// Channel width, from the channel's parenthesis.
    pub channel_width_mhz: Option<u32>,
    /// `Country Code` the network advertises.
    pub country_code: Option<String>,
    /// `Network Type`, e.g. `Infrastructure`.
    pub network_type: Option<String>,
    /// `Security`, e.g. `WPA2 Personal`.
    pub security: Option<String>,
    /// Signal, from `Signal / Noise`.
    pub signal_dbm: Option<f64>,
    /// Noise floor, from `Signal / Noise`.
    pub noise_dbm: Option<f64>,
    /// `Transmit Rate` (printed without unit; Mbit/s).
    pub transmit_rate_mbps: Option<f64>,
    /// `MCS Index`.
    pub mcs_index: Option<u8>,
}

/// The Wi‑Fi interface in `system_profiler SPAirPortDataType`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AirportInfo {
    /// BSD name, e.g. `en0`.
    pub interface: Option<String>,
    /// `Card Type`, e.g. `Wi-Fi  (0x14E4, 0x4378)`.
    pub card_type: Option<String>,
    /// `Firmware Version`.
    pub firmware_version: Option<String>,
    /// `MAC Address` of the interface.
    pub mac_address: Option<String>,
    /// `Locale` (regulatory domain), e.g. `FCC`.
    pub locale: Option<String>,
    /// `Country Code` of the interface.
    pub country_code: Option<String>,
    /// `Supported PHY Modes`, e.g. `802.11 a/b/g/n/ac/ax`.
    pub supported_phy_modes: Option<String>,
    /// `Status` as printed, e.g. `Connected`, `Off`.
    pub status: Option<String>,
    /// `Some(true)` for `Connected`, `Some(false)` for the known
    /// not-connected states, `None` otherwise.
    pub connected: Option<bool>,
    /// `Current Network Information`, when present.
    pub current_network: Option<AirportNetwork>,
    /// `Other Local Wi-Fi Networks`, in the order printed.
    pub other_networks: Vec<AirportNetwork>,
}

/// The WIFI section of `wdutil info`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WdutilInfo {
    /// `Interface Name`, e.g. `en0`.
    pub interface: Option<String>,
    /// `MAC Address`; `None` when redacted.
    pub mac_address: Option<String>,
    /// `Power`: `On [On]` → `true`.
    pub power_on: Option<bool>,
    /// `Op Mode`, e.g. `STA`.
    pub op_mode: Option<String>,
    /// `SSID`; `None` when redacted.
    pub ssid: Option<String>,
    /// The SSID was printed as `<redacted>`.
    pub ssid_redacted: bool,
    /// `BSSID`; `None` when redacted.
    pub bssid: Option<String>,
    /// The BSSID was printed as `<redacted>`.
    pub bssid_redacted: bool,
    /// `RSSI`.
    pub rssi_dbm: Option<f64>,
    /// `Noise`.
    pub noise_dbm: Option<f64>,
    /// `CCA`: clear channel assessment, the share of time the channel is
    /// busy, in percent.
    pub cca_percent: Option<f64>,
    /// `Tx Rate`.
    pub tx_rate_mbps: Option<f64>,
    /// `Security`, e.g. `WPA3 Personal`.
    pub security: Option<String>,
    /// `PHY Mode`, e.g. `11ax`.
    pub phy_mode: Option<String>,
    /// `MCS Index`.
    pub mcs_index: Option<u8>,
    /// `Guard Interval`, in nanoseconds (800, 1600, 3200).
    pub guard_interval_ns: Option<u32>,
    /// `NSS`: spatial streams.
    pub nss: Option<u8>,
    /// Channel number, from `Channel : 5g44/80`.
    pub channel: Option<u32>,
    /// Band, from the same.
    pub band: Option<Band>,
    /// Channel width, from the same.
    pub channel_width_mhz: Option<u32>,
    /// `Country Code`.
    pub country_code: Option<String>,
    /// `IPv4 Address`.
    pub ipv4_address: Option<Ipv4Addr>,
    /// `DNS` servers.
    pub dns_servers: Vec<IpAddr>,
}

/// Parses `system_profiler SPAirPortDataType`. Fields are `None` when the
/// output has no Wi‑Fi interface.
pub fn parse_system_profiler_airport(input: &str) -> AirportInfo {
    let tree = Tree::parse(input);
    let interfaces: Vec<usize> = tree
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.key == "Interfaces" && n.value.is_none())
        .flat_map(|(_, n)| n.children.iter().copied())
        .collect();
    let is_wifi_card = |&i: &usize| {
        tree.value(i, "Card Type")
            .is_some_and(|card| card.starts_with("Wi-Fi"))
    };
    // Without `Card Type`, take the first interface that is not one of
    // Apple's peer-to-peer links (awdl, llw) and has a current network.
    let fallback = |&i: &usize| {
        let name = tree.nodes.get(i).map_or("", |n| n.key.as_str());
        !name.starts_with("awdl")
            && !name.starts_with("llw")
            && tree.child(i, "Current Network Information").is_some()
    };
    let Some(interface) = interfaces
        .iter()
        .copied()
        .find(is_wifi_card)
        .or_else(|| interfaces.iter().copied().find(fallback))
    else {
        return AirportInfo::default();
    };
    let value = |key| tree.value(interface, key).and_then(non_empty);
    let status = value("Status");
    let current_network = tree
        .child(interface, "Current Network Information")
        .map(|current| match tree.children(current).first() {
            // A name line (a key with children) holds the details…
            Some(&first) if !tree.children(first).is_empty() => airport_network(&tree, first),
            // …unless the name is missing and the details follow directly.
            _ => AirportNetwork {
                ssid: None,
                ssid_redacted: false,
                ..network_details(&tree, current)
            },
        });
    let other_networks = tree
        .child(interface, "Other Local Wi-Fi Networks")
        .map(|others| {
            tree.children(others)
                .iter()
                .map(|&n| airport_network(&tree, n))
                .collect()
        })
        .unwrap_or_default();
    AirportInfo {
        interface: tree.nodes.get(interface).and_then(|n| non_empty(&n.key)),
        card_type: value("Card Type"),
        firmware_version: value("Firmware Version"),
        mac_address: value("MAC Address").filter(|m| is_mac_address(m)),
        locale: value("Locale"),
        country_code: value("Country Code"),
        supported_phy_modes: value("Supported PHY Modes"),
        connected: status.as_deref().and_then(airport_connected),
        status,
        current_network,
        other_networks,
    }
}

fn airport_connected(status: &str) -> Option<bool> {
    match status {
        "Connected" => Some(true),
        "Off" | "Disconnected" | "Not Connected" | "Not Associated" => Some(false),
        _ => None,
    }
}

/// A network whose name is the node's key.
fn airport_network(tree: &Tree, node: usize) -> AirportNetwork {
    let name = tree.nodes.get(node).map_or("", |n| n.key.as_str());
    let ssid_redacted = is_redacted(name);
    AirportNetwork {
        ssid: non_empty(name).filter(|_| !ssid_redacted),
        ssid_redacted,
        ..network_details(tree, node)
    }
}

/// The properties below a network node.
fn network_details(tree: &Tree, node: usize) -> AirportNetwork {
    let value = |key| tree.value(node, key);
    let text = |key| value(key).and_then(non_empty);
    let (channel, band, channel_width_mhz) =
        value("Channel").map_or((None, None, None), profiler_channel);
    let (signal_dbm, noise_dbm) = value("Signal / Noise").map_or((None, None), |v| {
        let mut parts = v.split('/');
        (
            parts.next().and_then(leading_f64),
            parts.next().and_then(leading_f64),
        )
    });
    AirportNetwork {
        ssid: None,
        ssid_redacted: false,
        phy_mode: text("PHY Mode"),
        channel,
        band,
        channel_width_mhz,
        country_code: text("Country Code"),
        network_type: text("Network Type"),
        security: text("Security"),
        signal_dbm,
        noise_dbm,
        transmit_rate_mbps: value("Transmit Rate").and_then(leading_f64),
        mcs_index: value("MCS Index").and_then(leading_u8),
    }
}

/// `64 (5GHz, 80MHz)` → 64, 5 GHz, 80 MHz; `11 (2GHz, 20MHz)` is 2.4 GHz.
fn profiler_channel(value: &str) -> (Option<u32>, Option<Band>, Option<u32>) {
    let channel = leading_u32(value);
    let (mut band, mut width) = (None, None);
    if let Some((_, inside)) = value.split_once('(') {
        let inside = inside.split(')').next().unwrap_or_default();
        for part in inside.split(',').map(str::trim) {
            if part.ends_with("GHz") {
                band = band_of_ghz_label(part);
            } else if let Some(mhz) = part.strip_suffix("MHz") {
                width = leading_u32(mhz);
            }
        }
    }
    (channel, band, width)
}

/// Parses `wdutil info`, reading only its WIFI section (or every line when
/// the output has no section headings).
pub fn parse_wdutil_info(input: &str) -> WdutilInfo {
    let mut info = WdutilInfo::default();
    let mut section: Option<&str> = None;
    for line in text_lines(input) {
        let trimmed = line.trim();
        if trimmed.is_empty() || is_rule(trimmed) {
            continue;
        }
        let indented = line.starts_with(char::is_whitespace);
        if !indented && !trimmed.contains(':') {
            section = Some(trimmed);
            continue;
        }
        if section.is_some_and(|s| s != "WIFI") {
            continue;
        }
        let Some((key, value)) = split_key_value(line) else {
            continue;
        };
        let redacted = is_redacted(value);
        match key {
            "Interface Name" => info.interface = non_empty(value),
            "MAC Address" => {
                info.mac_address = value
                    .split_whitespace()
                    .next()
                    .filter(|m| is_mac_address(m))
                    .map(str::to_owned);
            }
            "Power" => {
                info.power_on = match value.split_whitespace().next() {
                    Some("On") => Some(true),
                    Some("Off") => Some(false),
                    _ => None,
                };
            }
            "Op Mode" => info.op_mode = non_empty(value),
            "SSID" => {
                info.ssid_redacted = redacted;
                info.ssid = non_empty(value).filter(|_| !redacted);
            }
            "BSSID" => {
                info.bssid_redacted = redacted;
                info.bssid = Some(value).filter(|b| is_mac_address(b)).map(str::to_owned);
            }
            "RSSI" => info.rssi_dbm = leading_f64(value),
            "Noise" => info.noise_dbm = leading_f64(value),
            "CCA" => info.cca_percent = leading_f64(value),
            "Tx Rate" => info.tx_rate_mbps = leading_f64(value),
            "Security" => info.security = non_empty(value),
            "PHY Mode" => info.phy_mode = non_empty(value),
            "MCS Index" => info.mcs_index = leading_u8(value),
            "Guard Interval" => info.guard_interval_ns = leading_u32(value),
            "NSS" => info.nss = leading_u8(value),
            "Channel" => (info.channel, info.band, info.channel_width_mhz) = wdutil_channel(value),
            "Country Code" => info.country_code = non_empty(value),
            "IPv4 Address" => info.ipv4_address = value.parse().ok(),
            "DNS" => {
                info.dns_servers = value
                    .split([',', ' '])
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
            }
            _ => {}
        }
    }
    info
}

/// `5g44/80` → 44, 5 GHz, 80 MHz.
fn wdutil_channel(value: &str) -> (Option<u32>, Option<Band>, Option<u32>) {
    let Some((band, rest)) = value.split_once('g') else {
        return (leading_u32(value), None, None);
    };
    let (channel, width) = match rest.split_once('/') {
        Some((channel, width)) => (channel, Some(width)),
        None => (rest, None),
    };
    (
        leading_u32(channel),
        band_of_ghz_label(band),
        width.and_then(leading_u32),
    )
}

/// A horizontal rule of em dashes (or hyphens) between wdutil sections.
fn is_rule(line: &str) -> bool {
    line.chars()
        .all(|c| matches!(c, '\u{2014}' | '\u{2500}' | '-' | '='))
}

fn is_redacted(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("<redacted>")
}

fn leading_u32(value: &str) -> Option<u32> {
    leading_u64(value).and_then(|n| u32::try_from(n).ok())
}

fn leading_u8(value: &str) -> Option<u8> {
    leading_u64(value).and_then(|n| u8::try_from(n).ok())
}

/// `system_profiler`'s indented `key: value` tree.
#[derive(Debug, Default)]
struct Tree {
    /// Every line, in order; a node's children follow it.
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    indent: usize,
    key: String,
    /// `None` for a heading (`en0:`).
    value: Option<String>,
    children: Vec<usize>,
}

impl Tree {
    fn parse(input: &str) -> Tree {
        let mut tree = Tree::default();
        // Open headings, innermost last.
        let mut open: Vec<usize> = Vec::new();
        for line in text_lines(input) {
            let content = line.trim();
            if content.is_empty() {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let (key, value) = match content.strip_suffix(':') {
                Some(heading) => (heading, None),
                None => match content.split_once(": ") {
                    Some((key, value)) => (key, Some(value.trim().to_owned())),
                    None => (content, None),
                },
            };
            while open
                .last()
                .is_some_and(|&i| tree.nodes.get(i).is_none_or(|n| n.indent >= indent))
            {
                open.pop();
            }
            let index = tree.nodes.len();
            tree.nodes.push(Node {
                indent,
                key: key.trim().to_owned(),
                value,
                children: Vec::new(),
            });
            if let Some(parent) = open.last().and_then(|&parent| tree.nodes.get_mut(parent)) {
                parent.children.push(index);
            }
            open.push(index);
        }
        tree
    }

    fn children(&self, node: usize) -> &[usize] {
        self.nodes.get(node).map_or(&[], |n| n.children.as_slice())
    }

    fn child(&self, node: usize, key: &str) -> Option<usize> {
        self.children(node)
            .iter()
            .copied()
            .find(|&c| self.nodes.get(c).is_some_and(|n| n.key == key))
    }

    fn value(&self, node: usize, key: &str) -> Option<&str> {
        let child = self.child(node, key)?;
        self.nodes.get(child)?.value.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::parse::test_support::{garbage_inputs, survives_every_truncation, to_crlf};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/macos/",
                $name
            ))
        };
    }

    const SYSTEM_PROFILER: &str = fixture!("system-profiler-airport.txt");
    const WDUTIL: &str = fixture!("wdutil-info.txt");

    fn expected_airport() -> AirportInfo {
        AirportInfo {
            interface: Some("en0".into()),
            card_type: Some("Wi-Fi  (0x14E4, 0x4378)".into()),
            firmware_version: Some(
                "wl0: Jan 13 2024 03:06:59 version 18.20.440.9.7.8.167 FWID 01-7be24857".into(),
            ),
            mac_address: Some("a0:78:17:a3:ed:23".into()),
            locale: Some("FCC".into()),
            country_code: Some("US".into()),
            supported_phy_modes: Some("802.11 a/b/g/n/ac/ax".into()),
            status: Some("Connected".into()),
            connected: Some(true),
            current_network: Some(AirportNetwork {
                ssid: Some("G-HOME".into()),
                ssid_redacted: false,
                phy_mode: Some("802.11ax".into()),
                channel: Some(64),
                band: Some(Band::Ghz5),
                channel_width_mhz: Some(80),
                country_code: Some("US".into()),
                network_type: Some("Infrastructure".into()),
                security: Some("WPA2 Personal".into()),
                signal_dbm: Some(-53.0),
                noise_dbm: Some(-90.0),
                transmit_rate_mbps: Some(206.0),
                mcs_index: Some(8),
            }),
            other_networks: vec![AirportNetwork {
                ssid: Some("606YarnFactory".into()),
                ssid_redacted: false,
                phy_mode: Some("802.11".into()),
                channel: Some(11),
                band: Some(Band::Ghz2_4),
                channel_width_mhz: Some(20),
                country_code: None,
                network_type: Some("Infrastructure".into()),
                security: Some("WPA2 Personal".into()),
                signal_dbm: Some(-79.0),
                noise_dbm: Some(-82.0),
                transmit_rate_mbps: None,
                mcs_index: None,
            }],
        }
    }

    fn expected_wdutil() -> WdutilInfo {
        WdutilInfo {
            interface: Some("en0".into()),
            mac_address: None,
            power_on: Some(true),
            op_mode: Some("STA".into()),
            ssid: None,
            ssid_redacted: true,
            bssid: None,
            bssid_redacted: true,
            rssi_dbm: Some(-71.0),
            noise_dbm: Some(-95.0),
            cca_percent: Some(3.0),
            tx_rate_mbps: Some(288.0),
            security: Some("WPA3 Personal".into()),
            phy_mode: Some("11ax".into()),
            mcs_index: Some(3),
            guard_interval_ns: Some(1600),
            nss: Some(2),
            channel: Some(44),
            band: Some(Band::Ghz5),
            channel_width_mhz: Some(80),
            country_code: Some("KZ".into()),
            ipv4_address: Some(Ipv4Addr::new(172, 20, 20, 20)),
            dns_servers: vec![IpAddr::V4(Ipv4Addr::new(172, 20, 20, 53))],
        }
    }

    #[test]
    fn system_profiler_fixture() {
        assert_eq!(
            parse_system_profiler_airport(SYSTEM_PROFILER),
            expected_airport()
        );
        assert_eq!(
            parse_system_profiler_airport(&to_crlf(SYSTEM_PROFILER)),
            expected_airport()
        );
    }

    #[test]
    fn system_profiler_redacted_network_name() {
        let redacted = SYSTEM_PROFILER.replace("            G-HOME:", "            <redacted>:");
        let info = parse_system_profiler_airport(&redacted);
        let current = info.current_network.expect("current network");
        assert_eq!(current.ssid, None);
        assert!(current.ssid_redacted);
        assert_eq!(current.signal_dbm, Some(-53.0), "details still read");
        assert_eq!(current.channel, Some(64));
    }

    #[test]
    fn system_profiler_without_network_name_line() {
        // Hand-made: the details straight under `Current Network
        // Information`, as the fixture's awdl0 has them.
        let input = "      Interfaces:\n        en0:\n          Card Type: Wi-Fi\n          Status: Connected\n          Current Network Information:\n              Channel: 36 (5GHz, 20MHz)\n              Signal / Noise: -60 dBm / -92 dBm\n";
        let current = parse_system_profiler_airport(input)
            .current_network
            .expect("current network");
        assert_eq!(
            current,
            AirportNetwork {
                channel: Some(36),
                band: Some(Band::Ghz5),
                channel_width_mhz: Some(20),
                signal_dbm: Some(-60.0),
                noise_dbm: Some(-92.0),
                ..AirportNetwork::default()
            }
        );
    }

    #[test]
    fn system_profiler_wifi_off_and_6ghz() {
        let off = "Wi-Fi:\n\n      Interfaces:\n        en0:\n          Card Type: Wi-Fi  (0x14E4, 0x4378)\n          Status: Off\n";
        let info = parse_system_profiler_airport(off);
        assert_eq!(info.connected, Some(false));
        assert_eq!(info.current_network, None);
        assert_eq!(
            profiler_channel("37 (6GHz, 160MHz)"),
            (Some(37), Some(Band::Ghz6), Some(160))
        );
        assert_eq!(profiler_channel("149"), (Some(149), None, None));
        assert_eq!(profiler_channel("(,"), (None, None, None));
    }

    #[test]
    fn system_profiler_without_wifi_interface() {
        assert_eq!(parse_system_profiler_airport(""), AirportInfo::default());
        let only_awdl = "      Interfaces:\n        awdl0:\n          Current Network Information:\n              Network Type: Infrastructure\n";
        assert_eq!(
            parse_system_profiler_airport(only_awdl),
            AirportInfo::default()
        );
    }

    #[test]
    fn wdutil_fixture() {
        assert_eq!(parse_wdutil_info(WDUTIL), expected_wdutil());
        assert_eq!(parse_wdutil_info(&to_crlf(WDUTIL)), expected_wdutil());
    }

    #[test]
    fn wdutil_reads_only_the_wifi_section() {
        // Hand-made: sections before and after WIFI with the same keys.
        let input = "NETWORK\n\u{2014}\u{2014}\u{2014}\n    Primary IPv4         : en0 (Wi-Fi)\n    RSSI                 : -10 dBm\n\nWIFI\n\u{2014}\u{2014}\u{2014}\n    SSID                 : Office\n    BSSID                : 02:11:22:33:44:55\n    MAC Address          : 0a:0b:0c:0d:0e:0f (hw=a0:78:17:a3:ed:23)\n    Power                : Off [On]\n    Channel              : 2g6/20\n\nBLUETOOTH\n\u{2014}\u{2014}\u{2014}\n    Power                : On\n    Channel              : 6g37/160\n";
        let info = parse_wdutil_info(input);
        assert_eq!(
            info,
            WdutilInfo {
                ssid: Some("Office".into()),
                bssid: Some("02:11:22:33:44:55".into()),
                mac_address: Some("0a:0b:0c:0d:0e:0f".into()),
                power_on: Some(false),
                channel: Some(6),
                band: Some(Band::Ghz2_4),
                channel_width_mhz: Some(20),
                ..WdutilInfo::default()
            }
        );
        assert_eq!(
            wdutil_channel("6g37/160"),
            (Some(37), Some(Band::Ghz6), Some(160))
        );
        assert_eq!(wdutil_channel("44"), (Some(44), None, None));
    }

    #[test]
    fn wdutil_empty_or_without_wifi_section() {
        assert_eq!(parse_wdutil_info(""), WdutilInfo::default());
        let bluetooth_only = "BLUETOOTH\n\u{2014}\u{2014}\n    Power                : On\n";
        assert_eq!(parse_wdutil_info(bluetooth_only), WdutilInfo::default());
    }

    #[test]
    fn garbage_and_truncations_never_panic() {
        for input in garbage_inputs() {
            let _ = parse_system_profiler_airport(&input);
            let _ = parse_wdutil_info(&input);
        }
        survives_every_truncation(SYSTEM_PROFILER, parse_system_profiler_airport);
        survives_every_truncation(WDUTIL, parse_wdutil_info);
    }
}
