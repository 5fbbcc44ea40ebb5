//! Path measurement between an agent and the relay: the relay is the
//! measurement server.
//!
//! A measurement runs on its own connection (so it never disturbs the
//! agent's presence connection): the agent authenticates with `Measure`
//! instead of `Attach`. Round trips and loss are measured with QUIC datagrams
//! ([`EchoRequest`] → [`EchoReply`]); throughput with one bidirectional stream
//! per transfer, opened by the agent, whose first frame is a
//! [`MeasureRequest`]. After the request the bytes that follow on that stream
//! are raw filler, not frames.

use serde::{Deserialize, Serialize};

/// Longest transfer the relay accepts in one direction.
pub const MAX_TRANSFER_MS: u32 = 10_000;

/// Kind byte of an echo request datagram.
const ECHO_REQUEST: u8 = 1;
/// Kind byte of an echo reply datagram.
const ECHO_REPLY: u8 = 2;
/// Size of an encoded [`EchoRequest`].
pub const ECHO_REQUEST_LEN: usize = 1 + 4 + 8;
/// Size of an encoded [`EchoReply`].
pub const ECHO_REPLY_LEN: usize = ECHO_REQUEST_LEN + 8;

/// A round-trip probe, sent by the agent as a QUIC datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoRequest {
    /// Probe number.
    pub seq: u32,
    /// Agent's send time, microseconds on its monotonic clock.
    pub sent_us: u64,
}

/// The relay's answer to an [`EchoRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// The request echoed back.
    pub request: EchoRequest,
    /// Relay's wall clock when it answered, Unix milliseconds.
    pub relay_time_ms: i64,
}

impl EchoRequest {
    /// Fixed 13-byte encoding: kind, seq (BE), sent_us (BE).
    pub fn encode(&self) -> [u8; ECHO_REQUEST_LEN] {
        let mut out = [0u8; ECHO_REQUEST_LEN];
        out[0] = ECHO_REQUEST;
        out[1..5].copy_from_slice(&self.seq.to_be_bytes());
        out[5..13].copy_from_slice(&self.sent_us.to_be_bytes());
        out
    }

    /// Decodes a request; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ECHO_REQUEST_LEN || bytes[0] != ECHO_REQUEST {
            return None;
        }
        Some(Self {
            seq: u32::from_be_bytes(bytes[1..5].try_into().ok()?),
            sent_us: u64::from_be_bytes(bytes[5..13].try_into().ok()?),
        })
    }

    /// The reply carrying `relay_time_ms`.
    pub fn reply(&self, relay_time_ms: i64) -> EchoReply {
        EchoReply {
            request: *self,
            relay_time_ms,
        }
    }
}

impl EchoReply {
    /// Fixed 21-byte encoding: the request with kind 2, then the time (BE).
    pub fn encode(&self) -> [u8; ECHO_REPLY_LEN] {
        let mut out = [0u8; ECHO_REPLY_LEN];
        out[..ECHO_REQUEST_LEN].copy_from_slice(&self.request.encode());
        out[0] = ECHO_REPLY;
        out[13..21].copy_from_slice(&self.relay_time_ms.to_be_bytes());
        out
    }

    /// Decodes a reply; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ECHO_REPLY_LEN || bytes[0] != ECHO_REPLY {
            return None;
        }
        Some(Self {
            request: EchoRequest {
                seq: u32::from_be_bytes(bytes[1..5].try_into().ok()?),
                sent_us: u64::from_be_bytes(bytes[5..13].try_into().ok()?),
            },
            relay_time_ms: i64::from_be_bytes(bytes[13..21].try_into().ok()?),
        })
    }
}

/// First frame on a measurement stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeasureRequest {
    /// The relay sends filler for `duration_ms`, then finishes the stream.
    Download {
        /// How long to send.
        duration_ms: u32,
    },
    /// The agent sends filler for up to `duration_ms`, then finishes; the
    /// relay answers with one [`MeasureReply::Received`] frame.
    Upload {
        /// How long the agent will send.
        duration_ms: u32,
    },
    /// Asks whether a speed test (a download and an upload) may run now;
    /// the relay answers [`MeasureReply::SpeedTestGranted`] or
    /// [`MeasureReply::Refused`] with the reason (hourly allowance spent).
    SpeedTest,
    /// A request from a newer agent; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(MeasureRequest, known = 3);

/// The relay's answer on a measurement stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeasureReply {
    /// What the relay received during an upload.
    Received {
        /// Filler bytes received after the request frame.
        bytes: u64,
        /// From the first filler byte to the end of the stream, microseconds.
        duration_us: u64,
    },
    /// Refused (rate limit, bad duration); the text says why.
    Refused(crate::message::Nested<crate::Refusal>),
    /// The speed test asked by [`MeasureRequest::SpeedTest`] may run.
    SpeedTestGranted {
        /// Speed tests this device may still start in the current hour,
        /// this one included.
        remaining: u32,
    },
    /// A reply from a newer relay; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(MeasureReply, known = 3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_round_trip_and_reject_other_bytes() {
        let request = EchoRequest {
            seq: 7,
            sent_us: 123_456_789,
        };
        assert_eq!(EchoRequest::decode(&request.encode()), Some(request));
        let reply = request.reply(1_700_000_000_000);
        assert_eq!(EchoReply::decode(&reply.encode()), Some(reply));
        assert_eq!(EchoRequest::decode(&reply.encode()), None);
        assert_eq!(EchoReply::decode(&request.encode()), None);
        assert_eq!(EchoRequest::decode(&[]), None);
        assert_eq!(EchoRequest::decode(&[1; 14]), None);
    }
}
