//! Parked agents: presence without a QUIC connection.
//!
//! An attached agent with nothing to do asks to park
//! ([`crate::agent::AgentToRelay::Park`]). The relay answers with a ticket
//! and a key ([`crate::agent::RelayToAgent::Parked`]) and the connection
//! closes. From then on the agent proves it is alive with one small UDP
//! datagram per keep-alive interval, sent to the relay's QUIC port, and the
//! relay answers each one; when the relay needs the agent (a diagnosis, a
//! session request, a policy update) its answer carries [`Reply::WAKE`] and
//! the agent attaches again at once. A parked agent costs the relay a
//! presence entry instead of a QUIC connection (the memory of an idle
//! fleet), and its datagrams are cheaper to answer than QUIC keep-alives.
//!
//! The datagrams share the relay's UDP port with QUIC: their first byte is
//! below `0x40`, a value QUIC never sends to an endpoint that does not
//! advertise `grease_quic_bit` (RFC 9287), which the relay does not.
//!
//! Both directions are authenticated with the ticket's key (a MAC, 16
//! bytes of HMAC-SHA256, computed by the caller: this crate has no
//! cryptography). The relay derives the key and the device from the ticket
//! with its own secret, so it keeps no key per agent and can still answer
//! after a restart. Counters make replays useless: the relay takes a
//! heartbeat only with a counter above the last one it took, and the agent
//! takes a reply only for one of its recent counters.
//!
//! Layouts (integers big-endian):
//! - heartbeat, agent → relay: `0x11`, ticket (24), counter (8), MAC (16);
//! - reply, relay → agent: `0x12`, counter (8), flags (1: [`Reply::WAKE`],
//!   [`Reply::REATTACH`], [`Reply::REFRESH`]), MAC (16).

/// Bytes of a park ticket: 12 random bytes, then the device id and the
/// issue time (seconds, `u32`) sealed by the relay.
pub const TICKET_LEN: usize = 24;
/// Bytes of the MAC that ends each datagram.
pub const MAC_LEN: usize = 16;
/// Bytes of a heartbeat.
pub const HEARTBEAT_LEN: usize = 1 + TICKET_LEN + 8 + MAC_LEN;
/// Bytes of a reply.
pub const REPLY_LEN: usize = 1 + 8 + 1 + MAC_LEN;

const HEARTBEAT_KIND: u8 = 0x11;
const REPLY_KIND: u8 = 0x12;

/// A park ticket, as the relay issued it.
pub type Ticket = [u8; TICKET_LEN];

/// Whether `datagram` is one of ours rather than QUIC (whose packets
/// always carry the fixed bit `0x40` towards the relay).
pub fn is_park_datagram(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|first| *first < 0x40)
}

/// Why a datagram is not a valid park datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParkError {
    /// Wrong length or kind byte.
    #[error("not a park datagram of the expected kind and length")]
    Malformed,
    /// The MAC does not match.
    #[error("the park datagram's MAC does not match")]
    BadMac,
}

/// Compares two MACs without an early exit.
fn same_mac(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A heartbeat: the agent holding `ticket` is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The ticket the relay issued.
    pub ticket: Ticket,
    /// Increases with every heartbeat of the ticket.
    pub counter: u64,
}

impl Heartbeat {
    /// The datagram; `mac` computes the MAC of the bytes it is given with
    /// the ticket's key.
    pub fn encode(&self, mac: impl FnOnce(&[u8]) -> [u8; MAC_LEN]) -> [u8; HEARTBEAT_LEN] {
        let mut out = [0u8; HEARTBEAT_LEN];
        out[0] = HEARTBEAT_KIND;
        out[1..1 + TICKET_LEN].copy_from_slice(&self.ticket);
        out[1 + TICKET_LEN..1 + TICKET_LEN + 8].copy_from_slice(&self.counter.to_be_bytes());
        let tag = mac(&out[..HEARTBEAT_LEN - MAC_LEN]);
        out[HEARTBEAT_LEN - MAC_LEN..].copy_from_slice(&tag);
        out
    }

    /// The ticket of a heartbeat, before its MAC is checked (the key
    /// comes from the ticket).
    pub fn ticket_of(datagram: &[u8]) -> Result<Ticket, ParkError> {
        if datagram.len() != HEARTBEAT_LEN || datagram[0] != HEARTBEAT_KIND {
            return Err(ParkError::Malformed);
        }
        let mut ticket = [0u8; TICKET_LEN];
        ticket.copy_from_slice(&datagram[1..1 + TICKET_LEN]);
        Ok(ticket)
    }

    /// Decodes and authenticates a heartbeat; `mac` as for
    /// [`Heartbeat::encode`].
    pub fn decode(
        datagram: &[u8],
        mac: impl FnOnce(&[u8]) -> [u8; MAC_LEN],
    ) -> Result<Heartbeat, ParkError> {
        let ticket = Heartbeat::ticket_of(datagram)?;
        let (body, tag) = datagram.split_at(HEARTBEAT_LEN - MAC_LEN);
        if !same_mac(&mac(body), tag) {
            return Err(ParkError::BadMac);
        }
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&body[1 + TICKET_LEN..]);
        Ok(Heartbeat {
            ticket,
            counter: u64::from_be_bytes(counter),
        })
    }
}

/// The relay's answer to a heartbeat, or its call to a parked agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The heartbeat's counter (for a call: the last one the relay took).
    pub counter: u64,
    /// [`Reply::WAKE`], [`Reply::REATTACH`] or neither.
    pub flags: u8,
}

impl Reply {
    /// The relay has something for the agent: attach now.
    pub const WAKE: u8 = 1;
    /// The relay no longer knows the ticket (it restarted, the ticket
    /// expired, the device is gone): attach again to learn where it stands.
    pub const REATTACH: u8 = 2;
    /// Something the agent gets when it attaches changed (the
    /// organisation's policy): attach within the reconnect window, so a
    /// whole parked fleet does not come at once.
    pub const REFRESH: u8 = 4;

    /// The datagram; `mac` as for [`Heartbeat::encode`].
    pub fn encode(&self, mac: impl FnOnce(&[u8]) -> [u8; MAC_LEN]) -> [u8; REPLY_LEN] {
        let mut out = [0u8; REPLY_LEN];
        out[0] = REPLY_KIND;
        out[1..9].copy_from_slice(&self.counter.to_be_bytes());
        out[9] = self.flags;
        let tag = mac(&out[..REPLY_LEN - MAC_LEN]);
        out[REPLY_LEN - MAC_LEN..].copy_from_slice(&tag);
        out
    }

    /// Decodes and authenticates a reply.
    pub fn decode(
        datagram: &[u8],
        mac: impl FnOnce(&[u8]) -> [u8; MAC_LEN],
    ) -> Result<Reply, ParkError> {
        if datagram.len() != REPLY_LEN || datagram[0] != REPLY_KIND {
            return Err(ParkError::Malformed);
        }
        let (body, tag) = datagram.split_at(REPLY_LEN - MAC_LEN);
        if !same_mac(&mac(body), tag) {
            return Err(ParkError::BadMac);
        }
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&body[1..9]);
        Ok(Reply {
            counter: u64::from_be_bytes(counter),
            flags: body[9],
        })
    }

    /// The agent should attach now.
    pub fn wakes(&self) -> bool {
        self.flags & Reply::WAKE != 0
    }

    /// The relay no longer takes the ticket.
    pub fn reattach(&self) -> bool {
        self.flags & Reply::REATTACH != 0
    }

    /// The agent should attach within its reconnect window.
    pub fn refresh(&self) -> bool {
        self.flags & Reply::REFRESH != 0
    }
}

/// What the relay seals into a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// The parked device.
    pub device: crate::DeviceId,
    /// When the ticket was issued, Unix seconds.
    pub issued_secs: u32,
}

/// Builds a ticket from its 12 random bytes, `sealed`, and the 12-byte
/// mask the relay derives from the random bytes with its secret.
pub fn seal(random: [u8; 12], sealed: Sealed, mask: [u8; 12]) -> Ticket {
    let mut plain = [0u8; 12];
    plain[..8].copy_from_slice(&sealed.device.0.to_be_bytes());
    plain[8..].copy_from_slice(&sealed.issued_secs.to_be_bytes());
    let mut ticket = [0u8; TICKET_LEN];
    ticket[..12].copy_from_slice(&random);
    for (i, byte) in plain.iter().enumerate() {
        ticket[12 + i] = byte ^ mask[i];
    }
    ticket
}

/// The random part of `ticket` (what the relay derives the mask from).
pub fn random_part(ticket: &Ticket) -> [u8; 12] {
    let mut random = [0u8; 12];
    random.copy_from_slice(&ticket[..12]);
    random
}

/// Opens a ticket with the mask of its random part. Only a MAC checked
/// with the key derived from the ticket says the ticket is genuine.
pub fn unseal(ticket: &Ticket, mask: [u8; 12]) -> Sealed {
    let mut plain = [0u8; 12];
    for (i, byte) in plain.iter_mut().enumerate() {
        *byte = ticket[12 + i] ^ mask[i];
    }
    let mut device = [0u8; 8];
    device.copy_from_slice(&plain[..8]);
    let mut issued = [0u8; 4];
    issued.copy_from_slice(&plain[8..]);
    Sealed {
        device: crate::DeviceId(u64::from_be_bytes(device)),
        issued_secs: u32::from_be_bytes(issued),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in MAC for the format tests (the real one is HMAC-SHA256 in
    /// the relay and agent): a keyed sum, enough to tell keys apart.
    fn toy_mac(key: u8) -> impl Fn(&[u8]) -> [u8; MAC_LEN] {
        move |bytes| {
            let mut tag = [key; MAC_LEN];
            for (i, byte) in bytes.iter().enumerate() {
                tag[i % MAC_LEN] = tag[i % MAC_LEN].wrapping_mul(31).wrapping_add(*byte);
            }
            tag
        }
    }

    #[test]
    fn a_heartbeat_round_trips_and_a_wrong_key_or_byte_is_refused() {
        let heartbeat = Heartbeat {
            ticket: [7; TICKET_LEN],
            counter: 0x0102_0304_0506_0708,
        };
        let bytes = heartbeat.encode(toy_mac(1));
        assert!(is_park_datagram(&bytes));
        assert_eq!(Heartbeat::decode(&bytes, toy_mac(1)), Ok(heartbeat));
        assert_eq!(
            Heartbeat::decode(&bytes, toy_mac(2)),
            Err(ParkError::BadMac)
        );
        for i in 1..bytes.len() {
            let mut bent = bytes;
            bent[i] ^= 0x20;
            assert!(Heartbeat::decode(&bent, toy_mac(1)).is_err(), "byte {i}");
        }
        assert_eq!(
            Heartbeat::decode(&bytes[..HEARTBEAT_LEN - 1], toy_mac(1)),
            Err(ParkError::Malformed)
        );
        assert_eq!(
            Reply::decode(&bytes, toy_mac(1)),
            Err(ParkError::Malformed),
            "a heartbeat is not a reply"
        );
    }

    #[test]
    fn a_reply_round_trips_with_its_flags() {
        let reply = Reply {
            counter: 9,
            flags: Reply::WAKE,
        };
        let bytes = reply.encode(toy_mac(3));
        let decoded = Reply::decode(&bytes, toy_mac(3)).expect("valid");
        assert!(decoded.wakes() && !decoded.reattach());
        assert_eq!(decoded.counter, 9);
        assert_eq!(Reply::decode(&bytes, toy_mac(4)), Err(ParkError::BadMac));
    }

    #[test]
    fn a_sealed_ticket_opens_only_with_its_mask() {
        let sealed = Sealed {
            device: crate::DeviceId(0xdead_beef_0000_0042),
            issued_secs: 1_790_000_000,
        };
        let mask = [0x5a; 12];
        let ticket = seal([1; 12], sealed, mask);
        assert_eq!(random_part(&ticket), [1; 12]);
        assert_eq!(unseal(&ticket, mask), sealed);
        assert_ne!(unseal(&ticket, [0x5b; 12]), sealed);
        // The device id does not appear in clear.
        assert!(!ticket
            .windows(8)
            .any(|w| w == sealed.device.0.to_be_bytes()));
    }

    #[test]
    fn quic_packets_are_not_park_datagrams() {
        // Long header (Initial) and short header, fixed bit set.
        assert!(!is_park_datagram(&[0xc3, 0, 0, 0, 1]));
        assert!(!is_park_datagram(&[0x41, 1, 2]));
        assert!(!is_park_datagram(&[]));
    }
}
