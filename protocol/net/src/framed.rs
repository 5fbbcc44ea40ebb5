//! Frames over QUIC streams.
//!
//! Reads the 4-byte header first and checks the announced length against this
//! side's limit before allocating the body, so an oversize frame from a peer
//! costs four bytes and a closed connection, nothing more.

use deskside_protocol::frame::encode_frame;
use deskside_protocol::message::{decode_value, encode_value};
use deskside_protocol::FrameDecoder;
use deskside_protocol::{decode_message, encode_message, FrameError, Message, MessageError};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// Errors on a framed stream. Any of them means the stream is unusable.
#[derive(Debug, Error)]
pub enum NetError {
    /// Reading from the stream failed (peer reset it or the connection died).
    #[error("read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// Writing to the stream failed.
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame")]
    Truncated,
    /// The frame header was invalid (too large or empty).
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The frame body did not decode.
    #[error("bad message: {0}")]
    Message(#[from] MessageError),
    /// The connection was lost.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The peer did not answer in time.
    #[error("timed out waiting for the peer")]
    Timeout,
}

/// The sending half of a framed stream.
#[derive(Debug)]
pub struct FramedSend {
    inner: quinn::SendStream,
    max: usize,
    buffer: Vec<u8>,
}

impl FramedSend {
    /// Wraps a stream whose receiver accepts frames up to `max` bytes.
    pub fn new(inner: quinn::SendStream, max: usize) -> Self {
        Self {
            inner,
            max,
            buffer: Vec::new(),
        }
    }

    /// Sends one message.
    pub async fn send<M: Message>(&mut self, message: &M) -> Result<(), NetError> {
        let body = encode_message(message)?;
        self.send_body(&body).await
    }

    /// Sends one plain value (a hello).
    pub async fn send_value<T: Serialize>(&mut self, value: &T) -> Result<(), NetError> {
        let body = encode_value(value)?;
        self.send_body(&body).await
    }

    /// Sends an already encoded body as one frame.
    pub async fn send_body(&mut self, body: &[u8]) -> Result<(), NetError> {
        self.buffer.clear();
        encode_frame(body, self.max, &mut self.buffer)?;
        self.inner.write_all(&self.buffer).await?;
        Ok(())
    }

    /// Ends the stream gracefully after what was sent.
    pub fn finish(&mut self) {
        // An error only means the stream was already finished or reset.
        let _ = self.inner.finish();
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut quinn::SendStream {
        &mut self.inner
    }
}

/// The receiving half of a framed stream.
///
/// Cancel-safe: received bytes are kept in the decoder, so dropping a
/// `recv` future (as `tokio::select!` does when another branch wins) never
/// loses part of a frame.
#[derive(Debug)]
pub struct FramedRecv {
    inner: quinn::RecvStream,
    decoder: FrameDecoder,
}

/// Largest read from the stream at once.
const READ_CHUNK: usize = 64 * 1024;

impl FramedRecv {
    /// Wraps a stream, refusing frames larger than `max` bytes.
    pub fn new(inner: quinn::RecvStream, max: usize) -> Self {
        Self {
            inner,
            decoder: FrameDecoder::new(max),
        }
    }

    /// The underlying stream and the bytes already received past the last
    /// frame, for raw data that follows the frames.
    pub fn into_parts(self) -> (quinn::RecvStream, Vec<u8>) {
        let leftover = self.decoder.into_buffer();
        (self.inner, leftover)
    }

    /// Reads the next frame body; `Ok(None)` when the peer finished the
    /// stream cleanly between frames.
    pub async fn recv_body(&mut self) -> Result<Option<Vec<u8>>, NetError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            // `read_chunk` hands over bytes only when it completes, so a
            // cancelled call loses nothing.
            match self.inner.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.decoder.extend(&chunk.bytes),
                None if self.decoder.buffered() == 0 => return Ok(None),
                None => return Err(NetError::Truncated),
            }
        }
    }

    /// Reads the next message; `Ok(None)` at a clean end of stream.
    pub async fn recv<M: Message>(&mut self) -> Result<Option<M>, NetError> {
        match self.recv_body().await? {
            Some(body) => Ok(Some(decode_message(&body)?)),
            None => Ok(None),
        }
    }

    /// Reads the next plain value (a hello); end of stream is an error.
    pub async fn recv_value<T: DeserializeOwned>(&mut self) -> Result<T, NetError> {
        match self.recv_body().await? {
            Some(body) => Ok(decode_value(&body)?),
            None => Err(NetError::Truncated),
        }
    }
}
