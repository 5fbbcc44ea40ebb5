//! Length-prefixed framing.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of body.
//! The length is checked against a maximum *before* anything is allocated or
//! buffered, so a peer announcing a 4 GiB frame costs us four bytes of reading.
//! "Not enough bytes yet" is `Ok(None)`, not an error.

use thiserror::Error;

/// Size of the length prefix in bytes.
pub const HEADER_LEN: usize = 4;

/// Largest frame a client (agent or console) may send to the relay: 256 KiB.
///
/// Clients send small requests, enrollment data and (later) diagnostic
/// snapshots; nothing legitimate comes near this, and a low limit bounds the
/// memory an unauthenticated peer can make the relay hold.
pub const MAX_CLIENT_FRAME_LEN: usize = 256 * 1024;

/// Largest frame the relay may send to a client: 16 MiB.
///
/// Fleet listings for tens of thousands of devices fit in one frame.
pub const MAX_RELAY_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Errors met while splitting a byte stream into frames.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The peer announced a frame larger than the receiver accepts.
    #[error("frame of {announced} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Length found in the header.
        announced: usize,
        /// Limit of this receiver.
        max: usize,
    },
    /// A frame body is empty; no message encodes to zero bytes.
    #[error("empty frame")]
    Empty,
    /// The body to send is larger than the limit the receiver applies.
    #[error("refusing to send a {len}-byte frame: the limit is {max} bytes")]
    BodyTooLarge {
        /// Length of the body.
        len: usize,
        /// Limit that applies.
        max: usize,
    },
}

/// Reads the body length from a frame header and checks it against `max`.
pub fn parse_header(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let announced = u32::from_be_bytes(header) as usize;
    if announced == 0 {
        return Err(FrameError::Empty);
    }
    if announced > max {
        return Err(FrameError::TooLarge { announced, max });
    }
    Ok(announced)
}

/// Appends `body` as one frame to `out`.
pub fn encode_frame(body: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    if body.is_empty() {
        return Err(FrameError::Empty);
    }
    if body.len() > max {
        return Err(FrameError::BodyTooLarge {
            len: body.len(),
            max,
        });
    }
    // The cast cannot truncate: `max` is far below u32::MAX for every caller,
    // and the check above bounds `body.len()` by it.
    let len = u32::try_from(body.len()).map_err(|_| FrameError::BodyTooLarge {
        len: body.len(),
        max,
    })?;
    out.reserve(HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Incremental frame decoder for byte streams that arrive in pieces.
///
/// Feed bytes with [`FrameDecoder::extend`], then call
/// [`FrameDecoder::next_frame`] until it returns `Ok(None)`. After an error
/// the stream is unusable: the caller must close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    max: usize,
}

impl FrameDecoder {
    /// A decoder that rejects frames larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buffer: Vec::new(),
            max,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The bytes buffered past the last returned frame.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buffer
    }

    /// Number of buffered bytes not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Returns the next complete frame body, `Ok(None)` if more bytes are
    /// needed, or an error as soon as the header is invalid (before the body
    /// has arrived, so an oversize frame is never buffered).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(header) = self.buffer.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = parse_header(*header, self.max)?;
        if self.buffer.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.buffer[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buffer.drain(..HEADER_LEN + len);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_frames_split_at_every_byte() {
        let mut wire = Vec::new();
        encode_frame(b"hello", 64, &mut wire).unwrap();
        encode_frame(b"world!", 64, &mut wire).unwrap();
        let mut decoder = FrameDecoder::new(64);
        let mut frames = Vec::new();
        for byte in &wire {
            decoder.extend(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![b"hello".to_vec(), b"world!".to_vec()]);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn rejects_oversize_header_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.extend(&(1025u32).to_be_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge {
                announced: 1025,
                max: 1024
            })
        );
    }

    #[test]
    fn accepts_a_frame_of_exactly_the_maximum() {
        let mut wire = Vec::new();
        encode_frame(&[7; 1024], 1024, &mut wire).unwrap();
        let mut decoder = FrameDecoder::new(1024);
        decoder.extend(&wire);
        assert_eq!(decoder.next_frame().unwrap().map(|f| f.len()), Some(1024));
    }

    #[test]
    fn rejects_empty_frames_both_ways() {
        assert_eq!(
            encode_frame(b"", 8, &mut Vec::new()),
            Err(FrameError::Empty)
        );
        assert_eq!(parse_header([0; 4], 8), Err(FrameError::Empty));
    }

    #[test]
    fn refuses_to_encode_oversize_bodies() {
        assert_eq!(
            encode_frame(&[0; 9], 8, &mut Vec::new()),
            Err(FrameError::BodyTooLarge { len: 9, max: 8 })
        );
    }

    #[test]
    fn incomplete_input_is_not_an_error() {
        let mut decoder = FrameDecoder::new(16);
        decoder.extend(&[0, 0]);
        assert_eq!(decoder.next_frame(), Ok(None));
        decoder.extend(&[0, 3, b'a']);
        assert_eq!(decoder.next_frame(), Ok(None));
    }
}
