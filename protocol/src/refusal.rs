//! Reasons the relay refuses a request, each with what the user should do.
//!
//! A refusal travels to the agent or console, which prints its `Display`
//! text; so every message says what went wrong *and* what to do next. It
//! travels [`Nested`](crate::message::Nested), so a reason added by a newer
//! relay reaches an older peer as `Unknown` instead of breaking the frame.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::Role;

/// Why the relay refused a request or a connection.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The enrollment token matches nothing the relay issued.
    #[error("the enrollment token is not valid for this relay: ask IT for a new one (`deskside enroll-token create`)")]
    EnrollTokenInvalid,
    /// The enrollment token's uses are all spent.
    #[error("the enrollment token has already been used: ask IT for a new one (`deskside enroll-token create`)")]
    EnrollTokenUsedUp,
    /// The enrollment token is past its expiry date.
    #[error(
        "the enrollment token has expired: ask IT for a new one (`deskside enroll-token create`)"
    )]
    EnrollTokenExpired,
    /// This key is already enrolled as a device.
    #[error(
        "this device key is already enrolled: run `deskside-agent run` instead of enrolling again"
    )]
    AlreadyEnrolled,
    /// The agent's key matches no enrolled device.
    #[error("this device is not enrolled on this relay: enroll it again with `deskside-agent enroll TOKEN`")]
    DeviceUnknown,
    /// The device was revoked by an administrator.
    #[error("this device was revoked by an administrator: ask IT for a new enrollment token and run `deskside-agent enroll TOKEN`")]
    DeviceRevoked,
    /// The technician token matches nothing, was revoked or expired.
    #[error("the technician token was not accepted (unknown, revoked or expired): ask an administrator for a new one and run `deskside login` again")]
    BadTechnicianToken,
    /// The caller's role does not include the one the request needs.
    #[error("permission denied: this needs the {needed} role and your token has the {have} role; ask an administrator")]
    Forbidden {
        /// Role the request needs.
        needed: Role,
        /// Role of the caller.
        have: Role,
    },
    /// The request names something that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is well-formed but its values are not acceptable.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The caller sent something out of order or not understood.
    #[error(
        "protocol violation: {0}; the connection is closed (upgrade the client if this persists)"
    )]
    ProtocolViolation(String),
    /// A fault inside the relay; details are in the relay's log.
    #[error("the relay failed to handle the request; its log has the details (reference {0})")]
    Internal(String),
    /// Another measurement of this device is running (a speed test asked
    /// by the employee and one asked by a technician, for example).
    #[error("another measurement of this device is running; try again in {retry_after_s} s")]
    MeasurementBusy {
        /// When to try again, seconds.
        retry_after_s: u64,
    },
    /// The device's hourly speed-test allowance on this relay is spent.
    #[error("this device's hourly speed-test allowance on the relay is spent; it is renewed in {} min", retry_after_s.div_ceil(60))]
    MeasurementBudgetSpent {
        /// Seconds until the allowance is renewed.
        retry_after_s: u64,
    },
    /// The device is connected to another relay sharing this relay's
    /// directory: ask that one. Consoles that know this variant connect to
    /// it (pinning `fingerprint`) and ask again, once per request; older
    /// consoles print the `Unknown` text.
    #[error("{device} is connected to another relay, {relay_addr} ({fingerprint}); this console asks it directly once per request, so the device probably moved between relays just now: try again")]
    HeldElsewhere {
        /// The device, as the console named it.
        device: String,
        /// The other relay's public address (`host:port`).
        relay_addr: String,
        /// The other relay's certificate fingerprint, to pin.
        fingerprint: crate::ids::Fingerprint,
    },
    /// A reason from a newer relay; never sent.
    #[serde(skip)]
    #[error("the relay refused for a reason this version does not know (code {tag}); upgrade this program to see it")]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(Refusal, known = 15);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{decode_message, encode_message, Message as _};

    fn held_elsewhere() -> Refusal {
        Refusal::HeldElsewhere {
            device: "laptop-7".to_owned(),
            relay_addr: "relay-b.example.org:4433".to_owned(),
            fingerprint: crate::ids::Fingerprint([7; 32]),
        }
    }

    #[test]
    fn held_elsewhere_names_the_other_relay_and_round_trips() {
        let refusal = held_elsewhere();
        let text = refusal.to_string();
        assert!(text.contains("laptop-7"), "{text}");
        assert!(text.contains("relay-b.example.org:4433"), "{text}");
        assert!(text.contains("try again"), "{text}");
        let body = encode_message(&refusal).expect("encodes");
        assert_eq!(decode_message::<Refusal>(&body), Ok(refusal));
    }

    #[test]
    fn consoles_older_than_held_elsewhere_read_a_plain_refusal() {
        // Consoles built before this variant knew 14 refusals: the tag they
        // see is their `Unknown` position, decoded as `Unknown { tag: 14 }`.
        let body = encode_message(&held_elsewhere()).expect("encodes");
        let (tag, _) = postcard::take_from_bytes::<u32>(&body).expect("a tag");
        assert_eq!(tag, 14);
        assert_eq!(Refusal::KNOWN_VARIANTS, 15);
        let older = Refusal::Unknown { tag }.to_string();
        assert!(older.contains("upgrade"), "{older}");
    }
}
