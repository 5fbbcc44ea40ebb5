//! Encoding messages into frame bodies, with a fallback for unknown variants.
//!
//! Every message enum is encoded with postcard, which writes the variant
//! index as a varint before the fields. Variants are append-only and the last
//! variant of every enum is `Unknown`, which is never sent (`#[serde(skip)]`).
//! When a frame's variant index is at or beyond `Unknown`'s position, the
//! sender is newer than us: we decode it as `Unknown { tag }` so the caller can
//! ignore it instead of dropping the connection.

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// A message enum that can travel in one frame.
pub trait Message: Serialize + DeserializeOwned {
    /// Number of variants this build knows; equal to the index of `Unknown`.
    const KNOWN_VARIANTS: u32;

    /// The value standing for a variant this build does not know.
    fn unknown(tag: u32) -> Self;
}

/// Errors met while encoding or decoding a message body.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MessageError {
    /// The body is not a valid encoding of any message of this direction.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The body decoded, but bytes were left over.
    #[error("malformed message: {0} trailing bytes")]
    TrailingBytes(usize),
    /// The value could not be encoded (for example an `Unknown` placeholder).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encodes a message into a frame body.
pub fn encode_message<M: Message>(message: &M) -> Result<Vec<u8>, MessageError> {
    postcard::to_stdvec(message).map_err(|e| MessageError::Encode(e.to_string()))
}

/// Decodes a frame body into a message, mapping unknown variants to `Unknown`.
pub fn decode_message<M: Message>(body: &[u8]) -> Result<M, MessageError> {
    let (tag, _) = postcard::take_from_bytes::<u32>(body)
        .map_err(|e| MessageError::Malformed(format!("variant tag: {e}")))?;
    if tag >= M::KNOWN_VARIANTS {
        return Ok(M::unknown(tag));
    }
    let (message, rest) =
        postcard::take_from_bytes::<M>(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(MessageError::TrailingBytes(rest.len()));
    }
    Ok(message)
}

/// Encodes a plain (non-enum) value such as a hello; no unknown fallback.
pub fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, MessageError> {
    postcard::to_stdvec(value).map_err(|e| MessageError::Encode(e.to_string()))
}

/// Decodes a plain (non-enum) value, rejecting trailing bytes.
pub fn decode_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, MessageError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(MessageError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// A message carried inside another message as its own encoded bytes.
///
/// Nesting keeps the unknown-variant fallback working one level down: a newer
/// request inside a known envelope decodes as the inner enum's `Unknown`, so
/// the receiver can answer "not supported" instead of closing the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nested<T>(pub T);

impl<T: Message> Serialize for Nested<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = encode_message(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de, T: Message> serde::Deserialize<'de> for Nested<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = <Vec<u8> as serde::Deserialize>::deserialize(deserializer)?;
        decode_message(&bytes)
            .map(Nested)
            .map_err(serde::de::Error::custom)
    }
}

/// Implements [`Message`] for an enum whose last variant is
/// `Unknown { tag: u32 }` marked `#[serde(skip)]`.
#[macro_export]
macro_rules! impl_message {
    ($ty:ty, known = $n:expr) => {
        impl $crate::message::Message for $ty {
            const KNOWN_VARIANTS: u32 = $n;
            fn unknown(tag: u32) -> Self {
                Self::Unknown { tag }
            }
        }
    };
}
