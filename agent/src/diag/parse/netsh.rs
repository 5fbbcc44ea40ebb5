//! Parser for Windows `netsh wlan show interfaces`.
//!
//! Privileges: no administrator rights, but since Windows 11 24H2 the
//! command (like `WlanQueryInterface`) needs Location permission; without
//! it, it prints an explanation instead of interfaces (see
//! [`netsh_needs_location_permission`]).
//!
//! Pitfalls handled:
//! - one block per interface, each starting with `Name`; the trailing
//!   `Hosted network status` line belongs to no interface;
//! - `Radio status` continues on the next line (`Hardware On` /
//!   `Software On`) without a key;
//! - Windows 11 prints `AP BSSID` instead of `BSSID`, adds `Band`, `Rssi`
//!   and `QoS …` lines padded to a different width, and uses CRLF;
//! - `Signal` is a percentage and is NEVER converted to dBm: Microsoft
//!   documents a linear map (0 % = -100 dBm … 100 % = -50 dBm), yet real
//!   Windows 11 output shows `Signal 51%` beside `Rssi -63`; only `Rssi`
//!   gives dBm;
//! - the output is localised (German: `Status : Verbunden`, `Kanal`,
//!   `Empfangsrate (MBit/s)`). Only the English keys are read; keys that
//!   are the same in every language (`Name`, `GUID`, `SSID`, `BSSID`,
//!   `Signal`) still parse, everything else stays `None`, and the state is
//!   unknown rather than guessed.

use super::{
    band_of_ghz_label, is_mac_address, leading_f64, leading_u64, non_empty, split_key_value,
    text_lines, Band,
};

/// One interface block of `netsh wlan show interfaces`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetshInterface {
    /// `Name`, e.g. `Wi-Fi`.
    pub name: Option<String>,
    /// `Description`: the adapter's model.
    pub description: Option<String>,
    /// `GUID` of the interface.
    pub guid: Option<String>,
    /// `Physical address`: the adapter's MAC address.
    pub physical_address: Option<String>,
    /// `Interface type` (Windows 11), e.g. `Primary`.
    pub interface_type: Option<String>,
    /// `State` as printed, e.g. `connected`, `disconnected`,
    /// `authenticating`.
    pub state: Option<String>,
    /// `Some(true)` for `connected`, `Some(false)` for the other English
    /// states, `None` when the state is missing or not in English.
    pub state_connected: Option<bool>,
    /// `SSID` of the network.
    pub ssid: Option<String>,
    /// `BSSID` (Windows 10) or `AP BSSID` (Windows 11).
    pub bssid: Option<String>,
    /// `Network type`, e.g. `Infrastructure`.
    pub network_type: Option<String>,
    /// `Radio type`, e.g. `802.11ac`.
    pub radio_type: Option<String>,
    /// `Authentication`, e.g. `WPA2-Personal`.
    pub authentication: Option<String>,
    /// `Cipher`, e.g. `CCMP`.
    pub cipher: Option<String>,
    /// `Connection mode`, e.g. `Auto Connect`.
    pub connection_mode: Option<String>,
    /// `Band` (Windows 11).
    pub band: Option<Band>,
    /// `Channel` number.
    pub channel: Option<u32>,
    /// `Receive rate (Mbps)`.
    pub receive_rate_mbps: Option<f64>,
    /// `Transmit rate (Mbps)`.
    pub transmit_rate_mbps: Option<f64>,
    /// `Signal`, in percent (0–100). Not a dBm value in disguise.
    pub signal_percent: Option<u8>,
    /// `Rssi` (Windows 11): the only dBm figure netsh prints.
    pub rssi_dbm: Option<f64>,
    /// `Profile`: the saved profile in use.
    pub profile: Option<String>,
    /// `Radio status`, one entry per line (`Hardware On`, `Software On`).
    pub radio_status: Vec<String>,
}

/// Parses `netsh wlan show interfaces`: one entry per interface, in the
/// order printed. Empty when the output lists none (no adapter, or no
/// Location permission).
pub fn parse_netsh_wlan_interfaces(input: &str) -> Vec<NetshInterface> {
    let mut interfaces = Vec::new();
    let mut current = NetshInterface::default();
    let mut in_radio_status = false;
    for line in text_lines(input) {
        let Some((key, value)) = split_key_value(line) else {
            // Only `Radio status` continues on a line of its own.
            if in_radio_status {
                if let Some(more) = non_empty(line) {
                    current.radio_status.push(more);
                }
            }
            continue;
        };
        in_radio_status = false;
        let key = key.to_ascii_lowercase();
        // `Name` opens a block in English and German; `GUID` seen twice
        // also does, for languages that translate `Name`.
        let starts_block = match key.as_str() {
            "name" => current != NetshInterface::default(),
            "guid" => current.guid.is_some(),
            _ => false,
        };
        if starts_block {
            interfaces.push(std::mem::take(&mut current));
        }
        match key.as_str() {
            "name" => current.name = non_empty(value),
            "description" => current.description = non_empty(value),
            "guid" => current.guid = non_empty(value),
            "physical address" => current.physical_address = mac(value),
            "interface type" => current.interface_type = non_empty(value),
            "state" => {
                current.state = non_empty(value);
                current.state_connected = state_connected(value);
            }
            "ssid" => current.ssid = non_empty(value),
            "bssid" | "ap bssid" => current.bssid = mac(value),
            "network type" => current.network_type = non_empty(value),
            "radio type" => current.radio_type = non_empty(value),
            "authentication" => current.authentication = non_empty(value),
            "cipher" => current.cipher = non_empty(value),
            "connection mode" => current.connection_mode = non_empty(value),
            "band" => current.band = band_of_ghz_label(value),
            "channel" => current.channel = leading_u64(value).and_then(|c| u32::try_from(c).ok()),
            "receive rate (mbps)" => current.receive_rate_mbps = leading_f64(value),
            "transmit rate (mbps)" => current.transmit_rate_mbps = leading_f64(value),
            "signal" => current.signal_percent = percent(value),
            "rssi" => current.rssi_dbm = leading_f64(value).filter(|dbm| *dbm < 0.0),
            "profile" => current.profile = non_empty(value),
            "radio status" => {
                in_radio_status = true;
                current.radio_status.extend(non_empty(value));
            }
            _ => {}
        }
    }
    if current != NetshInterface::default() {
        interfaces.push(current);
    }
    interfaces
}

/// Whether the output is Windows' refusal for lack of Location permission
/// (Windows 11 24H2 and later) rather than a list of interfaces. English
/// wording only; other languages answer `false`.
pub fn netsh_needs_location_permission(input: &str) -> bool {
    let lower = input.to_ascii_lowercase();
    lower.contains("location permission") || lower.contains("access is denied")
}

fn state_connected(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "connected" => Some(true),
        "disconnected"
        | "disconnecting"
        | "associating"
        | "authenticating"
        | "discovering"
        | "not ready"
        | "ad hoc network formed" => Some(false),
        _ => None,
    }
}

fn mac(value: &str) -> Option<String> {
    is_mac_address(value).then(|| value.to_ascii_lowercase())
}

/// `51%` or `51 %` → 51; values above 100 are not a percentage.
fn percent(value: &str) -> Option<u8> {
    if !value.ends_with('%') {
        return None;
    }
    leading_u64(value)
        .filter(|p| *p <= 100)
        .and_then(|p| u8::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::parse::test_support::{garbage_inputs, survives_every_truncation, to_crlf};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/windows/",
                $name
            ))
        };
    }

    const WIN10: &str = fixture!("netsh-wlan-win10.txt");
    const WIN11_RSSI: &str = fixture!("netsh-wlan-win11-rssi.txt");
    const DISCONNECTED: &str = fixture!("netsh-wlan-disconnected.txt");

    /// HAND-MADE, not a capture: German output written for this test from
    /// the field names in `tests/fixtures/README.md` and the layout of the
    /// English fixtures.
    const GERMAN_HAND_MADE: &str = "\
Es ist 1 Schnittstelle auf dem System vorhanden:

    Name                   : WLAN
    Beschreibung           : Intel(R) Wi-Fi 6 AX201 160MHz
    GUID                   : 3b7a1c5e-2f4d-4e8a-9c1b-6d5e4f3a2b1c
    Physische Adresse      : 02:aa:bb:cc:dd:ee
    Status                 : Verbunden
    SSID                   : Heimnetz
    BSSID                  : 02:11:22:33:44:55
    Netzwerktyp            : Infrastruktur
    Funktyp                : 802.11ax
    Authentifizierung      : WPA2-Personal
    Verschlüsselung        : CCMP
    Verbindungsmodus       : Automatische Verbindung
    Kanal                  : 36
    Empfangsrate (MBit/s)  : 1201
    Übertragungsrate (MBit/s) : 1201
    Signal                 : 88%
    Profil                 : Heimnetz

    Status des gehosteten Netzwerks  : Nicht verfügbar
";

    fn expected_win10() -> NetshInterface {
        NetshInterface {
            name: Some("Wi-Fi".into()),
            description: Some("Qualcomm Atheros AR9485WB-EG Wireless Network Adapter".into()),
            guid: Some("42dfd47a-2764-43ac-b58e-3df569c447da".into()),
            physical_address: Some("a4:db:30:d9:3a:9a".into()),
            interface_type: None,
            state: Some("connected".into()),
            state_connected: Some(true),
            ssid: Some("LUO-PC_Network".into()),
            bssid: Some("d8:15:0d:72:8c:18".into()),
            network_type: Some("Infrastructure".into()),
            radio_type: Some("802.11n".into()),
            authentication: Some("WPA2-Personal".into()),
            cipher: Some("CCMP".into()),
            connection_mode: Some("Auto Connect".into()),
            band: None,
            channel: Some(1),
            receive_rate_mbps: Some(150.0),
            transmit_rate_mbps: Some(150.0),
            signal_percent: Some(100),
            rssi_dbm: None,
            profile: Some("LUO-PC_Network".into()),
            radio_status: vec![],
        }
    }

    fn expected_win11() -> NetshInterface {
        NetshInterface {
            name: Some("Wi-Fi".into()),
            description: Some("Intel(R) Dual Band Wireless-AC 8265".into()),
            guid: Some("c00a3f21-e20d-4a64-9bf5-a9e1af2f5bf1".into()),
            physical_address: Some("0c:d2:92:f6:bc:79".into()),
            interface_type: Some("Primary".into()),
            state: Some("connected".into()),
            state_connected: Some(true),
            ssid: Some("ojeong01_5G".into()),
            bssid: Some("70:5d:cc:34:a6:c0".into()),
            network_type: Some("Infrastructure".into()),
            radio_type: Some("802.11ac".into()),
            authentication: Some("WPA2-Personal".into()),
            cipher: Some("CCMP".into()),
            connection_mode: Some("Auto Connect".into()),
            band: Some(Band::Ghz5),
            channel: Some(149),
            receive_rate_mbps: Some(117.0),
            transmit_rate_mbps: Some(117.0),
            signal_percent: Some(51),
            rssi_dbm: Some(-63.0),
            profile: Some("ojeong01_5G".into()),
            radio_status: vec![],
        }
    }

    fn expected_disconnected() -> NetshInterface {
        NetshInterface {
            name: Some("WLAN 2".into()),
            description: Some("MediaTek Wi-Fi 6/6E Wireless USB LAN Card".into()),
            guid: Some("f59e16c6-253e-4d59-99be-afe5e5048032".into()),
            physical_address: Some("90:de:80:d9:d3:73".into()),
            interface_type: Some("Primary".into()),
            state: Some("disconnected".into()),
            state_connected: Some(false),
            radio_status: vec!["Hardware On".into(), "Software On".into()],
            ..NetshInterface::default()
        }
    }

    #[test]
    fn windows_10_fixture() {
        assert_eq!(parse_netsh_wlan_interfaces(WIN10), vec![expected_win10()]);
        assert_eq!(
            parse_netsh_wlan_interfaces(&to_crlf(WIN10)),
            vec![expected_win10()]
        );
    }

    #[test]
    fn windows_11_fixture_keeps_percent_and_rssi_apart() {
        assert!(WIN11_RSSI.contains("\r\n"), "the fixture is CRLF");
        let parsed = parse_netsh_wlan_interfaces(WIN11_RSSI);
        assert_eq!(parsed, vec![expected_win11()]);
        let lf = WIN11_RSSI.replace("\r\n", "\n");
        assert_eq!(parse_netsh_wlan_interfaces(&lf), vec![expected_win11()]);
    }

    #[test]
    fn disconnected_fixture() {
        assert_eq!(
            parse_netsh_wlan_interfaces(DISCONNECTED),
            vec![expected_disconnected()]
        );
        assert_eq!(
            parse_netsh_wlan_interfaces(&to_crlf(DISCONNECTED)),
            vec![expected_disconnected()]
        );
    }

    #[test]
    fn two_interfaces_in_one_output() {
        let input = format!(
            "There are 2 interfaces on the system:\r\n\r\n{}\r\n{}\r\n    Hosted network status  : Not available\r\n",
            to_crlf(WIN11_RSSI.split("There is 1 interface on the system:\r\n\r\n").nth(1).unwrap()),
            to_crlf(DISCONNECTED),
        );
        assert_eq!(
            parse_netsh_wlan_interfaces(&input),
            vec![expected_win11(), expected_disconnected()]
        );
    }

    #[test]
    fn german_output_is_unknown_not_misread() {
        let parsed = parse_netsh_wlan_interfaces(GERMAN_HAND_MADE);
        assert_eq!(
            parsed,
            vec![NetshInterface {
                // The same words in German and English: safe to read.
                name: Some("WLAN".into()),
                guid: Some("3b7a1c5e-2f4d-4e8a-9c1b-6d5e4f3a2b1c".into()),
                ssid: Some("Heimnetz".into()),
                bssid: Some("02:11:22:33:44:55".into()),
                signal_percent: Some(88),
                // Everything else is unknown, the state above all.
                state: None,
                state_connected: None,
                ..NetshInterface::default()
            }]
        );
        assert_eq!(
            parse_netsh_wlan_interfaces(&to_crlf(GERMAN_HAND_MADE)),
            parsed
        );
    }

    #[test]
    fn a_language_that_translates_name_splits_on_guid() {
        // Hand-made, French-like keys: `Nom` is unknown, `GUID` is not.
        let input = "    Nom  : Wi-Fi\n    GUID : aaaa\n    État : connecté\n\n    Nom  : Wi-Fi 2\n    GUID : bbbb\n";
        let parsed = parse_netsh_wlan_interfaces(input);
        let guids: Vec<Option<&str>> = parsed.iter().map(|i| i.guid.as_deref()).collect();
        assert_eq!(guids, [Some("aaaa"), Some("bbbb")]);
        assert!(parsed
            .iter()
            .all(|i| i.state_connected.is_none() && i.name.is_none()));
    }

    #[test]
    fn other_states_and_odd_values() {
        let input = "    Name : Wi-Fi\n    State : authenticating\n    Signal : 120%\n    Rssi : 0\n    Band : 2.4 GHz\n    Channel : x\n    SSID :\n    BSSID : <hidden>\n";
        let parsed = parse_netsh_wlan_interfaces(input);
        assert_eq!(
            parsed,
            vec![NetshInterface {
                name: Some("Wi-Fi".into()),
                state: Some("authenticating".into()),
                state_connected: Some(false),
                band: Some(Band::Ghz2_4),
                ..NetshInterface::default()
            }]
        );
        let unknown_state =
            parse_netsh_wlan_interfaces("    Name : Wi-Fi\n    State : something new\n");
        assert_eq!(unknown_state[0].state_connected, None);
    }

    #[test]
    fn no_interfaces_and_location_refusal() {
        assert_eq!(parse_netsh_wlan_interfaces(""), vec![]);
        assert_eq!(
            parse_netsh_wlan_interfaces("There is no wireless interface on the system.\r\n"),
            vec![]
        );
        // Hand-made, the wording of Windows 11 24H2 without Location
        // permission.
        let refusal = "Network shell commands need location permission to access WLAN information. \
                       Turn on Location services on the Location page in Privacy & security settings.\r\n";
        assert_eq!(parse_netsh_wlan_interfaces(refusal), vec![]);
        assert!(netsh_needs_location_permission(refusal));
        assert!(!netsh_needs_location_permission(WIN11_RSSI));
    }

    #[test]
    fn garbage_and_truncations_never_panic() {
        for input in garbage_inputs() {
            let _ = parse_netsh_wlan_interfaces(&input);
            let _ = netsh_needs_location_permission(&input);
        }
        for input in [WIN10, WIN11_RSSI, DISCONNECTED, GERMAN_HAND_MADE] {
            survives_every_truncation(input, parse_netsh_wlan_interfaces);
        }
    }
}
