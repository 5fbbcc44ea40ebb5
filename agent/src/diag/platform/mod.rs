//! Platform probes behind one small interface, one file per platform.
//!
//! Every platform provides `is_system_mount`, `pressure`, `battery`,
//! `network` and `wifi`; Windows also `os_connectivity` (its own
//! connectivity verdict), `cpu_usage` over its longer `CPU_SAMPLE`, and
//! `icmp_echo` (unprivileged pings), for which the other platforms get the
//! defaults below. Linux (`linux.rs`) and Windows (`windows/`) are
//! implemented; other platforms (`other.rs`: macOS, whose parsers already
//! exist in `diag::parse`) answer "unknown" with the reason until their
//! probes are written. A macOS port adds `macos.rs` beside them.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{battery, is_system_mount, network, pressure, wifi};

// The Windows mapping code is pure and also compiled for tests elsewhere.
#[cfg(any(windows, test))]
mod windows;
#[cfg(windows)]
pub use self::windows::{
    battery, cpu_usage, icmp_echo, is_system_mount, network, os_connectivity, pressure,
    system_disks, wifi, CPU_SAMPLE,
};

#[cfg(not(any(target_os = "linux", windows)))]
mod other;
#[cfg(not(any(target_os = "linux", windows)))]
pub use other::{battery, is_system_mount, network, pressure, wifi};

/// How long processor usage is sampled where pressure figures (Linux PSI,
/// averaged over a minute) say whether a load lasts: a short sample is
/// enough beside them.
#[cfg(not(windows))]
pub const CPU_SAMPLE: std::time::Duration = std::time::Duration::from_millis(250);

/// Whole-machine processor usage over `sample`, where the platform measures
/// it itself; `None` lets sysinfo do it.
#[cfg(not(windows))]
pub fn cpu_usage(_sample: std::time::Duration) -> Option<f64> {
    None
}

/// The system volume read directly, for when sysinfo lists no disk; only
/// Windows needs it (sysinfo lists none under Wine).
#[cfg(not(windows))]
pub fn system_disks() -> Vec<deskside_diag::snapshot::Disk> {
    Vec::new()
}

/// The OS's own connectivity verdict: only Windows has one the agent reads
/// (absent from other snapshots rather than unknown).
#[cfg(not(windows))]
pub fn os_connectivity() -> Option<deskside_diag::Probe<deskside_diag::snapshot::OsConnectivity>> {
    None
}

/// What the organisation allows the agent to report about Wi‑Fi networks.
#[derive(Clone, Debug, Default)]
pub struct Privacy {
    /// Report SSID and BSSID in clear.
    pub wifi_identifiers_in_clear: bool,
    /// Salt for hashing them otherwise, from relays that predate the key;
    /// used only without a key. Without either they are left out.
    pub salt: Option<String>,
    /// The organisation's identifier key (base64url): identifiers are
    /// hashed with HMAC-SHA256 under it (`hmac-sha256:` + hex).
    pub key: Option<String>,
}

impl Privacy {
    /// An identifier as policy allows: in clear, salted hash, or nothing.
    pub fn identifier(&self, value: Option<String>) -> Option<String> {
        let value = value?;
        if self.wifi_identifiers_in_clear {
            return Some(value);
        }
        if let Some(key) = &self.key {
            use base64::Engine as _;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(key)
                .ok()
                .filter(|k| k.len() >= 16)?;
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
            let tag = ring::hmac::sign(&key, value.as_bytes());
            return Some(format!("hmac-sha256:{}", hex_of(tag.as_ref())));
        }
        let salt = self.salt.as_ref()?;
        let mut input = salt.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(value.as_bytes());
        Some(format!("sha256:{}", sha256_hex(&input)))
    }
}

/// The names of the VPN interfaces that are up, for
/// `NetworkConfig::vpn_interfaces` (the same rule on every platform).
#[cfg(any(target_os = "linux", windows))]
pub fn vpn_interface_names(interfaces: &[deskside_diag::snapshot::Interface]) -> Vec<String> {
    interfaces
        .iter()
        .filter(|i| i.kind == deskside_diag::snapshot::InterfaceKind::Vpn && i.up)
        .map(|i| i.name.clone())
        .collect()
}

/// The parsers' band (the platform tools' words and frequencies) as the
/// snapshot writes it.
impl From<crate::diag::parse::Band> for deskside_diag::snapshot::Band {
    fn from(band: crate::diag::parse::Band) -> Self {
        use crate::diag::parse::Band as Parsed;
        match band {
            Parsed::Ghz2_4 => Self::Ghz2_4,
            Parsed::Ghz5 => Self::Ghz5,
            Parsed::Ghz6 => Self::Ghz6,
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex_of(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_the_policy() {
        let clear = Privacy {
            wifi_identifiers_in_clear: true,
            salt: None,
            key: None,
        };
        assert_eq!(
            clear.identifier(Some("Home".into())).as_deref(),
            Some("Home")
        );
        let hashed = Privacy {
            wifi_identifiers_in_clear: false,
            salt: Some("org-salt".into()),
            key: None,
        };
        let one = hashed.identifier(Some("Home".into())).unwrap();
        assert!(one.starts_with("sha256:") && !one.contains("Home"));
        assert_eq!(
            hashed.identifier(Some("Home".into())).unwrap(),
            one,
            "stable"
        );
        let other_org = Privacy {
            wifi_identifiers_in_clear: false,
            salt: Some("other".into()),
            key: None,
        };
        assert_ne!(other_org.identifier(Some("Home".into())).unwrap(), one);
        assert_eq!(Privacy::default().identifier(Some("Home".into())), None);
    }

    #[test]
    fn a_key_gives_a_keyed_hash_that_the_salt_alone_cannot_reproduce() {
        let keyed = |key: &str| Privacy {
            wifi_identifiers_in_clear: false,
            salt: Some("org-salt".into()),
            key: Some(key.into()),
        };
        // 32 bytes, base64url.
        let key_a = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        let key_b = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo";
        let bssid = Some("aa:bb:cc:00:11:22".to_owned());
        let one = keyed(key_a).identifier(bssid.clone()).unwrap();
        assert!(
            one.starts_with("hmac-sha256:") && one.len() == 12 + 64,
            "{one}"
        );
        assert_eq!(
            keyed(key_a).identifier(bssid.clone()).unwrap(),
            one,
            "stable"
        );
        assert_ne!(keyed(key_b).identifier(bssid.clone()).unwrap(), one);
        let salted_only = Privacy {
            key: None,
            ..keyed(key_a)
        };
        assert_ne!(salted_only.identifier(bssid.clone()).unwrap(), one);
        // A damaged key leaves the identifier out rather than guessing.
        assert_eq!(keyed("short").identifier(bssid), None);
    }
}
