//! Platform probes behind one small interface, one file per platform.
//!
//! Linux is implemented and tested; other platforms answer "unknown" with
//! the reason until their probes are written and proven on real machines
//! (the parsers for Windows and macOS tool output already exist in
//! `diag::parse`).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{battery, is_system_mount, network, pressure, wifi};

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub use other::{battery, is_system_mount, network, pressure, wifi};

/// What the organisation allows the agent to report about Wi‑Fi networks.
#[derive(Clone, Debug, Default)]
pub struct Privacy {
    /// Report SSID and BSSID in clear.
    pub wifi_identifiers_in_clear: bool,
    /// Salt for hashing them otherwise; without one they are left out.
    pub salt: Option<String>,
}

impl Privacy {
    /// An identifier as policy allows: in clear, salted hash, or nothing.
    pub fn identifier(&self, value: Option<String>) -> Option<String> {
        let value = value?;
        if self.wifi_identifiers_in_clear {
            return Some(value);
        }
        let salt = self.salt.as_ref()?;
        let mut input = salt.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(value.as_bytes());
        Some(format!("sha256:{}", sha256_hex(&input)))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().fold(String::new(), |mut out, b| {
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
        };
        assert_eq!(
            clear.identifier(Some("Home".into())).as_deref(),
            Some("Home")
        );
        let hashed = Privacy {
            wifi_identifiers_in_clear: false,
            salt: Some("org-salt".into()),
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
        };
        assert_ne!(other_org.identifier(Some("Home".into())).unwrap(), one);
        assert_eq!(Privacy::default().identifier(Some("Home".into())), None);
    }
}
