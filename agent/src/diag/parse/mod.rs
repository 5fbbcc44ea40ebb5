//! Pure parsers for the text that diagnostic tools print: one file per tool
//! family, each turning a `&str` into a plain struct.
//!
//! Architecture invariant: nothing in here does I/O, reads the clock, spawns
//! processes or panics on any input. The platform probes run the tools and
//! hand their output to these functions; tests feed them the recorded
//! outputs in `agent/tests/fixtures`.
//!
//! Conventions shared by every parser:
//! - a value the input does not contain is `None`, never 0;
//! - unknown lines are ignored, so newer tool versions that add lines still
//!   parse;
//! - CRLF line ends, tabs and runs of spaces are accepted anywhere;
//! - units are fixed: dBm and Mbit/s as `f64`, frequencies in MHz as `f64`
//!   (newer `iw` prints `2462.0`), durations with the unit in the field
//!   name.

#![deny(clippy::unwrap_used)]

pub mod iw;
pub mod macos;
pub mod netsh;
pub mod proc;
pub mod tunnel;

/// A Wi‑Fi frequency band.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Band {
    /// 2.4 GHz (2400–2500 MHz): the most crowded band.
    Ghz2_4,
    /// 5 GHz (4900–5900 MHz, including the 4.9 GHz public-safety and the
    /// 5.9 GHz channels).
    Ghz5,
    /// 6 GHz (5925–7125 MHz), Wi‑Fi 6E and later.
    Ghz6,
}

/// The band a centre frequency in MHz belongs to; `None` outside the three
/// Wi‑Fi bands (or for a non-finite number).
pub fn band_of_freq(freq_mhz: f64) -> Option<Band> {
    if (2400.0..=2500.0).contains(&freq_mhz) {
        Some(Band::Ghz2_4)
    } else if (4900.0..=5900.0).contains(&freq_mhz) {
        Some(Band::Ghz5)
    } else if (5925.0..=7125.0).contains(&freq_mhz) {
        Some(Band::Ghz6)
    } else {
        None
    }
}

/// A band as the platform tools write it: `2.4 GHz` (Windows), `2GHz`
/// (macOS), `5`, `6GHz`. The unit is optional; any other number is `None`.
pub(crate) fn band_of_ghz_label(label: &str) -> Option<Band> {
    let label = label.trim();
    let number = label
        .strip_suffix("GHz")
        .or_else(|| label.strip_suffix("ghz"))
        .unwrap_or(label)
        .trim();
    match number {
        "2" | "2.4" => Some(Band::Ghz2_4),
        "5" => Some(Band::Ghz5),
        "6" => Some(Band::Ghz6),
        _ => None,
    }
}

/// The lines of a tool's output without their line ends: `str::lines`
/// already strips `\r\n`, and this also strips a lone `\r` left on the last
/// line of a CRLF file cut short.
pub(crate) fn text_lines(input: &str) -> impl Iterator<Item = &str> {
    input.lines().map(|line| line.trim_end_matches('\r'))
}

/// Splits `key: value` at the first colon, trimming both sides (tabs
/// included). Keys in the tools parsed here never contain a colon; values
/// may (MAC addresses).
pub(crate) fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    Some((key.trim(), value.trim()))
}

/// The number at the start of `text` (after whitespace), ignoring what
/// follows: `-61 [-63, -65] dBm` → -61, `300.0Mbps` → 300, `60.` → 60.
/// Only plain decimal notation is accepted, so `inf`, `NaN` and exponents
/// never turn into numbers.
pub(crate) fn leading_f64(text: &str) -> Option<f64> {
    let text = text.trim_start();
    let bytes = text.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'-' | b'+')) {
        end = 1;
    }
    let digits_start = end;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let integer_digits = end - digits_start;
    let mut fraction_digits = 0;
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
            fraction_digits += 1;
        }
    }
    if integer_digits == 0 && fraction_digits == 0 {
        return None;
    }
    // Every byte up to `end` is ASCII, so this slice is on a char boundary.
    text.get(..end)?
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
}

/// The unsigned integer at the start of `text` (after whitespace):
/// `10 ms` → 10. `None` when it does not fit in a `u64`.
pub(crate) fn leading_u64(text: &str) -> Option<u64> {
    let text = text.trim_start();
    let end = text.bytes().take_while(u8::is_ascii_digit).count();
    text.get(..end)?.parse().ok()
}

/// Whether `text` looks like a MAC address or BSSID (`02:11:22:33:44:55`,
/// either case, `-` or `:` separated).
pub(crate) fn is_mac_address(text: &str) -> bool {
    let groups: Vec<&str> = text.split([':', '-']).collect();
    groups.len() == 6
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A non-empty trimmed value as an owned string.
pub(crate) fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers the parser tests share.

    /// The fixture with every `\n` turned into `\r\n` (lines already ending
    /// in `\r\n` are left alone).
    pub fn to_crlf(input: &str) -> String {
        input.replace("\r\n", "\n").replace('\n', "\r\n")
    }

    /// Runs `parse` on every prefix of `input`, cut at every byte (prefixes
    /// that split a UTF-8 sequence are decoded lossily), so a truncated
    /// read can never panic a parser.
    pub fn survives_every_truncation<T>(input: &str, parse: impl Fn(&str) -> T) {
        let bytes = input.as_bytes();
        for cut in 0..=bytes.len() {
            let prefix = String::from_utf8_lossy(&bytes[..cut]);
            let _ = parse(&prefix);
        }
    }

    /// Inputs that are not what any tool prints.
    pub fn garbage_inputs() -> Vec<String> {
        let mut inputs: Vec<String> = [
            "",
            "\n",
            "\r\n\r\n",
            ":",
            "::::",
            " : : ",
            "\t\t\t",
            "-",
            ".",
            "-.",
            "[",
            "]",
            "(",
            "=",
            "%",
            "|",
            "\u{2014}",
            "\u{feff}",
            "é:é",
            "key: inf",
            "key: NaN",
            "freq: 1e999",
            "signal: -999999999999999999999999999 dBm",
            "tx packets: 99999999999999999999999999",
            "Connected to",
            "Connected to \n\tSSID:",
            "Station",
            "Survey data from",
            "Survey data from\n\tfrequency:\t\t\tMHz [in use]",
            "some",
            "some avg10=",
            "full avg10=x avg60=y avg300=z total=-1",
            "Iface\tDestination\tGateway",
            "eth0\tZZZZZZZZ\t01\t",
            "eth0\t00000000\t010200C0\tFFFFFFFFF",
            "wlan0:",
            "wlan0: 0000",
            "eth0:1 2 3",
            "nameserver",
            "nameserver ::::",
            "Name :",
            "    State : ",
            "Interfaces:\n  en0:\n    Current Network Information:\n",
            "Channel: (",
            "Channel: 5g",
            "Channel: g/",
            "Signal / Noise: / ",
            "WIFI\n    RSSI : dBm",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // A deterministic pseudo-random mix of the characters the tools
        // print, so the parsers meet combinations nobody thought of.
        let alphabet: Vec<char> = "\n\r\t :.-[]()%=/|0123456789abcdefxGHzMBit/sdBmNT<>é\u{2014}"
            .chars()
            .collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for length in 0..200 {
            let mut text = String::new();
            for _ in 0..length {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            inputs.push(text);
        }
        inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_by_frequency() {
        let cases = [
            (2412.0, Some(Band::Ghz2_4)),
            (2462.0, Some(Band::Ghz2_4)),
            (2484.0, Some(Band::Ghz2_4)),
            (2400.0, Some(Band::Ghz2_4)),
            (2500.0, Some(Band::Ghz2_4)),
            (4900.0, Some(Band::Ghz5)),
            (5180.0, Some(Band::Ghz5)),
            (5240.0, Some(Band::Ghz5)),
            (5885.0, Some(Band::Ghz5)),
            (5900.0, Some(Band::Ghz5)),
            (5910.0, None),
            (5925.0, Some(Band::Ghz6)),
            (5955.0, Some(Band::Ghz6)),
            (7125.0, Some(Band::Ghz6)),
            (7126.0, None),
            (60480.0, None),
            (0.0, None),
            (-5180.0, None),
            (f64::NAN, None),
            (f64::INFINITY, None),
        ];
        for (freq, band) in cases {
            assert_eq!(band_of_freq(freq), band, "{freq} MHz");
        }
    }

    #[test]
    fn bands_by_label() {
        let cases = [
            ("2.4 GHz", Some(Band::Ghz2_4)),
            ("2GHz", Some(Band::Ghz2_4)),
            ("5 GHz", Some(Band::Ghz5)),
            ("5", Some(Band::Ghz5)),
            ("6GHz", Some(Band::Ghz6)),
            ("60 GHz", None),
            ("GHz", None),
            ("", None),
        ];
        for (label, band) in cases {
            assert_eq!(band_of_ghz_label(label), band, "{label:?}");
        }
    }

    #[test]
    fn leading_numbers() {
        let floats = [
            ("-61 [-63, -65] dBm", Some(-61.0)),
            ("300.0Mbps", Some(300.0)),
            ("60.", Some(60.0)),
            ("-127.", Some(-127.0)),
            ("  2462.0", Some(2462.0)),
            ("+5", Some(5.0)),
            (".5", Some(0.5)),
            ("-", None),
            (".", None),
            ("-.", None),
            ("", None),
            ("dBm", None),
            ("inf", None),
            ("NaN", None),
            ("1e5", Some(1.0)),
        ];
        for (text, expected) in floats {
            assert_eq!(leading_f64(text), expected, "{text:?}");
        }
        assert_eq!(leading_u64("10 ms"), Some(10));
        assert_eq!(leading_u64("\t3600 seconds"), Some(3600));
        assert_eq!(leading_u64("-3"), None);
        assert_eq!(leading_u64("99999999999999999999999"), None);
        assert_eq!(leading_u64(""), None);
    }

    #[test]
    fn key_values_and_mac_addresses() {
        assert_eq!(
            split_key_value("\tsignal:  \t-61 dBm"),
            Some(("signal", "-61 dBm"))
        );
        assert_eq!(
            split_key_value("    BSSID                  : d8:15:0d:72:8c:18"),
            Some(("BSSID", "d8:15:0d:72:8c:18"))
        );
        assert_eq!(split_key_value("no colon"), None);
        assert!(is_mac_address("02:11:22:33:44:55"));
        assert!(is_mac_address("E4-C0-E2-DB-1D-45"));
        assert!(!is_mac_address("02:11:22:33:44"));
        assert!(!is_mac_address("<redacted>"));
        assert!(!is_mac_address("02:11:22:33:44:5g"));
        assert_eq!(non_empty("  x "), Some("x".to_owned()));
        assert_eq!(non_empty(" \t "), None);
    }

    #[test]
    fn every_line_end_is_stripped() {
        let lines: Vec<&str> = text_lines("a\r\nb\nc\r").collect();
        assert_eq!(lines, ["a", "b", "c"]);
    }
}
