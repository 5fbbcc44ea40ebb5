//! Session packets on an outer (relay) connection: the wire format shared by
//! console, agent and relay, and [`packet_link`], which sends and receives
//! them on one outer `quinn::Connection`.
//!
//! A session packet is `[session id: u64 big-endian][inner UDP payload]`.
//! It travels as one QUIC DATAGRAM frame when it fits; otherwise (datagrams
//! unsupported by the peer, or the path still too small for a 1200-byte
//! inner packet) as a length-prefixed frame on an outer unidirectional
//! stream: the stream starts with the byte [`PACKET_STREAM_TAG`], then each
//! frame is `[length: u16 big-endian][session packet]`.
//!
//! The relay uses the same code: it reads session packets from one link and
//! hands them, unchanged and without copying, to the link of the other party
//! of that session. This module never decrypts, never blocks on a full
//! queue (it drops), and owns all datagrams and incoming unidirectional
//! streams of the outer connection it is given; bidirectional streams (the
//! control stream) are left alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use deskside_protocol::SessionId;
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Length of the session id in front of every session packet.
pub const SESSION_ID_LEN: usize = 8;

/// The session id of path probes (never a real session: the relay's ids
/// are non-zero). An agent sends a few on its presence connection per
/// timeline sample; the relay echoes them unchanged to the same connection
/// (rate-limited), so the agent measures round-trip loss and jitter.
pub const PROBE_SESSION_ID: SessionId = SessionId(0);

/// First byte of an outer unidirectional stream carrying session packets.
pub const PACKET_STREAM_TAG: u8 = 0x53; // 'S'

/// The smallest inner packet QUIC must always be able to send (RFC 9000
/// §14: every path must carry 1200-byte UDP payloads). Packets up to this
/// size take the stream fallback when the outer datagrams are too small;
/// larger ones (inner MTU probes) are dropped instead, so the inner path MTU
/// discovery learns the real end-to-end limit and bulk traffic never ends up
/// on a reliable outer stream.
pub const INNER_MIN_PACKET: usize = 1200;

/// The largest session packet accepted from a fallback stream (the u16
/// length prefix cannot say more).
pub const MAX_STREAM_PACKET: usize = u16::MAX as usize;

/// Packets queued for the fallback stream writer before new ones are dropped.
const STREAM_QUEUE_PACKETS: usize = 128;

/// Packets read from fallback streams waiting for [`PacketReceiver::recv`].
const STREAM_RECV_QUEUE_PACKETS: usize = 256;

/// QUIC application error code used to stop a malformed fallback stream.
const MALFORMED_STREAM: u32 = 1;

/// Errors of the session packet link.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The outer connection closed; attach a new one.
    #[error("the relay connection carrying session packets closed ({0}); reconnect and attach the new connection")]
    Closed(#[from] quinn::ConnectionError),
    /// The peer sent something that is not a session packet.
    #[error("malformed session packet from the relay connection: {0}; the peer runs incompatible software or misbehaves")]
    Malformed(String),
}

/// One session packet as it travels on an outer connection: the session id
/// followed by the opaque inner packet. Cloning is cheap (reference-counted).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionPacket {
    wire: Bytes,
}

impl std::fmt::Debug for SessionPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPacket")
            .field("session_id", &self.session_id())
            .field("len", &self.payload_len())
            .finish()
    }
}

impl SessionPacket {
    /// Builds a packet for `session_id` around `payload` (one copy).
    pub fn new(session_id: SessionId, payload: &[u8]) -> Self {
        let mut wire = BytesMut::with_capacity(SESSION_ID_LEN + payload.len());
        wire.put_u64(session_id.0);
        wire.put_slice(payload);
        Self {
            wire: wire.freeze(),
        }
    }

    /// Parses a packet received from an outer connection (no copy).
    pub fn from_wire(wire: Bytes) -> Result<Self, LinkError> {
        if wire.len() < SESSION_ID_LEN {
            return Err(LinkError::Malformed(format!(
                "{} bytes is shorter than the 8-byte session id",
                wire.len()
            )));
        }
        Ok(Self { wire })
    }

    /// The session the packet belongs to.
    pub fn session_id(&self) -> SessionId {
        let mut id = [0u8; SESSION_ID_LEN];
        id.copy_from_slice(&self.wire[..SESSION_ID_LEN]);
        SessionId(u64::from_be_bytes(id))
    }

    /// The inner packet (no copy).
    pub fn payload(&self) -> Bytes {
        self.wire.slice(SESSION_ID_LEN..)
    }

    /// Length of the inner packet.
    pub fn payload_len(&self) -> usize {
        self.wire.len() - SESSION_ID_LEN
    }

    /// The whole packet as sent on the wire.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }
}

/// What [`PacketSender::send`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued as a QUIC datagram.
    Datagram,
    /// Queued on the fallback stream.
    Stream,
    /// Dropped: larger than the outer datagrams allow and larger than
    /// [`INNER_MIN_PACKET`] (an inner MTU probe).
    TooLarge,
    /// Dropped: the fallback stream's queue was full.
    QueueFull,
    /// Dropped: the outer connection is closed.
    Closed,
}

/// Counters of one link, shared by its sender clones.
#[derive(Debug, Default)]
pub struct LinkStats {
    datagrams_sent: AtomicU64,
    stream_packets_sent: AtomicU64,
    dropped: AtomicU64,
    datagrams_received: AtomicU64,
    stream_packets_received: AtomicU64,
}

impl LinkStats {
    /// Packets queued as datagrams.
    pub fn datagrams_sent(&self) -> u64 {
        self.datagrams_sent.load(Ordering::Relaxed)
    }
    /// Packets queued on the fallback stream.
    pub fn stream_packets_sent(&self) -> u64 {
        self.stream_packets_sent.load(Ordering::Relaxed)
    }
    /// Packets dropped on the send side (too large, queue full, closed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Packets received as datagrams.
    pub fn datagrams_received(&self) -> u64 {
        self.datagrams_received.load(Ordering::Relaxed)
    }
    /// Packets received on fallback streams.
    pub fn stream_packets_received(&self) -> u64 {
        self.stream_packets_received.load(Ordering::Relaxed)
    }
}

/// Sending half of a link: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct PacketSender {
    conn: quinn::Connection,
    stream_queue: mpsc::Sender<SessionPacket>,
    stats: Arc<LinkStats>,
}

/// Receiving half of a link. Dropping it stops reading the fallback streams.
#[derive(Debug)]
pub struct PacketReceiver {
    conn: quinn::Connection,
    from_streams: mpsc::Receiver<SessionPacket>,
    stats: Arc<LinkStats>,
    // Owns the stream accept loop and the fallback writer: dropping the
    // receiver (or the last sender, for the writer) ends them.
    _tasks: AbortOnDrop,
}

/// Starts carrying session packets on `outer`. Must be called inside a tokio
/// runtime; spawns the fallback stream reader (owned by the receiver) and
/// writer (ends when the last sender is dropped or the connection closes).
pub fn packet_link(outer: quinn::Connection) -> (PacketSender, PacketReceiver) {
    let stats = Arc::new(LinkStats::default());
    let (stream_tx, stream_rx) = mpsc::channel(STREAM_QUEUE_PACKETS);
    let (recv_tx, recv_rx) = mpsc::channel(STREAM_RECV_QUEUE_PACKETS);
    let writer = tokio::spawn(write_fallback_stream(outer.clone(), stream_rx));
    let reader = tokio::spawn(accept_fallback_streams(
        outer.clone(),
        recv_tx,
        stats.clone(),
    ));
    let sender = PacketSender {
        conn: outer.clone(),
        stream_queue: stream_tx,
        stats: stats.clone(),
    };
    let receiver = PacketReceiver {
        conn: outer,
        from_streams: recv_rx,
        stats,
        _tasks: AbortOnDrop(vec![reader.abort_handle()]),
    };
    // The writer is not aborted with the receiver: it ends on its own when
    // every sender is gone, so a relay can drop a receiver while other
    // connections still forward into this one.
    drop(writer);
    (sender, receiver)
}

impl PacketSender {
    /// Sends a session packet: as a datagram if it fits, else on the
    /// fallback stream if it is no larger than [`INNER_MIN_PACKET`], else
    /// drops it. Never waits; a full queue drops.
    pub fn send(&self, packet: SessionPacket) -> Sent {
        let outcome = self.route(packet);
        match outcome {
            Sent::Datagram => &self.stats.datagrams_sent,
            Sent::Stream => &self.stats.stream_packets_sent,
            Sent::TooLarge | Sent::QueueFull | Sent::Closed => &self.stats.dropped,
        }
        .fetch_add(1, Ordering::Relaxed);
        outcome
    }

    fn route(&self, packet: SessionPacket) -> Sent {
        let fits = self
            .conn
            .max_datagram_size()
            .is_some_and(|max| packet.wire.len() <= max);
        let packet = if fits {
            // quinn drops the oldest queued datagrams when its send buffer is
            // full, which is the drop-don't-block behaviour wanted here.
            match self.conn.send_datagram(packet.wire.clone()) {
                Ok(()) => return Sent::Datagram,
                Err(quinn::SendDatagramError::ConnectionLost(_)) => return Sent::Closed,
                // The path MTU shrank or datagrams were turned off between
                // the size check and the send: try the stream.
                Err(_) => packet,
            }
        } else {
            packet
        };
        let datagrams_supported = self.conn.max_datagram_size().is_some();
        if datagrams_supported && packet.payload_len() > INNER_MIN_PACKET {
            return Sent::TooLarge;
        }
        if packet.wire.len() > MAX_STREAM_PACKET {
            return Sent::TooLarge;
        }
        match self.stream_queue.try_send(packet) {
            Ok(()) => Sent::Stream,
            Err(mpsc::error::TrySendError::Full(_)) => Sent::QueueFull,
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Closed,
        }
    }

    /// The largest inner packet that currently travels as one datagram, if
    /// the peer accepts datagrams. It starts near 1162 - 8 bytes with
    /// quinn's default 1200-byte initial MTU and rises as the outer MTU
    /// discovery runs (about 1406 on an Ethernet path).
    pub fn max_datagram_payload(&self) -> Option<usize> {
        self.conn
            .max_datagram_size()
            .map(|max| max.saturating_sub(SESSION_ID_LEN))
    }

    /// The outer connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The link's counters.
    pub fn stats(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }
}

impl PacketReceiver {
    /// The next session packet, from a datagram or a fallback stream.
    /// Cancel-safe: it can sit in a `select!`.
    ///
    /// A malformed datagram is returned as [`LinkError::Malformed`]; the
    /// caller decides whether that closes the connection (the relay should,
    /// with close code 1) or is only logged.
    pub async fn recv(&mut self) -> Result<SessionPacket, LinkError> {
        tokio::select! {
            datagram = self.conn.read_datagram() => {
                let packet = SessionPacket::from_wire(datagram?)?;
                self.stats.datagrams_received.fetch_add(1, Ordering::Relaxed);
                Ok(packet)
            }
            Some(packet) = self.from_streams.recv() => Ok(packet),
        }
    }

    /// The outer connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The link's counters (shared with the sender).
    pub fn stats(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }
}

/// Writes queued packets on one outer unidirectional stream, opened on the
/// first packet that needs it.
async fn write_fallback_stream(conn: quinn::Connection, mut queue: mpsc::Receiver<SessionPacket>) {
    let mut stream: Option<quinn::SendStream> = None;
    while let Some(packet) = queue.recv().await {
        let send = match &mut stream {
            Some(send) => send,
            None => match open_packet_stream(&conn).await {
                Ok(send) => stream.insert(send),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot open the session packet stream");
                    return;
                }
            },
        };
        // The length fits: `route` refuses packets over MAX_STREAM_PACKET.
        let len = u16::try_from(packet.wire.len()).unwrap_or(u16::MAX);
        let written = async {
            send.write_all(&len.to_be_bytes()).await?;
            send.write_chunk(packet.wire).await
        };
        if let Err(e) = written.await {
            tracing::debug!(error = %e, "the session packet stream ended");
            return;
        }
    }
}

async fn open_packet_stream(conn: &quinn::Connection) -> Result<quinn::SendStream, LinkError> {
    let mut send = conn.open_uni().await?;
    send.write_all(&[PACKET_STREAM_TAG])
        .await
        .map_err(|e| LinkError::Malformed(format!("cannot start the packet stream: {e}")))?;
    Ok(send)
}

/// Accepts the peer's unidirectional streams and reads session packets from
/// those tagged [`PACKET_STREAM_TAG`].
async fn accept_fallback_streams(
    conn: quinn::Connection,
    out: mpsc::Sender<SessionPacket>,
    stats: Arc<LinkStats>,
) {
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            stream = conn.accept_uni() => match stream {
                Ok(recv) => {
                    readers.spawn(read_packet_stream(recv, out.clone(), stats.clone()));
                }
                Err(_) => return,
            },
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

async fn read_packet_stream(
    mut recv: quinn::RecvStream,
    out: mpsc::Sender<SessionPacket>,
    stats: Arc<LinkStats>,
) {
    if let Err(reason) = read_packets(&mut recv, &out, &stats).await {
        tracing::warn!(%reason, "stopped reading a malformed session packet stream");
        let _ = recv.stop(MALFORMED_STREAM.into());
    }
}

/// Reads frames until the stream ends; `Err` names a protocol violation.
async fn read_packets(
    recv: &mut quinn::RecvStream,
    out: &mpsc::Sender<SessionPacket>,
    stats: &LinkStats,
) -> Result<(), String> {
    let mut tag = [0u8; 1];
    if recv.read_exact(&mut tag).await.is_err() {
        return Ok(());
    }
    if tag[0] != PACKET_STREAM_TAG {
        return Err(format!("unknown stream type {:#04x}", tag[0]));
    }
    loop {
        let len = match recv.read_u16().await {
            Ok(len) => usize::from(len),
            // End of stream or connection: nothing wrong with the data.
            Err(_) => return Ok(()),
        };
        // The u16 prefix bounds the allocation to 64 KiB.
        if len < SESSION_ID_LEN {
            return Err(format!("frame of {len} bytes is shorter than a session id"));
        }
        let mut wire = BytesMut::zeroed(len);
        if recv.read_exact(&mut wire).await.is_err() {
            return Ok(());
        }
        let packet = SessionPacket {
            wire: wire.freeze(),
        };
        stats
            .stream_packets_received
            .fetch_add(1, Ordering::Relaxed);
        match out.try_send(packet) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        }
    }
}

/// Aborts the held tasks when dropped, so no task outlives its owner.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_packet_round_trips_through_its_wire_form() {
        let packet = SessionPacket::new(SessionId(0x0102_0304_0506_0708), b"inner");
        assert_eq!(&packet.wire()[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let again = SessionPacket::from_wire(packet.wire().clone()).unwrap();
        assert_eq!(again.session_id(), SessionId(0x0102_0304_0506_0708));
        assert_eq!(&again.payload()[..], b"inner");
        assert_eq!(again.payload_len(), 5);
    }

    #[test]
    fn a_datagram_shorter_than_a_session_id_is_malformed() {
        let err = SessionPacket::from_wire(Bytes::from_static(b"1234567")).unwrap_err();
        assert!(matches!(err, LinkError::Malformed(_)), "{err}");
        assert!(SessionPacket::from_wire(Bytes::from_static(b"12345678")).is_ok());
    }
}
