//! Parsers for `iw` (nl80211) on Linux: `iw dev IFACE link`,
//! `iw dev IFACE station dump` and `iw dev IFACE survey dump`.
//!
//! Privileges: none. nl80211 answers GET_STATION and GET_SURVEY to any
//! user; only configuration changes need CAP_NET_ADMIN. Run `iw` with
//! `LC_ALL=C` all the same. Some drivers (iwlwifi among them) implement no
//! survey: `iw` then fails with "Operation not supported" on stderr and
//! these parsers are never called, or see empty input and return nothing.
//!
//! Pitfalls handled:
//! - `Not connected.` (exit status 0) is a disconnected link, not an error;
//! - tabs after some colons, blank lines inside a block (`bss flags` after a
//!   blank line on some versions), CRLF;
//! - `freq: 2462.0`: newer `iw` prints decimal frequencies;
//! - `signal: -61 [-63, -65] dBm`: the first number is the combined signal,
//!   the bracket holds one value per antenna chain;
//! - `expected throughput: 300.0Mbps` has no space before its unit;
//! - older `iw` omits `rx bitrate` from `link`: the field is `None`;
//! - SSIDs are printed with `\xNN` escapes for non-printable bytes, UTF-8
//!   and leading/trailing spaces; they are decoded here;
//! - `station dump` and `survey dump` counters are cumulative (since
//!   association, or since the driver last reset them): one sample says
//!   little about "now", the collector takes the difference between two;
//! - `survey dump` lists every channel, many with no counters or zero active
//!   time: that is "no data", so [`channel_busy_percent`] answers `None`,
//!   not 0 %.

pub use super::{band_of_freq, Band};
use super::{is_mac_address, leading_f64, leading_u64, split_key_value, text_lines};

/// The 802.11 generation a bit rate was negotiated with, as `iw` names it
/// in front of `MCS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WifiStandard {
    /// HT, 802.11n (Wi‑Fi 4): `iw` prints a bare `MCS n`.
    Ht,
    /// VHT, 802.11ac (Wi‑Fi 5): `VHT-MCS n`.
    Vht,
    /// HE, 802.11ax (Wi‑Fi 6/6E): `HE-MCS n`.
    He,
    /// EHT, 802.11be (Wi‑Fi 7): `EHT-MCS n`.
    Eht,
}

/// What `iw` prints after a bit rate: `VHT-MCS 9 80MHz short GI VHT-NSS 2`.
/// A legacy (802.11a/b/g) rate has none of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateDetails {
    /// The generation, from the `MCS` prefix.
    pub standard: Option<WifiStandard>,
    /// Modulation and coding scheme index.
    pub mcs: Option<u8>,
    /// Number of spatial streams (`VHT-NSS`, `HE-NSS`, `EHT-NSS`; HT folds
    /// it into the MCS index and prints none).
    pub nss: Option<u8>,
    /// Channel width used for this rate, when wider than 20 MHz or stated.
    pub width_mhz: Option<u32>,
    /// Short guard interval (HT/VHT `short GI`).
    pub short_gi: bool,
}

/// `iw dev IFACE link`: the association of a station interface.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IwLink {
    /// `Connected to …` was printed. `false` for `Not connected.` and for
    /// input that is not `iw link` output at all.
    pub connected: bool,
    /// The interface named in `(on wlan0)`.
    pub interface: Option<String>,
    /// The access point's BSSID.
    pub bssid: Option<String>,
    /// The network name, `\xNN` escapes decoded.
    pub ssid: Option<String>,
    /// Centre frequency of the primary channel.
    pub freq_mhz: Option<f64>,
    /// Signal of the last received frames.
    pub signal_dbm: Option<f64>,
    /// Receive bit rate of the last frames (absent from older `iw`).
    pub rx_bitrate_mbps: Option<f64>,
    /// What follows the receive rate (MCS, width, streams).
    pub rx_rate_details: Option<RateDetails>,
    /// Transmit bit rate of the last frames.
    pub tx_bitrate_mbps: Option<f64>,
    /// What follows the transmit rate.
    pub tx_rate_details: Option<RateDetails>,
    /// Bytes received since association (cumulative).
    pub rx_bytes: Option<u64>,
    /// Packets received since association (cumulative).
    pub rx_packets: Option<u64>,
    /// Bytes sent since association (cumulative).
    pub tx_bytes: Option<u64>,
    /// Packets sent since association (cumulative).
    pub tx_packets: Option<u64>,
    /// `bss flags`, e.g. `short-slot-time`, `short-preamble`.
    pub bss_flags: Vec<String>,
    /// `dtim period`, in beacon intervals.
    pub dtim_period: Option<u32>,
    /// `beacon int`, in time units of 1.024 ms.
    pub beacon_interval_tu: Option<u32>,
}

/// One peer in `iw dev IFACE station dump`: on a client, the access point.
///
/// Every counter is cumulative since association: subtract two samples
/// taken a known time apart to learn what happens now (a counter that went
/// down means the station re-associated in between).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StationInfo {
    /// The peer's MAC address (the BSSID on a client).
    pub mac: String,
    /// The interface named in `(on wlan0)`.
    pub interface: Option<String>,
    /// Time since the peer was last heard from.
    pub inactive_time_ms: Option<u64>,
    /// Bytes received (cumulative).
    pub rx_bytes: Option<u64>,
    /// Packets received (cumulative).
    pub rx_packets: Option<u64>,
    /// Bytes sent (cumulative).
    pub tx_bytes: Option<u64>,
    /// Packets sent (cumulative).
    pub tx_packets: Option<u64>,
    /// Retransmissions (cumulative).
    pub tx_retries: Option<u64>,
    /// Frames given up after every retry (cumulative).
    pub tx_failed: Option<u64>,
    /// Beacons missed (cumulative); only some drivers report it.
    pub beacon_loss: Option<u64>,
    /// Received frames dropped for miscellaneous reasons (cumulative).
    pub rx_drop_misc: Option<u64>,
    /// Signal of the last received frames, all chains combined.
    pub signal_dbm: Option<f64>,
    /// The same per antenna chain (`[-63, -65]`), in chain order.
    pub signal_chains_dbm: Vec<f64>,
    /// Moving average of the signal.
    pub signal_avg_dbm: Option<f64>,
    /// Transmit bit rate of the last frames.
    pub tx_bitrate_mbps: Option<f64>,
    /// What follows the transmit rate.
    pub tx_rate_details: Option<RateDetails>,
    /// Receive bit rate of the last frames.
    pub rx_bitrate_mbps: Option<f64>,
    /// What follows the receive rate.
    pub rx_rate_details: Option<RateDetails>,
    /// The driver's estimate of achievable throughput.
    pub expected_throughput_mbps: Option<f64>,
    /// The 802.1X/WPA port is authorised.
    pub authorized: Option<bool>,
    /// Time since association.
    pub connected_time_s: Option<u64>,
}

/// One channel in `iw dev IFACE survey dump`.
///
/// The times are cumulative, counted by the driver since it last reset
/// them; some drivers reset on every dump, others never.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SurveyEntry {
    /// The interface named in `Survey data from wlan0`.
    pub interface: Option<String>,
    /// Channel centre frequency.
    pub freq_mhz: Option<f64>,
    /// `[in use]`: the channel the interface is on.
    pub in_use: bool,
    /// Noise floor.
    pub noise_dbm: Option<f64>,
    /// Time the radio spent on the channel.
    pub active_ms: Option<u64>,
    /// Time the medium was sensed busy (anyone transmitting).
    pub busy_ms: Option<u64>,
    /// Time spent receiving.
    pub receive_ms: Option<u64>,
    /// Time spent transmitting.
    pub transmit_ms: Option<u64>,
}

/// Parses `iw dev IFACE link`. Never fails: output that is neither
/// `Connected to …` nor `Not connected.` gives `connected: false` and no
/// values.
pub fn parse_link(input: &str) -> IwLink {
    let mut link = IwLink::default();
    for line in text_lines(input) {
        if let Some(rest) = line.trim_start().strip_prefix("Connected to ") {
            let (bssid, interface) = address_and_interface(rest);
            link.connected = true;
            link.bssid = bssid;
            link.interface = interface;
            continue;
        }
        let Some((key, value)) = split_key_value(line) else {
            continue;
        };
        match key {
            "SSID" => link.ssid = decode_ssid(value),
            "freq" => link.freq_mhz = leading_f64(value),
            "signal" => link.signal_dbm = leading_f64(value),
            "rx bitrate" => (link.rx_bitrate_mbps, link.rx_rate_details) = bitrate(value),
            "tx bitrate" => (link.tx_bitrate_mbps, link.tx_rate_details) = bitrate(value),
            "RX" => (link.rx_bytes, link.rx_packets) = bytes_and_packets(value),
            "TX" => (link.tx_bytes, link.tx_packets) = bytes_and_packets(value),
            "bss flags" => {
                link.bss_flags = value.split_whitespace().map(str::to_owned).collect();
            }
            "dtim period" => link.dtim_period = leading_u32(value),
            "beacon int" => link.beacon_interval_tu = leading_u32(value),
            _ => {}
        }
    }
    link
}

/// Parses `iw dev IFACE station dump`: one entry per `Station` block, in
/// the order printed. Empty when the interface has no peer.
pub fn parse_station_dump(input: &str) -> Vec<StationInfo> {
    let mut stations: Vec<StationInfo> = Vec::new();
    for line in text_lines(input) {
        if let Some(rest) = line.trim_start().strip_prefix("Station ") {
            let (mac, interface) = address_and_interface(rest);
            stations.push(StationInfo {
                mac: mac.unwrap_or_default(),
                interface,
                ..StationInfo::default()
            });
            continue;
        }
        let Some(station) = stations.last_mut() else {
            continue;
        };
        let Some((key, value)) = split_key_value(line) else {
            continue;
        };
        match key {
            "inactive time" => station.inactive_time_ms = leading_u64(value),
            "rx bytes" => station.rx_bytes = leading_u64(value),
            "rx packets" => station.rx_packets = leading_u64(value),
            "tx bytes" => station.tx_bytes = leading_u64(value),
            "tx packets" => station.tx_packets = leading_u64(value),
            "tx retries" => station.tx_retries = leading_u64(value),
            "tx failed" => station.tx_failed = leading_u64(value),
            "beacon loss" => station.beacon_loss = leading_u64(value),
            "rx drop misc" => station.rx_drop_misc = leading_u64(value),
            "signal" => {
                station.signal_dbm = leading_f64(value);
                station.signal_chains_dbm = chain_signals(value);
            }
            "signal avg" => station.signal_avg_dbm = leading_f64(value),
            "tx bitrate" => (station.tx_bitrate_mbps, station.tx_rate_details) = bitrate(value),
            "rx bitrate" => (station.rx_bitrate_mbps, station.rx_rate_details) = bitrate(value),
            "expected throughput" => station.expected_throughput_mbps = leading_f64(value),
            "authorized" => station.authorized = yes_no(value),
            "connected time" => station.connected_time_s = leading_u64(value),
            _ => {}
        }
    }
    // A `Station` line cut before its address is not a station.
    stations.retain(|s| !s.mac.is_empty());
    stations
}

/// Parses `iw dev IFACE survey dump`: one entry per `Survey data from`
/// block, in the order printed.
pub fn parse_survey_dump(input: &str) -> Vec<SurveyEntry> {
    let mut entries: Vec<SurveyEntry> = Vec::new();
    for line in text_lines(input) {
        if let Some(rest) = line.trim_start().strip_prefix("Survey data from") {
            entries.push(SurveyEntry {
                interface: rest.split_whitespace().next().map(str::to_owned),
                ..SurveyEntry::default()
            });
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        let Some((key, value)) = split_key_value(line) else {
            continue;
        };
        match key {
            "frequency" => {
                entry.freq_mhz = leading_f64(value);
                entry.in_use = value.contains("[in use]");
            }
            "noise" => entry.noise_dbm = leading_f64(value),
            "channel active time" => entry.active_ms = leading_u64(value),
            "channel busy time" => entry.busy_ms = leading_u64(value),
            "channel receive time" => entry.receive_ms = leading_u64(value),
            "channel transmit time" => entry.transmit_ms = leading_u64(value),
            _ => {}
        }
    }
    entries
}

/// Share of the active time the channel was busy, in percent.
///
/// `None` when the driver gave no active time, an active time of 0 (it
/// lists channels it never measured), no busy time, or a busy time longer
/// than the active time (inconsistent counters): no data, never 0 %.
pub fn channel_busy_percent(entry: &SurveyEntry) -> Option<f64> {
    let active = entry.active_ms.filter(|&ms| ms > 0)?;
    let busy = entry.busy_ms.filter(|&ms| ms <= active)?;
    Some(100.0 * busy as f64 / active as f64)
}

/// `02:11:22:33:44:55 (on wlan0)` → the address, when it is one, and the
/// interface.
fn address_and_interface(rest: &str) -> (Option<String>, Option<String>) {
    let mut words = rest.split_whitespace();
    let address = words
        .next()
        .filter(|w| is_mac_address(w))
        .map(str::to_ascii_lowercase);
    let interface = rest
        .split_once("(on ")
        .and_then(|(_, after)| after.split_once(')'))
        .map(|(name, _)| name.trim())
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    (address, interface)
}

/// `866.7 MBit/s VHT-MCS 9 80MHz short GI VHT-NSS 2` → 866.7 and the
/// details. Details are `None` when nothing follows the unit.
fn bitrate(value: &str) -> (Option<f64>, Option<RateDetails>) {
    let Some(mbps) = leading_f64(value) else {
        return (None, None);
    };
    let words: Vec<&str> = value.split_whitespace().skip(2).collect();
    if words.is_empty() {
        return (Some(mbps), None);
    }
    let mut details = RateDetails::default();
    let mut index = 0;
    while let Some(&word) = words.get(index) {
        let next = words.get(index + 1).copied();
        let standard = match word {
            "MCS" => Some(WifiStandard::Ht),
            "VHT-MCS" => Some(WifiStandard::Vht),
            "HE-MCS" => Some(WifiStandard::He),
            "EHT-MCS" => Some(WifiStandard::Eht),
            _ => None,
        };
        if standard.is_some() {
            details.standard = standard;
            details.mcs = next.and_then(|n| n.parse().ok());
        } else if matches!(word, "VHT-NSS" | "HE-NSS" | "EHT-NSS") {
            details.nss = next.and_then(|n| n.parse().ok());
        } else if word == "short" && next == Some("GI") {
            details.short_gi = true;
        } else if let Some(width) = word.strip_suffix("MHz") {
            details.width_mhz = width.parse().ok();
        }
        index += 1;
    }
    (Some(mbps), Some(details))
}

/// `1234567 bytes (8901 packets)` → both numbers.
fn bytes_and_packets(value: &str) -> (Option<u64>, Option<u64>) {
    let bytes = leading_u64(value);
    let packets = value
        .split_once('(')
        .and_then(|(_, inside)| leading_u64(inside));
    (bytes, packets)
}

/// `-61 [-63, -65] dBm` → the per-chain values in the bracket.
fn chain_signals(value: &str) -> Vec<f64> {
    let Some((_, inside)) = value.split_once('[') else {
        return Vec::new();
    };
    let inside = inside.split(']').next().unwrap_or_default();
    inside.split(',').filter_map(leading_f64).collect()
}

fn leading_u32(value: &str) -> Option<u32> {
    leading_u64(value).and_then(|n| u32::try_from(n).ok())
}

fn yes_no(value: &str) -> Option<bool> {
    match value {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// Undoes `iw`'s SSID escaping: bytes that are not printable ASCII (UTF-8
/// included), a backslash, and spaces at either end are printed as `\xNN`.
fn decode_ssid(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 4) {
            Some([b'\\', b'x', high, low]) => hex_byte(*high, *low),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 4;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    let value = digit(high)? * 16 + digit(low)?;
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::parse::test_support::{garbage_inputs, survives_every_truncation, to_crlf};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/linux/",
                $name
            ))
        };
    }

    const LINK_5GHZ: &str = fixture!("iw-link-5ghz.txt");
    const LINK_BLANK_LINE: &str = fixture!("iw-link-blank-line.txt");
    const LINK_MINIMAL: &str = fixture!("iw-link-minimal-2ghz.txt");
    const LINK_DECIMAL_FREQ: &str = fixture!("iw-link-decimal-freq.txt");
    const LINK_DISCONNECTED: &str = fixture!("iw-link-disconnected.txt");
    const STATION_DUMP: &str = fixture!("iw-station-dump.txt");
    const SURVEY_DUMP: &str = fixture!("iw-survey-dump.txt");

    fn vht(mcs: u8, width_mhz: u32, nss: u8) -> Option<RateDetails> {
        Some(RateDetails {
            standard: Some(WifiStandard::Vht),
            mcs: Some(mcs),
            nss: Some(nss),
            width_mhz: Some(width_mhz),
            short_gi: true,
        })
    }

    fn ht_mcs(mcs: u8) -> Option<RateDetails> {
        Some(RateDetails {
            standard: Some(WifiStandard::Ht),
            mcs: Some(mcs),
            ..RateDetails::default()
        })
    }

    fn expected_link_5ghz() -> IwLink {
        IwLink {
            connected: true,
            interface: Some("wlan0".into()),
            bssid: Some("02:11:22:33:44:55".into()),
            ssid: Some("Campus".into()),
            freq_mhz: Some(5240.0),
            signal_dbm: Some(-61.0),
            rx_bitrate_mbps: Some(866.7),
            rx_rate_details: vht(9, 80, 2),
            tx_bitrate_mbps: Some(780.0),
            tx_rate_details: vht(8, 80, 2),
            rx_bytes: Some(1_234_567),
            rx_packets: Some(8901),
            tx_bytes: Some(234_567),
            tx_packets: Some(1234),
            bss_flags: vec!["short-slot-time".into()],
            dtim_period: Some(1),
            beacon_interval_tu: Some(100),
        }
    }

    fn expected_link_blank_line() -> IwLink {
        IwLink {
            connected: true,
            interface: Some("wlp2s0".into()),
            bssid: Some("e4:c0:e2:db:1d:45".into()),
            ssid: Some("MURILO 5G".into()),
            freq_mhz: Some(5180.0),
            signal_dbm: Some(-39.0),
            rx_bitrate_mbps: Some(433.3),
            rx_rate_details: vht(9, 80, 1),
            tx_bitrate_mbps: Some(433.3),
            tx_rate_details: vht(9, 80, 1),
            rx_bytes: Some(1_248_133_728),
            rx_packets: Some(1_641_021),
            tx_bytes: Some(2_901_520_415),
            tx_packets: Some(3_103_813),
            bss_flags: vec!["short-slot-time".into()],
            dtim_period: Some(1),
            beacon_interval_tu: Some(100),
        }
    }

    fn expected_link_minimal() -> IwLink {
        IwLink {
            connected: true,
            interface: Some("wlan0".into()),
            bssid: Some("f4:f2:6d:22:7c:f0".into()),
            ssid: Some("LEDE-tp1043".into()),
            freq_mhz: Some(2462.0),
            signal_dbm: Some(-39.0),
            rx_bitrate_mbps: None,
            rx_rate_details: None,
            tx_bitrate_mbps: Some(13.0),
            tx_rate_details: ht_mcs(1),
            rx_bytes: Some(7_007_190),
            rx_packets: Some(72_847),
            tx_bytes: Some(20_015),
            tx_packets: Some(226),
            bss_flags: vec![],
            dtim_period: None,
            beacon_interval_tu: None,
        }
    }

    fn expected_link_decimal_freq() -> IwLink {
        IwLink {
            connected: true,
            interface: Some("wlan0".into()),
            bssid: Some("f4:f2:6d:22:7c:f0".into()),
            ssid: Some("LEDE-tp1043".into()),
            freq_mhz: Some(2462.0),
            signal_dbm: Some(-39.0),
            tx_bitrate_mbps: Some(13.0),
            tx_rate_details: ht_mcs(1),
            ..IwLink::default()
        }
    }

    fn expected_station() -> StationInfo {
        StationInfo {
            mac: "02:11:22:33:44:55".into(),
            interface: Some("wlan0".into()),
            inactive_time_ms: Some(10),
            rx_bytes: Some(1_234_567),
            rx_packets: Some(8901),
            tx_bytes: Some(234_567),
            tx_packets: Some(1000),
            tx_retries: Some(120),
            tx_failed: Some(3),
            beacon_loss: Some(0),
            rx_drop_misc: Some(5),
            signal_dbm: Some(-61.0),
            signal_chains_dbm: vec![-63.0, -65.0],
            signal_avg_dbm: Some(-60.0),
            tx_bitrate_mbps: Some(780.0),
            tx_rate_details: vht(8, 80, 2),
            rx_bitrate_mbps: Some(866.7),
            rx_rate_details: vht(9, 80, 2),
            expected_throughput_mbps: Some(300.0),
            authorized: Some(true),
            connected_time_s: Some(3600),
        }
    }

    fn expected_survey() -> Vec<SurveyEntry> {
        vec![
            SurveyEntry {
                interface: Some("wlan0".into()),
                freq_mhz: Some(5240.0),
                in_use: true,
                noise_dbm: Some(-92.0),
                active_ms: Some(1000),
                busy_ms: Some(450),
                receive_ms: Some(300),
                transmit_ms: Some(100),
            },
            SurveyEntry {
                interface: Some("wlan0".into()),
                freq_mhz: Some(2412.0),
                in_use: false,
                noise_dbm: Some(-95.0),
                ..SurveyEntry::default()
            },
        ]
    }

    #[test]
    fn link_fixtures() {
        let cases = [
            (LINK_5GHZ, expected_link_5ghz()),
            (LINK_BLANK_LINE, expected_link_blank_line()),
            (LINK_MINIMAL, expected_link_minimal()),
            (LINK_DECIMAL_FREQ, expected_link_decimal_freq()),
            (LINK_DISCONNECTED, IwLink::default()),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_link(input), expected, "\n{input}");
            assert_eq!(parse_link(&to_crlf(input)), expected, "CRLF\n{input}");
        }
    }

    #[test]
    fn link_bands() {
        let band = |input| parse_link(input).freq_mhz.and_then(band_of_freq);
        assert_eq!(band(LINK_5GHZ), Some(Band::Ghz5));
        assert_eq!(band(LINK_MINIMAL), Some(Band::Ghz2_4));
        assert_eq!(band(LINK_DECIMAL_FREQ), Some(Band::Ghz2_4));
        assert_eq!(band(LINK_DISCONNECTED), None);
    }

    #[test]
    fn link_with_newer_fields() {
        // Hand-made: the Wi‑Fi 6/7 rate notation of current iw, an escaped
        // UTF-8 SSID with a trailing space, and a 6 GHz frequency.
        let input = "Connected to AA:BB:CC:DD:EE:FF (on wlp0s20f3)\n\
                     \tSSID: Caf\\xc3\\xa9 \\x5c Gast\\x20\n\
                     \tfreq: 5975.0\n\
                     \tsignal: -48 dBm\n\
                     \trx bitrate: 1200.9 MBit/s 160MHz HE-MCS 5 HE-NSS 2 HE-GI 0 HE-DCM 0\n\
                     \ttx bitrate: 2882.4 MBit/s 320MHz EHT-MCS 13 EHT-NSS 2 EHT-GI 0\n";
        let link = parse_link(input);
        assert_eq!(link.bssid.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(link.interface.as_deref(), Some("wlp0s20f3"));
        assert_eq!(link.ssid.as_deref(), Some("Café \\ Gast "));
        assert_eq!(link.freq_mhz.and_then(band_of_freq), Some(Band::Ghz6));
        assert_eq!(
            link.rx_rate_details,
            Some(RateDetails {
                standard: Some(WifiStandard::He),
                mcs: Some(5),
                nss: Some(2),
                width_mhz: Some(160),
                short_gi: false,
            })
        );
        assert_eq!(
            link.tx_rate_details,
            Some(RateDetails {
                standard: Some(WifiStandard::Eht),
                mcs: Some(13),
                nss: Some(2),
                width_mhz: Some(320),
                short_gi: false,
            })
        );
        assert_eq!(link.tx_bitrate_mbps, Some(2882.4));
    }

    #[test]
    fn link_with_legacy_rate_has_no_details() {
        let link =
            parse_link("Connected to 02:11:22:33:44:55 (on wlan0)\n\ttx bitrate: 54.0 MBit/s\n");
        assert_eq!(link.tx_bitrate_mbps, Some(54.0));
        assert_eq!(link.tx_rate_details, None);
    }

    #[test]
    fn link_missing_values_stay_none() {
        let link = parse_link(
            "Connected to 02:11:22:33:44:55 (on wlan0)\n\tsignal: dBm\n\tfreq:\n\tSSID:\n",
        );
        assert!(link.connected);
        assert_eq!(link.signal_dbm, None);
        assert_eq!(link.freq_mhz, None);
        assert_eq!(link.ssid, None);
    }

    #[test]
    fn link_of_empty_or_garbage_input_is_not_connected() {
        assert_eq!(parse_link(""), IwLink::default());
        assert_eq!(
            parse_link("command failed: No such device (-19)"),
            IwLink::default()
        );
        for input in garbage_inputs() {
            let _ = parse_link(&input);
        }
    }

    #[test]
    fn station_dump_fixture() {
        assert_eq!(parse_station_dump(STATION_DUMP), vec![expected_station()]);
        assert_eq!(
            parse_station_dump(&to_crlf(STATION_DUMP)),
            vec![expected_station()]
        );
    }

    #[test]
    fn station_dump_with_two_stations_and_missing_fields() {
        // Hand-made: an access point's dump with two clients, the second
        // cut short; lines before the first `Station` are ignored.
        let input = "stray line: 5\n\
                     Station 02:00:00:00:00:01 (on wlan0)\n\
                     \ttx packets:\t10\n\
                     \tauthorized:\tno\n\
                     Station 02:00:00:00:00:02 (on wlan0)\n\
                     \tsignal:\t-70 dBm\n";
        let stations = parse_station_dump(input);
        assert_eq!(
            stations,
            vec![
                StationInfo {
                    mac: "02:00:00:00:00:01".into(),
                    interface: Some("wlan0".into()),
                    tx_packets: Some(10),
                    authorized: Some(false),
                    ..StationInfo::default()
                },
                StationInfo {
                    mac: "02:00:00:00:00:02".into(),
                    interface: Some("wlan0".into()),
                    signal_dbm: Some(-70.0),
                    ..StationInfo::default()
                },
            ]
        );
    }

    #[test]
    fn station_dump_of_empty_or_garbage_input_is_empty() {
        assert_eq!(parse_station_dump(""), vec![]);
        assert_eq!(parse_station_dump("Station \n\ttx packets: 5\n"), vec![]);
        for input in garbage_inputs() {
            let _ = parse_station_dump(&input);
        }
    }

    #[test]
    fn survey_dump_fixture() {
        assert_eq!(parse_survey_dump(SURVEY_DUMP), expected_survey());
        assert_eq!(parse_survey_dump(&to_crlf(SURVEY_DUMP)), expected_survey());
    }

    #[test]
    fn busy_percent_of_the_channel_in_use() {
        let entries = parse_survey_dump(SURVEY_DUMP);
        let in_use: Vec<&SurveyEntry> = entries.iter().filter(|e| e.in_use).collect();
        assert_eq!(in_use.len(), 1);
        assert_eq!(channel_busy_percent(in_use[0]), Some(45.0));
        assert_eq!(channel_busy_percent(&entries[1]), None, "no counters");
    }

    #[test]
    fn busy_percent_is_none_without_data() {
        let entry = |active_ms, busy_ms| SurveyEntry {
            active_ms,
            busy_ms,
            ..SurveyEntry::default()
        };
        let cases = [
            (entry(Some(0), Some(0)), None),
            (entry(Some(0), None), None),
            (entry(None, Some(10)), None),
            (entry(Some(100), None), None),
            (entry(Some(100), Some(101)), None),
            (entry(Some(100), Some(0)), Some(0.0)),
            (entry(Some(100), Some(100)), Some(100.0)),
        ];
        for (entry, expected) in cases {
            assert_eq!(channel_busy_percent(&entry), expected, "{entry:?}");
        }
    }

    #[test]
    fn survey_with_zero_counter_channels() {
        // Hand-made, in the shape ath9k prints for channels it has not
        // visited: zero times are "no data", not an idle channel.
        let input = "Survey data from wlan0\n\
                     \tfrequency:\t\t\t2417 MHz\n\
                     \tchannel active time:\t\t0 ms\n\
                     \tchannel busy time:\t\t0 ms\n\
                     Survey data from wlan0\n\
                     \tfrequency:\t\t\t2422.0 MHz\n";
        let entries = parse_survey_dump(input);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].active_ms, Some(0));
        assert_eq!(entries[0].noise_dbm, None);
        assert_eq!(entries[1].freq_mhz, Some(2422.0));
        assert!(entries.iter().all(|e| channel_busy_percent(e).is_none()));
    }

    #[test]
    fn survey_of_empty_or_garbage_input_is_empty() {
        assert_eq!(parse_survey_dump(""), vec![]);
        assert_eq!(parse_survey_dump("\tnoise: -92 dBm\n"), vec![]);
        for input in garbage_inputs() {
            let _ = parse_survey_dump(&input);
        }
    }

    #[test]
    fn no_truncation_panics() {
        for input in [
            LINK_5GHZ,
            LINK_BLANK_LINE,
            LINK_MINIMAL,
            LINK_DECIMAL_FREQ,
            LINK_DISCONNECTED,
        ] {
            survives_every_truncation(input, parse_link);
        }
        survives_every_truncation(STATION_DUMP, parse_station_dump);
        survives_every_truncation(SURVEY_DUMP, |t| {
            parse_survey_dump(t)
                .iter()
                .map(channel_busy_percent)
                .count()
        });
    }
}
