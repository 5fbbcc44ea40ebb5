//! Version negotiation: the frozen first exchange on every connection.
//!
//! The client's first frame is a [`ClientHello`] and the relay answers with a
//! [`ServerHello`]. These two types must never change shape: they are what
//! lets a peer from any release tell another that one of them must upgrade,
//! instead of both failing to decode each other and hanging.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Marks a deskside hello; anything else on a new stream is garbage.
pub const MAGIC: [u8; 4] = *b"DSKS";

/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The oldest protocol version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// An inclusive range of protocol versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    /// Oldest version spoken.
    pub min: u16,
    /// Newest version spoken.
    pub max: u16,
}

impl VersionRange {
    /// The range this build speaks.
    pub const CURRENT: VersionRange = VersionRange {
        min: MIN_PROTOCOL_VERSION,
        max: PROTOCOL_VERSION,
    };
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}–{}", self.min, self.max)
        }
    }
}

/// First frame from a client. Frozen: never add, remove or reorder fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Protocol versions the client speaks.
    pub versions: VersionRange,
    /// Software name and version, for logs (e.g. `deskside-agent 0.1.0`).
    pub software: String,
}

impl ClientHello {
    /// The hello this build sends.
    pub fn current(software: impl Into<String>) -> Self {
        Self {
            magic: MAGIC,
            versions: VersionRange::CURRENT,
            software: software.into(),
        }
    }
}

/// The relay's answer to a [`ClientHello`]. Frozen, like the hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerHello {
    /// Both sides continue with `version`.
    Accepted {
        /// The version both sides now speak.
        version: u16,
        /// The relay's software name and version.
        software: String,
    },
    /// No common version; the relay closes the stream after sending this.
    VersionMismatch {
        /// Versions the relay speaks.
        relay: VersionRange,
        /// The relay's software name and version.
        software: String,
    },
}

/// Which side of a failed negotiation must be upgraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MustUpgrade {
    /// The local side is older than anything the peer still speaks.
    Local,
    /// The peer is older than anything the local side still speaks.
    Peer,
}

/// Picks the newest version both ranges contain.
pub fn negotiate(local: VersionRange, peer: VersionRange) -> Result<u16, MustUpgrade> {
    let high = local.max.min(peer.max);
    let low = local.min.max(peer.min);
    if high >= low {
        Ok(high)
    } else if local.max < peer.min {
        Err(MustUpgrade::Local)
    } else {
        Err(MustUpgrade::Peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: u16, max: u16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn picks_the_newest_common_version() {
        assert_eq!(negotiate(r(1, 3), r(2, 5)), Ok(3));
        assert_eq!(negotiate(r(2, 5), r(1, 3)), Ok(3));
        assert_eq!(negotiate(r(1, 1), r(1, 1)), Ok(1));
    }

    #[test]
    fn says_who_must_upgrade() {
        assert_eq!(negotiate(r(1, 1), r(2, 3)), Err(MustUpgrade::Local));
        assert_eq!(negotiate(r(2, 3), r(1, 1)), Err(MustUpgrade::Peer));
    }

    #[test]
    fn hello_encoding_is_frozen() {
        // These bytes are the contract with every past and future release.
        let hello = ClientHello {
            magic: MAGIC,
            versions: r(1, 2),
            software: "x".into(),
        };
        let bytes = crate::message::encode_value(&hello).unwrap();
        assert_eq!(bytes, [b'D', b'S', b'K', b'S', 1, 2, 1, b'x']);
        let accepted = ServerHello::Accepted {
            version: 1,
            software: "r".into(),
        };
        assert_eq!(
            crate::message::encode_value(&accepted).unwrap(),
            [0, 1, 1, b'r']
        );
    }
}
