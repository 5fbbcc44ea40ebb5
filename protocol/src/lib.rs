//! The deskside wire protocol: message types, framing and version negotiation.
//!
//! This crate is the pure core that the agent, relay and console drive. It
//! must never do I/O, spawn tasks or read a clock: bytes and times are passed
//! in, so every rule here is tested deterministically. The async driver that
//! moves these frames over QUIC lives in `deskside-net`.
//!
//! Wire format, in one paragraph: every QUIC stream carries length-prefixed
//! frames (`u32` big-endian length, then a postcard body; see [`frame`]). The
//! first frame a client sends is a [`version::ClientHello`], answered by a
//! [`version::ServerHello`]; both are frozen forever so that any two versions
//! can at least tell each other to upgrade. Every later frame is one message of
//! the direction's enum (for example [`agent::AgentToRelay`]). Enum variants
//! are append-only: a peer that receives a variant it does not know decodes it
//! as `Unknown` and may ignore it (see [`message::Message`]).

pub mod agent;
pub mod audit;
pub mod certificate;
pub mod console;
pub mod frame;
pub mod helper;
pub mod ids;
pub mod measure;
pub mod message;
pub mod park;
pub mod reconnect;
pub mod refusal;
pub mod request;
pub mod request_stats;
pub mod session;
pub mod timeline;
pub mod token;
pub mod version;

#[cfg(test)]
mod tests;

pub use frame::{FrameDecoder, FrameError, MAX_CLIENT_FRAME_LEN, MAX_RELAY_FRAME_LEN};
pub use ids::{DeviceId, Fingerprint, Role, SessionId, TechnicianId};
pub use message::{decode_message, encode_message, Message, MessageError};
pub use refusal::Refusal;
