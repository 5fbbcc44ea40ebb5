//! Identifiers and small value types shared by every message direction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Error parsing an identifier or value type from text.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {what} {input:?}: {expected}")]
pub struct ParseError {
    pub(crate) what: &'static str,
    pub(crate) input: String,
    pub(crate) expected: &'static str,
}

/// A device, as named by the relay at enrollment: `dev_` and 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId(pub u64);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dev_{:016x}", self.0)
    }
}

impl FromStr for DeviceId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError {
            what: "device id",
            input: s.to_owned(),
            expected: "expected dev_ followed by 16 hex digits",
        };
        let hex = s.strip_prefix("dev_").ok_or_else(err)?;
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        u64::from_str_radix(hex, 16)
            .map(DeviceId)
            .map_err(|_| err())
    }
}

/// A technician token's row id, shown by `deskside tokens list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TechnicianId(pub u64);

impl fmt::Display for TechnicianId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TechnicianId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(TechnicianId).map_err(|_| ParseError {
            what: "token id",
            input: s.to_owned(),
            expected: "expected a number as printed by `deskside tokens list`",
        })
    }
}

/// A remote session, as numbered by the relay: a random non-zero `u64`.
///
/// People read it as 16 lower-case hex digits (console output, audit rows,
/// logs: JSON numbers above 2^53 lose precision in many readers, and one
/// spelling can be grepped for). On the wire and in `--json` objects it is
/// the bare number it always was (`serde(transparent)`), so changing a
/// field from `u64` to `SessionId` changes no byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The bare number in hex, for the few texts that spell it so (for example
/// `{:#x}` in the tunnel carrier's errors); everything else uses `Display`.
impl fmt::LowerHex for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl FromStr for SessionId {
    type Err = ParseError;
    /// Reads a session id as printed: up to 16 hex digits, surrounding
    /// spaces and a leading `0x` allowed.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError {
            what: "session id",
            input: s.to_owned(),
            expected: "write the 16 hex digits `deskside session list` prints",
        };
        let digits = s.trim().trim_start_matches("0x");
        if digits.is_empty() || digits.len() > 16 {
            return Err(err());
        }
        u64::from_str_radix(digits, 16)
            .map(SessionId)
            .map_err(|_| err())
    }
}

/// What a technician may do. Ordered: each role includes the ones below it.
///
/// Unlike message enums, roles have no `Unknown` fallback, because an unknown
/// role could not be ordered against the others: adding a role needs a new
/// protocol version (see [`crate::version`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Reads the device list and diagnostics.
    Viewer,
    /// Viewer, plus enrollment tokens, fresh diagnostics and remote sessions.
    Technician,
    /// Technician, plus technician tokens, device revocation and the audit log.
    Admin,
}

impl Role {
    /// Stable lower-case name used in the database, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Technician => "technician",
            Role::Admin => "admin",
        }
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "technician" => Ok(Role::Technician),
            "admin" => Ok(Role::Admin),
            _ => Err(ParseError {
                what: "role",
                input: s.to_owned(),
                expected: "expected viewer, technician or admin",
            }),
        }
    }
}

/// SHA-256 of a certificate (DER), used to pin the relay's certificate.
///
/// Written as `sha256:` followed by 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError {
            what: "certificate fingerprint",
            input: s.to_owned(),
            expected:
                "expected sha256: followed by 64 hex digits, as printed in the relay's ready line",
        };
        let digits: String = s
            .strip_prefix("sha256:")
            .unwrap_or(s)
            .chars()
            .filter(|c| *c != ':')
            .collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| err())?;
        Ok(Fingerprint(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_written_as_16_hex_digits_and_read_back() {
        let id = SessionId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<SessionId>(), Ok(id));
        assert_eq!(" 0xabcdef01234567 ".parse::<SessionId>(), Ok(id));
        assert_eq!(SessionId(u64::MAX).to_string(), "ffffffffffffffff");
        assert_eq!(format!("{:#x}", SessionId(0x5e55)), "0x5e55");
        assert_eq!(format!("{:016x}", id), id.to_string());
        assert!("".parse::<SessionId>().is_err());
        assert!("0x".parse::<SessionId>().is_err());
        assert!("10000000000000000".parse::<SessionId>().is_err());
        assert!("00abcdef0123456g".parse::<SessionId>().is_err());
    }

    /// A `SessionId` field encodes to exactly the bytes its `u64` did, so
    /// peers on either side of the change understand each other.
    #[test]
    fn session_id_is_the_same_bytes_on_the_wire_as_the_bare_number() {
        for raw in [0, 1, 127, 128, (1 << 53) + 1, u64::MAX] {
            let as_id = postcard::to_allocvec(&SessionId(raw)).unwrap_or_default();
            let as_number = postcard::to_allocvec(&raw).unwrap_or_default();
            assert!(!as_number.is_empty());
            assert_eq!(as_id, as_number, "{raw}");
            assert_eq!(
                postcard::from_bytes::<SessionId>(&as_number).ok(),
                Some(SessionId(raw))
            );
        }
    }

    #[test]
    fn device_id_round_trips_through_text() {
        let id = DeviceId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "dev_0123456789abcdef");
        assert_eq!("dev_0123456789abcdef".parse::<DeviceId>(), Ok(id));
        assert!("dev_0123".parse::<DeviceId>().is_err());
        assert!("0123456789abcdef".parse::<DeviceId>().is_err());
        assert!("dev_0123456789abcdeg".parse::<DeviceId>().is_err());
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin.allows(Role::Technician));
        assert!(Role::Technician.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Technician));
        assert!(!Role::Technician.allows(Role::Admin));
        for role in [Role::Viewer, Role::Technician, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
    }

    #[test]
    fn fingerprint_accepts_colons_and_prefix() {
        let fp = Fingerprint([0xab; 32]);
        let text = fp.to_string();
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(
            text.trim_start_matches("sha256:").parse::<Fingerprint>(),
            Ok(fp)
        );
        let colons = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
        assert_eq!(colons.parse::<Fingerprint>(), Ok(fp));
        assert!("sha256:abcd".parse::<Fingerprint>().is_err());
    }
}
