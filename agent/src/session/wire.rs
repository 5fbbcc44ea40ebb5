//! Length-prefixed postcard frames over the local socket between the agent
//! service and the session helper (the same framing as every QUIC stream).

use deskside_protocol::frame::{encode_frame, FrameDecoder, FrameError};
use deskside_protocol::message::{decode_message, encode_message, Message, MessageError};
use deskside_protocol::session::MAX_VIDEO_FRAME_LEN;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest frame on the helper socket (a lossless keyframe of a big screen).
pub const MAX_HELPER_FRAME: usize = MAX_VIDEO_FRAME_LEN;

/// Errors on the helper socket.
#[derive(Debug, Error)]
pub enum WireError {
    /// Reading or writing failed.
    #[error("helper socket: {0}")]
    Io(#[from] std::io::Error),
    /// A frame was malformed or too large.
    #[error("helper socket: {0}")]
    Frame(#[from] FrameError),
    /// A frame did not decode.
    #[error("helper socket: {0}")]
    Message(#[from] MessageError),
    /// The peer closed in the middle of a frame.
    #[error("helper socket: the other side closed in the middle of a message")]
    Truncated,
}

/// Writes one message as one frame.
pub async fn write_message<M: Message, W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &M,
) -> Result<(), WireError> {
    let body = encode_message(message)?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    encode_frame(&body, MAX_HELPER_FRAME, &mut frame)?;
    writer.write_all(&frame).await?;
    Ok(())
}

/// Reads messages from one side of the socket.
#[derive(Debug)]
pub struct MessageReader<R> {
    inner: R,
    decoder: FrameDecoder,
    chunk: Vec<u8>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            decoder: FrameDecoder::new(MAX_HELPER_FRAME),
            chunk: vec![0; 64 * 1024],
        }
    }

    /// The next message; `Ok(None)` when the peer closed between messages.
    /// Cancel-safe: bytes read are kept in the decoder.
    pub async fn next<M: Message>(&mut self) -> Result<Option<M>, WireError> {
        loop {
            if let Some(body) = self.decoder.next_frame()? {
                return Ok(Some(decode_message(&body)?));
            }
            let n = self.inner.read(&mut self.chunk).await?;
            if n == 0 {
                return if self.decoder.buffered() == 0 {
                    Ok(None)
                } else {
                    Err(WireError::Truncated)
                };
            }
            self.decoder.extend(&self.chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::helper::{HelperToService, ServiceToHelper};
    use deskside_protocol::SessionId;

    // An in-memory pipe instead of a socket pair: the framing is what is
    // tested, and this way it is tested on every platform (Windows too).
    #[tokio::test]
    async fn messages_cross_a_pipe_in_order() {
        let (mut aw, br) = tokio::io::duplex(4096);
        write_message(&mut aw, &ServiceToHelper::Welcome)
            .await
            .unwrap();
        write_message(
            &mut aw,
            &ServiceToHelper::FrameCredit {
                session_id: SessionId(7),
                rtt_ms: 12,
            },
        )
        .await
        .unwrap();
        drop(aw);
        let mut reader = MessageReader::new(br);
        assert_eq!(
            reader.next::<ServiceToHelper>().await.unwrap(),
            Some(ServiceToHelper::Welcome)
        );
        assert_eq!(
            reader.next::<ServiceToHelper>().await.unwrap(),
            Some(ServiceToHelper::FrameCredit {
                session_id: SessionId(7),
                rtt_ms: 12
            })
        );
        assert_eq!(reader.next::<ServiceToHelper>().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error() {
        let (mut aw, br) = tokio::io::duplex(4096);
        aw.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(aw);
        let mut reader = MessageReader::new(br);
        assert!(matches!(
            reader.next::<HelperToService>().await,
            Err(WireError::Truncated)
        ));
    }
}
